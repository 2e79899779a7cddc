"""Grouping: when a group's pending changes (new firings, returns to normal) are sent.

As in Alertmanager: the first notice of a group waits `group_wait` so that a
burst arrives as one message; later changes wait until `group_interval` after
the previous notice, so a flood of alarms becomes one notification per
receiver per window instead of one each.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.model import Group, Member


def due(g: Group, members: Sequence[Member]) -> tuple[float | None, str]:
    """(when the pending changes are due, reason); None when nothing is pending."""
    pending = [m for m in members if m.announce_pending]
    if not pending:
        return None, "nothing pending"
    first = min(m.pending_at for m in pending)
    if g.last_notified_at is None:
        return first + g.group_wait, f"group_wait {g.group_wait:g}s after the first of {len(pending)} pending"
    return (max(first, g.last_notified_at + g.group_interval),
            f"group_interval {g.group_interval:g}s after the previous notice; {len(pending)} pending")
