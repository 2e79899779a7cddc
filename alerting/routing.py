"""The checked routing configuration: plain frozen data, inheritance already applied to the route tree.

`alerting.config` builds it from a validated file once every cross-reference and the regulatory floor
hold, so `alerting.route` only walks it and `alerting.roster` only reads shifts. Nothing here
validates or reads a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from alerting.channels import ChannelConfig
from alerting.schema import Delivery, EscalationStep, Person, Target

__all__ = ["AlertingConfig", "Receiver", "Roster", "Route", "Shift", "Timing"]


@dataclass(frozen=True)
class Timing:
    """How a route's notifications are grouped, batched, repeated and escalated."""

    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float  # 0: no reminders
    escalation: tuple[EscalationStep, ...] = ()


@dataclass(frozen=True)
class Shift:
    """`days` (0 = Mon) are the days the shift starts on; end ≤ start runs past midnight (equal: 24 h)."""

    days: tuple[int, ...]
    start: int  # minutes since midnight
    end: int
    people: tuple[str, ...]


@dataclass(frozen=True)
class Roster:
    shifts: tuple[Shift, ...]
    handover: float = 0.0  # seconds the outgoing officers stay notified after their shift ends
    fallback: tuple[str, ...] = ()  # when no shift covers the time


@dataclass(frozen=True)
class Receiver:
    name: str
    to: tuple[Target, ...] = ()
    via: tuple[str, ...] = ()  # channel names


@dataclass(frozen=True)
class Route:
    """A node of the route tree with inheritance applied; `path` is "root", "root.1", "root.1.0"."""

    path: str
    match: dict[str, tuple[str, ...]]
    receivers: tuple[str, ...]
    timing: Timing
    continue_: bool = False
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class AlertingConfig:
    version: int
    timezone: str
    defaults: Timing
    delivery: Delivery
    channels: dict[str, ChannelConfig]
    people: dict[str, Person]
    rosters: dict[str, Roster]
    receivers: dict[str, Receiver]
    routes: Route
    source: str  # the file it came from
    #: Disposal tier (core.vocab.DisposalTier) -> receivers its escalation steps go to (no route tree walk).
    disposal: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
