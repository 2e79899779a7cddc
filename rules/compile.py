"""Bind the catalog to the registry: rules x points -> rule instances.

An instance is one alarm: a rule (a threshold rule gives one instance per
limit, named ``<rule id>:<limit>``) applied to one subject (a point, a
gateway for gateway rules, a Sparkplug device of a gateway for device rules).
Its condition is compiled to a small tree over point ids; per-point setpoint
overrides (``<rule id>.<parameter>`` in the registry) and recorded baselines
are applied here.
"""

from __future__ import annotations

import logging
import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from core.keys import AlarmKey, Subject
from core.timeconst import US_PER_S
from rules.model import (
    BaselineAgeRule,
    Catalog,
    CatalogFile,
    ClockSkewRule,
    Cmp,
    Composite,
    CompositeRule,
    CopiedRule,
    DeviationRule,
    DeviceOfflineRule,
    Diff,
    DifferenceRule,
    GatewayOfflineRule,
    ImpossibleRule,
    InterlockRule,
    NeverReportedRule,
    PointSelector,
    RateRule,
    StaleRule,
    StateIs,
    StateRule,
    StuckRule,
    ThresholdRule,
)

log = logging.getLogger("riskwatch.rules")

LeafKind = Literal["ge", "le", "diff_ge", "diff_le", "rate_ge", "rate_le", "eq", "mask", "ne"]


@dataclass(frozen=True, slots=True)
class Leaf:
    """One comparison. ``ge``/``le`` trip at the limit and clear past the deadband."""

    kind: LeafKind
    a: int
    limit: float = 0.0
    deadband: float = 0.0
    b: int = -1  # second point of a difference
    codes: tuple[int, ...] = ()
    negate: bool = False
    window_us: int = 0  # rate window


@dataclass(frozen=True, slots=True)
class Node:
    op: Literal["any", "all"]
    children: tuple[Leaf | Node, ...]


Expr = Leaf | Node


def leaves_of(e: Expr) -> list[Leaf]:
    if isinstance(e, Leaf):
        return [e]
    out: list[Leaf] = []
    for c in e.children:
        out.extend(leaves_of(c))
    return out


# Read-only by convention, not frozen: a frozen dataclass is ~3x slower to construct, and a compile makes one
# per rule, point and limit (200k+ at 100k points); identity equality, never hashed by value.
@dataclass(slots=True, eq=False)
class Instance:
    rule_id: str  # expanded: threshold limits get ":hi" etc.
    base_id: str
    shape: str
    subject: str  # core.keys.Subject, formatted: "p:<point id>" | "g:<gateway id>" | "d:<gateway id>/<device>"
    point_id: int | None
    gateway_id: str | None
    plant_id: str
    enterprise_id: str
    severity: str
    candidate: bool
    catalog_version: str
    title_zh: str
    title_en: str
    basis: str
    on_delay_us: int = 0
    off_delay_us: int = 0
    expr: Expr | None = None
    points: tuple[int, ...] = ()  # every point the condition reads
    tags: dict[int, str] = field(default_factory=dict)
    # tick rules
    stale_us: int = 0
    grace_us: int = 0
    silent_us: int = 0
    device_id: str | None = None  # the Sparkplug device of a device rule (its tags' `{device}:` prefix)
    # data-trust shapes (rules.shapes_trust): their numeric parameters, in the order that module reads them
    params: tuple[float, ...] = ()

    @property
    def key(self) -> AlarmKey:
        return AlarmKey(self.rule_id, self.subject)


@dataclass(frozen=True)
class PointRow:
    id: int
    gateway_id: str
    tag: str
    device_id: int
    quantity: str
    role: str | None
    required: bool
    interval_s: float
    setpoints: dict[str, float]
    baseline: float | None
    unit: str = ""
    created_at: float = 0.0
    baseline_at: float | None = None  # epoch s the baseline was recorded
    serviced_at: float | None = None  # epoch s of installation or the last bag change, when recorded


@dataclass(frozen=True)
class DeviceRow:
    id: int
    plant_id: str
    kind: str
    code: str


@dataclass(frozen=True)
class PlantRow:
    id: str
    industry: str
    enterprise_id: str


@dataclass(frozen=True)
class GatewayRow:
    id: str
    plant_id: str
    enabled: bool


@dataclass(frozen=True)
class RegistryView:
    points: list[PointRow]
    devices: dict[int, DeviceRow]
    plants: dict[str, PlantRow]
    gateways: list[GatewayRow]


@dataclass
class Compiled:
    instances: list[Instance]
    skipped: list[str]  # why some rule x device pairs did not bind (for `rules check --site`)

    def by_key(self) -> dict[AlarmKey, Instance]:
        return {i.key: i for i in self.instances}


def _industry_ok(f: CatalogFile, rule: Any, industry: str) -> bool:
    if f.industries != "all" and industry not in f.industries:
        return False
    return not (rule.applies.industries and industry not in rule.applies.industries)


def _matches(sel: PointSelector, p: PointRow) -> bool:
    return (sel.quantity in ("*", p.quantity) and (sel.role is None or sel.role == p.role)
            and (not sel.required_only or p.required))


def _sp(p: PointRow, rule_id: str, name: str, default: float) -> float:
    return float(p.setpoints.get(f"{rule_id}.{name}", default))


def _cond(c: Cmp | Diff | StateIs, bind: dict[str, PointRow], rule_id: str, subject: PointRow) -> Leaf:
    if isinstance(c, Cmp):
        p = bind[c.point]
        hi = c.hi is not None
        limit = float(c.hi if hi else c.lo)  # type: ignore[arg-type]
        return Leaf("ge" if hi else "le", p.id, limit, c.deadband)
    if isinstance(c, Diff):
        a, b = bind[c.diff[0]], bind[c.diff[1]]
        hi = c.hi is not None
        return Leaf("diff_ge" if hi else "diff_le", a.id, float(c.hi if hi else c.lo), c.deadband,  # type: ignore[arg-type]
                    b=b.id)
    p = bind[c.point]
    if c.mask is not None:
        return Leaf("mask", p.id, codes=(c.mask,), negate=c.negate)
    return Leaf("eq", p.id, codes=tuple(c.equals or ()), negate=c.negate)


def _sparkplug_devices(points: list[PointRow]) -> dict[str, list[str]]:
    """Per gateway, the Sparkplug devices its mapped tags name: a device metric's tag is `{device}:{metric}`
    (ingest.sparkplug.host), so a device id with a ':' of its own is read up to that ':'."""
    found: dict[str, set[str]] = defaultdict(set)
    for p in points:
        device, sep, _ = p.tag.partition(":")
        if sep and device:
            found[p.gateway_id].add(device)
    return {g: sorted(ds) for g, ds in found.items()}


def compile_rules(catalog: Catalog, reg: RegistryView) -> Compiled:
    by_device: dict[int, list[PointRow]] = defaultdict(list)
    for p in reg.points:
        by_device[p.device_id].append(p)
    # one point -> tag map shared by every instance (a dict per instance costs ~50 MB at 100k points)
    tag_of = {p.id: p.tag for p in reg.points}
    sparkplug_devices = _sparkplug_devices(reg.points)
    out: list[Instance] = []
    skipped: list[str] = []

    for _path, f in catalog.files:
        version = f"{f.catalog}@{f.version}"
        for rule in f.rules:
            if rule.optional:
                continue

            def common(rid: str, subject: str, plant: PlantRow, *, severity: str | None = None,
                       point_id: int | None = None, gateway_id: str | None = None,
                       rule: Any = rule, version: str = version) -> dict[str, Any]:
                return dict(rule_id=rid, base_id=rule.id, shape=rule.shape, subject=subject, point_id=point_id,
                            gateway_id=gateway_id, plant_id=plant.id, enterprise_id=plant.enterprise_id,
                            severity=severity or rule.severity, candidate=rule.candidate, catalog_version=version,
                            title_zh=rule.title.zh, title_en=rule.title.en, basis=rule.basis)

            if isinstance(rule, ClockSkewRule):
                for g in reg.gateways:
                    plant = reg.plants[g.plant_id]
                    if g.enabled and _industry_ok(f, rule, plant.industry):
                        out.append(Instance(**common(rule.id, Subject.gateway(g.id).format(), plant, gateway_id=g.id),
                                            on_delay_us=int(rule.on_delay_s * US_PER_S),
                                            off_delay_us=int(rule.off_delay_s * US_PER_S), params=(rule.limit_s,)))
                continue

            if isinstance(rule, GatewayOfflineRule):
                for g in reg.gateways:
                    plant = reg.plants[g.plant_id]
                    if g.enabled and _industry_ok(f, rule, plant.industry):
                        out.append(Instance(**common(rule.id, Subject.gateway(g.id).format(), plant, gateway_id=g.id),
                                            silent_us=int(rule.silent_s * US_PER_S)))
                continue

            if isinstance(rule, DeviceOfflineRule):
                for g in reg.gateways:
                    plant = reg.plants[g.plant_id]
                    if g.enabled and _industry_ok(f, rule, plant.industry):
                        for d in sparkplug_devices.get(g.id, ()):
                            out.append(Instance(**common(rule.id, Subject.device(g.id, d).format(), plant,
                                                         gateway_id=g.id),
                                                silent_us=int(rule.silent_s * US_PER_S), device_id=d))
                continue

            for dev_id, pts in by_device.items():
                dev = reg.devices[dev_id]
                plant = reg.plants[dev.plant_id]
                if not _industry_ok(f, rule, plant.industry):
                    continue
                if rule.applies.equipment is not None and dev.kind not in rule.applies.equipment:
                    continue
                if isinstance(rule, DifferenceRule | InterlockRule | CompositeRule):
                    out.extend(_multi(rule, pts, dev, plant, common, skipped, tag_of))
                    continue
                sel = rule.applies.point
                assert sel is not None
                for p in (p for p in pts if _matches(sel, p)):
                    if isinstance(rule, StuckRule | CopiedRule) and rule.units is not None and p.unit not in rule.units:
                        continue
                    if isinstance(rule, ImpossibleRule) and p.unit not in rule.bounds:
                        continue
                    subj = Subject.point(p.id).format()
                    one = (p.id,)  # shared by the point's instances (hi, hihi, ...)
                    base = common(rule.id, subj, plant, point_id=p.id, gateway_id=p.gateway_id)
                    on = int(_sp(p, rule.id, "on_delay_s", rule.on_delay_s) * US_PER_S)
                    off = int(_sp(p, rule.id, "off_delay_s", rule.off_delay_s) * US_PER_S)
                    tags = tag_of
                    if isinstance(rule, ThresholdRule):
                        db = _sp(p, rule.id, "deadband", rule.deadband)
                        for name, value in rule.limits.items():
                            limit = _sp(p, rule.id, name, value)
                            sev = (rule.severities or {}).get(name, rule.severity)
                            leaf = Leaf("ge" if name in ("hi", "hihi") else "le", p.id, limit, db)
                            # one string per rule and limit, not one per instance (~12 MB at 100k points)
                            rid = sys.intern(f"{rule.id}:{name}")
                            out.append(Instance(**{**base, "rule_id": rid, "severity": sev},
                                                on_delay_us=on, off_delay_us=off, expr=leaf, points=one,
                                                tags=tags))
                    elif isinstance(rule, RateRule):
                        rise = rule.rise_per_min is not None
                        limit = _sp(p, rule.id, "rise_per_min" if rise else "fall_per_min",
                                    rule.rise_per_min if rise else rule.fall_per_min)  # type: ignore[arg-type]
                        leaf = Leaf("rate_ge" if rise else "rate_le", p.id, limit if rise else -limit,
                                    _sp(p, rule.id, "deadband", rule.deadband),
                                    window_us=int(rule.window_s * US_PER_S))
                        out.append(Instance(**base, on_delay_us=on, off_delay_us=off, expr=leaf, points=one,
                                            tags=tags))
                    elif isinstance(rule, DeviationRule):
                        b = p.baseline
                        if b is None or b == 0:
                            skipped.append(f"{rule.id} on {p.gateway_id}/{p.tag}: no baseline recorded")
                            continue
                        pct = _sp(p, rule.id, "pct", rule.pct) / 100.0
                        dbp = _sp(p, rule.id, "deadband_pct", rule.deadband_pct) / 100.0
                        expr = Node("any", (Leaf("ge", p.id, b * (1 + pct), abs(b) * dbp),
                                            Leaf("le", p.id, b * (1 - pct), abs(b) * dbp)))
                        out.append(Instance(**base, on_delay_us=on, off_delay_us=off, expr=expr, points=(p.id,),
                                            tags=tags))
                    elif isinstance(rule, StateRule):
                        leaf = (Leaf("mask", p.id, codes=(rule.mask,)) if rule.mask is not None
                                else Leaf("eq", p.id, codes=tuple(rule.equals or ())))
                        out.append(Instance(**base, on_delay_us=on, off_delay_us=off, expr=leaf, points=one,
                                            tags=tags))
                    elif isinstance(rule, StaleRule):
                        stale = max(rule.intervals * p.interval_s, rule.min_s)
                        out.append(Instance(**base, points=(p.id,), tags=tags,
                                            stale_us=int(_sp(p, rule.id, "stale_s", stale) * US_PER_S)))
                    elif isinstance(rule, StuckRule | CopiedRule | ImpossibleRule | BaselineAgeRule):
                        out.append(_trust(rule, p, base, on, off, tags))
                    elif isinstance(rule, NeverReportedRule):
                        out.append(Instance(**base, points=(p.id,), tags=tags,
                                            grace_us=int(_sp(p, rule.id, "grace_s", rule.grace_s) * US_PER_S)))
    return Compiled(out, skipped)


def _trust(rule: StuckRule | CopiedRule | ImpossibleRule | BaselineAgeRule, p: PointRow, base: dict[str, Any],
           on: int, off: int, tags: dict[int, str]) -> Instance:
    """A data-trust instance (issue 14): ``impossible`` as ordinary leaves, the others for rules.shapes_trust."""
    kw: dict[str, Any] = dict(on_delay_us=on, off_delay_us=off, points=(p.id,), tags=tags)
    if isinstance(rule, ImpossibleRule):
        b = rule.bounds[p.unit]
        # Strictly outside the physical range: a reading AT a bound is possible, the next float past it is not.
        hi = _sp(p, rule.id, "hi", b.hi) if b.hi is not None else None
        lo = _sp(p, rule.id, "lo", b.lo) if b.lo is not None else None
        kids = tuple(x for x in (Leaf("ge", p.id, math.nextafter(hi, math.inf)) if hi is not None else None,
                                 Leaf("le", p.id, math.nextafter(lo, -math.inf)) if lo is not None else None)
                     if x is not None)
        return Instance(**base, expr=kids[0] if len(kids) == 1 else Node("any", kids), **kw)
    if isinstance(rule, StuckRule):
        params: tuple[float, ...] = (int(_sp(p, rule.id, "window_s", rule.window_s) * US_PER_S),
                                     _sp(p, rule.id, "band", rule.band))
    elif isinstance(rule, CopiedRule):
        params = (int(rule.window_s * US_PER_S), _sp(p, rule.id, "eps", rule.eps), rule.min_samples, rule.min_steps)
    else:
        ref = p.serviced_at if p.serviced_at is not None else p.created_at  # the last bag change, else installation
        # A baseline given with the site (no recorded time) counts as recorded when the point was registered.
        at = (p.baseline_at if p.baseline_at is not None else p.created_at) if p.baseline is not None else math.nan
        params = (_sp(p, rule.id, "max_age_s", rule.max_age_s), ref, at)
    return Instance(**base, params=params, **kw)


def _multi(rule: DifferenceRule | InterlockRule | CompositeRule, pts: list[PointRow], dev: DeviceRow,
           plant: PlantRow, common: Any, skipped: list[str], tag_of: dict[int, str]) -> list[Instance]:
    bind: dict[str, PointRow] = {}
    for alias, sel in rule.points.items():
        if alias == "subject":
            continue
        found = [p for p in pts if _matches(sel, p)]
        if len(found) != 1:
            skipped.append(f"{rule.id} on {plant.id}/{dev.code}: point {alias!r} matches {len(found)} points")
            return []
        bind[alias] = found[0]
    subjects = [p for p in pts if _matches(rule.points["subject"], p) and p not in bind.values()]
    out = []
    for s in subjects:
        b = {**bind, "subject": s}
        def sp(name: str, default: float, s: PointRow = s) -> float:
            return _sp(s, rule.id, name, default)

        on = int(sp("on_delay_s", rule.on_delay_s) * US_PER_S)
        off = int(sp("off_delay_s", rule.off_delay_s) * US_PER_S)
        base = common(rule.id, Subject.point(s.id).format(), plant, point_id=s.id, gateway_id=s.gateway_id, rule=rule)
        involved = tuple(sorted({p.id for p in b.values()}))
        tags = tag_of
        if isinstance(rule, DifferenceRule):
            a, bb = b[rule.diff[0]], b[rule.diff[1]]
            db = sp("deadband", rule.deadband)
            for name, value in rule.limits.items():
                hi = name in ("hi", "hihi")
                leaf = Leaf("diff_ge" if hi else "diff_le", a.id, sp(name, value), db, b=bb.id)
                out.append(Instance(**{**base, "rule_id": f"{rule.id}:{name}"}, on_delay_us=on, off_delay_us=off,
                                    expr=leaf, points=involved, tags=tags))
        elif isinstance(rule, InterlockRule):
            when: Expr
            if isinstance(rule.when, Composite):
                kids = tuple(_cond(c, b, rule.id, s) for c in (rule.when.any or rule.when.all or []))
                when = Node("any" if rule.when.any else "all", kids)
            else:
                when = _cond(rule.when, b, rule.id, s)
            prot = b[rule.protective.point]
            expr = Node("all", (when, Leaf("ne", prot.id, limit=rule.protective.safe)))
            out.append(Instance(**base, on_delay_us=int(sp("hold_s", rule.hold_s) * US_PER_S), off_delay_us=off,
                                expr=expr, points=involved, tags=tags))
        else:
            kids = tuple(_cond(c, b, rule.id, s) for c in rule.conditions)
            out.append(Instance(**base, on_delay_us=on, off_delay_us=off, expr=Node(rule.shape, kids),
                                points=involved, tags=tags))
    return out
