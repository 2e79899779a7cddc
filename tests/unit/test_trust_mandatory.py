"""Mandatory points (接入完整性, issue 14): the pure check over site descriptions.

The integration test (tests/integration/test_trust.py) runs the same function over the registry tables.
"""

from __future__ import annotations

import pytest

from core.mandatory import DRY_KINDS, WET_KINDS, missing_mandatory, roles_of
from core.registry import SiteSpec
from simulators.run import load_site
from simulators.scenarios import SITES_DIR


def site(devices: list[dict[str, object]], enterprise: str = "ent-a") -> SiteSpec:
    return SiteSpec.model_validate({"enterprises": [{
        "id": enterprise, "name": "甲", "principal": {"name": "张"}, "controller": {"name": "李"},
        "plants": [{"id": "pl-1", "name": "一号线", "industry": "foundry", "gateways": [{"id": "gw-1"}],
                    "devices": [{"gateway": "gw-1", "name": d["code"], **d} for d in devices]}]}]})


def pt(tag: str, quantity: str, role: str | None = None) -> dict[str, object]:
    return {"tag": tag, "quantity": quantity, **({"role": role} if role else {})}


DRY_FULL = [pt("TT-1", "temperature", "hopper"), pt("PDT-1", "pressure_difference"), pt("XA-1", "airlock_fault")]


@pytest.mark.parametrize(("kind", "points", "missing"), [
    ("dry_dust_collector", DRY_FULL, []),
    ("bag_filter", DRY_FULL[1:], ["hopper_temperature"]),
    # an inlet temperature is not the hopper's
    ("wood_dust_collector", [pt("TT-1", "temperature", "inlet"), *DRY_FULL[1:]], ["hopper_temperature"]),
    ("al_mg_dust_collector", [], ["airlock_fault", "hopper_temperature", "pressure_difference"]),
    ("wet_dust_collector", [pt("LT-1", "level"), pt("FT-1", "flow", "circulation")], []),
    ("wet_dust_collector", [pt("LT-1", "level"), pt("FT-1", "flow", "makeup")], ["circulation_flow"]),
    ("kiln", [], []),  # not a dust collector: nothing is mandatory under the dust-explosion specification
])
def test_missing_roles_per_collector(kind: str, points: list[dict[str, object]], missing: list[str]) -> None:
    s = site([{"code": "DC-1", "kind": kind, "points": points or [pt("X-1", "other")]}])
    got = missing_mandatory(s)
    assert [m.role for m in got] == missing
    assert all(m.enterprise == "ent-a" and m.plant == "pl-1" and m.device == "DC-1" for m in got)


def test_a_point_on_another_device_does_not_fill_the_gap() -> None:
    s = site([{"code": "DC-1", "kind": "dry_dust_collector", "points": DRY_FULL[1:]},
              {"code": "DUCT-1", "kind": "dust_duct", "points": [pt("TT-9", "temperature", "hopper")]}])
    [m] = missing_mandatory(s)
    assert (m.device, m.role, m.zh) == ("DC-1", "hopper_temperature", "灰斗温度")
    assert "DC-1" in m.describe() and "缺少必接测点" in m.describe()


def test_the_specification_tables() -> None:
    assert {r.id for r in roles_of(DRY_KINDS[0])} == {"hopper_temperature", "pressure_difference", "airlock_fault"}
    assert {r.id for r in roles_of(WET_KINDS[0])} == {"tank_level", "circulation_flow"}


def test_the_sample_sites() -> None:
    """county_full has every mandatory point; the demo's coal-mill bag filter lacks two (a real finding the
    bureau overview shows)."""
    assert missing_mandatory(load_site(SITES_DIR / "county_full.yaml")) == []
    got = missing_mandatory(load_site(SITES_DIR / "county.yaml"))
    assert [(m.enterprise, m.device, m.role) for m in got] == [
        ("qsl-cement", "CM-BF-01", "airlock_fault"), ("qsl-cement", "CM-BF-01", "hopper_temperature")]
