"""The decision the dispatcher takes for one group at time `now`: pure, clock injected.

    stages.group     — are pending changes due (group wait / group interval)?
    stages.resolve   — which are new firings, which are returns to normal
    stages.repeat    — is a reminder due for what stays unacknowledged?
    stages.escalate  — is anyone due to be escalated up the chain?

It returns the notices to send (each with its reason), the members and group
after them, and when to look at the group again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from alerting.model import Group, Member, Notice, NoticeKind
from alerting.stages import escalate, group, repeat, resolve

EPS = 1e-6


@dataclass(frozen=True)
class Plan:
    notices: tuple[Notice, ...]
    group: Group
    members: tuple[Member, ...]
    next_at: float | None
    reason: str


def next_due(g: Group, members: Sequence[Member]) -> tuple[float | None, str]:
    """The earliest time any stage has something to do, with that stage's reason."""
    options = [group.due(g, members), repeat.due(g, members), escalate.due(g, members)]
    timed = [(t, r) for t, r in options if t is not None]
    if not timed:
        return None, "idle: " + "; ".join(r for _, r in options)
    return min(timed, key=lambda x: x[0])


def decide(g: Group, members: Sequence[Member], now: float) -> Plan:
    notices: list[Notice] = []
    by_item = {m.item: m for m in members}
    notified_group = False

    at, why = group.due(g, members)
    if at is not None and at <= now + EPS:
        new, back = resolve.pending(members)
        items = tuple(m.item for m in new)
        gone = tuple(m.item for m in back)
        kind: NoticeKind = "firing" if new else "resolved"
        notices.append(Notice(kind, g.receiver, items, f"{why}: {len(new)} new, {len(gone)} returned to normal",
                              resolved=gone))
        for m in new:
            by_item[m.item] = replace(m, notified_at=now)
        for m in back:
            by_item[m.item] = replace(m, resolved_notified=True, notified_at=m.notified_at or now)
        notified_group = True

    at, why = repeat.due(g, list(by_item.values()))
    if not notified_group and at is not None and at <= now + EPS:
        w = repeat.waiting(list(by_item.values()))
        notices.append(Notice("reminder", g.receiver, tuple(m.item for m in w), f"reminder: {why}"))
        notified_group = True

    # Escalation: one notice per step receiver, listing every member due for that step now.
    steps: dict[int, list[str]] = {}
    for item, m in list(by_item.items()):
        while (t := escalate.step_due(g, m)) is not None and t <= now + EPS:
            steps.setdefault(m.escalated, []).append(item)
            m = replace(m, escalated=m.escalated + 1)
        by_item[item] = m
    for k in sorted(steps):
        s = g.escalation[k]
        notices.append(Notice("escalation", s.receiver, tuple(steps[k]),
                              f"escalation step {k + 1}: unacknowledged {s.after:g}s after notice"))

    seq = g.seq + len(notices)
    g2 = replace(g, seq=seq, last_notified_at=now if notified_group else g.last_notified_at)
    out = tuple(by_item.values())
    nxt, nreason = next_due(g2, out)
    reason = "; ".join(n.reason for n in notices) or "nothing due"
    return Plan(tuple(notices), g2, out, nxt, f"{reason} | next: {nreason}")
