"""Loading the routing file (alerting.yaml): who is told about what, through which channels, and when.

Three steps, three modules: `alerting.schema` validates the file as written (every problem at its
file:line); here the cross-references (receivers, people, rosters, channels) are checked against the
same line map, every problem collected before raising, and the result is built as the plain checked
config of `alerting.routing` (inheritance applied to the route tree); last, `alerting.floor` checks the
regulatory floor on that config. The names callers use are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alerting.floor import hazard_reach_failures
from alerting.routing import AlertingConfig, Receiver, Roster, Route, Shift, Timing
from alerting.schema import (
    LABELS,
    PER_CONTACT_TYPES,
    VOCABULARY,
    Delivery,
    EscalationStep,
    File,
    Person,
    RouteSpec,
    Target,
    parse_duration,
)
from core import yamlsrc
from core.errors import SourceError, SourceProblem
from core.vocab import DISPOSAL_TIERS

__all__ = [
    "LABELS", "AlertingConfig", "Delivery", "EscalationStep", "Person", "Receiver", "Roster", "Route", "Shift",
    "Target", "Timing", "default_config_text", "disposal_gaps", "load_alerting", "load_config", "parse_duration",
]

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
    spec, lines = yamlsrc.validate(path, File, text)
    problems = _Problems(str(path), lines)
    _check_references(problems, spec)
    problems.raise_any()
    cfg = _build(spec, str(path))
    for message in hazard_reach_failures(cfg):
        problems.add(("routes",), message, at_key=True)
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


def _check_references(p: _Problems, f: File) -> None:
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
    for tier, names in f.disposal.items():
        names = (names,) if isinstance(names, str) else names
        if not names:
            p.add(("disposal", tier.value), "name at least one receiver for this tier, or leave the tier out",
                  at_key=True)
        for i, name in enumerate(names):
            if name not in f.receivers:
                p.add(("disposal", tier.value) + ((i,) if len(names) > 1 else ()),
                      f"unknown receiver {name!r} {_known(f.receivers)}")


def disposal_gaps(cfg: AlertingConfig) -> list[str]:
    """Warnings for `alerting check`: disposal tiers no receiver is named for (their escalation steps are
    recorded on the alarm's timeline but reach nobody), and a principal tier that reaches no principal."""
    if not cfg.receivers:
        return []
    out = [f"disposal.{t}: 未配置接收人，处置超时升级到此级将无人收到 no receiver: escalation steps of this tier"
           " reach nobody" for t in DISPOSAL_TIERS if not cfg.disposal.get(t)]
    names = cfg.disposal.get("principal", ())
    if names and not any(x.enterprise == "principal" for n in names for x in cfg.receivers[n].to):
        out.append("disposal.principal: 所配接收人不含企业主要负责人 its receivers do not reach the enterprise's"
                   " principal responsible person (to: [{enterprise: principal}])")
    return out


def _check_route(p: _Problems, f: File, r: RouteSpec, loc: tuple[Any, ...], *, root: bool) -> None:
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


def _build(f: File, source: str) -> AlertingConfig:
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
        disposal={t.value: ((v,) if isinstance(v, str) else tuple(v)) for t, v in f.disposal.items()},
    )


def _build_route(r: RouteSpec, parent: Timing, receivers: tuple[str, ...], path: str) -> Route:
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
    match: dict[str, tuple[str, ...]] = {str(k): v for k, v in r.match.items()}
    return Route(path, match, mine, timing, r.continue_, children)
