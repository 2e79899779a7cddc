"""Every query of every generated dashboard, expanded as Grafana would and run on real data.

The sample county site is loaded, its gateways are simulated through real
Mosquitto into the real collector (rule engine included) with a cooling-water
leak played half-way, so readings, rollups, alarms, alarm events, a hazard
candidate, gateway status and a dead letter all exist. Then each panel
target, annotation and variable query is expanded with Grafana's macros
(simulators.fakes.grafana_sql) for a 1-hour and a 30-day range and run:

- time series: rows, the time column first (timestamptz), sorted, every
  other column numeric (a text ``metric`` column names series, as Grafana
  reads it);
- tables, annotations and variables: exactly the declared columns.

Grafana's data source connects as a login role that is a member of
``grafana_reader`` only (tests.fix_grafana), so every query is run as such a
role: a dashboard that needed a table instead of a view of the ``grafana``
schema fails here with "permission denied".

It also checks which source answered (raw readings for 1 h, the rollup for
30 d) and that the rollup branch gives the same buckets as raw data.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from api.grafana import POINT_UID, GeneratedDashboard, TargetSpec, generate
from api.grafana import queries as q
from core.services import LocalMosquitto
from simulators.fakes.grafana_sql import QueryContext, expand
from simulators.run import default_site_path, simulate
from simulators.scenarios import SCENARIOS
from tests.conftest import CollectorProcess, Site, pub_args, sql_one, wait_for
from tests.fix_grafana import grafana_login

pytestmark = pytest.mark.integration

NUMERIC = {20, 21, 23, 700, 701, 1700}  # int8, int2, int4, float4, float8, numeric
TIMESTAMPTZ = 1184
TEXT = {25, 1043}
FOUNDRY = "dy-p1"


@pytest.fixture
def loaded(db_url: str, broker: LocalMosquitto, collector: CollectorProcess) -> Site:
    """72 minutes of county data at 1 Hz through the collector, a cooling-water leak 41 minutes ago."""
    site = Site(db_url, broker, default_site_path())
    collector.start()
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 72 * 60_000
    leak = SCENARIOS["cooling_water_leak"].shifted(30 * 60)
    res = simulate(site.spec, "127.0.0.1", broker.state.mqtt_port, site.credentials, duration_s=70 * 60,
                   rate_hz=1.0, batch=500, log_path=None, realtime=False, start_ms=start_ms, scenario=leak, seed=3,
                   tls=site.tls)
    assert res.acked
    bad = subprocess.run(["mosquitto_pub", *pub_args(broker), "-q", "1",
                          "-u", "gw-fdy-01", "-P", site.credentials["gw-fdy-01"], "-t", "rw/v1/gw-fdy-01/telemetry",
                          "-m", "{not json"], capture_output=True, timeout=20)
    assert bad.returncode == 0, bad.stderr
    wait_for(lambda: sql_one(db_url, "SELECT count(*) FROM readings") == res.readings_sent, timeout=120,
             message="every reading stored")
    wait_for(lambda: sql_one(db_url, "SELECT count(*) FROM dead_letters") == 1, message="the dead letter")
    wait_for(lambda: sql_one(db_url, "SELECT count(*) FROM hazard_candidates") == 1, message="the hazard candidate")
    assert collector.stop() == 0
    return site


def _run(conn: psycopg.Connection, sql: str) -> tuple[list[str], list[int], list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        assert cur.description is not None
        names = [d.name for d in cur.description]
        types = [d.type_code for d in cur.description]
        rows = cur.fetchall()
    conn.rollback()
    return names, types, rows


def check_target(conn: psycopg.Connection, dash: GeneratedDashboard, t: TargetSpec, ctx: QueryContext,
                 need_rows: bool) -> list[str]:
    """Problems with one target in one context (empty if none)."""
    where = f"{dash.uid} {t.where} [{t.ref_id}] over {ctx.time_to - ctx.time_from}"
    sql = expand(t.sql, ctx).sql
    try:
        names, types, rows = _run(conn, sql)
    except psycopg.Error as exc:
        conn.rollback()
        return [f"{where}: {exc}\n{sql}"]
    problems = []
    if t.expect.format == "table":
        if tuple(names) != t.expect.columns:
            problems.append(f"{where}: columns {names}, declared {list(t.expect.columns)}")
        if need_rows and not rows:
            problems.append(f"{where}: no rows")
        return problems
    if not rows and need_rows:
        problems.append(f"{where}: no rows\n{sql}")
    if not names or names[0] != "time" or types[0] != TIMESTAMPTZ:
        problems.append(f"{where}: first column {names[:1]} (type {types[:1]}), want time (timestamptz)")
    for n, ty in zip(names[1:], types[1:], strict=True):
        if n == "metric" and ty in TEXT:
            continue
        if ty not in NUMERIC:
            problems.append(f"{where}: column {n!r} has type oid {ty}, not numeric")
    times = [r[0] for r in rows]
    if times != sorted(times):
        problems.append(f"{where}: rows not sorted by time")
    values = [v for r in rows for n, v in zip(names, r, strict=True) if n not in ("time", "metric")]
    if rows and not any(v is not None and math.isfinite(float(v)) for v in values):
        problems.append(f"{where}: no numeric value in {len(rows)} rows")
    return problems


def _point_id(conn: psycopg.Connection, gateway: str, tag: str) -> int:
    row = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway, tag)).fetchone()
    conn.rollback()
    assert row is not None
    return int(row[0])


def test_every_dashboard_query_runs_on_real_data(loaded: Site) -> None:
    # whole seconds, rounded up: a row written earlier in this second must fall inside the range
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    ranges = {"1h": timedelta(hours=1), "30d": timedelta(days=30)}
    with psycopg.connect(loaded.db_url) as owner:  # `riskwatch grafana render` reads the registry as riskwatch
        dashboards = generate(owner)
        point = _point_id(owner, "gw-fdy-01", "FT-601")
    with grafana_login(loaded.db_url) as reader_url, psycopg.connect(reader_url) as conn:
        assert {d.uid for d in dashboards} >= {"rw-bureau", POINT_UID, "rw-plant-qsl-p1", "rw-plant-hx-p1",
                                               f"rw-plant-{FOUNDRY}"}
        for d in dashboards:  # what Grafana receives is plain JSON
            json.dumps(d.to_json())
        # the point-detail dashboard shows the leaking furnace's return flow, which has setpoints
        variables: dict[str, str | list[str]] = {"plant": FOUNDRY, "point": str(point)}
        n_checked = 0
        problems: list[str] = []
        for d in dashboards:
            # tables may be empty (no active alarm in a plant without incident); series and variables may not
            for t in d.targets:
                for span in ranges.values():
                    ctx = QueryContext(now - span, now, variables=variables)
                    need = t.expect.format == "time_series" or t.where.startswith("variable")
                    problems += check_target(conn, d, t, ctx, need_rows=need)
                    n_checked += 1
        assert not problems, "\n\n".join(problems)
        assert n_checked == 2 * sum(len(d.targets) for d in dashboards) > 100

        # the generated JSON holds exactly the SQL that was checked, for every panel target
        for d in dashboards:
            sqls = {t.sql for t in d.targets}
            js = d.to_json()
            panel_sql = [t["rawSql"] for p in js["panels"] for t in p.get("targets", [])]
            ann_sql = [a["target"]["rawSql"] for a in js.get("annotations", {}).get("list", [])]
            var_sql = [v["query"] for v in js.get("templating", {}).get("list", [])]
            assert set(panel_sql + ann_sql + var_sql) == sqls
            assert all(t["datasource"]["uid"] == "riskwatch-tsdb" for p in js["panels"] for t in p.get("targets", []))

        # the foundry's control room has the alarms of the leak, the point dashboard its history
        foundry = next(d for d in dashboards if d.uid == f"rw-plant-{FOUNDRY}")
        alarms = next(t for t in foundry.targets if "Active alarms" in t.where)
        _, _, rows = _run(conn, expand(alarms.sql, QueryContext(now - ranges["1h"], now)).sql)
        assert any("mach.cooling" in str(r) or "冷却水" in str(r) for r in rows), rows


def _scanned(conn: psycopg.Connection, sql: str) -> dict[str, int]:
    """Rows each hypertable's chunks actually returned while running this query."""
    chunks: dict[str, str] = dict(
        conn.execute("SELECT chunk_name, hypertable_name FROM timescaledb_information.chunks").fetchall())
    plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0]  # type: ignore[index]
    conn.rollback()
    out: dict[str, int] = {}

    def walk(node: dict[str, Any]) -> None:
        rel = node.get("Relation Name")
        if rel and node.get("Actual Loops", 0) > 0:
            table = chunks.get(rel, rel)
            out[table] = out.get(table, 0) + int(node.get("Actual Rows", 0) * node.get("Actual Loops", 0))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return out


def test_short_ranges_read_raw_long_ranges_read_the_rollup_with_the_same_buckets(loaded: Site) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(loaded.db_url) as conn:
        pid = _point_id(conn, "gw-fdy-01", "FT-602")
        state_pid = _point_id(conn, "gw-fdy-01", "JS-601")
        series = q.point_series(str(pid), state=False)

        short = expand(series, QueryContext(now - timedelta(hours=1), now)).sql
        scanned = _scanned(conn, short)
        assert scanned.get("readings", 0) >= 3000 and scanned.get("readings_1m", 0) == 0, scanned

        long = expand(series, QueryContext(now - timedelta(days=30), now)).sql
        scanned = _scanned(conn, long)
        assert scanned.get("readings_1m", 0) >= 60 and scanned.get("readings", 0) <= 5, scanned

        # The rollup answers like raw data: same buckets, same min/max/last, same mean (to rounding).
        t0 = now - timedelta(hours=3)
        t1 = now + timedelta(minutes=5)
        for point, state in ((pid, False), (state_pid, True)):
            for interval in ("1m", "5m", "30m"):
                rollup = _with_interval(q.point_series(str(point), state), t0, t1, interval)
                cols = ("last(value, time)" if state else "avg(value), min(value), max(value)")
                raw = (f"SELECT time_bucket('{interval}', time) AS time, {cols} FROM readings WHERE point_id = {point}"
                       f" AND time BETWEEN '{t0.isoformat()}' AND '{t1.isoformat()}' GROUP BY 1 ORDER BY 1")
                got = conn.execute(rollup).fetchall()
                want = conn.execute(raw).fetchall()
                conn.rollback()
                assert len(got) == len(want) > 0
                for g, w in zip(got, want, strict=True):
                    assert g[0] == w[0]
                    assert g[1] == pytest.approx(w[1], rel=1e-12)
                    assert g[2:] == w[2:]


def _with_interval(sql: str, t0: datetime, t1: datetime, interval: str) -> str:
    """Expand with a chosen $__interval (a panel of the matching width)."""
    ms = {"1m": 60_000, "5m": 300_000, "30m": 1_800_000}[interval]
    points = int((t1 - t0) / timedelta(milliseconds=1) / ms)
    ctx = QueryContext(t0, t1, max_data_points=points)
    assert ctx.interval_ms == ms, (ctx.interval_ms, ms)
    return expand(sql, ctx).sql


def test_rollup_maintained_by_the_collector_matches_raw(loaded: Site) -> None:
    with psycopg.connect(loaded.db_url) as conn:
        rollup = conn.execute("SELECT bucket, point_id, min, max, sum, count, last_time, last FROM readings_1m"
                              " ORDER BY point_id, bucket").fetchall()
        raw = conn.execute("SELECT time_bucket('1 minute', time), point_id, min(value), max(value), sum(value),"
                           " count(*), max(time), last(value, time) FROM readings GROUP BY 1, 2 ORDER BY 2, 1"
                           ).fetchall()
    assert len(rollup) == len(raw) > 3000
    for a, b in zip(rollup, raw, strict=True):
        assert a[:4] == b[:4] and a[5:] == b[5:]
        assert a[4] == pytest.approx(b[4], rel=1e-12)  # sums of decimals: the order of additions differs
