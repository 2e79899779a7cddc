"""The routing file (alerting.yaml) as written: one pydantic model of the whole file.

Validating the file with one model, channel blocks included (alerting.channels), is what lets every
problem come out as file:line (core.yamlsrc). Durations, times of day, days and phone numbers are
parsed here with messages that say how to write them. The parts an operator writes that the checked
config keeps as they are (escalation steps, delivery, people, targets) are public; the rest is
turned into plain data by `alerting.config`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from alerting.channels import ChannelConfig
from core.timeconst import MS_PER_S, S_PER_DAY, S_PER_H, S_PER_MIN
from core.vocab import HAZARD_SOURCES, INDUSTRIES, SEVERITIES, DisposalTier

__all__ = [
    "DAYS", "EVENTS", "HAZARD_SOURCES", "INDUSTRIES", "LABELS", "PER_CONTACT_TYPES", "VOCABULARY", "Delivery",
    "DefaultsSpec", "EscalationStep", "File", "Label", "Person", "ReceiverSpec", "RosterSpec", "RouteSpec",
    "ShiftSpec", "Target", "parse_duration",
]
#: Outbox kinds the dispatcher routes; `disposal` rows are routed by the file's `disposal:` section.
KINDS = ("alarm", "hazard", "disposal")

Label = Literal["kind", "event", "severity", "industry", "enterprise", "plant", "rule", "subject", "source", "hazard"]
LABELS: tuple[str, ...] = get_args(Label)
#: Closed vocabularies of some labels: a typo in a match value would otherwise silently never match.
#: Events: an alarm is routed as `firing` (its return to normal and acknowledgement follow it to the same
#: groups); a hazard by the ledger step it announces.
EVENTS = ("firing", "opened", "confirmed", "dismissed", "supervised", "sent_back", "closed")
VOCABULARY: dict[str, tuple[str, ...]] = {
    "kind": ("alarm", "hazard"), "severity": SEVERITIES, "industry": INDUSTRIES, "source": HAZARD_SOURCES,
    "event": EVENTS,
}
#: Channel types that send one message per contact (and so can reach a named person).
PER_CONTACT_TYPES = frozenset({"smtp", "sms"})
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# --- values -------------------------------------------------------------------------------------

_UNITS = {"ms": 1.0 / MS_PER_S, "s": 1.0, "m": float(S_PER_MIN), "h": float(S_PER_H), "d": float(S_PER_DAY)}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(v: str | int | float | None) -> float:
    """Seconds from "500ms", "10s", "5m", "2h", "1d", "1h30m" or a plain number of seconds; None is 0."""
    if v is None:
        return 0.0
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ValueError(f"a duration must be text like \"5m\" or a number of seconds, not {v!r}")
    if isinstance(v, str):
        text = v.strip()
        if _DURATION.fullmatch(text):
            seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"invalid duration {v!r}: use e.g. \"500ms\", \"10s\", \"5m\", \"2h\", \"1d\""
                                 " or a number of seconds") from None
    else:
        seconds = float(v)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {v!r}: must be a finite number of seconds ≥ 0")
    return seconds


def _minutes(v: object) -> int:
    """ "HH:MM" → minutes since midnight. Unquoted 17:30 is the number 1050 to YAML, hence the hint."""
    if isinstance(v, int) and not isinstance(v, bool):
        raise ValueError(f"write times in quotes, e.g. \"17:30\" (YAML reads an unquoted time as the number {v})")
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", v.strip()) if isinstance(v, str) else None
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"invalid time {v!r}: use HH:MM from 00:00 to 23:59")
    return int(m.group(1)) * 60 + int(m.group(2))


def _day(v: object) -> int:
    if isinstance(v, str) and v.strip().lower() in DAYS:
        return DAYS.index(v.strip().lower())
    raise ValueError(f"invalid day {v!r}: use {', '.join(DAYS)}")


def _phone(v: object) -> object:
    """Unquoted phone numbers are numbers to YAML (and a leading 0 may even read as octal)."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        raise ValueError(f"write phone numbers in quotes, e.g. \"{v}\"")
    if isinstance(v, str) and not re.fullmatch(r"\+?\d[\d -]{4,19}", v.strip()):
        raise ValueError(f"invalid phone number {v!r}")
    return v.strip() if isinstance(v, str) else v


def _values(v: object) -> object:
    """A match value: one value or a list of them (any of)."""
    items = v if isinstance(v, list | tuple) else [v]
    return [str(x) if isinstance(x, int) and not isinstance(x, bool) else x for x in items]


Seconds = Annotated[float, BeforeValidator(parse_duration)]
Minutes = Annotated[int, BeforeValidator(_minutes)]
Day = Annotated[int, BeforeValidator(_day)]
Phone = Annotated[str, BeforeValidator(_phone)]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
MatchValues = Annotated[tuple[str, ...], BeforeValidator(_values), Field(min_length=1)]


# --- parts public as they are ------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EscalationStep(_Frozen):
    """Still unacknowledged `after` seconds after the first notice → also notify `receiver`."""

    after: Seconds
    receiver: str


class Delivery(_Frozen):
    """Retries of one notification to one channel, and how long an acknowledgement link stays valid."""

    max_attempts: int = Field(8, ge=1, le=100)
    backoff_initial: Seconds = 2.0
    backoff_max: Seconds = 300.0
    ack_link_ttl: Seconds = float(S_PER_DAY)

    @model_validator(mode="after")
    def _sane(self) -> Delivery:
        if self.backoff_initial <= 0 or self.backoff_max < self.backoff_initial:
            raise ValueError("need 0 < backoff_initial ≤ backoff_max")
        if self.ack_link_ttl <= 0:
            raise ValueError("ack_link_ttl must be positive")
        return self


class Person(_Frozen):
    """A named member of bureau staff; enterprise people come from the registry, not from here."""

    name: str = Field(min_length=1)
    email: Email | None = None
    phone: Phone | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Person:
        if self.email is None and self.phone is None:
            raise ValueError(f"{self.name}: give an email or a phone, or nobody can reach this person")
        return self


class Target(_Frozen):
    """Whom a receiver reaches: the people on duty in a roster, one person, or an enterprise's leader."""

    roster: str | None = None
    person: str | None = None
    enterprise: Literal["principal", "controller"] | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        if sum(x is not None for x in (self.roster, self.person, self.enterprise)) != 1:
            raise ValueError("give exactly one of roster, person or enterprise (principal | controller)")
        return self


# --- the file as written ------------------------------------------------------------------------


class ShiftSpec(_Frozen):
    days: tuple[Day, ...] = Field(default=tuple(range(7)), min_length=1)
    start: Minutes = Field(alias="from")
    end: Minutes = Field(alias="to")
    people: tuple[str, ...] = Field(min_length=1)


class RosterSpec(_Frozen):
    shifts: tuple[ShiftSpec, ...] = ()
    handover: Seconds = 0.0
    fallback: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _someone(self) -> RosterSpec:
        if not self.shifts and not self.fallback:
            raise ValueError("give shifts, a fallback, or both")
        return self


class ReceiverSpec(_Frozen):
    to: tuple[Target, ...] = ()
    via: tuple[str, ...] = ()


class DefaultsSpec(_Frozen):
    group_by: tuple[Label, ...] = ("enterprise", "plant")
    group_wait: Seconds = 10.0
    group_interval: Seconds = 120.0
    repeat_interval: Seconds = 1800.0


class RouteSpec(_Frozen):
    """Unset fields are inherited from the parent (told apart from explicit ones by model_fields_set)."""

    match: dict[Label, MatchValues] = {}
    receiver: str | tuple[str, ...] = ()
    group_by: tuple[Label, ...] = ()
    group_wait: Seconds = 0.0
    group_interval: Seconds = 0.0
    repeat_interval: Seconds = 0.0
    escalation: tuple[EscalationStep, ...] = ()
    continue_: bool = Field(False, alias="continue")
    routes: tuple[RouteSpec, ...] = ()

    @property
    def receivers(self) -> tuple[str, ...]:
        return (self.receiver,) if isinstance(self.receiver, str) else self.receiver


class File(_Frozen):
    version: Literal[1]
    timezone: str = "Asia/Shanghai"
    defaults: DefaultsSpec = DefaultsSpec()
    delivery: Delivery = Delivery()
    channels: dict[str, ChannelConfig] = {}
    people: dict[str, Person] = {}
    rosters: dict[str, RosterSpec] = {}
    receivers: dict[str, ReceiverSpec] = {}
    routes: RouteSpec
    #: Warning disposal (预警处置闭环): the receiver(s) of each escalation tier (core.vocab.DisposalTier). The
    #: disposal policy (rules/disposal.yaml) says when a tier is due; this says whom it reaches.
    disposal: dict[DisposalTier, str | tuple[str, ...]] = {}

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}, e.g. Asia/Shanghai") from None
        return v
