"""ISA-18.2 / IEC 62682 alarm lifecycle, as pure functions of (alarm, event, now).

States: ``normal`` -> ``unack`` (active, unacknowledged) -> ``ack`` (active,
acknowledged) -> ``normal`` on return; or ``unack`` -> ``rtn_unack`` (returned
to normal before anyone acknowledged) -> ``normal`` on acknowledgement.

Overlays that do not change the state but stop annunciation (the event is
still recorded): shelved (until a time, with a reason; auto-unshelved by the
tick), out of service (by hand), inside a maintenance window, chattering
(>= CHATTER_COUNT activations within CHATTER_WINDOW_S; held until it has been
quiet for that long).

Each function returns the new alarm and the events to record, each with a
reason; refusals raise LifecycleError with a message for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from core.errors import RiskwatchError
from core.timeconst import S_PER_DAY, S_PER_H

CHATTER_COUNT = 3
CHATTER_WINDOW_S = 60.0
MAX_SHELVE_S = 7.0 * S_PER_DAY


#: ISA-18.2 states, as stored in alarms.state and alarm_events.from_state / to_state.
AlarmState = Literal["normal", "unack", "ack", "rtn_unack"]


class LifecycleError(RiskwatchError, ValueError):
    """An operator action that the alarm's state does not allow."""


@dataclass(frozen=True)
class Alarm:
    state: AlarmState = "normal"
    active: bool = False
    shelved_until: float | None = None
    out_of_service: bool = False
    chattering: bool = False
    recent: tuple[float, ...] = ()  # activation times within the chatter window
    acked_at: float | None = None
    acked_by: str | None = None
    ack_comment: str | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    activated_at: float | None = None
    cleared_at: float | None = None

    def shelved(self, now: float) -> bool:
        return self.shelved_until is not None and now < self.shelved_until


@dataclass(frozen=True)
class Event:
    time: float
    event: str
    from_state: AlarmState
    to_state: AlarmState
    annunciate: bool
    actor: str
    reason: str


def _quiet_reason(a: Alarm, now: float, in_maintenance: str | None) -> str | None:
    if a.out_of_service:
        return "out of service"
    if a.shelved(now):
        return f"shelved by {a.shelved_by} ({a.shelve_reason})"
    if in_maintenance:
        return f"maintenance window: {in_maintenance}"
    if a.chattering:
        return "chattering: re-annunciation held"
    return None


def activate(a: Alarm, t: float, reason: str, *, in_maintenance: str | None = None) -> tuple[Alarm, list[Event]]:
    """The condition became active at data time t."""
    if a.active:
        return a, []
    events: list[Event] = []
    recent = tuple(x for x in a.recent if t - x < CHATTER_WINDOW_S) + (t,)
    chattering = a.chattering
    if not chattering and len(recent) >= CHATTER_COUNT:
        chattering = True
        events.append(Event(t, "chatter", a.state, a.state, False, "system",
                            f"{len(recent)} activations within {CHATTER_WINDOW_S:g} s"))
    new_state = "unack" if a.state in ("normal", "rtn_unack") else a.state
    b = replace(a, state=new_state, active=True, recent=recent, chattering=chattering, activated_at=t)
    quiet = _quiet_reason(b, t, in_maintenance)
    events.append(Event(t, "activate", a.state, new_state, quiet is None, "system",
                        reason if quiet is None else f"{reason} [not annunciated: {quiet}]"))
    return b, events


def clear(a: Alarm, t: float, reason: str) -> tuple[Alarm, list[Event]]:
    """The condition returned to normal at data time t."""
    if not a.active:
        return a, []
    returned: dict[AlarmState, AlarmState] = {"unack": "rtn_unack", "ack": "normal"}
    new_state = returned.get(a.state, a.state)
    b = replace(a, state=new_state, active=False, cleared_at=t)
    return b, [Event(t, "clear", a.state, new_state, False, "system", reason)]


def acknowledge(a: Alarm, actor: str, comment: str, now: float) -> tuple[Alarm, list[Event]]:
    if a.state not in ("unack", "rtn_unack"):
        raise LifecycleError(f"无需确认 nothing to acknowledge: alarm is {a.state}")
    new_state: AlarmState = "ack" if a.state == "unack" else "normal"
    b = replace(a, state=new_state, acked_at=now, acked_by=actor, ack_comment=comment)
    return b, [Event(now, "ack", a.state, new_state, False, actor, comment or "acknowledged")]


def shelve(a: Alarm, actor: str, duration_s: float, reason: str, now: float) -> tuple[Alarm, list[Event]]:
    if not reason.strip():
        raise LifecycleError("搁置需说明原因 shelving needs a reason")
    if not 0 < duration_s <= MAX_SHELVE_S:
        raise LifecycleError(f"shelve duration must be within (0, {MAX_SHELVE_S / S_PER_H:g} h]")
    b = replace(a, shelved_until=now + duration_s, shelved_by=actor, shelve_reason=reason)
    return b, [Event(now, "shelve", a.state, a.state, False, actor, f"{reason} (for {duration_s / 60:g} min)")]


def unshelve(a: Alarm, actor: str, now: float, *, auto: bool = False) -> tuple[Alarm, list[Event]]:
    if a.shelved_until is None:
        raise LifecycleError("报警未搁置 alarm is not shelved")
    b = replace(a, shelved_until=None, shelved_by=None, shelve_reason=None)
    again = b.active and b.state == "unack" and not b.out_of_service and not b.chattering
    return b, [Event(now, "unshelve", a.state, a.state, again, actor,
                     "shelving expired" if auto else "unshelved")]


def set_out_of_service(a: Alarm, actor: str, reason: str, now: float, on: bool) -> tuple[Alarm, list[Event]]:
    if on == a.out_of_service:
        raise LifecycleError("already out of service" if on else "not out of service")
    if on and not reason.strip():
        raise LifecycleError("停用需说明原因 out of service needs a reason")
    b = replace(a, out_of_service=on)
    again = not on and b.active and b.state == "unack" and not b.shelved(now)
    return b, [Event(now, "out_of_service" if on else "return_to_service", a.state, a.state, again, actor,
                     reason or ("returned to service" if not on else ""))]


def tick(a: Alarm, now: float) -> tuple[Alarm, list[Event]]:
    """Expiries: shelving ends, chattering ends after a quiet window."""
    events: list[Event] = []
    if a.shelved_until is not None and now >= a.shelved_until:
        a, ev = unshelve(a, "system", now, auto=True)
        events += ev
    if a.chattering and (not a.recent or now - a.recent[-1] >= CHATTER_WINDOW_S):
        b = replace(a, chattering=False, recent=())
        again = b.active and b.state == "unack" and not b.shelved(now) and not b.out_of_service
        events.append(Event(now, "chatter_end", a.state, a.state, again, "system",
                            f"quiet for {CHATTER_WINDOW_S:g} s"))
        a = b
    return a, events
