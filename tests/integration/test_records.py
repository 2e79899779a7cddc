"""Records and alarm-system health against a real TimescaleDB: cadence over a simulated year with a fake
clock, findings opening linked self-reports, training coverage, the three-year evaluation read back from
its XLSX and checked against counts computed here from the raw tables, alarm health per operator position,
and enterprise scoping (another enterprise's rows are never returned, forged ids are not found)."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from openpyxl import load_workbook

from core import registry
from core.clock import FakeClock
from hazards import ledger, workflow
from hazards.model import Actor, Level, Plan, RewardStatus, Source
from hazards.records import evaluation, export, service, store
from hazards.records.errors import RecordForbidden, RecordInvalid, RecordNotFound
from hazards.records.service import NewFinding

ROOT = Path(service.__file__).resolve().parents[2]  # the checkout (not this file: tests may be copied)
MINI = ROOT / "tests" / "fixtures" / "mini_site.yaml"
COUNTY = ROOT / "simulators" / "sites" / "county_full.yaml"
CST = timezone(timedelta(hours=8))
BUREAU = Actor("值班员 duty", "bureau")
ENT_A = Actor("甲安全员 a-safety", "enterprise", "ent-a")
ENT_B = Actor("乙安全员 b-safety", "enterprise", "ent-b")


def cst(y: int, m: int, d: int, h: int = 0) -> float:
    return datetime(y, m, d, h, tzinfo=CST).timestamp()


def load(db_url: str, path: Path) -> psycopg.Connection:
    conn = psycopg.connect(db_url, autocommit=True)
    with conn.transaction():
        registry.upsert_site(conn, registry.parse_site(path))
    return conn


def inspection(ent: str, level: str, day: date, plant: str | None = None) -> store.NewInspection:
    return store.NewInspection(ent, level, day, "张检查 inspector", "全厂 whole plant", plant_id=plant)


# --- cadence over a simulated year -------------------------------------------------------------------------


def test_skipping_two_monthly_plant_inspections_shows_exactly_those_two(db_url: str) -> None:
    conn = load(db_url, MINI)
    clock = FakeClock(cst(2026, 1, 1))
    seen_mid_year = None
    while clock.now() < cst(2027, 1, 1):
        today = datetime.fromtimestamp(clock.now(), CST).date()
        if today.day == 5 and today.month not in (3, 7):
            service.record_inspection(conn, inspection("ent-a", "plant", today, "plant-a"), [], ENT_A, clock.now())
        if today.weekday() == 0:  # workshop: weekly, kept
            service.record_inspection(conn, inspection("ent-a", "workshop", today), [], ENT_A, clock.now())
        if today == date(2026, 7, 20):
            seen_mid_year = evaluation.year_figures(conn, 2026, clock.now(), "ent-a")
        clock.advance(86_400)
    assert seen_mid_year is not None
    mid = {r.level: r for r in seen_mid_year.cadence}["plant"]
    # on 20 July, March is missed and July is still running: open, not missed
    assert (mid.missed_periods, mid.open, mid.done) == (["2026-03"], 1, 5)
    clock.set(cst(2027, 1, 1, 9))
    fig = evaluation.year_figures(conn, 2026, clock.now(), "ent-a")
    rows = {r.level: r for r in fig.cadence}
    assert rows["plant"].missed_periods == ["2026-03", "2026-07"]
    assert (rows["plant"].due, rows["plant"].done, rows["plant"].missed) == (12, 10, 2)
    assert rows["workshop"].missed == 0 and rows["workshop"].done == rows["workshop"].due == 52
    assert rows["company"].missed == 4 and rows["team"].missed == 365
    assert {r.enterprise_id for r in fig.cadence} == {"ent-a"}  # the enterprise's view has only its own rows
    county = evaluation.year_figures(conn, 2026, clock.now(), None)
    b_plant = next(r for r in county.cadence if r.enterprise_id == "ent-b" and r.level == "plant")
    assert b_plant.missed == 12


# --- findings open linked self-reports; scoping ----------------------------------------------------------


def test_finding_opens_a_self_report_linked_both_ways(db_url: str) -> None:
    conn = load(db_url, MINI)
    now = cst(2026, 5, 6, 10)
    rec = service.record_inspection(conn, inspection("ent-a", "plant", date(2026, 5, 6), "plant-a"), [
        NewFinding("煤磨袋收尘器泄爆片锈蚀 rusted vent panel", "煤磨 coal mill", open_hazard=True),
        NewFinding("灭火器过期 expired extinguisher"),
    ], ENT_A, now)
    linked, plain = rec.findings
    assert linked.hazard_id is not None and plain.hazard_id is None
    h = conn.execute("SELECT source, status, enterprise_id, plant_id, created_by, description FROM hazards"
                     " WHERE id = %s", (linked.hazard_id,)).fetchone()
    assert h is not None and h[:5] == ("self_report", "candidate", "ent-a", "plant-a", ENT_A.name)
    assert f"finding #{linked.id}" in h[5]
    ev = conn.execute("SELECT action, comment FROM hazard_events WHERE hazard_id = %s ORDER BY id",
                      (linked.hazard_id,)).fetchall()
    assert ev[0][0] == "create" and f"self-inspection #{rec.id}" in ev[0][1]
    back = store.finding_for_hazard(conn, linked.hazard_id, "ent-a")
    assert back is not None and back.id == linked.id and back.inspection_id == rec.id
    assert store.finding_for_hazard(conn, linked.hazard_id, "ent-b") is None
    # the second finding opened later, by the bureau; opening again is idempotent (no second ticket)
    later = service.open_hazard(conn, plain.id, BUREAU, now + 60, "灭火器 extinguishers")
    again = service.open_hazard(conn, plain.id, BUREAU, now + 120)
    assert later.hazard_id is not None and again.hazard_id == later.hazard_id
    assert conn.execute("SELECT count(*) FROM hazards").fetchone() == (2,)

    # adversarial: another enterprise cannot see, open from, or write into ent-a's records
    with pytest.raises(RecordNotFound):
        service.open_hazard(conn, linked.id, ENT_B, now)
    with pytest.raises(RecordNotFound):
        service.record_inspection(conn, inspection("ent-a", "plant", date(2026, 5, 7)), [], ENT_B, now)
    with pytest.raises(RecordNotFound):  # its own enterprise, but another's plant
        service.record_inspection(conn, inspection("ent-b", "plant", date(2026, 5, 7), "plant-a"), [], ENT_B, now)
    with pytest.raises(RecordNotFound):  # a forged enterprise id
        service.record_inspection(conn, inspection("ent-zz", "plant", date(2026, 5, 7)), [], BUREAU, now)
    assert store.get_inspection(conn, rec.id, "ent-b") is None
    assert store.list_inspections(conn, "ent-b") == ([], 0)
    assert store.findings(conn, "ent-b", inspection_id=rec.id) == []
    assert store.list_inspections(conn, "ent-a")[1] == 1
    # oversized and malicious input
    with pytest.raises(RecordInvalid):
        service.record_inspection(conn, inspection("ent-a", "plant", date(2026, 5, 7)),
                                  [NewFinding("x")] * (service.MAX_FINDINGS + 1), ENT_A, now)
    with pytest.raises(RecordInvalid):
        service.record_inspection(conn, store.NewInspection("ent-a", "plant", date(2026, 5, 7), "  "), [], ENT_A,
                                  now)
    with pytest.raises(RecordInvalid):
        service.record_inspection(conn, inspection("ent-a", "plant", date(2026, 5, 7)),
                                  [NewFinding("长" * 5000)], ENT_A, now)
    with pytest.raises(RecordInvalid):
        service.record_inspection(conn, inspection("ent-a", "board", date(2026, 5, 7)), [], ENT_A, now)
    assert store.list_inspections(conn, None)[1] == 1  # nothing of the refused requests was kept


def test_drill_findings_open_rectifications(db_url: str) -> None:
    conn = load(db_url, MINI)
    now = cst(2026, 6, 1, 15)
    rec = service.record_drill(conn, store.NewDrill("ent-b", date(2026, 6, 1), "电熔炉漏水应急 furnace leak", 24,
                                                    plant_id="plant-b"),
                               [NewFinding("应急照明不足 emergency lighting", open_hazard=True)], ENT_B, now)
    (f,) = rec.findings
    assert f.drill_id == rec.id and f.hazard_id is not None
    assert store.get_drill(conn, rec.id, "ent-a") is None and store.get_drill(conn, rec.id, "ent-b") is not None
    with pytest.raises(RecordNotFound):
        service.record_drill(conn, store.NewDrill("ent-a", date(2026, 6, 1), "x", 3), [], ENT_B, now)


# --- training coverage ---------------------------------------------------------------------------------


def test_training_coverage_is_distinct_attendees_over_headcount(db_url: str) -> None:
    conn = load(db_url, MINI)
    now = cst(2026, 10, 1)
    service.set_headcount(conn, "ent-a", 2026, 40, ENT_A, now)
    service.set_headcount(conn, "ent-a", 2025, 50, BUREAU, now)
    people = [store.Attendee(f"A{i:03d}", f"员工{i}") for i in range(40)]
    service.record_training(conn, store.NewTraining("ent-a", date(2026, 3, 2), "粉尘防爆 dust explosion",
                                                    people[:30]), ENT_A, now)
    service.record_training(conn, store.NewTraining("ent-a", date(2026, 9, 2), "有限空间 confined space",
                                                    people[25:35]), ENT_A, now)  # 5 already trained
    service.record_training(conn, store.NewTraining("ent-a", date(2025, 9, 2), "去年 last year", people),
                            ENT_A, now)
    service.record_training(conn, store.NewTraining("ent-b", date(2026, 4, 2), "乙 course",
                                                    [store.Attendee("B1")]), ENT_B, now)
    rows = {t.enterprise_id: t for t in store.year_training(conn, None, 2026)}
    assert rows["ent-a"].trained == 35 and rows["ent-a"].coverage == pytest.approx(35 / 40)
    assert rows["ent-b"].trained == 1 and rows["ent-b"].coverage is None  # no headcount recorded
    assert {t.enterprise_id: t.coverage for t in store.year_training(conn, None, 2025)}["ent-a"] == 40 / 50
    assert [t.enterprise_id for t in store.year_training(conn, "ent-b", 2026)] == ["ent-b"]
    fig = evaluation.year_figures(conn, 2026, now, None)
    assert fig.training_coverage == pytest.approx(35 / 40)
    with pytest.raises(RecordNotFound):
        service.set_headcount(conn, "ent-a", 2026, 1, ENT_B, now)
    with pytest.raises(RecordInvalid):
        service.record_training(conn, store.NewTraining("ent-a", date(2026, 3, 2), "x", []), ENT_A, now)
    with pytest.raises(RecordInvalid):
        service.set_headcount(conn, "ent-a", 2026, 0, ENT_A, now)


def test_meetings_next_to_interviews_and_scoped(db_url: str) -> None:
    conn = load(db_url, MINI)
    now = cst(2026, 4, 30)
    m = service.record_meeting(conn, store.NewMeeting("ent-a", date(2026, 4, 28), ["张三", "李四"],
                                                      ["更换泄爆片 replace vent panels"], "张三"), ENT_A, now)
    service.record_meeting(conn, store.NewMeeting(None, date(2026, 4, 29), ["局长"], ["通报 briefing"]), BUREAU, now)
    with pytest.raises(RecordForbidden):
        service.record_meeting(conn, store.NewMeeting(None, date(2026, 4, 29), ["x"]), ENT_A, now)
    with pytest.raises(RecordNotFound):
        service.record_meeting(conn, store.NewMeeting("ent-a", date(2026, 4, 29), ["x"]), ENT_B, now)
    assert store.get_meeting(conn, m.id, "ent-b") is None
    assert [r.enterprise_id for r in store.list_meetings(conn, "ent-a")[0]] == ["ent-a"]
    assert store.list_meetings(conn, None)[1] == 2


# --- the three-year evaluation, read back from its XLSX -------------------------------------------------


def _plan(now: float) -> Plan:
    return Plan("王强", "更换 replace", Decimal("1000.00"), now + 30 * 86_400, "停用 stop")


def _populate_county(conn: psycopg.Connection) -> dict[str, str]:
    """Three years of records for the sample county; returns plant -> enterprise."""
    plants = dict(conn.execute("SELECT id, enterprise_id FROM plants ORDER BY id").fetchall())
    ents = sorted(set(plants.values()))
    plist = sorted(plants)
    n = 0
    for year in (2024, 2025, 2026):
        for k in range(14):
            n += 1
            plant = plist[n % len(plist)]
            ent = plants[plant]
            actor_e = Actor("ent", "enterprise", ent)
            t0 = cst(year, 1 + (k * 5) % 11, 3 + k)
            source = [Source.SELF_REPORT, Source.INSPECTION, Source.PUBLIC_TIP][n % 3]
            tid = ledger.open_ticket(conn, ledger.NewTicket(source=source, enterprise_id=ent, title=f"隐患 {n}",
                                                            plant_id=plant, inspection_team="组"), BUREAU, t0)
            if n % 5 == 4 and source is not Source.INSPECTION:
                ledger.act(conn, tid, workflow.Dismiss("误报 false"), BUREAU, t0 + 3600)
                continue
            ledger.act(conn, tid, workflow.Confirm(), BUREAU, t0 + 3600) if source is not Source.INSPECTION else None
            if source is Source.PUBLIC_TIP:
                ledger.act(conn, tid, workflow.SetReward(RewardStatus.APPROVED, Decimal(100 * n)), BUREAU, t0 + 7200)
            if n % 4 == 0:
                ledger.act(conn, tid, workflow.Supervise(Level.COUNTY, "督办"), BUREAU, t0 + 8000)
            if n % 7 == 0:
                ledger.act(conn, tid, workflow.Supervise(Level.CITY, "升级"), BUREAU, t0 + 9000)
            if n % 2 == 0:  # closed about 40 days later (possibly in the next year)
                ledger.act(conn, tid, workflow.FilePlan(_plan(t0 + 10_000)), actor_e, t0 + 10_000)
                ledger.act(conn, tid, workflow.StartRectification(), actor_e, t0 + 20_000)
                ledger.act(conn, tid, workflow.Submit("已整改"), actor_e, t0 + 30 * 86_400)
                ledger.act(conn, tid, workflow.Verify(), BUREAU, t0 + 40 * 86_400)
        for i, ent in enumerate(ents):
            ledger.record_interview(conn, ledger.NewInterview(ent, cst(year, 3 + i, 10), "局", "主要负责人", "逾期"),
                                    BUREAU, cst(year, 3 + i, 10))
            for m in range(1, 13 - i):  # enterprise i skips its last i months' plant inspections
                service.record_inspection(conn, inspection(ent, "plant", date(year, m, 8)), [], BUREAU,
                                          cst(year, m, 8))
                if m % 3 == 1:
                    service.record_inspection(conn, inspection(ent, "company", date(year, m, 9)), [], BUREAU,
                                              cst(year, m, 9))
            for m in range(1, 2 + i):
                service.record_meeting(conn, store.NewMeeting(ent, date(year, m, 20), ["甲"]), BUREAU, cst(year, m, 20))
            service.set_headcount(conn, ent, year, 20 + i, BUREAU, cst(year, 1, 2))
            service.record_training(conn, store.NewTraining(ent, date(year, 6, 1), "课程", [
                store.Attendee(f"{ent}-{p}") for p in range(10 + i + (year - 2024))]), BUREAU, cst(year, 6, 1))
            if i % 2 == 0:
                service.record_drill(conn, store.NewDrill(ent, date(year, 5, 1), "演练", 12), [], BUREAU,
                                     cst(year, 5, 1))
    # points registered on 1 January 2024; a few minutes of rollup per point per year
    conn.execute("UPDATE points SET created_at = %s", (datetime(2024, 1, 1, tzinfo=CST),))
    pids = [r[0] for r in conn.execute("SELECT id FROM points ORDER BY id LIMIT 6").fetchall()]
    for year in (2024, 2025, 2026):
        for j, pid in enumerate(pids):
            for minute in range(3):
                conn.execute("INSERT INTO readings_1m (bucket, point_id, min, max, sum, count, last_time, last)"
                             " VALUES (%s, %s, 0, 1, 1, %s, %s, 1)",
                             (datetime(year, 2, 1, 0, minute, tzinfo=UTC), pid, 60 - j,
                              datetime(year, 2, 1, 0, minute, 59, tzinfo=UTC)))
    return plants


def _independent_year(conn: psycopg.Connection, year: int, now: float) -> dict[str, object]:
    """The figures, computed here from the raw tables without records.evaluation."""
    s, e = datetime(year, 1, 1, tzinfo=CST), datetime(year + 1, 1, 1, tzinfo=CST)
    rows = conn.execute("SELECT source, plant_id, created_at, closed_at, confirmed_at, dismissed_at FROM hazards"
                        ).fetchall()
    industry = dict(conn.execute("SELECT id, industry FROM plants").fetchall())
    found: Counter[tuple[str, str]] = Counter()
    closed: Counter[tuple[str, str]] = Counter()
    for src, plant, created, closed_at, _c, _d in rows:
        if s <= created < e:
            found[(src, industry[plant])] += 1
        if closed_at is not None and s <= closed_at < e:
            closed[(src, industry[plant])] += 1
    cut = datetime.fromtimestamp(now, UTC)
    zero = []
    for m in range(1, 13):
        ms = datetime(year, m, 1, tzinfo=CST)
        if ms > cut:
            break
        me = min(datetime(year + (m == 12), m % 12 + 1, 1, tzinfo=CST), cut)
        zero.append((f"{year}-{m:02d}", sum(1 for r in rows if r[4] is not None and r[4] < me
                                            and (r[3] is None or r[3] >= me) and (r[5] is None or r[5] >= me))))
    ev = conn.execute("SELECT action, data, time FROM hazard_events").fetchall()
    sup = Counter(d["level"] for a, d, t in ev if a == "supervise" and s <= t < e)
    rewards = sum(Decimal(d["amount_yuan"]) for a, d, t in ev if a == "set_reward"
                  and d.get("reward_status") == "approved" and s <= t < e)
    interviews = sum(1 for (t,) in conn.execute("SELECT held_at FROM hazard_interviews").fetchall() if s <= t < e)
    today = datetime.fromtimestamp(now, CST).date()
    insp = conn.execute("SELECT enterprise_id, level, inspected_on FROM self_inspections").fetchall()
    missed_plant = 0
    for ent in {r[0] for r in conn.execute("SELECT id FROM enterprises").fetchall()}:
        months = {(d.year, d.month) for en, lv, d in insp if en == ent and lv == "plant"}
        for m in range(1, 13):
            end_m = date(year + (m == 12), m % 12 + 1, 1)
            if end_m <= today and (year, m) not in months:
                missed_plant += 1
    heads = dict(((en, y), h) for en, y, h in conn.execute("SELECT enterprise_id, year, headcount"
                                                           " FROM enterprise_headcounts").fetchall())
    people = {(en, pk) for en, pk, held in conn.execute(
        "SELECT t.enterprise_id, a.person_key, t.held_on FROM trainings t JOIN training_attendees a"
        " ON a.training_id = t.id").fetchall() if held.year == year}
    trained = Counter(en for en, _pk in people)
    cov = {en: trained[en] / heads[(en, year)] for en, y in heads if y == year}
    pts = conn.execute("SELECT p.id, p.interval_s FROM points p").fetchall()
    frm, to = s.timestamp(), min(e.timestamp(), now)
    expected = sum(int((to - frm) // iv) for _p, iv in pts)
    got = conn.execute("SELECT coalesce(sum(count), 0) FROM readings_1m WHERE bucket >= %s AND bucket < %s",
                       (s, datetime.fromtimestamp(to, UTC))).fetchone()
    assert got is not None
    return {"found": found, "closed": closed, "zero": zero, "county": sup.get("county", 0),
            "city": sup.get("city", 0), "rewards": rewards, "interviews": interviews, "missed_plant": missed_plant,
            "coverage": cov, "availability": int(got[0]) / expected,
            "tips": sum(1 for r in rows if r[0] == "public_tip" and s <= r[2] < e)}


def test_three_year_evaluation_export_matches_raw_tables(db_url: str) -> None:
    conn = load(db_url, COUNTY)
    _populate_county(conn)
    now = cst(2026, 11, 5, 9)  # the evaluation is due before 10 November 2026
    ev = evaluation.three_year(conn, now, None)
    wb = load_workbook(io.BytesIO(export.to_xlsx(ev)))
    summary = {r[0]: r for r in wb["汇总 summary"].iter_rows(min_row=3, values_only=True)}
    hz = list(wb["隐患 hazards"].iter_rows(min_row=2, values_only=True))
    zero = list(wb["动态清零 zero"].iter_rows(min_row=2, values_only=True))
    cad = list(wb["自查 cadence"].iter_rows(min_row=2, values_only=True))
    tr = list(wb["演练培训 training"].iter_rows(min_row=2, values_only=True))
    total_found = 0
    for year in (2024, 2025, 2026):
        want = _independent_year(conn, year, now)
        row = summary[year]
        found = {(r[1].split()[-1], r[2].split()[-1]): r[3] for r in hz if r[0] == year and r[3]}
        closed = {(r[1].split()[-1], r[2].split()[-1]): r[4] for r in hz if r[0] == year and r[4]}
        assert found == dict(want["found"]) and closed == dict(want["closed"]), year  # type: ignore[arg-type]
        assert row[1] == sum(want["found"].values()) and row[2] == sum(want["closed"].values())  # type: ignore
        assert [(m, n) for y, m, n in zero if y == year] == want["zero"]
        assert (row[3], row[4], row[5]) == (want["county"], want["city"], want["interviews"])
        assert sum(r[7] for r in cad if r[0] == year and r[3].endswith("plant")) == want["missed_plant"]
        assert row[12] == want["tips"] and Decimal(str(row[13])) == want["rewards"]
        assert {r[1]: r[5] for r in tr if r[0] == year} == pytest.approx(want["coverage"])
        assert row[11] == pytest.approx(want["availability"], rel=1e-5)
        total_found += row[1]
    assert summary["合计 total"][1] == total_found == 42
    assert max(n for _y, _m, n in zero) > 0  # the data does exercise 动态清零
    # an enterprise's workbook: its rows only, and no whistle-blower figures at all
    ent = evaluation.three_year(conn, now, "bs-cement")
    wbe = load_workbook(io.BytesIO(export.to_xlsx(ent)))
    header = next(wbe["汇总 summary"].iter_rows(min_row=2, max_row=2, values_only=True))
    assert not any("举报" in str(h) for h in header)
    assert {r[1] for r in wbe["自查 cadence"].iter_rows(min_row=2, values_only=True)} == {"bs-cement"}
    assert all(y.public_tips is None and y.rewards_approved_yuan is None for y in ent.years)


def test_export_neutralises_formulas(db_url: str) -> None:
    conn = load(db_url, MINI)
    conn.execute("UPDATE enterprises SET name = '=HYPERLINK(\"http://x\",\"y\")' WHERE id = 'ent-a'")
    wb = load_workbook(io.BytesIO(export.to_xlsx(evaluation.annual(conn, 2026, cst(2026, 11, 1), None))))
    cells = [c for row in wb["自查 cadence"].iter_rows() for c in row if isinstance(c.value, str)
             and "HYPERLINK" in c.value]
    assert cells and all(c.value.startswith("'=") and c.data_type == "s" for c in cells)


# --- alarm-system health per operator position ---------------------------------------------------------


def _alarm(conn: psycopg.Connection, t: float, plant: str, rule: str, subject: str, event: str = "activate",
           severity: str = "high", annunciate: bool = True) -> None:
    conn.execute("INSERT INTO alarm_events (time, rule_id, subject, plant_id, event, from_state, to_state,"
                 " annunciate, severity, catalog_version) VALUES (%s,%s,%s,%s,%s,'normal','unack',%s,%s,'t')",
                 (datetime.fromtimestamp(t, UTC), rule, subject, plant, event, annunciate, severity))


def test_alarm_health_per_position_from_the_stored_history(db_url: str) -> None:
    conn = load(db_url, MINI)
    day = cst(2026, 3, 1)
    # plant-a: a flood of 12 in 01:00-01:10 and a standing alarm raised two days before
    for i in range(12):
        _alarm(conn, day + 3600 + 30 * i, "plant-a", "r-flood", f"p:{i}")
    _alarm(conn, day - 2 * 86_400, "plant-a", "r-stand", "p:50", severity="urgent")
    _alarm(conn, day - 3 * 86_400, "plant-a", "r-old", "p:51")
    _alarm(conn, day - 2 * 86_400, "plant-a", "r-old", "p:51", "clear")
    # plant-b: quiet, one alarm an hour
    for h in range(24):
        _alarm(conn, day + h * 3600 + 300, "plant-b", "r-q", "p:99")
    _, ha = service.position_health(conn, "cr-plant-a", day, day + 86_400, None)
    assert (ha.alarms, ha.flood_intervals, ha.flood_minutes) == (12, 1, 10.0)
    assert [(s.rule_id, s.subject) for s in ha.standing] == [("r-stand", "p:50")] and ha.stale == 1
    _, hb = service.position_health(conn, "cr-plant-b", day, day + 86_400, "ent-b")
    assert hb.alarms == 24 and hb.flood_intervals == 0 and not hb.flooding
    # the bureau desk sees urgent alarms county-wide: only the standing one
    _, hd = service.position_health(conn, "bureau-desk", day, day + 86_400, None)
    assert hd.alarms == 0 and [s.rule_id for s in hd.standing] == ["r-stand"]
    # scoping: ent-b sees its control room only; plant-a's and the bureau desk are not found
    assert [p.id for p in store.positions(conn, "ent-b")] == ["cr-plant-b"]
    for pos in ("cr-plant-a", "bureau-desk", "cr-nope"):
        with pytest.raises(RecordNotFound):
            service.position_health(conn, pos, day, day + 86_400, "ent-b")
    # a shared control room: only the bureau defines it, only over the enterprise's own plants
    with pytest.raises(RecordForbidden):
        service.define_position(conn, "cr-a-main", "甲中控室", "ent-a", ["plant-a"], ENT_A)
    with pytest.raises(RecordNotFound):
        service.define_position(conn, "cr-a-main", "甲中控室", "ent-a", ["plant-b"], BUREAU)
    p = service.define_position(conn, "cr-a-main", "甲中控室", "ent-a", ["plant-a"], BUREAU)
    assert p.plant_ids == ("plant-a",) and "cr-plant-a" not in [x.id for x in store.positions(conn, None)]
    assert service.position_health(conn, "cr-a-main", day, day + 86_400, "ent-a")[1].alarms == 12


def test_data_availability_from_each_points_interval(db_url: str) -> None:
    conn = load(db_url, MINI)
    jan1 = datetime(2026, 1, 1, tzinfo=CST)
    conn.execute("UPDATE points SET interval_s = 3600, created_at = %s", (jan1,))
    p1, p2 = (int(r[0]) for r in conn.execute("SELECT id FROM points WHERE tag IN ('TT-101', 'CO-101') ORDER BY tag"
                                              " DESC").fetchall())
    conn.execute("UPDATE points SET created_at = %s WHERE id = %s", (jan1 + timedelta(days=5), p2))  # registered late

    def minute(pid: int, at: datetime, count: int) -> None:
        conn.execute("INSERT INTO readings_1m (bucket, point_id, min, max, sum, count, last_time, last)"
                     " VALUES (%s, %s, 0, 0, 0, %s, %s, 0)", (at, pid, count, at))

    for h in range(240):  # every hour of ten days: complete
        minute(p1, jan1 + timedelta(hours=h), 1)
    minute(p2, jan1 + timedelta(days=6), 200)  # more than its 120 expected: capped, not above 100 %
    minute(p1, jan1 - timedelta(hours=1), 50)  # last year's: not counted
    minute(p1, jan1 + timedelta(days=10, hours=1), 50)  # after `now`: not counted
    now = (jan1 + timedelta(days=10)).timestamp()
    fig = evaluation.year_figures(conn, 2026, now, None)
    rows = {a.enterprise_id: a for a in fig.availability}
    a = rows["ent-a"]
    assert (a.points, a.expected, a.received) == (6, 5 * 240 + 120, 240 + 120)
    assert a.availability == pytest.approx(360 / 1320)
    assert rows["ent-b"].received == 0 and rows["ent-b"].expected == 240
    assert fig.availability_total == pytest.approx(360 / (1320 + 240))
    assert [x.enterprise_id for x in evaluation.year_figures(conn, 2026, now, "ent-b").availability] == ["ent-b"]
    assert evaluation.expected_readings(3600, 0, 3599) == 0 and evaluation.expected_readings(60, 100, 50) == 0
