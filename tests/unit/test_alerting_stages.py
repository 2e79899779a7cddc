"""The alerting pipeline as pure functions of (group, members, now): table-driven, no clock, no I/O."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alerting import pipeline
from alerting.model import ACKED, FIRING, RESOLVED, Group, Member, Step
from alerting.stages import dedup

T0 = 1_764_460_800.0
G = Group(1, "duty", group_wait=10, group_interval=60, repeat_interval=300,
          escalation=(Step(900, "chief"), Step(1800, "leader")), created_at=T0)


def fire(item: str, t: float, m: Member | None = None) -> Member:
    got, _ = dedup.apply_event(m, item, FIRING, t, t)
    assert got is not None
    return got


def run(g: Group, members: list[Member], until: float, step: float = 1.0) -> tuple[list[tuple[float, str, str, tuple[
        str, ...]]], Group, list[Member]]:
    """Drive decide() like the dispatcher: at each due time up to `until`; returns (time, kind, receiver, items)."""
    sent = []
    t = T0
    while True:
        nxt, _ = pipeline.next_due(g, members)
        if nxt is None or nxt > until:
            return sent, g, members
        t = max(t, nxt)
        plan = pipeline.decide(g, members, t)
        sent += [(t, n.kind, n.receiver, n.items) for n in plan.notices]
        g, members = plan.group, list(plan.members)


@pytest.mark.parametrize(("existing", "event", "status", "reason_part"), [
    (None, FIRING, FIRING, "new"),
    (Member("a", FIRING, T0, T0, notified_at=T0), FIRING, FIRING, "duplicate"),
    (Member("a", FIRING, T0, T0), FIRING, FIRING, "already pending"),
    (Member("a", ACKED, T0, T0, notified_at=T0), FIRING, FIRING, "fired again after acknowledgement"),
    (Member("a", RESOLVED, T0, T0, notified_at=T0), FIRING, FIRING, "fired again after return to normal"),
    (Member("a", FIRING, T0, T0, notified_at=T0), RESOLVED, RESOLVED, "returned to normal"),
    (Member("a", FIRING, T0, T0, notified_at=T0), "acked", ACKED, "reminders and escalation stop"),
    (Member("a", RESOLVED, T0, T0, notified_at=T0), "acked", RESOLVED, "nothing to stop"),
    (None, RESOLVED, None, "nothing announced"),
])
def test_dedup(existing: Member | None, event: str, status: str | None, reason_part: str) -> None:
    m, reason = dedup.apply_event(existing, "a", event, T0 + 5, T0 + 5, "张伟")
    assert (m.status if m else None) == status
    assert reason_part in reason


def test_first_notice_waits_group_wait_and_takes_the_whole_burst() -> None:
    members = [fire(f"a{i}", T0 + i * 0.1) for i in range(50)]
    sent, _, _ = run(replace(G, repeat_interval=0, escalation=()), members, T0 + 3600)
    assert [(round(t - T0, 1), k, len(items)) for t, k, _, items in sent] == [(10.0, "firing", 50)]


def test_flood_is_one_notification_per_group_window() -> None:
    """50 alarms over 3 minutes: one notice after group_wait, then at most one per group_interval."""
    g = replace(G, repeat_interval=0, escalation=())
    members: list[Member] = []
    sent: list[tuple[float, str, str, tuple[str, ...]]] = []
    for i in range(50):
        t = T0 + i * 3.6  # 180 s
        members.append(fire(f"a{i}", t))
        nxt, _ = pipeline.next_due(g, members)
        while nxt is not None and nxt <= t:
            plan = pipeline.decide(g, members, nxt)
            sent += [(nxt, n.kind, n.receiver, n.items) for n in plan.notices]
            g, members = plan.group, list(plan.members)
            nxt, _ = pipeline.next_due(g, members)
    more, g, members = run(g, members, T0 + 3600)
    sent += more
    times = [t - T0 for t, *_ in sent]
    assert times[0] == pytest.approx(10.0)
    assert all(b - a >= 60 - 1e-6 for a, b in zip(times, times[1:], strict=False))
    assert sorted(i for *_, items in sent for i in items) == sorted(f"a{i}" for i in range(50))
    assert len(sent) == 4  # 10 s, 70 s, 130 s, 190 s


def test_reminders_repeat_until_acknowledged_then_stop() -> None:
    g = replace(G, escalation=())
    sent, g, members = run(g, [fire("a", T0)], T0 + 1000)
    assert [(t - T0, k) for t, k, *_ in sent] == [(10, "firing"), (310, "reminder"), (610, "reminder"),
                                                   (910, "reminder")]
    acked, _ = dedup.apply_event(members[0], "a", "acked", T0 + 1000, T0 + 1000, "张伟")
    assert acked is not None
    more, _, _ = run(g, [acked], T0 + 10_000)
    assert more == []
    assert pipeline.next_due(g, [acked])[0] is None


def test_escalation_chain_after_n_minutes_unacknowledged() -> None:
    g = replace(G, repeat_interval=0)
    sent, _, members = run(g, [fire("a", T0)], T0 + 4000)
    assert [(t - T0, k, r) for t, k, r, _ in sent] == [(10, "firing", "duty"), (910, "escalation", "chief"),
                                                       (1810, "escalation", "leader")]
    assert members[0].escalated == 2


def test_acknowledged_before_the_step_is_not_escalated() -> None:
    g = replace(G, repeat_interval=0)
    sent, g, members = run(g, [fire("a", T0)], T0 + 600)
    acked, _ = dedup.apply_event(members[0], "a", "acked", T0 + 600, T0 + 600)
    assert acked is not None
    more, _, _ = run(g, [acked], T0 + 10_000)
    assert [k for _, k, *_ in sent + more] == ["firing"]


def test_return_to_normal_is_announced_once() -> None:
    g = replace(G, repeat_interval=0, escalation=())
    sent, g, members = run(g, [fire("a", T0)], T0 + 100)
    back, _ = dedup.apply_event(members[0], "a", RESOLVED, T0 + 100, T0 + 100)
    assert back is not None
    more, g, members = run(g, [back], T0 + 1000)
    assert [(t - T0, k) for t, k, *_ in sent + more] == [(10, "firing"), (100, "resolved")]
    assert run(g, members, T0 + 5000)[0] == []


def test_alarm_that_cleared_within_group_wait_is_still_announced() -> None:
    m = fire("a", T0)
    back, _ = dedup.apply_event(m, "a", RESOLVED, T0 + 3, T0 + 3)
    assert back is not None
    plan = pipeline.decide(G, [back], T0 + 10)
    assert [(n.kind, n.items, n.resolved) for n in plan.notices] == [("resolved", (), ("a",))]
    assert pipeline.next_due(plan.group, list(plan.members))[0] is None


def test_informational_member_is_announced_once_never_reminded() -> None:
    m, _ = dedup.apply_event(None, "hazard:1:verify", FIRING, T0, T0, needs_ack=False)
    assert m is not None
    sent, _, _ = run(G, [m], T0 + 10_000)
    assert [k for _, k, *_ in sent] == ["firing"]


def test_decisions_carry_reasons() -> None:
    plan = pipeline.decide(G, [fire("a", T0)], T0 + 10)
    assert "group_wait 10s" in plan.notices[0].reason
    assert "next:" in plan.reason
