"""The board's trend of an alarm whose limit is on a difference of two points (the cooling-water Δ), over HTTP
on the real console app and a real TimescaleDB: the difference a − b is computed in SQL on aligned time buckets
(checked against the readings themselves), its limit is drawn on it (the subject point's setpoint when it has
one, as the compiler applies it), the two points are bound as the compiler binds them, and the fragment stays
enterprise-scoped (another's Δ alarm is 404 and none of its tags leak).
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.web import queries_disposal as qd
from api.web.charts import bind_aliases, delta_series, trend_chart, trend_limits
from rules.compile import compile_rules, leaves_of
from rules.model import load_catalog
from rules.store import load_registry
from tests.web.fix_console import T0, Console, console_fixture, insert_alarm  # noqa: F401

pytestmark = pytest.mark.integration

DIFF_RULE = "mach.cooling.diff:hi"      # difference rule: inlet − outlet flow, hi 3.0 m3/h
INTERLOCK = "mach.cooling.interlock"     # any of: Δ subject-out hi 3, temp_out hi 55, p_in lo 0.2; power on
ACT = T0 - 600                           # the leak starts 10 min before "now"
BUCKET_ORIGIN = 946_857_600  # 2000-01-03T00:00:00Z, time_bucket's origin for timestamptz
RULES = {rid: r for rid, (_, r) in load_catalog(None).rules.items()}


def add_furnace(db_url: str, plant: str, gateway: str, code: str, tags: dict[str, tuple[str, str | None]]) -> None:
    """An induction furnace on a plant of the mini site: tag -> (quantity, role)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        (dev,) = conn.execute("INSERT INTO devices (plant_id, code, name, kind) VALUES (%s, %s, %s, "
                              "'induction_furnace') RETURNING id", (plant, code, f"{code} 中频炉")).fetchone() or (0,)
        for tag, (quantity, role) in tags.items():
            conn.execute("""INSERT INTO points (device_id, gateway_id, tag, name, quantity, unit, kind, required,
                                interval_s, role) VALUES (%s, %s, %s, %s, %s, 'm3/h', 'analog', true, 1, %s)""",
                         (dev, gateway, tag, tag, quantity, role))


FURNACE = {"FT-A1": ("flow", "inlet"), "FT-A2": ("flow", "outlet"), "JS-A1": ("power_on", None)}


@pytest.fixture
def furnaces(console: Console) -> Console:
    add_furnace(console.db_url, "plant-a", "gw-a1", "IF-A", FURNACE)
    add_furnace(console.db_url, "plant-b", "gw-b1", "IF-B", {"FT-B1": ("flow", "inlet"), "FT-B2": ("flow", "outlet")})
    return console


def point_id(console: Console, gateway: str, tag: str) -> int:
    return int(console.sql("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway, tag))[0][0])


def write(console: Console, gateway: str, tag: str, rows: list[tuple[float, float]]) -> None:
    pid = point_id(console, gateway, tag)
    with psycopg.connect(console.db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO readings (time, point_id, value) VALUES (%s, %s, %s)",
                        [(datetime.fromtimestamp(t, UTC), pid, v) for t, v in rows])


def leak(start: float, end: float, offset: float = 0.0) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Inlet ~36 m3/h; outlet follows it until ACT, then 6 m3/h less (the scenario's leak). 1 s apart; the
    outlet meter's samples `offset` s after the inlet's (two meters are never in step)."""
    n = int(end - start)
    inlet = [(start + i, 36.0 + (i % 5) * 0.1) for i in range(n)]
    outlet = [(t + offset, v - 0.3 - (6.0 if t >= ACT else 0.0)) for t, v in inlet]
    return inlet, outlet


def signed(console: Console, username: str) -> TestClient:
    c = console.new_client()
    assert console.login(username, client=c).status_code == 303
    return c


def chart_of(page: str) -> dict[str, Any]:
    m = re.search(r'data-chart="([^"]+)" data-testid="trend-chart"', page)
    assert m is not None, page
    got: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    return got


def trend(c: TestClient, console: Console, rule: str, subject: str) -> Any:
    return c.get(console.url("/alarms/trend"), params={"rule_id": rule, "subject": subject})


def expected_buckets(inlet: list[tuple[float, float]], outlet: list[tuple[float, float]], start: float, end: float,
                     width: int) -> dict[int, tuple[float, float]]:
    """The Δ series computed here from the readings written, independently of the SQL: per time bucket (of
    `width` s from TimescaleDB's default origin, Monday 2000-01-03 UTC), the mean of each point, for buckets
    holding both."""
    acc: dict[int, list[list[float]]] = defaultdict(lambda: [[], []])
    for k, rows in enumerate((inlet, outlet)):
        for t, v in rows:
            if start <= t <= end:
                acc[int(BUCKET_ORIGIN + (t - BUCKET_ORIGIN) // width * width)][k].append(v)
    return {b: (sum(a) / len(a), sum(o) / len(o)) for b, (a, o) in acc.items() if a and o}


# --- pure parts ---------------------------------------------------------------------------------------------


def test_trend_limits_sort_a_rules_limits_for_the_chart() -> None:
    lim = trend_limits(RULES["bm.gas.pressure"])  # a threshold: every limit on the point itself
    assert sorted((x["kind"], x["value"]) for x in lim.own) == [("hi", 10.0), ("lo", 6.0)]
    assert lim.deltas == [] and lim.other == [] and not lim.delta_only
    assert {x["kind"]: x["value"] for x in trend_limits(RULES["bm.gas.pressure"],
                                                         {"bm.gas.pressure.hi": 11.5}).own} == {"hi": 11.5, "lo": 6.0}
    lim = trend_limits(RULES["mach.cooling.diff"])  # a difference rule: its limit is on the Δ, never the point
    assert lim.own == [] and lim.delta_only
    assert [(d.a, d.b, [(x["kind"], x["value"]) for x in d.limits]) for d in lim.deltas] == [
        ("subject", "out", [("hi", 3.0)])]
    # the subject's own setpoint moves the limit, as the compiler does; a malformed one is ignored
    assert trend_limits(RULES["mach.cooling.diff"], {"mach.cooling.diff.hi": 4.5}).deltas[0].limits[0]["value"] == 4.5
    assert trend_limits(RULES["mach.cooling.diff"], {"mach.cooling.diff.hi": "x"}).deltas[0].limits[0]["value"] == 3.0
    lim = trend_limits(RULES["mach.cooling.interlock"])  # an interlock with a Δ condition among others
    assert lim.own == [] and not lim.delta_only
    assert [(d.a, d.b, d.limits[0]["value"]) for d in lim.deltas] == [("subject", "out", 3.0)]
    assert sorted((x["name"], x["value"]) for x in lim.other) == [("p_in lo", 0.2), ("temp_out hi", 55.0)]
    lim = trend_limits(RULES["bm.fused.cooling_interlock"])  # a condition on the subject itself is its own
    assert [(x["name"], x["value"]) for x in lim.own] == [("subject lo", 45.0)]
    assert [x["name"] for x in lim.other] == ["temp_out hi"] and lim.deltas == []


def test_a_difference_chart_is_the_delta_with_its_limit() -> None:
    t = datetime.fromtimestamp(T0, UTC)
    d = delta_series("FT-601", "FT-602", [(t, 36.25, 30.0)], [{"name": "hi", "kind": "hi", "value": 3.0}], 1)
    assert d["name"] == "Δ FT-601 − FT-602" and d["parts"] == ["FT-601", "FT-602"]
    assert d["data"] == [[int((T0 + 8 * 3600) * 1000), 6.25, 36.25, 30.0]]
    labels = {"activated": "报警", "cleared": "恢复"}
    only = trend_chart("FT-601", [], T0 - 60, None, [], [], labels, deltas=[d], delta_only=True)
    assert [s["name"] for s in only["series"]] == ["Δ FT-601 − FT-602"] and only["series"][0]["axis"] == 0
    assert only["limits"] == [{"name": "Δ hi", "kind": "hi", "value": 3.0}] and "limits" not in only["series"][0]
    beside = trend_chart("FT-601", [(t, 36.25)], T0 - 60, None, [], [{"name": "temp_out hi", "value": 55.0}], labels,
                         deltas=[d])
    assert [(s["name"], s.get("axis")) for s in beside["series"]] == [("FT-601", None), ("Δ FT-601 − FT-602", 1)]
    assert beside["series"][1]["limits"][0]["value"] == 3.0 and beside["limits"] == []
    assert beside["notes"] == ["temp_out hi 55"]


# --- against the database -----------------------------------------------------------------------------------


def test_aliases_are_bound_as_the_compiler_binds_them(furnaces: Console) -> None:
    """The console finds point b of `a − b` the way the rule compiler does: same points for every Δ instance."""
    furnaces.sql("UPDATE plants SET industry = 'foundry' RETURNING id")  # the cooling rules' industry
    with psycopg.connect(furnaces.db_url) as conn:
        view, _, _ = load_registry(conn)
        compiled = compile_rules(load_catalog(None), view)
        checked = 0
        for inst in compiled.instances:
            diffs = [leaf for leaf in leaves_of(inst.expr)
                     if leaf.kind in ("diff_ge", "diff_le")] if inst.expr is not None else []
            if not diffs or inst.point_id is None:
                continue
            rule = RULES[inst.base_id]
            lim = trend_limits(rule)
            bound = bind_aliases(rule, inst.point_id, qd.device_points(conn, inst.point_id, None))
            got = sorted((int(bound[d.a]["id"]), int(bound[d.b]["id"])) for d in lim.deltas)
            assert got == sorted((leaf.a, leaf.b) for leaf in diffs), inst.rule_id
            checked += 1
    # mach.cooling.diff:hi on both furnaces (the interlock does not bind here: no temperature or pressure point)
    assert checked == 2


def test_the_delta_is_computed_on_aligned_buckets_and_drawn_with_its_limit(furnaces: Console) -> None:
    c = furnaces
    subject = insert_alarm(c.db_url, DIFF_RULE, "gw-a1", "FT-A1", "plant-a", ACT + 5)
    inlet, outlet = leak(T0 - 3600, T0, offset=0.4)
    write(c, "gw-a1", "FT-A1", inlet)
    write(c, "gw-a1", "FT-A2", outlet)
    ea = signed(c, "ea")
    r = trend(ea, c, DIFF_RULE, subject)
    assert r.status_code == 200
    chart = chart_of(r.text)
    (series,) = chart["series"]  # the Δ alone: what the rule judges
    assert series["name"] == "Δ FT-A1 − FT-A2" and series["parts"] == ["FT-A1", "FT-A2"] and series["axis"] == 0
    assert chart["limits"] == [{"name": "Δ hi", "kind": "hi", "value": 3.0}] and chart["notes"] == []
    assert chart["marks"][0]["x"] == int((ACT + 5 + 8 * 3600) * 1000)
    # the same numbers as the readings give, bucket by bucket
    start, end = qd.trend_window(ACT + 5, None, T0)
    width = qd.bucket_seconds(start, end)
    want = expected_buckets(inlet, outlet, start, end, width)
    got = {(ms // 1000 - 8 * 3600): (d, a, b) for ms, d, a, b in series["data"]}
    assert sorted(got) == sorted(want) and 0 < len(got) <= qd.MAX_TREND_POINTS
    for bucket, (d, a, b) in got.items():
        wa, wb = want[bucket]
        assert a == pytest.approx(wa) and b == pytest.approx(wb) and d == pytest.approx(wa - wb, abs=1e-6)
    before = [d for ms, d, _, _ in series["data"] if ms // 1000 - 8 * 3600 + width <= ACT]
    after = [d for ms, d, _, _ in series["data"] if ms // 1000 - 8 * 3600 >= ACT]
    assert before and after and max(before) < 1.0 and min(after) > 3.0  # below the line, then above it

    # the subject's own setpoint is the limit the engine applies: the chart draws that one
    c.sql("UPDATE points SET setpoints = '{\"mach.cooling.diff.hi\": 4.5}' WHERE id = %s RETURNING id",
          (point_id(c, "gw-a1", "FT-A1"),))
    assert chart_of(trend(ea, c, DIFF_RULE, subject).text)["limits"][0]["value"] == 4.5


def test_only_buckets_where_both_points_report_are_drawn(furnaces: Console) -> None:
    c = furnaces
    subject = insert_alarm(c.db_url, DIFF_RULE, "gw-a1", "FT-A1", "plant-a", ACT)
    inlet, outlet = leak(T0 - 3600, T0)
    write(c, "gw-a1", "FT-A1", inlet)
    write(c, "gw-a1", "FT-A2", [(t, v) for t, v in outlet if t < ACT - 300])  # the outlet meter fell silent
    data = chart_of(trend(signed(c, "ea"), c, DIFF_RULE, subject).text)["series"][0]["data"]
    assert data and all(ms // 1000 - 8 * 3600 < ACT - 300 for ms, *_ in data)
    assert max(d for _, d, _, _ in data) < 1.0
    # no outlet reading at all in the window: no Δ to draw; the limit is named and the inlet is drawn instead
    c.sql("DELETE FROM readings WHERE point_id = %s RETURNING 1", (point_id(c, "gw-a1", "FT-A2"),))
    chart = chart_of(trend(signed(c, "ea"), c, DIFF_RULE, subject).text)
    assert [s["name"] for s in chart["series"]] == ["FT-A1"] and chart["limits"] == []
    assert chart["notes"] == ["Δ subject-out hi 3"]


def test_an_interlock_shows_the_delta_beside_its_point(furnaces: Console) -> None:
    c = furnaces
    subject = insert_alarm(c.db_url, INTERLOCK, "gw-a1", "FT-A1", "plant-a", ACT + 10)
    inlet, outlet = leak(T0 - 3600, T0)
    write(c, "gw-a1", "FT-A1", inlet)
    write(c, "gw-a1", "FT-A2", outlet)
    chart = chart_of(trend(signed(c, "ea"), c, INTERLOCK, subject).text)
    point, delta = chart["series"]
    assert point["name"] == "FT-A1" and "axis" not in point and min(v for _, v in point["data"]) > 35
    assert delta["name"] == "Δ FT-A1 − FT-A2" and delta["axis"] == 1
    assert delta["limits"] == [{"name": "Δ hi", "kind": "hi", "value": 3.0}]
    assert max(d for _, d, _, _ in delta["data"]) > 5.0
    assert sorted(chart["notes"]) == ["p_in lo 0.2", "temp_out hi 55"]  # limits on points this device lacks


def test_an_unbindable_delta_is_named_not_drawn(furnaces: Console) -> None:
    """A second outlet meter on the device since the alarm was raised: `out` matches two points, so the
    console cannot tell which b the engine used and does not guess."""
    c = furnaces
    add_furnace(c.db_url, "plant-a", "gw-a2", "IF-C", {"FT-C1": ("flow", "inlet"), "FT-C2": ("flow", "outlet"),
                                                       "FT-C3": ("flow", "outlet")})
    subject = insert_alarm(c.db_url, DIFF_RULE, "gw-a2", "FT-C1", "plant-a", ACT)
    inlet, outlet = leak(T0 - 3600, T0)
    write(c, "gw-a2", "FT-C1", inlet)
    write(c, "gw-a2", "FT-C2", outlet)
    chart = chart_of(trend(signed(c, "ea"), c, DIFF_RULE, subject).text)
    assert [s["name"] for s in chart["series"]] == ["FT-C1"] and chart["notes"] == ["Δ subject-out hi 3"]


def test_a_delta_trend_is_scoped_to_the_enterprise(furnaces: Console) -> None:
    c = furnaces
    mine = insert_alarm(c.db_url, DIFF_RULE, "gw-a1", "FT-A1", "plant-a", ACT)
    theirs = insert_alarm(c.db_url, DIFF_RULE, "gw-b1", "FT-B1", "plant-b", ACT)
    for gw, a, b in (("gw-a1", "FT-A1", "FT-A2"), ("gw-b1", "FT-B1", "FT-B2")):
        inlet, outlet = leak(T0 - 3600, T0)
        write(c, gw, a, inlet)
        write(c, gw, b, outlet)
    ea, eb, duty = signed(c, "ea"), signed(c, "eb"), signed(c, "duty")
    r = trend(ea, c, DIFF_RULE, theirs)
    assert r.status_code == 404 and "FT-B" not in r.text and "data-chart" not in r.text
    assert trend(eb, c, DIFF_RULE, mine).status_code == 404
    # a subject forged onto another enterprise's point under one's own rule id: as if absent too
    assert trend(ea, c, DIFF_RULE, f"p:{point_id(c, 'gw-b1', 'FT-B1')}").status_code == 404
    assert chart_of(trend(eb, c, DIFF_RULE, theirs).text)["series"][0]["name"] == "Δ FT-B1 − FT-B2"
    assert chart_of(trend(ea, c, DIFF_RULE, mine).text)["series"][0]["name"] == "Δ FT-A1 − FT-A2"
    # the bureau sees both
    assert chart_of(trend(duty, c, DIFF_RULE, theirs).text)["series"][0]["name"] == "Δ FT-B1 − FT-B2"
    # the device's points are read within the scope, too: another enterprise's device yields nothing
    with psycopg.connect(c.db_url) as conn:
        assert qd.device_points(conn, point_id(c, "gw-b1", "FT-B1"), "ent-a") == []
        assert {p["tag"] for p in qd.device_points(conn, point_id(c, "gw-b1", "FT-B1"), "ent-b")} == {"FT-B1",
                                                                                                        "FT-B2"}
