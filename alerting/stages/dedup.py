"""Dedup: what an incoming event changes about a member, and nothing when it changes nothing.

A repeated firing of an alarm that is already firing (a re-annunciation, a
redelivered outbox row) adds no notification: the reminders cover it. A
return to normal or an acknowledgement changes the member, never creates one.
"""

from __future__ import annotations

from dataclasses import replace

from alerting.model import ACKED, FIRING, RESOLVED, Member


def apply_event(m: Member | None, item: str, event: str, t: float, now: float,
                actor: str | None = None, needs_ack: bool = True) -> tuple[Member | None, str]:
    """(member after the event, reason). `event` is firing | resolved | acked; `t` its own time."""
    if event == FIRING:
        if m is None:
            return Member(item, FIRING, since=t, pending_at=now, needs_ack=needs_ack), "new"
        if m.status == FIRING:
            return m, "duplicate: already firing and announced" if m.notified_at else "duplicate: already pending"
        return (Member(item, FIRING, since=t, pending_at=now, needs_ack=needs_ack),
                f"fired again after {'acknowledgement' if m.status == ACKED else 'return to normal'}")
    if m is None:
        return None, f"{event}: nothing announced to update"
    if event == RESOLVED:
        if m.status == RESOLVED:
            return m, "duplicate: already resolved"
        # Not yet announced: it keeps its place in the group wait it was already in.
        pending_at = now if m.notified_at is not None else m.pending_at
        return replace(m, status=RESOLVED, resolved_at=t, pending_at=pending_at), "returned to normal"
    if event == ACKED:
        if m.status != FIRING:
            return m, f"acknowledged while {m.status}: nothing to stop"
        return replace(m, status=ACKED, acked_at=t, acked_by=actor), "acknowledged: reminders and escalation stop"
    raise ValueError(f"unknown member event {event!r}")
