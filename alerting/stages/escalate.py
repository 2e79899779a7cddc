"""Escalation: unacknowledged `after` seconds after its first notice, an alarm also goes up the chain
(duty officer → section chief → bureau leader). Each step is taken once per firing."""

from __future__ import annotations

from collections.abc import Sequence

from alerting.model import Group, Member


def step_due(g: Group, m: Member) -> float | None:
    """When member m is due for its next escalation step; None if none is left or it is acknowledged."""
    if not m.unacked or m.notified_at is None or m.escalated >= len(g.escalation):
        return None
    return m.notified_at + g.escalation[m.escalated].after


def due(g: Group, members: Sequence[Member]) -> tuple[float | None, str]:
    times = [(t, m) for m in members if (t := step_due(g, m)) is not None]
    if not times:
        return None, "no escalation pending"
    t, m = min(times, key=lambda x: x[0])
    step = g.escalation[m.escalated]
    return t, f"{m.item} unacknowledged {step.after:g}s after notice → {step.receiver}"
