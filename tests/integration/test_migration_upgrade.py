"""A database made by an earlier riskwatch migrates to head with its data (issue 16).

The earlier schema is the one of commit 11e27e1 (before the issue-16 work): migrations 0001..0009. They are
applied from the files in core/migrations, after checking that those files are byte for byte the ones that
commit shipped (an applied migration must never change: a database made with the old file would never see the
edit). Then the database is filled the way that version wrote it (plain SQL against that schema: today's code may
write columns the old schema lacks), migrated to head with the project's `migrate`, and read back both with SQL
and through today's code.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from core import registry
from core.db import migrate, migrations
from core.services import LocalPostgres, mosquitto_hash
from hazards import ledger, workflow
from hazards.model import Actor

pytestmark = pytest.mark.integration

# sha256 of core/migrations/000N_*.sql at commit 11e27e1 (`git show 11e27e1:core/migrations/... | sha256sum`)
SHIPPED_11E27E1 = {
    1: "d08491ee0c7174888ebe492e0d953e60c45db6659982ebb9f10f0459b3cdfac6",
    2: "10abb55803891b38ade98756ba626caaba5500db8c84866fe956c5ad73f84024",
    3: "d64d8d0ebed76848c74169900212b98f10301f902f61e7694a6c770bcebebf6c",
    4: "eea1ea6f361c6970207be33eac32b5fb232722c1edeb490a76014881392dd7f8",
    5: "fa2f5c73be63e2a2c545c9215580c72f3d59c5cabb04770f14e2318bb97443d4",
    6: "04cdd2577f8561893c8cb68c32b9d7ee42aa9e66467c9c6e8c3514e2e9ec133e",
    7: "8c0911de22790a2924f00aedeb47da921a0548b745b18efd106efa637f937d07",
    8: "438db7bb9d00d66a9fc5722d90237d46865f598db669f129ee79d39eba345c4c",
    9: "f127b9c49644d2cddee34afb916282a9a579f8777ba01c1f2b2ece344b029cd6",
}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def old_db(pg: LocalPostgres) -> Iterator[str]:
    """An empty database on the session's cluster (no migrations applied)."""
    name = f"up_{uuid.uuid4().hex[:12]}"
    admin = pg.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield pg.url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def apply_up_to(url: str, last: int) -> None:
    """What `migrate` did when 0009 was the newest file: the same bookkeeping table, one transaction each."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ( version integer PRIMARY KEY, name text NOT NULL,"
                     " applied_at timestamptz NOT NULL DEFAULT now())")
        for mig in migrations():
            if mig.version > last:
                break
            with conn.transaction():
                conn.execute(mig.sql)  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (mig.version, mig.name))


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables"
                                           " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")}


def fill(conn: psycopg.Connection) -> dict[str, object]:
    """Representative rows of every stage, as the 0009-era code wrote them."""
    conn.execute("INSERT INTO enterprises (id, name) VALUES ('ent-a', '甲水泥有限公司'), ('ent-b', '乙耐材有限公司')")
    conn.execute("INSERT INTO plants (id, enterprise_id, name, industry) VALUES"
                 " ('plant-a', 'ent-a', '甲一号线', 'cement'), ('plant-b', 'ent-b', '乙厂', 'refractory')")
    h = mosquitto_hash("gw-secret")
    conn.execute("INSERT INTO gateways (id, plant_id, name, enabled, credential_hash) VALUES"
                 " ('gw-a1', 'plant-a', '一号网关', true, %s), ('gw-b1', 'plant-b', NULL, false, NULL)", (h,))
    dev = conn.execute("INSERT INTO devices (plant_id, code, name, kind) VALUES ('plant-a', 'coal-bf', '煤磨袋收尘器',"
                       " 'bag_filter') RETURNING id").fetchone()[0]  # type: ignore[index]
    pt = conn.execute("INSERT INTO points (device_id, gateway_id, tag, quantity, kind, unit) VALUES"
                      " (%s, 'gw-a1', 'CO-101', 'co', 'analog', 'ppm') RETURNING id", (dev,)).fetchone()[0]  # type: ignore[index]
    t0 = NOW - timedelta(days=2)
    with conn.cursor().copy("COPY readings (time, point_id, value, quality) FROM STDIN") as cp:
        for k in range(3 * 24 * 60):  # three days at one per minute: several 1-day chunks
            cp.write_row((t0 + timedelta(minutes=k - 24 * 60), pt, 10.0 + k % 30, 0))
    conn.execute("INSERT INTO readings_1m (bucket, point_id, min, max, sum, count, last_time, last)"
                 " VALUES (%s, %s, 10, 39, 49, 2, %s, 39)", (t0, pt, t0))
    conn.execute("INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity,"
                 " active, state) VALUES ('cement.co:hi', %s, %s, 'gw-a1', 'plant-a', 'v1', 'high', true,"
                 " 'unack')",
                 (f"p:{pt}", pt))
    conn.execute("INSERT INTO alarm_events (time, rule_id, subject, point_id, gateway_id, plant_id, event, from_state,"
                 " to_state, severity, catalog_version, actor, reason, value) VALUES (%s, 'cement.co:hi', %s, %s,"
                 " 'gw-a1', 'plant-a', 'activate', 'normal', 'unack', 'high', 'v1', 'system', 'CO 30 > 24', 30)",
                 (t0, f"p:{pt}", pt))
    cand = conn.execute(
        "INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id, enterprise_id,"
        " basis, title_zh, title_en, catalog_version, evidence) VALUES (%s, 'cement.co:hi', %s, %s, 'gw-a1', 'plant-a',"
        " 'ent-a', 'GB/T 50493-2019 §5.5.2', 'CO浓度高', 'CO high', 'v1', %s) RETURNING id",
        (t0, f"p:{pt}", pt, Jsonb({"readings": [{"value": 30.0}]}))).fetchone()[0]  # type: ignore[index]
    hz = conn.execute(
        "INSERT INTO hazards (enterprise_id, plant_id, device_id, point_id, gateway_id, rule_id, subject, source,"
        " status, title, basis, detected_at, created_at, created_by, updated_at) VALUES ('ent-a', 'plant-a', %s, %s,"
        " 'gw-a1', 'cement.co:hi', %s, 'sensor', 'candidate', 'CO浓度高 CO high', 'GB/T 50493-2019 §5.5.2', %s, %s,"
        " 'system', %s)"
        " RETURNING id", (dev, pt, f"p:{pt}", t0, t0, t0)).fetchone()[0]  # type: ignore[index]
    conn.execute("UPDATE hazard_candidates SET ticket_id = %s WHERE id = %s", (hz, cand))
    conn.execute("INSERT INTO hazard_events (hazard_id, time, action, from_status, to_status, actor, actor_role)"
                 " VALUES (%s, %s, 'open', 'candidate', 'candidate', 'system', 'system')", (hz, t0))
    conn.execute("INSERT INTO outbox (kind, event, event_time, rule_id, subject, plant_id, severity, value, routed_at)"
                 " VALUES ('alarm', 'firing', %s, 'cement.co:hi', %s, 'plant-a', 'high', 30, NULL),"
                 " ('hazard', 'open', %s, 'cement.co:hi', %s, 'plant-a', 'high', NULL, %s)",
                 (t0, f"p:{pt}", t0, f"p:{pt}", t0))
    conn.execute("INSERT INTO dead_letters (gateway_id, topic, reason, payload) VALUES ('gw-a1',"
                 " 'rw/v1/gw-a1/telemetry', 'invalid_json', '\\x7b6e6f74')")
    conn.execute("INSERT INTO api_tokens (name, role, token_hash, prefix, created_by) VALUES ('duty', 'bureau',"
                 " 'sha256:abc', 'rw_abc', 'admin')")
    return {"point": pt, "hazard": hz, "candidate": cand, "hash": h, "readings": 3 * 24 * 60}


def snapshot(conn: psycopg.Connection) -> dict[str, list[tuple[object, ...]]]:
    qs = {
        "enterprises": "SELECT id, name FROM enterprises ORDER BY id",
        "plants": "SELECT id, enterprise_id, name, industry FROM plants ORDER BY id",
        "gateways": "SELECT id, plant_id, name, enabled, credential_hash FROM gateways ORDER BY id",
        "points": "SELECT id, device_id, gateway_id, tag, quantity, kind, unit FROM points ORDER BY id",
        "readings": "SELECT count(*), min(time), max(time), sum(value) FROM readings",
        "readings_1m": "SELECT * FROM readings_1m ORDER BY point_id, bucket",
        "alarms": "SELECT rule_id, subject, state, active, severity FROM alarms ORDER BY 1, 2",
        "alarm_events": "SELECT time, rule_id, subject, event, to_state, reason FROM alarm_events ORDER BY time",
        "hazard_candidates": "SELECT id, rule_id, subject, ticket_id, evidence FROM hazard_candidates ORDER BY id",
        "hazards": "SELECT id, status, source, rule_id, subject, title, detected_at FROM hazards ORDER BY id",
        "hazard_events": "SELECT id, hazard_id, action, to_status FROM hazard_events ORDER BY id",
        "outbox": "SELECT id, kind, event, routed_at FROM outbox ORDER BY id",
        "dead_letters": "SELECT id, reason, payload FROM dead_letters ORDER BY id",
        "api_tokens": "SELECT id, name, role, token_hash FROM api_tokens ORDER BY id",
    }
    return {k: conn.execute(q).fetchall() for k, q in qs.items()}  # type: ignore[arg-type]


def test_applied_migrations_are_the_files_11e27e1_shipped() -> None:
    by_version = {m.version: m for m in migrations()}
    for version, digest in SHIPPED_11E27E1.items():
        got = hashlib.sha256(by_version[version].sql.encode("utf-8")).hexdigest()
        assert got == digest, f"migration {version:04d}_{by_version[version].name}.sql changed after it shipped"


def test_database_from_11e27e1_migrates_to_head_with_its_data(old_db: str) -> None:
    apply_up_to(old_db, 9)
    old_tables = tables(old_db)
    assert "gateway_stored_seq" not in old_tables  # really the old schema
    with psycopg.connect(old_db) as conn:
        ids = fill(conn)
        conn.commit()
        before = snapshot(conn)

    applied = migrate(old_db)
    head = max(m.version for m in migrations())
    assert [m.version for m in applied] == [m.version for m in migrations() if m.version > 9]
    assert applied and applied[-1].version == head
    assert migrate(old_db) == []  # idempotent

    new_tables = tables(old_db) - old_tables
    assert {"point_arrival_log", "point_arrival_snapshot", "gateway_arrivals", "gateway_stored_seq",
            "retained_seen"} <= new_tables
    assert old_tables <= tables(old_db), "an upgrade dropped a table"

    with psycopg.connect(old_db) as conn:
        assert snapshot(conn) == before
        hyper = {r[0] for r in conn.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")}
        assert {"readings", "readings_1m", "alarm_events"} <= hyper
        # today's code works on the old rows: the broker's credentials, the ledger's workflow
        assert registry.broker_credentials(conn) == [("gw-a1", ids["hash"])]
        assert registry.disabled_gateways(conn) == ["gw-b1"]
        rec, event = ledger.act(conn, int(ids["hazard"]), workflow.Confirm("升级后确认 confirmed after upgrade"),  # type: ignore[call-overload]
                                Actor("duty", "bureau"), time.time())
        assert rec.status == "confirmed" and event.to_status == "confirmed"
        conn.commit()
        # the ledger's history is still append-only after the upgrade
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM hazard_events")
        conn.rollback()
        # and new readings still land in the old hypertable next to the old ones
        conn.execute("INSERT INTO readings (time, point_id, value, quality) VALUES (%s, %s, 1.5, 0)",
                     (NOW, ids["point"]))
        conn.commit()
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (int(ids["readings"]) + 1,)  # type: ignore[call-overload]
