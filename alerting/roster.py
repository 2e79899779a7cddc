"""Who is on duty (值班) at an instant: pure, so the dispatcher and the tests pass the time in.

A shift belongs to the day it starts; one whose end is not after its start runs past midnight
(from == to is a 24-hour shift). For `handover` after a shift ends its officers stay on the list
beside the incoming ones, so an alert raised at the change still reaches whoever knows the
situation. When no shift covers the time, the roster's fallback people are on duty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from alerting.routing import Roster, Shift

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class OnDuty:
    people: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class _Turn:
    """One occurrence of a shift, in local time."""

    shift: Shift
    start: datetime
    end: datetime


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _turns_at(roster: Roster, local: datetime) -> list[_Turn]:
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for shift in roster.shifts:
        length = timedelta(minutes=(shift.end - shift.start) % 1440 or 1440)
        for back in (1, 0):  # started yesterday (past midnight), or today
            day = midnight - timedelta(days=back)
            if day.weekday() in shift.days:
                start = day + timedelta(minutes=shift.start)
                if start <= local < start + length:
                    out.append(_Turn(shift, start, start + length))
    return out


def _unique(names: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def on_duty(roster: Roster, t: float, tz: ZoneInfo) -> OnDuty:
    """The people to notify at epoch time `t`, and why them."""
    now = datetime.fromtimestamp(t, tz)
    turns = _turns_at(roster, now)
    if turns:
        people = _unique([p for turn in turns for p in turn.shift.people])
        reasons = [f"shift {_DAYS[turn.start.weekday()].lower()} {_hhmm(turn.shift.start)}–{_hhmm(turn.shift.end)}"
                   for turn in turns]
    elif roster.fallback:
        people = roster.fallback
        reasons = [f"fallback: no shift covers {_DAYS[now.weekday()]} {now:%H:%M}"]
    else:
        people = ()
        reasons = [f"nobody: no shift covers {_DAYS[now.weekday()]} {now:%H:%M} and there is no fallback"]

    if roster.handover > 0:
        before = datetime.fromtimestamp(t - roster.handover, tz)
        for turn in _turns_at(roster, before):
            outgoing = [p for p in turn.shift.people if p not in people]
            if turn.end <= now and outgoing:
                until = datetime.fromtimestamp(turn.end.timestamp() + roster.handover, tz)
                people = (*people, *outgoing)
                reasons.append(f"handover from {', '.join(outgoing)} (until {until:%H:%M})")
    return OnDuty(people, "; ".join(reasons))
