"""Dashboard generation from a registry view, without a database (pure)."""

from __future__ import annotations

import json
import re

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


def test_bureau_dashboard_has_the_alarm_health_row() -> None:
    bureau = build_all(site(), "ds-x")[0].to_json()
    panels = bureau["panels"]
    row = next(i for i, p in enumerate(panels) if p["type"] == "row")
    assert panels[row]["title"] == "报警系统健康 Alarm-system health (ISA-18.2 / EEMUA 191)"
    health = panels[row + 1:]
    assert [p["type"] for p in health] == ["timeseries", "bargauge", "stat", "table"]
    rate, flood, standing, top = health
    # EEMUA 191's 1 per 10 minutes and the flood above 10, drawn as dashed lines on the rate chart
    assert [(s["value"], s["color"]) for s in rate["fieldConfig"]["defaults"]["thresholds"]["steps"]] == \
        [(None, "green"), (1, "orange"), (10, "red")]
    assert rate["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    assert flood["fieldConfig"]["defaults"]["unit"] == "percent"
    assert flood["options"]["reduceOptions"] == {"values": True, "calcs": [], "fields": "洪水时间占比 % time in flood"}
    assert standing["options"]["reduceOptions"]["fields"] == "长期报警 standing > 24 h"
    sqls = [t["rawSql"] for p in health for t in p["targets"]]
    # only the enterprise-free position views of migration 0017, half-open ranges like hazards.records.health
    assert all(re.findall(r"grafana\.(\w+)", s) and set(re.findall(r"grafana\.(\w+)", s))
               <= {"position_alarm_events", "alarm_positions"} for s in sqls)
    assert not any("$__timeFilter" in s or "enterprise" in s or "public." in s for s in sqls)
    assert "温度高 Temperature high" in top["targets"][0]["rawSql"]  # rule titles from the catalog
