"""Gateway ids: one syntax, no reserved names — in the site loader (file:line) and the shared check."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.http.supervision import diff, gateway_disable_needs_approval, split, stale_fields
from core import registry
from core.errors import SourceError
from core.services import COLLECTOR_USER, HEALTH_USER

ROOT = Path(__file__).resolve().parent.parent.parent
SITES = sorted([*ROOT.glob("simulators/sites/*.yaml"), *ROOT.glob("tests/fixtures/*site*.yaml")])

REFUSED = [
    ("riskwatch-collector", "reserved-id"), ("RISKWATCH-collector", "reserved-id"), ("riskwatch-health", "reserved-id"),
    ("RiskWatch", "reserved-id"), ("riskwatch", "reserved-id"), ("riskwatchx", "reserved-id"),
    ("$SYS", "reserved-id"), ("$share", "reserved-id"),
    ("a/b", "invalid-id"), ("#", "invalid-id"), ("+", "invalid-id"), ("gw+1", "invalid-id"), ("gw#", "invalid-id"),
    ("gw a", "invalid-id"), ("gw\t", "invalid-id"), ("gw\n", "invalid-id"), ("gw:a", "invalid-id"),
    ("", "invalid-id"), ("-gw", "invalid-id"), (".gw", "invalid-id"), ("x" * 65, "invalid-id"),
    ("网关1", "invalid-id"), ("gw\x00", "invalid-id"),
]
ACCEPTED = ["gw-a1", "GW_01", "a", "x" * 64, "plant1.gw-2", "0gw", "risk-watch", "gw-riskwatch"]


@pytest.mark.parametrize(("value", "code"), REFUSED)
def test_refused_ids_say_why(value: str, code: str) -> None:
    refusal = registry.check_gateway_id(value)
    assert refusal is not None and refusal.code == code
    assert repr(value) in refusal.en and refusal.zh.startswith("网关编号")


@pytest.mark.parametrize("value", ACCEPTED)
def test_ordinary_ids_pass(value: str) -> None:
    assert registry.check_gateway_id(value) is None


def test_the_service_accounts_are_reserved() -> None:
    for user in (COLLECTOR_USER, HEALTH_USER):
        refusal = registry.check_gateway_id(user)
        assert refusal is not None and refusal.code == "reserved-id"


@pytest.mark.parametrize("path", SITES, ids=lambda p: p.name)
def test_sample_sites_still_load(path: Path) -> None:
    site = registry.parse_site(path)
    assert site.gateways() and all(registry.check_gateway_id(g.id) is None for _, g in site.gateways())


def test_site_loader_refuses_reserved_ids_with_file_and_line() -> None:
    text = (ROOT / "tests/fixtures/mini_site.yaml").read_text()
    bad = text.replace("id: gw-a2", "id: RISKWATCH-collector").replace("gateway: gw-a2", "gateway: $SYS")
    with pytest.raises(SourceError) as exc:
        registry.parse_site("site.yaml", bad)
    lines = text.splitlines()
    gw_line = next(i for i, line in enumerate(lines, 1) if "id: gw-a2" in line)
    dev_line = next(i for i, line in enumerate(lines, 1) if "gateway: gw-a2" in line)
    found = {(p.line, p.message.split(":")[0]) for p in exc.value.problems}
    assert (gw_line, "enterprises.0.plants.0.gateways.1.id") in found
    assert (dev_line, "enterprises.0.plants.0.devices.1.gateway") in found
    assert all(str(p).startswith("site.yaml:") and "reserved" in p.message for p in exc.value.problems)


# --- the supervision split: pure decisions -----------------------------------------------------------------


def test_split_keeps_only_real_changes_and_divides_them() -> None:
    current = {"name": "入口温度", "unit": "degC", "required": True, "interval_s": 1.0, "setpoints": None,
               "states": None}
    s = split("point", {"name": "入口温度", "unit": "°C", "required": True, "interval_s": 1,
                        "setpoints": {"bm.coal.temp.hi": 100000}}, current)
    assert s.free == {"unit": "°C"}
    assert s.supervised == {"setpoints": {"bm.coal.temp.hi": 100000.0}}
    assert s.old == {"unit": "degC", "setpoints": None}
    # a null that means "leave as is" asks for nothing; an empty map is no map
    assert split("point", {"required": None, "setpoints": {}}, current).changed == {}


def test_contacts_compare_whole_and_nulls_leave_them() -> None:
    current = {"principal": {"name": "张三", "phone": "138", "email": "a@x.cn"}, "address": "一路"}
    assert split("enterprise", {"principal": None, "address": "二路"}, current).supervised == {}
    s = split("enterprise", {"principal": {"name": "张三", "phone": "138"}}, current)
    assert s.supervised == {"principal": {"name": "张三", "phone": "138", "email": None}}  # e-mail dropped: a change


def test_disable_needs_the_bureau_only_when_it_silences_a_required_point() -> None:
    assert gateway_disable_needs_approval(True, True)
    assert not gateway_disable_needs_approval(True, False)
    assert not gateway_disable_needs_approval(False, True)  # already off: nothing to decide


def test_stale_fields_and_diff() -> None:
    assert stale_fields({"industry": "cement"}, {"industry": "lime"}) == ["industry"]
    assert stale_fields({"setpoints": None}, {"setpoints": {}}) == []
    assert diff({"required": True}, {"required": False}) == {"required": {"old": True, "new": False}}
