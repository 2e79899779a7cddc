"""Retention with drop_chunks: old raw chunks go, the 1-minute rollup stays (and keeps answering dashboards)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from api.cli.grafana import register
from api.grafana import queries as q
from core.errors import ConfigError
from core.retention import RetentionPolicy, run_retention
from ingest.batch import Batch
from ingest.store import store_batch
from simulators.fakes.grafana_sql import QueryContext, expand

pytestmark = pytest.mark.integration

DAY_US = 86_400_000_000
AGES_DAYS = (90, 45, 35, 10, 0)


def load_history(url: str, now_us: int) -> None:
    """Ten minutes of one reading per second for points 1 and 2, at each age (directly: the
    collector's decoder refuses readings more than 7 days old)."""
    b = Batch()
    for age in AGES_DAYS:
        t0 = now_us - age * DAY_US - 3_600_000_000
        for s in range(600):
            for pid in (1, 2):
                b.point_ids.append(pid)
                b.times_us.append(t0 + s * 1_000_000)
                b.values.append(float(s % 17))
                b.qualities.append(0)
    with psycopg.connect(url) as conn, conn.transaction():
        store_batch(conn, b)


def chunk_ends(url: str, table: str) -> list[datetime]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT range_end FROM timescaledb_information.chunks WHERE hypertable_name = %s ORDER BY 1", (table,))]


def rollup_ages(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT DISTINCT round(extract(epoch FROM now() - bucket) / 86400)::int"
                            " FROM readings_1m").fetchall()
    return {int(r[0]) for r in rows}


def test_old_raw_chunks_dropped_rollups_kept(db_url: str) -> None:
    now = datetime.now(UTC)
    load_history(db_url, int(now.timestamp() * 1e6))
    assert len(chunk_ends(db_url, "readings")) >= len(AGES_DAYS)
    assert rollup_ages(db_url) == set(AGES_DAYS)
    policy = RetentionPolicy(raw_days=30, rollup_days=60)

    with psycopg.connect(db_url) as conn:
        dry = run_retention(conn, policy, now=now, dry_run=True)
    assert len(dry.raw_chunks) == 3 and len(dry.rollup_chunks) == 1  # 90, 45, 35 days; the rollup at 90
    assert len(chunk_ends(db_url, "readings")) >= len(AGES_DAYS)  # a dry run drops nothing

    with psycopg.connect(db_url) as conn:
        res = run_retention(conn, policy, now=now)
    assert sorted(res.raw_chunks) == sorted(dry.raw_chunks) and res.rollup_chunks == dry.rollup_chunks
    assert all(end > now - timedelta(days=30) for end in chunk_ends(db_url, "readings"))
    with psycopg.connect(db_url) as conn:
        ages = conn.execute("SELECT DISTINCT round(extract(epoch FROM now() - time) / 86400)::int FROM readings"
                            ).fetchall()
    assert {a[0] for a in ages} == {10, 0}
    # the rollup keeps what raw data lost, and lost only what is past its own age
    assert rollup_ages(db_url) == {45, 35, 10, 0}
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT sum(count) FROM readings_1m WHERE bucket < now() - interval '30 days'"
                            ).fetchone() == (2 * 600 * 2,)

    # a dashboard looking at an hour 45 days ago now reads the rollup (raw data is gone)
    t0 = now - timedelta(days=45, hours=1, minutes=5)
    sql = expand(q.point_series("1", state=False), QueryContext(t0, t0 + timedelta(hours=1))).sql
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(sql).fetchall()
    assert len(rows) in (10, 11)  # ten minutes of data, not minute-aligned: one row per minute touched
    assert all(r[2] == 0.0 and r[3] == 16.0 for r in rows[1:-1])

    # running again finds nothing more to drop
    with psycopg.connect(db_url) as conn:
        again = run_retention(conn, policy, now=now)
    assert again.raw_chunks == [] and again.rollup_chunks == []


def test_cli_retention_run(db_url: str) -> None:
    load_history(db_url, int(time.time() * 1e6))
    app = typer.Typer()

    @app.callback()
    def _main(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(db_url=db_url)

    register(app)
    runner = CliRunner()
    out = runner.invoke(app, ["retention", "run", "--raw-days", "30", "--rollup-days", "60", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "would drop 3 raw chunks" in out.output
    out = runner.invoke(app, ["retention", "run", "--raw-days", "30", "--rollup-days", "60"])
    assert out.exit_code == 0, out.output
    assert "dropped 3 raw chunks" in out.output and "1 rollup chunks" in out.output
    bad = runner.invoke(app, ["retention", "run", "--raw-days", "30", "--rollup-days", "7"])
    assert bad.exit_code != 0 and isinstance(bad.exception, ConfigError)


def test_policy_refuses_rollups_shorter_than_raw() -> None:
    with pytest.raises(ConfigError):
        RetentionPolicy(raw_days=30, rollup_days=10)
    with pytest.raises(ConfigError):
        RetentionPolicy(raw_days=0)
