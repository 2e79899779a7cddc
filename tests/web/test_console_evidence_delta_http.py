"""The ledger's evidence chart of a rule whose limit is on a difference of two points (the cooling-water Δ), over
HTTP on the real console app and a real TimescaleDB: the candidate queue and the ticket page draw what the rule
judges from the readings kept with the evidence — a difference rule's chart is the Δ with its limit (named
"Δ hi", never a plain "hi" line on the two meters' ~36 m3/h readings), an interlock's is its subject point
with the Δ on a second axis; the Δ is the engine's (each point's newest valid value held at every reading
time, checked here against the readings themselves); a Δ the console cannot bind is named, not drawn; and the
chart stays enterprise-scoped (another's ticket is 404, another's device is never read to draw one's own).
"""

from __future__ import annotations

import bisect
import html
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.web.charts import held_difference, limits_of, valid_reading
from tests.web import test_console_trend_delta_http as td
from tests.web.fix_console import T0, Console, console_fixture  # noqa: F401
from tests.web.test_console_ledger_http import candidate
from tests.web.test_console_trend_delta_http import RULES, add_furnace, point_id, signed

pytestmark = pytest.mark.integration
furnaces = td.furnaces  # the mini site with an induction furnace (two flow meters, power) per enterprise

DIFF_RULE = "mach.cooling.diff:hi"   # inlet − outlet flow ≥ 3 m3/h (a rule level: the rule is mach.cooling.diff)
INTERLOCK = "mach.cooling.interlock"  # any of: Δ subject-out hi 3, temp_out hi 55, p_in lo 0.2; power on
DET = T0 - 30                         # the engine's detection; its evidence window is the 300 s before
LEAK = DET - 120                      # the outlet loses 6 m3/h from here


def window(a: str, b: str, offset: float = 0.4, power: str | None = None) -> list[dict[str, Any]]:
    """The evidence window as the engine keeps it (`rules.store.evidence_window`: tag, ISO time, value,
    quality; in time order): inlet ~36 m3/h every second, the outlet `offset` s later (two meters are never in
    step), following the inlet until LEAK, then 6 m3/h less; a bad-quality outlet spike the engine ignores."""
    rows: list[tuple[float, str, float, int]] = []
    for i in range(300):
        t = DET - 300 + i
        v = 36.0 + (i % 5) * 0.1
        rows.append((t, a, v, 0))
        rows.append((t + offset, b, v - 0.3 - (6.0 if t >= LEAK else 0.0), 0))
        if power is not None:
            rows.append((t, power, 1.0, 0))
    rows.append((DET - 200.5, b, -500.0, 2))  # quality BAD: not held by the engine, not in the Δ
    rows.sort()
    return [{"tag": tag, "time": datetime.fromtimestamp(t, UTC).isoformat(), "value": v, "quality": q}
            for t, tag, v, q in rows]


def expected_delta(readings: list[dict[str, Any]], a: str, b: str) -> dict[int, tuple[float, float, float]]:
    """The Δ the engine judges, computed here without `held_difference`: at every time either point reported
    (once both have), a's and b's latest valid reading at or before it (bisect over each point's own times)."""
    series: dict[str, tuple[list[float], list[float]]] = {a: ([], []), b: ([], [])}
    for r in readings:
        if r["tag"] in series and r["quality"] < 2:
            ts, vs = series[r["tag"]]
            ts.append(datetime.fromisoformat(r["time"]).timestamp())
            vs.append(float(r["value"]))
    out: dict[int, tuple[float, float, float]] = {}
    for t in sorted(set(series[a][0]) | set(series[b][0])):
        ia, ib = bisect.bisect_right(series[a][0], t), bisect.bisect_right(series[b][0], t)
        if ia and ib:
            va, vb = series[a][1][ia - 1], series[b][1][ib - 1]
            out[int(round((t + 8 * 3600) * 1000))] = (va - vb, va, vb)
    return out


def charts_of(page: str) -> list[dict[str, Any]]:
    return [json.loads(html.unescape(m)) for m in re.findall(r'data-chart="([^"]+)" data-testid="evidence-chart"',
                                                              page)]


def ticket_chart(c: TestClient, console: Console, hid: int) -> dict[str, Any]:
    r = c.get(console.url(f"/hazards/{hid}"))
    assert r.status_code == 200, r.text
    (chart,) = charts_of(r.text)
    return chart


def queue_chart(c: TestClient, console: Console, hid: int) -> dict[str, Any]:
    """The evidence chart of one candidate's card in the queue."""
    r = c.get(console.url("/candidates"))
    assert r.status_code == 200
    m = re.search(rf'<article class="card candidate" data-hazard="{hid}".*?</article>', r.text, re.S)
    assert m is not None, r.text
    (chart,) = charts_of(m.group(0))
    return chart


# --- pure parts ---------------------------------------------------------------------------------------------


def test_a_difference_rules_limit_is_named_after_the_difference() -> None:
    """`limits_of` walks into a rule's `limits:` with what the rule limits: a difference rule's is a Δ."""
    assert limits_of(RULES["mach.cooling.diff"]) == [{"name": "Δ subject-out hi", "kind": "hi", "value": 3.0}]
    assert [d["name"] for d in limits_of(RULES["bm.coal.temp"])] == ["hi", "hihi"]  # a threshold's own point


def test_the_held_difference_steps_like_the_engine() -> None:
    a = [(10.0, 36.0), (11.0, 36.5), (12.0, 36.0)]
    b = [(10.4, 30.0), (12.0, 33.5)]
    got = [(t.timestamp(), va, vb) for t, va, vb in held_difference(a, b)]
    # nothing before both have reported; then every time either did, with the other's value held; a time both
    # report at (12.0) is one step, after both values
    assert got == [(10.4, 36.0, 30.0), (11.0, 36.5, 30.0), (12.0, 36.0, 33.5)]
    assert held_difference(a, []) == [] and held_difference([], []) == []
    assert valid_reading({"time": "2026-01-01T00:00:00+00:00", "value": 1.5, "quality": 2}) is None  # BAD
    assert valid_reading({"time": "2026-01-01T00:00:00+00:00", "value": True, "quality": "good"}) == (1767225600.0,
                                                                                                      1.0)
    assert valid_reading({"time": "not a time", "value": 1.0}) is None
    assert valid_reading({"time": "2026-01-01T00:00:00+00:00", "value": "36"}) is None


# --- against the database -----------------------------------------------------------------------------------


def test_a_difference_rules_evidence_is_the_delta_with_its_limit(furnaces: Console) -> None:
    c = furnaces
    readings = window("FT-A1", "FT-A2")
    hid = candidate(c.db_url, "gw-a1", "FT-A1", "plant-a", "ent-a", "冷却水进出水流量差超限", DET, rule=DIFF_RULE,
                    readings=readings)
    duty = signed(c, "duty")
    chart = queue_chart(duty, c, hid)
    (series,) = chart["series"]  # the Δ alone: what the rule judges, not the two meters' readings
    assert series["name"] == "Δ FT-A1 − FT-A2" and series["parts"] == ["FT-A1", "FT-A2"] and series["axis"] == 0
    assert chart["limits"] == [{"name": "Δ hi", "kind": "hi", "value": 3.0}] and chart["notes"] == []
    assert chart["compact"] is False  # the evidence chart keeps its legend
    want = expected_delta(readings, "FT-A1", "FT-A2")
    got = {ms: (d, a, b) for ms, d, a, b in series["data"]}
    assert sorted(got) == sorted(want) and len(got) == 599  # 600 valid readings of two points, both from the 2nd
    for ms, (d, a, b) in got.items():
        assert (d, a, b) == pytest.approx(want[ms], abs=1e-6)
    assert min(a for _, a, _ in got.values()) > 35 and min(d for d, _, _ in got.values()) > -1  # no -500 spike
    before = [d for ms, (d, _, _) in got.items() if ms / 1000 - 8 * 3600 < LEAK]
    after = [d for ms, (d, _, _) in got.items() if ms / 1000 - 8 * 3600 >= LEAK + 1]
    assert before and after and max(before) < 1.0 and min(after) > 3.0  # below the line, then above it
    # the ticket page draws the same chart, for the bureau and for the plant's own enterprise
    assert ticket_chart(duty, c, hid) == chart
    assert ticket_chart(signed(c, "ea"), c, hid) == chart
    # the subject's own setpoint is the limit the engine applies: the chart draws that one
    c.sql("UPDATE points SET setpoints = '{\"mach.cooling.diff.hi\": 4.5}' WHERE id = %s RETURNING id",
          (point_id(c, "gw-a1", "FT-A1"),))
    assert ticket_chart(duty, c, hid)["limits"] == [{"name": "Δ hi", "kind": "hi", "value": 4.5}]


def test_an_interlocks_evidence_is_its_point_with_the_delta_beside_it(furnaces: Console) -> None:
    c = furnaces
    readings = window("FT-A1", "FT-A2", power="JS-A1")
    hid = candidate(c.db_url, "gw-a1", "FT-A1", "plant-a", "ent-a", "中频炉冷却水泄漏未联锁", DET, rule=INTERLOCK,
                    readings=readings)
    chart = ticket_chart(signed(c, "duty"), c, hid)
    point, delta = chart["series"]  # the power state is not drawn on the flow axis
    assert point["name"] == "FT-A1" and "axis" not in point and min(v for _, v in point["data"]) > 35
    assert len(point["data"]) == 300
    assert delta["name"] == "Δ FT-A1 − FT-A2" and delta["axis"] == 1
    assert delta["limits"] == [{"name": "Δ hi", "kind": "hi", "value": 3.0}]
    assert chart["limits"] == []  # no limit of the rule is on the inlet's own value: no line on ~36 m3/h
    assert {ms: d for ms, d, _, _ in delta["data"]} == pytest.approx(
        {ms: d for ms, (d, _, _) in expected_delta(readings, "FT-A1", "FT-A2").items()}, abs=1e-6)
    assert sorted(chart["notes"]) == ["p_in lo 0.2", "temp_out hi 55"]  # limits on points this device lacks


def test_an_unbindable_delta_is_named_not_drawn_on_the_meters(furnaces: Console) -> None:
    """A second outlet meter on the device since the candidate: `out` matches two points, so the console
    cannot tell which b the engine used. As on the board, the subject point is drawn and the Δ limit is named
    above it — not a 3 m3/h line under the meter's ~36."""
    c = furnaces
    add_furnace(c.db_url, "plant-a", "gw-a2", "IF-C", {"FT-C1": ("flow", "inlet"), "FT-C2": ("flow", "outlet"),
                                                       "FT-C3": ("flow", "outlet")})
    hid = candidate(c.db_url, "gw-a2", "FT-C1", "plant-a", "ent-a", "流量差", DET, rule=DIFF_RULE,
                    readings=window("FT-C1", "FT-C2"))
    chart = ticket_chart(signed(c, "duty"), c, hid)
    assert [s["name"] for s in chart["series"]] == ["FT-C1"] and len(chart["series"][0]["data"]) == 300
    assert chart["limits"] == [] and chart["notes"] == ["Δ subject-out hi 3"]
    # a window missing the outlet meter altogether: the inlet alone, the Δ named
    hid = candidate(c.db_url, "gw-a1", "FT-A1", "plant-a", "ent-a", "流量差", DET, rule=DIFF_RULE,
                    readings=[r for r in window("FT-A1", "FT-A2") if r["tag"] == "FT-A1"])
    chart = ticket_chart(signed(c, "duty"), c, hid)
    assert [s["name"] for s in chart["series"]] == ["FT-A1"] and chart["limits"] == []
    assert chart["notes"] == ["Δ subject-out hi 3"]


def test_the_evidence_chart_is_scoped_to_the_enterprise(furnaces: Console) -> None:
    c = furnaces
    mine = candidate(c.db_url, "gw-a1", "FT-A1", "plant-a", "ent-a", "甲流量差", DET, rule=DIFF_RULE,
                     readings=window("FT-A1", "FT-A2"))
    theirs = candidate(c.db_url, "gw-b1", "FT-B1", "plant-b", "ent-b", "乙流量差", DET, rule=DIFF_RULE,
                       readings=window("FT-B1", "FT-B2"))
    ea, eb = signed(c, "ea"), signed(c, "eb")
    assert ticket_chart(ea, c, mine)["series"][0]["name"] == "Δ FT-A1 − FT-A2"
    assert ticket_chart(eb, c, theirs)["series"][0]["name"] == "Δ FT-B1 − FT-B2"
    r = ea.get(c.url(f"/hazards/{theirs}"))
    assert r.status_code == 404 and "FT-B" not in r.text and "evidence-chart" not in r.text
    assert ea.get(c.url("/candidates")).status_code == 403  # enterprises do not judge candidates
    # a ticket of one's own pointed (forged in the database: the ledger refuses another's point when a ticket
    # is opened) at another enterprise's point: that device is not read for the enterprise's viewer, so the
    # chart binds nothing of it and names none of its tags — the window's own readings, as recorded
    c.sql("UPDATE hazards SET point_id = %s WHERE id = %s RETURNING id", (point_id(c, "gw-b1", "FT-B1"), mine))
    chart = ticket_chart(ea, c, mine)
    assert sorted(s["name"] for s in chart["series"]) == ["FT-A1", "FT-A2"]
    assert chart["limits"] == [] and chart["notes"] == ["Δ subject-out hi 3"] and "FT-B" not in json.dumps(chart)
