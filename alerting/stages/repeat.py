"""Reminders: repeat the notice every `repeat_interval` while announced alarms stay unacknowledged."""

from __future__ import annotations

from collections.abc import Sequence

from alerting.model import Group, Member


def waiting(members: Sequence[Member]) -> list[Member]:
    """Announced, still firing, nobody has acknowledged."""
    return [m for m in members if m.unacked and m.notified_at is not None]


def due(g: Group, members: Sequence[Member]) -> tuple[float | None, str]:
    if g.repeat_interval <= 0:
        return None, "reminders off"
    w = waiting(members)
    if not w:
        return None, "nothing unacknowledged"
    last = g.last_notified_at if g.last_notified_at is not None else max(m.notified_at or 0 for m in w)
    return last + g.repeat_interval, (
        f"{len(w)} unacknowledged; repeat_interval {g.repeat_interval:g}s after the previous notice")
