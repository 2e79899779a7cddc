"""Resolved notices: tell the receiver when an alarm it was told about has returned to normal.

An alarm that fired and returned to normal within the group wait was never
announced; it is still announced, under its own heading (【报警后已恢复】, "it
went over the limit and recovered before any notice"), because a dangerous
excursion that cleared by itself is still news to the duty officer — unlike
Alertmanager, which drops it. Its rows carry `announced=False` to say so.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.model import FIRING, RESOLVED, Member


def pending(members: Sequence[Member]) -> tuple[list[Member], list[Member]]:
    """(new firings to announce, returns to normal to announce)."""
    new = [m for m in members if m.announce_pending and m.status == FIRING]
    back = [m for m in members if m.announce_pending and m.status == RESOLVED]
    return new, back
