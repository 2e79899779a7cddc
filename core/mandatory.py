"""Mandatory points (接入完整性) of the national dust-explosion data-access specification.

The provincial dust-explosion monitoring platforms (应急厅函〔2023〕82号) grade an
enterprise by whether the points the 《工贸行业粉尘涉爆企业安全生产风险监测预警系统
数据接入规范》 makes mandatory for each dust collector are registered and arrive:
dry systems report the hopper (ash-hopper) temperature, the inlet/outlet
pressure difference and the airlock / discharge-valve fault; wet systems the
water-tank level and the circulation flow.

A point fills a role when it is on that collector and matches the role's
quantity (and point role, where one is named) — the same (quantity, role)
vocabulary the site YAML and the rule catalog use. `missing_mandatory` lists,
per enterprise and collector, each role no point fills: `riskwatch registry
check` and the API call it (the lead wires them), the bureau overview shows it.
Pure over a site description; one query over the registry tables otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import psycopg

from core.registry import SiteSpec

__all__ = ["DRY_KINDS", "MANDATORY", "WET_KINDS", "Missing", "Role", "missing_mandatory", "roles_of"]


@dataclass(frozen=True)
class Role:
    """One mandatory point: the spec's name for it and the (quantity, role) a registry point fills it with."""

    id: str  # stable code, e.g. "hopper_temperature"
    quantity: str
    role: str | None  # None: any point role
    zh: str
    en: str


#: Device kinds that are dust collectors under the specification (the registry's device `kind`).
DRY_KINDS: tuple[str, ...] = ("bag_filter", "dry_dust_collector", "al_mg_dust_collector", "wood_dust_collector")
WET_KINDS: tuple[str, ...] = ("wet_dust_collector",)

_DRY = (
    Role("hopper_temperature", "temperature", "hopper", "灰斗温度", "hopper temperature"),
    Role("pressure_difference", "pressure_difference", None, "进出口压差", "inlet/outlet pressure difference"),
    Role("airlock_fault", "airlock_fault", None, "锁气卸灰装置故障", "airlock / discharge-valve fault"),
)
_WET = (
    Role("tank_level", "level", None, "水箱液位", "water-tank level"),
    Role("circulation_flow", "flow", "circulation", "循环水流量", "circulation flow"),
)
MANDATORY: dict[Literal["dry", "wet"], tuple[Role, ...]] = {"dry": _DRY, "wet": _WET}


def roles_of(kind: str) -> tuple[Role, ...]:
    """The mandatory roles of a device kind (none for a device that is not a dust collector)."""
    if kind in DRY_KINDS:
        return _DRY
    if kind in WET_KINDS:
        return _WET
    return ()


@dataclass(frozen=True, order=True)
class Missing:
    """A mandatory point a dust collector does not have in the registry."""

    enterprise: str  # enterprise id
    plant: str  # plant id
    device: str  # device code (unique within its plant)
    role: str  # Role.id
    device_name: str = ""
    zh: str = ""
    en: str = ""

    def describe(self) -> str:
        """Chinese first, for the check's output and the overview."""
        return (f"{self.enterprise} / {self.plant} / {self.device}（{self.device_name}）缺少必接测点：{self.zh}"
                f" — missing mandatory point: {self.en}")


@dataclass(frozen=True)
class _Device:
    enterprise: str
    plant: str
    code: str
    name: str
    kind: str
    points: tuple[tuple[str, str | None], ...]  # (quantity, role)


def _missing(devices: Iterable[_Device]) -> list[Missing]:
    out: list[Missing] = []
    for d in devices:
        for r in roles_of(d.kind):
            if not any(q == r.quantity and (r.role is None or role == r.role) for q, role in d.points):
                out.append(Missing(d.enterprise, d.plant, d.code, r.id, d.name, r.zh, r.en))
    return sorted(out)


def _from_site(site: SiteSpec) -> list[_Device]:
    return [_Device(e.id, p.id, d.code, d.name, d.kind, tuple((pt.quantity, pt.role) for pt in d.points))
            for e in site.enterprises for p in e.plants for d in p.devices]


def _from_db(conn: psycopg.Connection) -> list[_Device]:
    kinds = list(DRY_KINDS + WET_KINDS)
    rows = conn.execute(
        """SELECT pl.enterprise_id, pl.id, d.code, d.name, d.kind,
                  coalesce(array_agg(p.quantity) FILTER (WHERE p.id IS NOT NULL), '{}'),
                  coalesce(array_agg(p.role) FILTER (WHERE p.id IS NOT NULL), '{}')
           FROM devices d JOIN plants pl ON pl.id = d.plant_id LEFT JOIN points p ON p.device_id = d.id
           WHERE d.kind = ANY(%s)
           GROUP BY pl.enterprise_id, pl.id, d.code, d.name, d.kind""", (kinds,)).fetchall()
    return [_Device(r[0], r[1], r[2], r[3], r[4], tuple(zip(r[5], r[6], strict=True))) for r in rows]


def missing_mandatory(source: SiteSpec | psycopg.Connection) -> list[Missing]:
    """Per enterprise and dust collector, the mandatory points not registered, sorted (enterprise, plant, device).

    ``source`` is a site description (checked before loading) or a connection (the registry as loaded).
    """
    devices = _from_site(source) if isinstance(source, SiteSpec) else _from_db(source)
    return _missing(devices)
