"""Quarantined readings on real TimescaleDB: written in the batch's transaction, never doubled, moved into
`readings` exactly once by `map_tag` (with the rollup exact), the collector's stale-snapshot race, the cap."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core import registry
from core.retention import RetentionPolicy, run_retention
from core.retention_operational import OperationalRetention
from ingest.batch import Batch
from ingest.quarantine import MapError, MapResult, PointSpec, map_tag, sweep
from ingest.store import store_batch
from tests.conftest import FIXTURES
from tests.integration.test_rollup import assert_rollup_exact

pytestmark = pytest.mark.integration

S_US = 1_000_000


@pytest.fixture
def site_db(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(FIXTURES / "mini_site.yaml"))
    return db_url


def unmapped_batch(gw: str, tag: str, t0_us: int, n: int, mapped: tuple[int, int] | None = None) -> Batch:
    """n readings, 1 s apart, of an unmapped tag (as the collector builds them), plus optional mapped ones."""
    b = Batch(messages=1)
    for i in range(n):
        b.add_unmapped(gw, tag, t0_us + i * S_US, float(i) / 4, 0 if i % 3 else 1)
    if mapped is not None:
        pid, k = mapped
        b.point_ids += [pid] * k
        b.times_us += [t0_us + i * S_US for i in range(k)]
        b.values += [1.0] * k
        b.qualities += [0] * k
    return b


def store(url: str, b: Batch) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        store_batch(conn, b)


def count(url: str, q: str, params: tuple[object, ...] = ()) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(q, params).fetchone()  # type: ignore[arg-type]
    return int(row[0]) if row else 0


def device_of(url: str, code: str) -> int:
    return count(url, "SELECT id FROM devices WHERE code = %s", (code,))


def t0() -> int:
    return (int(time.time()) - 3600) * S_US


def test_quarantine_written_in_the_batch_transaction_and_never_doubled(site_db: str) -> None:
    start = t0()
    with psycopg.connect(site_db) as conn:
        with pytest.raises(RuntimeError), conn.transaction():
            store_batch(conn, unmapped_batch("gw-a1", "XT-1", start, 10))
            raise RuntimeError("the batch's transaction fails after the store")
    assert count(site_db, "SELECT count(*) FROM quarantined_readings") == 0  # nothing outlives a rollback
    assert count(site_db, "SELECT count(*) FROM unmapped_points") == 0

    store(site_db, unmapped_batch("gw-a1", "XT-1", start, 10, mapped=(1, 3)))
    store(site_db, unmapped_batch("gw-a1", "XT-1", start, 10))  # a QoS1 redelivery of the same message
    store(site_db, unmapped_batch("gw-a1", "XT-1", start + 5 * S_US, 10))  # overlapping: 5 new
    assert count(site_db, "SELECT count(*) FROM quarantined_readings") == 15
    assert count(site_db, "SELECT count(DISTINCT ts) FROM quarantined_readings WHERE tag = 'XT-1'") == 15
    assert count(site_db, "SELECT count(*) FROM readings") == 3  # the mapped readings of the batch as ever
    with psycopg.connect(site_db) as conn:
        q = conn.execute("SELECT value, quality FROM quarantined_readings WHERE ts = %s",
                         (datetime.fromtimestamp((start + 3 * S_US) / 1e6, UTC),)).fetchone()
    assert q == (0.75, 1)  # value and quality as sent, to the microsecond


def test_map_moves_every_quarantined_reading_exactly_once(site_db: str) -> None:
    start = t0()
    # 200 readings over ~3 minutes plus one already in readings (a duplicate must not double the rollup)
    store(site_db, unmapped_batch("gw-a1", "XT-2", start, 200))
    store(site_db, unmapped_batch("gw-a2", "XT-2", start, 7))  # same tag on another gateway: stays
    audits: list[int] = []
    with psycopg.connect(site_db) as conn:
        res = map_tag(conn, "gw-a1", "XT-2", PointSpec(device_of(site_db, "coal-bf"), "temperature", "degC",
                                                       setpoints={"bm.coal.temp.hi": 70.0}),
                      scope="ent-a", audit=lambda _c, r: audits.append(r.backfilled))
        conn.commit()
    assert res.backfilled == 200 and res.duplicates == 0 and audits == [200]
    assert count(site_db, "SELECT count(*) FROM readings WHERE point_id = %s", (res.point_id,)) == 200
    assert count(site_db, "SELECT count(*) FROM quarantined_readings WHERE gateway_id = 'gw-a1'") == 0
    assert count(site_db, "SELECT count(*) FROM quarantined_readings WHERE gateway_id = 'gw-a2'") == 7
    assert count(site_db, "SELECT count(*) FROM unmapped_points WHERE gateway_id = 'gw-a1'") == 0
    assert count(site_db, "SELECT sum(count) FROM readings_1m WHERE point_id = %s", (res.point_id,)) == 200
    assert_rollup_exact(site_db)
    # the same map again: the tag is no longer unmapped
    with psycopg.connect(site_db) as conn, pytest.raises(MapError) as again:
        map_tag(conn, "gw-a1", "XT-2", PointSpec(device_of(site_db, "coal-bf"), "temperature"), scope=None)
    assert again.value.status == 404
    # a later redelivery of the quarantined message goes to readings through the map, never doubles
    store(site_db, unmapped_batch("gw-a1", "XT-2", start, 200))
    assert count(site_db, "SELECT count(*) FROM readings WHERE point_id = %s", (res.point_id,)) == 200
    assert count(site_db, "SELECT count(*) FROM quarantined_readings WHERE gateway_id = 'gw-a1'") == 0
    assert_rollup_exact(site_db)


def test_map_refuses_other_enterprises_and_foreign_devices(site_db: str) -> None:
    store(site_db, unmapped_batch("gw-a1", "XT-3", t0(), 5))
    spec = PointSpec(device_of(site_db, "coal-bf"), "temperature")
    with psycopg.connect(site_db) as conn:
        for gw, tag, sp, scope, status in [
            ("gw-a1", "XT-3", spec, "ent-b", 404),                          # another enterprise's gateway
            ("gw-zz", "XT-3", spec, None, 404),                             # a forged gateway
            ("gw-a1", "NOPE", spec, None, 404),                             # a tag never seen
            ("gw-a1", "XT-3", PointSpec(device_of(site_db, "furnace"), "temperature"), None, 422),  # plant-b
            ("gw-a1", "XT-3", PointSpec(999_999, "temperature"), None, 422),
            ("gw-a1", "XT-3", PointSpec(spec.device_id, "Temperature; DROP"), None, 422),
            ("gw-a1", "XT-3", PointSpec(spec.device_id, "co", setpoints={"x": float("inf")}), None, 422),
            ("gw-a1", "TT-101", spec, None, 404),                           # mapped already (not unmapped)
        ]:
            with pytest.raises(MapError) as exc:
                map_tag(conn, gw, tag, sp, scope)
            assert exc.value.status == status, (gw, tag, sp, scope)
    assert count(site_db, "SELECT count(*) FROM quarantined_readings") == 5  # nothing lost
    assert count(site_db, "SELECT count(*) FROM points WHERE tag = 'XT-3'") == 0


def test_stale_collector_snapshot_still_lands_in_readings(site_db: str) -> None:
    """The collector decoded with a registry snapshot from before the map: its batch says 'unmapped' for a
    tag that is mapped by the time the batch is stored. The rows must end in readings, not quarantine."""
    start = t0()
    store(site_db, unmapped_batch("gw-a1", "XT-4", start, 10))
    with psycopg.connect(site_db) as conn:
        res = map_tag(conn, "gw-a1", "XT-4", PointSpec(device_of(site_db, "coal-bf"), "co", "ppm"), None)
        conn.commit()
    assert res.backfilled == 10
    store(site_db, unmapped_batch("gw-a1", "XT-4", start + 10 * S_US, 10))  # built from the stale snapshot
    assert count(site_db, "SELECT count(*) FROM readings WHERE point_id = %s", (res.point_id,)) == 20
    assert count(site_db, "SELECT count(*) FROM quarantined_readings") == 0
    assert count(site_db, "SELECT count(*) FROM unmapped_points") == 0
    assert_rollup_exact(site_db)


def test_map_concurrent_with_an_open_collector_transaction(site_db: str) -> None:
    """The collector's transaction is open (its quarantine rows written, not committed) when the map starts:
    the map waits for it and moves its rows too; none is left behind, none doubled."""
    start = t0()
    store(site_db, unmapped_batch("gw-a1", "XT-5", start, 10))
    dev = device_of(site_db, "coal-bf")
    out: dict[str, object] = {}
    with psycopg.connect(site_db) as col:
        tx = col.transaction()
        tx.__enter__()
        store_batch(col, unmapped_batch("gw-a1", "XT-5", start + 10 * S_US, 10))

        def mapper() -> None:
            with psycopg.connect(site_db) as conn:
                out["res"] = map_tag(conn, "gw-a1", "XT-5", PointSpec(dev, "co"), None)
                conn.commit()

        th = threading.Thread(target=mapper)
        th.start()
        time.sleep(0.5)
        assert th.is_alive(), "the map must wait for the collector's open transaction"
        tx.__exit__(None, None, None)
        th.join(10)
    res = out["res"]
    assert isinstance(res, MapResult) and res.backfilled == 20
    assert count(site_db, "SELECT count(*) FROM readings") == 20
    assert count(site_db, "SELECT count(*) FROM quarantined_readings") == 0
    assert_rollup_exact(site_db)


def test_sweep_moves_rows_of_tags_mapped_behind_its_back(site_db: str) -> None:
    """A point created some other way (the API's points POST, a site file) for a quarantined tag."""
    store(site_db, unmapped_batch("gw-a1", "XT-6", t0(), 12))
    with psycopg.connect(site_db) as conn:
        conn.execute("INSERT INTO points (device_id, gateway_id, tag, quantity, kind)"
                     " VALUES (%s, 'gw-a1', 'XT-6', 'co', 'analog')",
                     (device_of(site_db, "coal-bf"),))
        conn.commit()
        assert sweep(conn) == 12
        assert sweep(conn) == 0
    assert count(site_db, "SELECT count(*) FROM readings") == 12
    assert count(site_db, "SELECT count(*) FROM quarantined_readings") == 0
    assert count(site_db, "SELECT count(*) FROM unmapped_points") == 0
    assert_rollup_exact(site_db)


def test_retention_caps_quarantine_per_tag_and_by_age(site_db: str) -> None:
    now = datetime.now(UTC)
    start = t0()
    store(site_db, unmapped_batch("gw-a1", "XT-7", start, 30))
    store(site_db, unmapped_batch("gw-a2", "XT-8", start, 5))
    with psycopg.connect(site_db) as conn:
        conn.execute("UPDATE quarantined_readings SET received_at = %s WHERE tag = 'XT-8'", (now - timedelta(days=31),))
        conn.commit()
        policy = RetentionPolicy(operational=OperationalRetention(quarantine_rows=20))
        dry = run_retention(conn, policy, now=now, dry_run=True)
        assert dry.rows["quarantined_readings"] == 15
        res = run_retention(conn, policy, now=now)
        assert res.rows["quarantined_readings"] == 15
        kept = conn.execute("SELECT min(ts), count(*) FROM quarantined_readings WHERE tag = 'XT-7'").fetchone()
    assert kept is not None and kept[1] == 20
    assert kept[0] == datetime.fromtimestamp((start + 10 * S_US) / 1e6, UTC)  # the newest 20 stay
    assert count(site_db, "SELECT count(*) FROM quarantined_readings WHERE tag = 'XT-8'") == 0
