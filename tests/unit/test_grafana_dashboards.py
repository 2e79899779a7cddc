"""Dashboard generation from a registry view, without a database (pure)."""

from __future__ import annotations

import json

import pytest

from api.grafana.dashboards import build_all, grafana_unit, threshold_steps, uid_for
from api.grafana.source import DeviceView, Limit, PlantView, PointView, SiteView


def steps(*limits: tuple[str, float, str]) -> list[tuple[float | None, str]]:
    return [(s.value, s.color) for s in threshold_steps([Limit(side, v, sev, "r") for side, v, sev in limits])]  # type: ignore[arg-type]


@pytest.mark.parametrize(("limits", "want"), [
    ((), [(None, "transparent")]),
    ((("hi", 50, "medium"), ("hi", 80, "high")), [(None, "transparent"), (50, "orange"), (80, "red")]),
    ((("lo", 2, "medium"), ("lo", 1.5, "high")), [(None, "red"), (1.5, "orange"), (2, "transparent")]),
    ((("lo", 792, "high"), ("hi", 1188, "high")), [(None, "red"), (792, "transparent"), (1188, "red")]),
    # the most severe broken limit wins where limits of different rules overlap
    ((("hi", 10, "urgent"), ("hi", 5, "low")), [(None, "transparent"), (5, "yellow"), (10, "dark-red")]),
])
def test_threshold_steps(limits: tuple[tuple[str, float, str], ...], want: list[tuple[float | None, str]]) -> None:
    assert steps(*limits) == want


def test_uids_and_units() -> None:
    assert uid_for("rw-plant", "qsl-p1") == "rw-plant-qsl-p1"
    key = "水泥厂/一号线 with a very long name indeed"
    odd = uid_for("rw-plant", key)
    assert len(odd) <= 40 and odd.startswith("rw-plant-") and odd == uid_for("rw-plant", key)
    assert odd != uid_for("rw-plant", "水泥厂/二号线 with a very long name indeed")
    assert grafana_unit("°C") == "celsius" and grafana_unit("m3/h") == "suffix: m3/h" and grafana_unit("") == "none"


def site() -> SiteView:
    pts = (PointView(1, "gw-1", "TT-1", "温度", "temperature", "°C", "analog", None,
                     (Limit("hi", 70, "high", "t.hi:hi"),)),
           PointView(2, "gw-1", "JS-1", "送电", "power_on", "", "boolean", {"0": "停电", "1": "送电"}))
    furnace = DeviceView(1, "F-1", "中频炉", "induction_furnace", pts)
    plant = PlantView("p-1", "一厂", "foundry", "e-1", "甲公司", (furnace,), ("gw-1",), frozenset({"t.hi"}))
    return SiteView((plant,), {"t.hi": "温度高 Temperature high"}, 30.0)


def test_build_all_from_a_view() -> None:
    dashboards = build_all(site(), "ds-x")
    assert [d.uid for d in dashboards] == ["rw-bureau", "rw-point", "rw-plant-p-1"]
    plant = dashboards[2].to_json()
    json.dumps(plant)
    kinds = [p["type"] for p in plant["panels"]]
    assert kinds == ["table", "table", "row", "timeseries", "state-timeline"]
    ts = plant["panels"][3]
    assert ts["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {"value": 70.0, "color": "red"}
    assert ts["fieldConfig"]["defaults"]["unit"] == "celsius"
    st = plant["panels"][4]
    assert st["fieldConfig"]["defaults"]["mappings"][0]["options"]["1"]["text"] == "送电 (1)"
    assert all(t["datasource"]["uid"] == "ds-x" for p in plant["panels"] for t in p.get("targets", []))
    assert all(p["options"] is not None for p in plant["panels"] if p["type"] != "row")
    # every target of every dashboard is recorded with what it must return
    for d in dashboards:
        js = d.to_json()
        n = sum(len(p.get("targets", [])) for p in js["panels"]) + len(js.get("annotations", {}).get("list", [])) \
            + len(js.get("templating", {}).get("list", []))
        assert n == len(d.targets)
