"""The dispatcher's state as the pure stages see it: alert groups and their members."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: A member's status in its group.
MemberStatus = Literal["firing", "resolved", "acked"]
#: What a notice announces.
NoticeKind = Literal["firing", "reminder", "escalation", "resolved"]

FIRING: Final = "firing"
RESOLVED: Final = "resolved"
ACKED: Final = "acked"


@dataclass(frozen=True)
class Step:
    """Escalation: still unacknowledged `after` seconds after the first notice → also notify `receiver`."""

    after: float
    receiver: str


@dataclass(frozen=True)
class Group:
    """One route × receiver × group key: the unit that is waited for, batched, reminded and escalated."""

    id: int
    receiver: str
    group_wait: float
    group_interval: float
    repeat_interval: float          # 0: no reminders
    escalation: tuple[Step, ...]
    created_at: float
    last_notified_at: float | None = None
    seq: int = 0


@dataclass(frozen=True)
class Member:
    """One alarm (rule × subject) or one hazard event inside a group."""

    item: str
    status: MemberStatus
    since: float                     # when this firing started (data time)
    pending_at: float                # when the dispatcher learnt of the change still to announce
    notified_at: float | None = None  # first notice of this firing
    escalated: int = 0               # escalation steps already taken
    resolved_at: float | None = None
    resolved_notified: bool = False
    acked_at: float | None = None
    acked_by: str | None = None
    needs_ack: bool = True           # False: announced once, never reminded or escalated

    @property
    def unacked(self) -> bool:
        return self.status == FIRING and self.needs_ack

    @property
    def announce_pending(self) -> bool:
        """Something about it has not been said yet: a new firing, or a return to normal."""
        if self.notified_at is None:
            return self.status in (FIRING, RESOLVED) and not self.resolved_notified
        return self.status == RESOLVED and not self.resolved_notified


@dataclass(frozen=True)
class Notice:
    """A decision to notify: which receiver, about which members, and why."""

    kind: NoticeKind
    receiver: str
    items: tuple[str, ...]
    reason: str
    resolved: tuple[str, ...] = ()   # items announced as returned to normal (firing / resolved notices)
