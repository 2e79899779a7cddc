"""The ledger against real PostgreSQL+TimescaleDB: intake of rule candidates (one open ticket per point and
rule), append-only history, the overdue tick on a fake clock, the candidate sweep."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.http.metrics import Metrics
from api.run.serve import HazardTicker
from core.clock import FakeClock
from hazards import intake, ledger, store
from hazards import workflow as wf
from hazards.model import Actor, Level, Plan
from tests.fix_api import T0, load_site

pytestmark = pytest.mark.integration

BUREAU = Actor("值班员", "bureau")
ENT_A = Actor("甲企业", "enterprise", "ent-a")
RULE = "mach.cooling.interlock"


@pytest.fixture
def conn(db_url: str) -> Any:
    load_site(db_url)
    with psycopg.connect(db_url) as c:
        yield c


def point(conn: psycopg.Connection, tag: str) -> int:
    row = conn.execute("SELECT id FROM points WHERE tag = %s", (tag,)).fetchone()
    assert row is not None
    return int(row[0])


def candidate(conn: psycopg.Connection, point_id: int, at: float, rule: str = RULE,
              enterprise: str = "ent-a", plant: str = "plant-a") -> int:
    readings = [{"tag": "TT-101", "time": datetime.fromtimestamp(at - i, UTC).isoformat(), "value": 70.0 + i,
                 "quality": 0} for i in range(5)]
    row = conn.execute(
        """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id, enterprise_id,
               basis, title_zh, title_en, catalog_version, reason, evidence)
           VALUES (to_timestamp(%s), %s, %s, %s, 'gw-a1', %s, %s, '判定标准第七条第（四）项', '冷却水联锁未动作',
                   'cooling interlock did not act', 'machinery@3', 'diff 6.1 >= 3 while powered', %s) RETURNING id""",
        (at, rule, f"p:{point_id}", point_id, plant, enterprise, Jsonb({"readings": readings}))).fetchone()
    assert row is not None
    return int(row[0])


def test_candidate_opens_a_ticket_and_repeats_attach_evidence(conn: psycopg.Connection) -> None:
    p1, p2 = point(conn, "TT-101"), point(conn, "CO-101")
    with conn.transaction():
        c1 = candidate(conn, p1, T0)
        t1 = intake.open_or_attach(conn, c1)
    assert t1 is not None
    rec = store.get(conn, t1, None)
    assert rec is not None
    assert (rec.status, rec.source, rec.rule_id, rec.subject, rec.enterprise_id, rec.plant_id, rec.point_id) == (
        "candidate", "sensor", RULE, f"p:{p1}", "ent-a", "plant-a", p1)
    assert rec.title == "冷却水联锁未动作 cooling interlock did not act" and rec.basis.startswith("判定标准")
    assert rec.location and "TT-101" in rec.location and rec.occurrences == 1 and rec.evidence_count == 2
    ev = store.evidence(conn, t1)
    assert [e.kind for e in ev] == ["alarm", "readings"] and len(ev[1].readings or []) == 5
    assert ev[0].alarm_rule_id == RULE and ev[0].candidate_id == c1

    # the same point and rule while the ticket is open: evidence, not a new ticket
    for i in (1, 2):
        with conn.transaction():
            assert intake.open_or_attach(conn, candidate(conn, p1, T0 + 600 * i)) == t1
    rec = store.get(conn, t1, None)
    assert rec is not None and rec.occurrences == 3 and rec.evidence_count == 6
    actions = [(e.action, e.actor_role) for e in store.events(conn, t1)]
    assert actions == [("create", "system"), ("add_evidence", "system"), ("add_evidence", "system")]
    assert conn.execute("SELECT count(*) FROM hazards").fetchone() == (1,)
    # taking up the same candidate again changes nothing
    with conn.transaction():
        assert intake.open_or_attach(conn, c1) == t1
    assert store.get(conn, t1, None).evidence_count == 6  # type: ignore[union-attr]

    # another point, or another rule on the same point: a ticket of its own
    with conn.transaction():
        t2 = intake.open_or_attach(conn, candidate(conn, p2, T0))
        t3 = intake.open_or_attach(conn, candidate(conn, p1, T0, rule="bm.coal.temp.stale"))
    assert len({t1, t2, t3}) == 3

    # once closed, the next detection opens a new ticket
    plan = Plan("王强", "更换", Decimal(1), T0 + 9e5, "停炉")
    for action, actor in ((wf.Confirm(), BUREAU), (wf.FilePlan(plan), ENT_A), (wf.StartRectification(), ENT_A),
                          (wf.Submit("done"), ENT_A), (wf.Verify(), BUREAU)):
        ledger.act(conn, t1, action, actor, T0 + 10)
    with conn.transaction():
        t4 = intake.open_or_attach(conn, candidate(conn, p1, T0 + 7200))
    assert t4 not in (t1, t2, t3)
    assert conn.execute("SELECT count(*) FROM hazard_candidates WHERE ticket_id IS NULL").fetchone() == (0,)


def test_one_open_ticket_per_point_and_rule_is_a_database_invariant(conn: psycopg.Connection) -> None:
    p1 = point(conn, "TT-101")
    with conn.transaction():
        t1 = intake.open_or_attach(conn, candidate(conn, p1, T0))
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("""INSERT INTO hazards (enterprise_id, rule_id, subject, source, status, title, detected_at,
                            created_at, created_by, updated_at)
                        SELECT enterprise_id, rule_id, subject, source, 'confirmed', title, detected_at, created_at,
                               created_by, updated_at FROM hazards WHERE id = %s""", (t1,))
    conn.rollback()


@pytest.mark.parametrize("table", ["hazard_events", "hazard_evidence", "audit_log"])
def test_history_is_append_only(conn: psycopg.Connection, table: str) -> None:
    with conn.transaction():
        intake.open_or_attach(conn, candidate(conn, point(conn, "TT-101"), T0))
    conn.execute("INSERT INTO audit_log (actor, method, path, status) VALUES ('t', 'POST', '/x', 200)")
    conn.commit()
    for sql in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(sql)  # type: ignore[arg-type]
        conn.rollback()
    if table == "hazard_events":
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE hazard_events CASCADE")
        conn.rollback()


def test_a_failing_intake_leaves_the_batch_and_the_sweep_retries(conn: psycopg.Connection) -> None:
    """Intake runs inside the collector's transaction: its failure must not cost the batch its readings."""
    p1 = point(conn, "TT-101")
    with conn.transaction():
        bad = candidate(conn, p1, T0, enterprise="no-such-enterprise")
        assert intake.open_or_attach(conn, bad) is None
        good = candidate(conn, p1, T0 + 1)
        tid = intake.open_or_attach(conn, good)
    assert tid is not None
    assert conn.execute("SELECT ticket_id IS NULL FROM hazard_candidates WHERE id = %s", (bad,)).fetchone() == (True,)
    conn.execute("UPDATE hazard_candidates SET enterprise_id = 'ent-a' WHERE id = %s", (bad,))
    conn.commit()
    assert ledger.sweep_candidates(conn) == [tid]  # same (point, rule): evidence on the open ticket
    assert store.get(conn, tid, None).occurrences == 2  # type: ignore[union-attr]


def test_overdue_ticket_becomes_supervised_on_a_fake_clock(conn: psycopg.Connection, db_url: str) -> None:
    clock = FakeClock(T0)
    with conn.transaction():
        tid = intake.open_or_attach(conn, candidate(conn, point(conn, "TT-101"), T0))
    assert tid is not None
    ledger.act(conn, tid, wf.Confirm(), BUREAU, clock.now())
    deadline = T0 + 10 * 86400
    ledger.act(conn, tid, wf.FilePlan(Plan("王强", "更换", Decimal("5000"), deadline, "停炉值守")), ENT_A, clock.now())
    ledger.act(conn, tid, wf.StartRectification(), ENT_A, clock.now())
    metrics = Metrics()
    ticker = HazardTicker(db_url, clock, metrics)

    clock.set(deadline - 1)
    assert ticker.once(conn) == (0, 0)
    clock.set(deadline + 3600)
    assert ticker.once(conn) == (1, 0)
    rec = store.get(conn, tid, None)
    assert rec is not None and (rec.supervision_level, rec.supervised_by) == ("county", "system")
    assert rec.overdue(clock.now())
    assert ticker.once(conn) == (0, 0)  # once is enough
    clock.advance(wf.CITY_AFTER_S)
    assert ticker.once(conn) == (1, 0)
    rec = store.get(conn, tid, None)
    assert rec is not None and rec.supervision_level == "city"
    sup = [e for e in store.events(conn, tid) if e.action == "supervise"]
    assert [(e.actor, e.actor_role, e.data["level"], e.data["automatic"]) for e in sup] == [
        ("system", "system", "county", True), ("system", "system", "city", True)]
    assert "riskwatch_hazards_supervised_total{level=\"city\"} 1.0" in metrics.render().decode()
    # submitting stops the clock: the bureau, not the enterprise, is next
    ledger.act(conn, tid, wf.Submit("done"), ENT_A, clock.now())
    rec = store.get(conn, tid, None)
    assert rec is not None and not rec.overdue(clock.now() + 1e7)
    rec_t, _ = ledger.act(conn, tid, wf.Verify(), BUREAU, clock.now())
    assert rec_t.supervision_lifted_at is not None  # 销号即摘牌


def test_supervise_by_hand_then_tick_escalates_only(conn: psycopg.Connection, db_url: str) -> None:
    with conn.transaction():
        tid = intake.open_or_attach(conn, candidate(conn, point(conn, "TT-101"), T0))
    assert tid is not None
    ledger.act(conn, tid, wf.Confirm(), BUREAU, T0)
    ledger.act(conn, tid, wf.Supervise(Level.CITY, "重点督办"), BUREAU, T0)
    ledger.act(conn, tid, wf.FilePlan(Plan("王强", "更换", Decimal(0), T0 + 86400, "停炉")), ENT_A, T0)
    clock = FakeClock(T0 + 5 * 86400)
    assert HazardTicker(db_url, clock, Metrics()).once(conn) == (0, 0)
    rec = store.get(conn, tid, None)
    assert rec is not None and (rec.supervision_level, rec.supervised_by) == ("city", "值班员")
