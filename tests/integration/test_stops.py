"""Production-stop filing end to end on a fake clock: filed, approved, rejected through the HTTP API (audited),
and the real rule engine's tick honouring only an approved stop, only for its plant and only for its period."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from core.db import migrations
from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.integration.test_disposal import Env, make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db_url: str, tmp_path: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> Iterator[Env]:
    yield from make_env(db_url, tmp_path, smtp_sink, http_receiver)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def _file(env: Env, role: str, plant: str, starts: float, ends: float, **extra: object) -> tuple[int, dict]:
    return env.post("/api/v1/stops", role, {"plant_id": plant, "reason": "停窑检修 kiln overhaul",
                                             "starts_at": _iso(starts), "ends_at": _iso(ends), **extra})


def _candidates(env: Env, plant: str) -> list[float]:
    return [float(r[0]) for r in env.rows(  # type: ignore[arg-type]
        "SELECT extract(epoch FROM detected_at) FROM hazard_candidates WHERE plant_id = %s ORDER BY 1", plant)]


def test_an_approved_stop_suppresses_the_silence_candidates_of_its_plant_only_for_its_period(env: Env) -> None:
    now = env.clock.now()
    code, stop = _file(env, "ent_a", "plant-a", now, now + 30 * 60)
    assert code == 201 and stop["status"] == "filed", stop
    code, body = env.post(f"/api/v1/stops/{stop['id']}/approve", "bureau", {"comment": "同意，注意复产前报告"})
    assert code == 200 and body["status"] == "approved", body
    assert [(e["action"], e["actor"].split("（")[0], e["comment"]) for e in body["events"]] == [
        ("file", "ent_a 测试", "停窑检修 kiln overhaul"), ("approve", "bureau 测试", "同意，注意复产前报告")]

    env.engine.tick(env.conn)
    env.step(10 * 60)  # well past the 60 s grace: every required point "never reported"
    assert len(_candidates(env, "plant-b")) == 1  # the other enterprise's plant: raised as ever
    assert _candidates(env, "plant-a") == []  # the stopped plant: silent by design, nothing raised
    assert env.rows("SELECT count(*) FROM alarm_events WHERE plant_id = 'plant-a'") == [(0,)]

    env.step(25 * 60)  # the stop ended at +30 min: still silent, so now it is raised
    raised = _candidates(env, "plant-a")
    assert len(raised) == 2  # TT-101 and CO-101
    assert all(now + 30 * 60 <= t < now + 30 * 60 + 31 for t in raised), [t - now for t in raised]
    anns = env.rows("SELECT annunciate FROM alarm_events WHERE plant_id = 'plant-a' AND event = 'activate'")
    assert anns == [(True,), (True,)]


@pytest.mark.parametrize("outcome", ["rejected", "filed", "expired", "withdrawn"])
def test_a_rejected_undecided_expired_or_withdrawn_stop_suppresses_nothing(env: Env, outcome: str) -> None:
    now = env.clock.now()
    ends = now + (30 if outcome == "expired" else 3600)
    code, stop = _file(env, "ent_a", "plant-a", now, ends)
    assert code == 201
    if outcome == "rejected":
        code, body = env.post(f"/api/v1/stops/{stop['id']}/reject", "bureau", {"comment": "未附检修方案"})
        assert code == 200 and body["status"] == "rejected" and body["decision_comment"] == "未附检修方案"
    elif outcome == "expired":
        assert env.post(f"/api/v1/stops/{stop['id']}/approve", "bureau", {})[0] == 200
    elif outcome == "withdrawn":
        assert env.post(f"/api/v1/stops/{stop['id']}/approve", "bureau", {})[0] == 200
        code, body = env.post(f"/api/v1/stops/{stop['id']}/withdraw", "ent_a", {})
        assert code == 200 and body["status"] == "withdrawn", body
    env.engine.tick(env.conn)
    env.step(3 * 60)
    assert len(_candidates(env, "plant-a")) == 2, outcome


def test_an_enterprise_cannot_file_for_another_enterprises_plant_nor_decide_any_filing(env: Env) -> None:
    now = env.clock.now()
    code, body = _file(env, "ent_a", "plant-b", now, now + 3600)
    assert code == 404, body  # another enterprise's plant: as if it did not exist
    code, body = _file(env, "ent_a", "plant-a", now, now + 3600, device_code="no-such-device")
    assert code == 404, body
    code, body = _file(env, "ent_a", "plant-a", now - 86400, now - 3600)
    assert code == 422, body  # a period already over cannot excuse a past silence
    code, body = _file(env, "ent_a", "plant-a", now, now + 91 * 86400)
    assert code == 422, body
    code, body = _file(env, "ent_a", "plant-a", now + 3600, now)
    assert code == 422, body

    code, mine = _file(env, "ent_a", "plant-a", now, now + 3600, device_code="coal-bf", kind="maintenance")
    assert code == 201 and mine["device_id"] is not None
    sid = mine["id"]
    assert env.post(f"/api/v1/stops/{sid}/approve", "ent_a", {})[0] == 403  # not its own either
    assert env.post(f"/api/v1/stops/{sid}/approve", "ent_b", {})[0] == 404
    assert env.post(f"/api/v1/stops/{sid}/withdraw", "ent_b", {})[0] == 404
    assert env.client.get(f"/api/v1/stops/{sid}",
                          headers={"Authorization": f"Bearer {env.tokens['ent_b']}"}).status_code == 404
    assert env.post(f"/api/v1/stops/{sid}/reject", "bureau", {"comment": ""})[0] == 422  # a reason is required
    assert env.rows("SELECT status, decided_by FROM production_stops WHERE id = %s", sid) == [("filed", None)]
    assert env.post(f"/api/v1/stops/{sid}/approve", "bureau", {})[0] == 200
    assert env.post(f"/api/v1/stops/{sid}/reject", "bureau", {"comment": "改判"})[0] == 409  # decided once
    listed = env.get("/api/v1/stops", "ent_b")
    assert listed["items"] == [] and listed["total"] == 0  # type: ignore[index]
    assert [s["id"] for s in env.get("/api/v1/stops", "bureau")["items"]] == [sid]  # type: ignore[index]
    # the audit trail is append-only
    with pytest.raises(psycopg.errors.RaiseException):
        env.rows("UPDATE production_stop_events SET actor = 'someone else'")
    env.conn.rollback()


def test_a_device_stop_covers_that_device_only(env: Env) -> None:
    now = env.clock.now()
    code, stop = _file(env, "ent_a", "plant-a", now, now + 3600, device_code="coal-bf")
    assert env.post(f"/api/v1/stops/{stop['id']}/approve", "bureau", {})[0] == 200
    env.engine.tick(env.conn)
    env.step(3 * 60)
    # both required points of plant-a are on coal-bf: covered; plant-b's is not
    assert _candidates(env, "plant-a") == [] and len(_candidates(env, "plant-b")) == 1


def test_existing_maintenance_windows_become_approved_stops_with_their_audit_trail(pg: object, db_url: str) -> None:
    """Migration 0016 on a database that has CLI maintenance windows (applied by hand up to 0015)."""
    admin = db_url.rsplit("/", 1)[0] + "/postgres"
    name = db_url.rsplit("/", 1)[1] + "_up"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = db_url.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for m in migrations():
                if m.version < 16:
                    conn.execute(m.sql)
            conn.execute("INSERT INTO enterprises (id, name) VALUES ('e1', '甲')")
            conn.execute("INSERT INTO plants (id, enterprise_id, name, industry) VALUES ('p1', 'e1', '一厂', 'cement')")
            conn.execute("INSERT INTO maintenance_windows (plant_id, starts_at, ends_at, reason, created_by)"
                         " VALUES ('p1', now(), now() + interval '1 h', '换袋检修', 'operator')")
            conn.execute(next(m.sql for m in migrations() if m.version == 16))
            assert conn.execute("SELECT plant_id, enterprise_id, status, filed_by, decided_by, reason"
                                " FROM production_stops").fetchall() == [
                ("p1", "e1", "approved", "operator", "operator", "换袋检修")]
            assert [r[0] for r in conn.execute("SELECT action FROM production_stop_events ORDER BY id")] == [
                "file", "approve"]
    finally:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
