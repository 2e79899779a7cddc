"""What the dashboards are generated from: the registry (database) and the compiled rule catalog.

The setpoints drawn on a value panel are the limits the rule engine enforces
for that point: the catalog is compiled against the registry exactly as the
engine does (`rules.compile`), per-point overrides and baselines included, and
every single-point comparison (threshold limits, deviation bands, the
conditions of interlocks and composites) becomes a threshold line. Rate,
difference and state conditions are not limits on the value itself and are
left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import psycopg

from rules.compile import compile_rules, leaves_of
from rules.model import Catalog, GatewayOfflineRule
from rules.store import load_registry

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "urgent": 3}
DEFAULT_SILENT_S = 60.0


@dataclass(frozen=True)
class Limit:
    """A value at which an alarm trips: above it (``hi``) or below it (``lo``)."""

    side: Literal["hi", "lo"]
    value: float
    severity: str
    rule_id: str  # expanded id, e.g. bm.coal.co:hi


@dataclass(frozen=True)
class PointView:
    id: int
    gateway_id: str
    tag: str
    name: str
    quantity: str
    unit: str
    kind: str  # analog | boolean | enum
    states: dict[str, str] | None
    limits: tuple[Limit, ...] = ()

    @property
    def is_state(self) -> bool:
        return self.kind in ("boolean", "enum")

    @property
    def title(self) -> str:
        return f"{self.tag} {self.name}".strip()


@dataclass(frozen=True)
class DeviceView:
    id: int
    code: str
    name: str
    kind: str
    points: tuple[PointView, ...]


@dataclass(frozen=True)
class PlantView:
    id: str
    name: str
    industry: str
    enterprise_id: str
    enterprise_name: str
    devices: tuple[DeviceView, ...]
    gateways: tuple[str, ...]
    rule_ids: frozenset[str] = field(default_factory=frozenset)  # rules bound in this plant


@dataclass(frozen=True)
class SiteView:
    plants: tuple[PlantView, ...]
    rule_titles: dict[str, str]  # base rule id -> "zh en"
    gateway_silent_s: float  # a gateway is online if it was heard from within this (catalog)

    def points(self) -> list[PointView]:
        return [pt for p in self.plants for d in p.devices for pt in d.points]


def _limits(catalog: Catalog, conn: psycopg.Connection) -> tuple[dict[int, list[Limit]], dict[str, set[str]]]:
    view, _, _ = load_registry(conn)
    compiled = compile_rules(catalog, view)
    by_point: dict[int, dict[tuple[str, float], Limit]] = {}
    rules_by_plant: dict[str, set[str]] = {}
    for inst in compiled.instances:
        rules_by_plant.setdefault(inst.plant_id, set()).add(inst.base_id)
        if inst.expr is None:
            continue
        for leaf in leaves_of(inst.expr):
            if leaf.kind not in ("ge", "le"):
                continue
            side: Literal["hi", "lo"] = "hi" if leaf.kind == "ge" else "lo"
            lim = Limit(side, float(leaf.limit), inst.severity, inst.rule_id)
            known = by_point.setdefault(leaf.a, {})
            prev = known.get((side, lim.value))
            if prev is None or SEVERITY_RANK.get(lim.severity, 0) > SEVERITY_RANK.get(prev.severity, 0):
                known[(side, lim.value)] = lim
    return ({pid: sorted(v.values(), key=lambda x: (x.value, x.side)) for pid, v in by_point.items()},
            rules_by_plant)


def load_site_view(conn: psycopg.Connection, catalog: Catalog) -> SiteView:
    """Read the registry and bind the catalog to it (read-only)."""
    limits, rules_by_plant = _limits(catalog, conn)
    points: dict[int, list[PointView]] = {}
    for r in conn.execute(
        "SELECT id, device_id, gateway_id, tag, coalesce(name, ''), quantity, unit, kind, states FROM points"
        " ORDER BY device_id, tag"
    ):
        states = {str(k): str(v) for k, v in r[8].items()} if isinstance(r[8], dict) else None
        points.setdefault(r[1], []).append(PointView(r[0], r[2], r[3], r[4], r[5], r[6], r[7], states,
                                                     tuple(limits.get(r[0], ()))))
    devices: dict[str, list[DeviceView]] = {}
    for d_id, plant_id, code, name, kind in conn.execute(
        "SELECT id, plant_id, code, name, kind FROM devices ORDER BY plant_id, code"
    ):
        devices.setdefault(plant_id, []).append(DeviceView(d_id, code, name, kind, tuple(points.get(d_id, ()))))
    gateways: dict[str, list[str]] = {}
    for g_id, plant_id in conn.execute("SELECT id, plant_id FROM gateways ORDER BY id"):
        gateways.setdefault(plant_id, []).append(g_id)
    plants = tuple(
        PlantView(pid, name, industry, ent_id, ent_name, tuple(devices.get(pid, ())), tuple(gateways.get(pid, ())),
                  frozenset(rules_by_plant.get(pid, ())))
        for pid, name, industry, ent_id, ent_name in conn.execute(
            "SELECT p.id, p.name, p.industry, e.id, e.name FROM plants p JOIN enterprises e ON e.id = p.enterprise_id"
            " ORDER BY p.id"
        )
    )
    conn.rollback()  # read-only: end the implicit transaction
    titles = {rid: f"{rule.title.zh} {rule.title.en}" for rid, (_f, rule) in catalog.rules.items()}
    silent = [float(rule.silent_s) for _f, rule in catalog.rules.values() if isinstance(rule, GatewayOfflineRule)]
    return SiteView(plants, titles, min(silent) if silent else DEFAULT_SILENT_S)
