"""The routing file (alerting.yaml): who is told about what, through which channels, and when.

One pydantic model validates the whole file, channel blocks included, so every problem comes out as
file:line (core.yamlsrc). Cross-references (receivers, people, rosters, channels) are then checked
against the same line map, every problem collected before raising. Last comes the regulatory floor
(DESIGN.md, hazard ledger): a confirmed major hazard must reach the enterprise's principal
responsible person (主要负责人) and actual controller (实际控制人), whatever its industry or source.

The result is plain data with inheritance already applied to the route tree, so `alerting.route`
only walks it and `alerting.roster` only reads shifts.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from core import yamlsrc
from core.errors import SourceError, SourceProblem
from hazards.model import Source
from rules.model import SEVERITIES, Industry

if TYPE_CHECKING:
    from alerting.channels import ChannelConfig

__all__ = [
    "LABELS", "AlertingConfig", "Delivery", "EscalationStep", "Person", "Receiver", "Roster", "Route", "Shift",
    "Target", "Timing", "default_config_text", "load_alerting", "load_config", "parse_duration",
]

Label = Literal["kind", "event", "severity", "industry", "enterprise", "plant", "rule", "subject", "source", "hazard"]
LABELS: tuple[str, ...] = get_args(Label)
INDUSTRIES: tuple[str, ...] = get_args(Industry)
HAZARD_SOURCES: tuple[str, ...] = tuple(s.value for s in Source)
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

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
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


# --- parts shaped as in the file (validated, and public as they are) -----------------------------


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
    ack_link_ttl: Seconds = 86400.0

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


# --- what the loader derives (public) -----------------------------------------------------------


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

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --- the file as written ------------------------------------------------------------------------


class _Shift(_Frozen):
    days: tuple[Day, ...] = Field(default=tuple(range(7)), min_length=1)
    start: Minutes = Field(alias="from")
    end: Minutes = Field(alias="to")
    people: tuple[str, ...] = Field(min_length=1)


class _Roster(_Frozen):
    shifts: tuple[_Shift, ...] = ()
    handover: Seconds = 0.0
    fallback: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _someone(self) -> _Roster:
        if not self.shifts and not self.fallback:
            raise ValueError("give shifts, a fallback, or both")
        return self


class _Receiver(_Frozen):
    to: tuple[Target, ...] = ()
    via: tuple[str, ...] = ()


class _Defaults(_Frozen):
    group_by: tuple[Label, ...] = ("enterprise", "plant")
    group_wait: Seconds = 10.0
    group_interval: Seconds = 120.0
    repeat_interval: Seconds = 1800.0


class _Route(_Frozen):
    """Unset fields are inherited from the parent (told apart from explicit ones by model_fields_set)."""

    match: dict[Label, MatchValues] = {}
    receiver: str | tuple[str, ...] = ()
    group_by: tuple[Label, ...] = ()
    group_wait: Seconds = 0.0
    group_interval: Seconds = 0.0
    repeat_interval: Seconds = 0.0
    escalation: tuple[EscalationStep, ...] = ()
    continue_: bool = Field(False, alias="continue")
    routes: tuple[_Route, ...] = ()

    @property
    def receivers(self) -> tuple[str, ...]:
        return (self.receiver,) if isinstance(self.receiver, str) else self.receiver


class _File(_Frozen):
    version: Literal[1]
    timezone: str = "Asia/Shanghai"
    defaults: _Defaults = _Defaults()
    delivery: Delivery = Delivery()
    channels: dict[str, ChannelConfig] = {}
    people: dict[str, Person] = {}
    rosters: dict[str, _Roster] = {}
    receivers: dict[str, _Receiver] = {}
    routes: _Route

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}, e.g. Asia/Shanghai") from None
        return v


@functools.cache
def _file_model() -> type[_File]:
    """Channel configs live in alerting.channels, which may itself import from here: resolve them on first use."""
    from alerting.channels import ChannelConfig

    _File.model_rebuild(_types_namespace={"ChannelConfig": ChannelConfig})
    return _File


# --- loading ------------------------------------------------------------------------------------


def default_config_text() -> str:
    """The routing used when none is configured: valid, and sends nothing (the dispatcher logs that)."""
    return "version: 1\ntimezone: Asia/Shanghai\nroutes:\n  receiver: []\n"


def load_alerting(path: str | Path | None) -> AlertingConfig:
    """The routing file if one is configured, else the built-in routing that sends nothing."""
    if path is None:
        return load_config("(built-in: no routing file)", default_config_text())
    return load_config(path)


def load_config(path: str | Path, text: str | None = None) -> AlertingConfig:
    """Validate and resolve a routing file; SourceError lists every problem with file:line."""
    spec, lines = yamlsrc.validate(path, _file_model(), text)
    problems = _Problems(str(path), lines)
    _check_references(problems, spec)
    problems.raise_any()
    cfg = _build(spec, str(path))
    _check_hazard_reach(problems, cfg)
    problems.raise_any()
    return cfg


class _Problems:
    def __init__(self, path: str, lines: yamlsrc.Lines):
        self.path, self.lines, self.items = path, lines, list[SourceProblem]()

    def add(self, loc: tuple[Any, ...], message: str, *, at_key: bool = False) -> None:
        """at_key: point at the line of the key (`name:`) rather than at its (block) value below it."""
        line = self.lines.get((*loc, "__key__")) if at_key else None
        dotted = ".".join(str(p) for p in loc)
        self.items.append(SourceProblem(self.path, line or yamlsrc.line_for(self.lines, loc), f"{dotted}: {message}"))

    def raise_any(self) -> None:
        if self.items:
            raise SourceError(self.items)


def _known(names: Any) -> str:
    return f"(defined: {', '.join(sorted(names)) or 'none'})"


def _check_references(p: _Problems, f: _File) -> None:
    for rid, r in f.rosters.items():
        for i, s in enumerate(r.shifts):
            for j, who in enumerate(s.people):
                if who not in f.people:
                    p.add(("rosters", rid, "shifts", i, "people", j), f"unknown person {who!r} {_known(f.people)}")
        for j, who in enumerate(r.fallback):
            if who not in f.people:
                p.add(("rosters", rid, "fallback", j), f"unknown person {who!r} {_known(f.people)}")

    for name, rc in f.receivers.items():
        loc = ("receivers", name)
        for i, t in enumerate(rc.to):
            if t.roster is not None and t.roster not in f.rosters:
                p.add((*loc, "to", i, "roster"), f"unknown roster {t.roster!r} {_known(f.rosters)}")
            if t.person is not None and t.person not in f.people:
                p.add((*loc, "to", i, "person"), f"unknown person {t.person!r} {_known(f.people)}")
        unknown = [c for c in rc.via if c not in f.channels]
        for j, ch in enumerate(rc.via):
            if ch in unknown:
                p.add((*loc, "via", j), f"unknown channel {ch!r} {_known(f.channels)}")
        if not rc.via:
            p.add(loc, f"receiver {name!r} has no channels (via), so it can never notify anyone", at_key=True)
        elif not rc.to and not unknown and all(f.channels[c].type in PER_CONTACT_TYPES for c in rc.via):
            p.add(loc, f"receiver {name!r} has nobody to send to (to) and only per-contact channels"
                       " (e-mail, SMS): give `to` or a group channel (webhook, dingtalk, wecom)", at_key=True)

    _check_route(p, f, f.routes, ("routes",), root=True)


def _check_route(p: _Problems, f: _File, r: _Route, loc: tuple[Any, ...], *, root: bool) -> None:
    given = r.model_fields_set
    if root:
        if "receiver" not in given:
            p.add(loc, "the root route needs a receiver (a name, a list, or [] to send nothing)", at_key=True)
        if r.match:
            p.add((*loc, "match"), "the root route always matches; it takes no match", at_key=True)
        if r.continue_:
            p.add((*loc, "continue"), "the root route has no siblings; continue means nothing here", at_key=True)
    elif "receiver" in given and not r.receivers:
        p.add((*loc, "receiver"), "an empty receiver list would drop matching events; name a receiver,"
                                  " or leave receiver out to inherit the parent's")
    for i, name in enumerate(r.receivers):
        if name not in f.receivers:
            p.add((*loc, "receiver", i), f"unknown receiver {name!r} {_known(f.receivers)}")
    for key, values in r.match.items():
        allowed = VOCABULARY.get(key)
        for i, v in enumerate(values):
            if allowed is not None and v not in allowed:
                p.add((*loc, "match", key, i), f"{key} is never {v!r}; it is one of {', '.join(allowed)}")
    previous = 0.0
    for i, step in enumerate(r.escalation):
        if step.receiver not in f.receivers:
            p.add((*loc, "escalation", i, "receiver"), f"unknown receiver {step.receiver!r} {_known(f.receivers)}")
        if step.after <= previous:
            p.add((*loc, "escalation", i, "after"),
                  f"escalation steps must come strictly later than the one before (after > {previous:g}s)")
        previous = step.after
    for i, child in enumerate(r.routes):
        _check_route(p, f, child, (*loc, "routes", i), root=False)


def _build(f: _File, source: str) -> AlertingConfig:
    d = f.defaults
    defaults = Timing(d.group_by, d.group_wait, d.group_interval, d.repeat_interval)
    return AlertingConfig(
        version=f.version,
        timezone=f.timezone,
        defaults=defaults,
        delivery=f.delivery,
        channels=dict(f.channels),
        people=dict(f.people),
        rosters={k: Roster(tuple(Shift(s.days, s.start, s.end, s.people) for s in r.shifts), r.handover, r.fallback)
                 for k, r in f.rosters.items()},
        receivers={k: Receiver(k, r.to, r.via) for k, r in f.receivers.items()},
        routes=_build_route(f.routes, defaults, (), "root"),
        source=source,
    )


def _build_route(r: _Route, parent: Timing, receivers: tuple[str, ...], path: str) -> Route:
    given = r.model_fields_set

    def pick(name: str, inherited: Any) -> Any:
        return getattr(r, name) if name in given else inherited

    timing = Timing(
        group_by=pick("group_by", parent.group_by),
        group_wait=pick("group_wait", parent.group_wait),
        group_interval=pick("group_interval", parent.group_interval),
        repeat_interval=pick("repeat_interval", parent.repeat_interval),
        escalation=pick("escalation", parent.escalation),
    )
    mine = r.receivers if "receiver" in given else receivers
    children = tuple(_build_route(c, timing, mine, f"{path}.{i}") for i, c in enumerate(r.routes))
    return Route(path, dict(r.match), mine, timing, r.continue_, children)


# --- the regulatory floor -----------------------------------------------------------------------

_ROLES = {"principal": ("主要负责人", "principal responsible person"),
          "controller": ("实际控制人", "actual controller")}


def _reaches(cfg: AlertingConfig, receiver: str, role: str) -> bool:
    r = cfg.receivers[receiver]
    return any(t.enterprise == role for t in r.to) and any(cfg.channels[c].type in PER_CONTACT_TYPES for c in r.via)


def _check_hazard_reach(p: _Problems, cfg: AlertingConfig) -> None:
    """Route a confirmed urgent hazard of every industry and source; each must reach both leaders in person.

    Enterprise, plant and rule are left unknown: the floor must hold for any enterprise. Escalation
    does not count, since it only happens if the bureau fails to acknowledge.
    """
    if not cfg.receivers:
        return  # the built-in "send nothing" routing (default_config_text)
    from alerting.route import Event, route  # route imports this module

    failures: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for industry in INDUSTRIES:
        for source in HAZARD_SOURCES:
            ev = Event(kind="hazard", event="confirmed", industry=industry, source=source, severity="urgent")
            matches = route(cfg, ev)
            names = {n for m in matches for n in m.receivers}
            missing = tuple(role for role in _ROLES if not any(_reaches(cfg, n, role) for n in names))
            if missing:
                failures.setdefault((tuple(m.path for m in matches), missing), []).append(f"{industry}/{source}")
    every = len(INDUSTRIES) * len(HAZARD_SOURCES)
    for (paths, missing), cases in failures.items():
        which = "所有行业和来源 every industry and source" if len(cases) == every else ", ".join(cases)
        zh = "、".join(_ROLES[r][0] for r in missing)
        en = " and ".join(_ROLES[r][1] for r in missing)
        via = ", ".join(paths)
        p.add(("routes",), "确认的重大事故隐患必须经短信或邮件通知企业主要负责人和实际控制人，"
                           f"但经路由 {via} 未通知{zh}；"
                           "a confirmed major hazard must reach the enterprise's principal responsible person and"
                           f" actual controller by SMS or e-mail, but via {via} it reaches no {en} ({which})."
                           " Route it to a receiver with `to: [{enterprise: principal}, {enterprise: controller}]`"
                           " and an smtp or sms channel.", at_key=True)
