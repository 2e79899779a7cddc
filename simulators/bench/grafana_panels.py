"""Benchmark figures for Grafana panels: a 30-day panel from the rollup, a 24-hour panel from raw data.

One 1 Hz point with 30 days of history (2.6 M readings) is written the way the
collector writes (binary COPY + the 1-minute rollup, batch by batch), then
the point's value query — the exact SQL of the generated dashboards, expanded
as Grafana expands it — is timed:

- ``grafana_30d_rollup_ms``: 30 days on a 1,000 px panel ($__interval 30m):
  answered from readings_1m (43,200 minute rows);
- ``grafana_24h_raw_ms``: 24 hours on a 2,000 px panel ($__interval 30s):
  sub-minute buckets, answered from raw readings (86,400 rows);
- ``grafana_24h_rollup_ms``: 24 hours on a 1,000 px panel ($__interval 1m):
  answered from readings_1m — what most 24 h panels actually cost.

Medians of repeated runs, each its own round trip as Grafana would make it.
Figures, not pass/fail; targets are 50 ms and 100 ms. The data goes into a
scratch database created next to ``db_url``'s and dropped afterwards.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from api.grafana import queries
from core.db import migrate
from ingest.batch import Readings
from ingest.rollup import rollup
from ingest.writer import write_readings
from simulators.fakes.grafana_sql import QueryContext, expand

POINT_ID = 1
DAYS = 30
BATCH = 200_000


def _scratch(db_url: str) -> tuple[str, str]:
    base, _, _ = db_url.rpartition("/")
    name = f"rw_bench_grafana_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{base}/{name}"


def load(url: str, end: datetime, days: int = DAYS) -> tuple[int, float]:
    """Write ``days`` of 1 Hz readings of one point ending at ``end``; return (rows, seconds)."""
    n = days * 86_400
    t_end_us = int(end.timestamp()) * 1_000_000
    start_us = t_end_us - n * 1_000_000
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        for i0 in range(0, n, BATCH):
            k = np.arange(i0, min(n, i0 + BATCH), dtype=np.int64)
            t = start_us + k * 1_000_000
            v = 60 + 5 * np.sin(k * 2 * np.pi / 86_400) + rng.normal(0, 0.3, len(k))
            r = Readings(np.full(len(k), POINT_ID, np.int32), t, np.round(v, 2), np.zeros(len(k), np.int16))
            with conn.transaction():
                rollup(conn, write_readings(conn, r))
    elapsed = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE readings")  # what autovacuum would have done by now
        conn.execute("VACUUM ANALYZE readings_1m")
    return n, elapsed


def _median_ms(conn: psycopg.Connection, sql: str, repeat: int) -> tuple[float, int]:
    conn.execute(sql).fetchall()  # warm the cache and the catalog
    times = []
    rows = 0
    for _ in range(repeat):
        t = time.perf_counter()
        rows = len(conn.execute(sql).fetchall())
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), rows


def _source(conn: psycopg.Connection, sql: str) -> str:
    """Which table answered (the other branch must not have run)."""
    plan: Any = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0]  # type: ignore[index]
    rows: dict[str, float] = {"readings": 0.0, "readings_1m": 0.0}
    chunks: dict[str, str] = dict(
        conn.execute("SELECT chunk_name, hypertable_name FROM timescaledb_information.chunks").fetchall())

    def walk(node: dict[str, Any]) -> None:
        rel = chunks.get(node.get("Relation Name", ""), node.get("Relation Name"))
        if rel in rows and node.get("Actual Loops", 0):
            rows[rel] += node.get("Actual Rows", 0) * node["Actual Loops"]
        for c in node.get("Plans", []):
            walk(c)

    walk(plan[0]["Plan"])
    return max(rows, key=lambda k: rows[k])


def run(db_url: str, quick: bool) -> dict[str, float]:
    """Load the history into a scratch database, time the panels, drop the database."""
    repeat = 7 if quick else 30
    name, url = _scratch(db_url)
    try:
        migrate(url)
        end = datetime.now(UTC).replace(microsecond=0)
        n, load_s = load(url, end)
        series = queries.point_series(str(POINT_ID), state=False)
        cases = {
            "grafana_30d_rollup_ms": (timedelta(days=30), 1000, "readings_1m"),
            "grafana_24h_raw_ms": (timedelta(hours=24), 2000, "readings"),
            "grafana_24h_rollup_ms": (timedelta(hours=24), 1000, "readings_1m"),
        }
        out: dict[str, float] = {"grafana_readings": float(n), "grafana_load_s": load_s,
                                 "grafana_load_readings_per_s": n / load_s}
        with psycopg.connect(url, autocommit=True) as conn:
            count = conn.execute("SELECT count(*) FROM readings_1m").fetchone()
            out["grafana_rollup_rows"] = float(count[0]) if count else 0.0
            for key, (span, width, want) in cases.items():
                ctx = QueryContext(end - span, end, max_data_points=width)
                sql = expand(series, ctx).sql
                got = _source(conn, sql)
                if got != want:
                    raise AssertionError(f"{key}: answered from {got}, expected {want}")
                out[key], rows = _median_ms(conn, sql, repeat)
                out[key.removesuffix("_ms") + "_rows"] = float(rows)
        return out
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1], "--quick" in sys.argv), indent=2))
