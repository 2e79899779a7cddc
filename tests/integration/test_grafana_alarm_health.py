"""The bureau dashboard's alarm-system health row (issue 17), run as Grafana runs it, on a generated history.

A day of alarms is written into the real `alarm_events` hypertable of a real TimescaleDB for the mini site
(plant-a, plant-b) with plant-b moved to an explicit control room that sees high and urgent alarms only. The
figures are computed by hand below from how the history was generated (which 10-minute intervals flood, which
alarms stand, the top-10 order and shares), then each new panel's SQL of the generated bureau dashboard is
expanded with Grafana's macros (simulators.fakes.grafana_sql) and run as a member of `grafana_reader`, and must
give exactly those figures, and the same as `hazards.records.health` through `records.service.position_health`.

The history is built to hit every boundary: exactly 10 alarms in an interval (not a flood), 11 straddling two
intervals (no flood: intervals are clock-aligned), non-annunciated (shelved) and `low` bursts (not alarms),
alarms active for exactly under 24 h, cleared inside or after the range, a tie in the top 10.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.grafana import BUREAU_UID, TargetSpec, generate
from core import registry
from hazards.records import service, store
from hazards.records.errors import RecordNotFound
from simulators.fakes.grafana_sql import QueryContext, expand
from tests.fix_grafana import grafana_login

pytestmark = pytest.mark.integration

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "mini_site.yaml"
DAY = datetime(2026, 3, 1, tzinfo=UTC)  # on a 10-minute boundary, like health.compute wants
START = DAY.timestamp()
END = START + 86_400.0
H = 3600.0
D = 86_400.0


def _alarm(rows: list[tuple[Any, ...]], t: float, plant: str, rule: str, subject: str, event: str = "activate",
           severity: str = "medium", annunciate: bool = True) -> None:
    rows.append((datetime.fromtimestamp(t, UTC), rule, subject, plant, event, annunciate, severity))


def history() -> list[tuple[Any, ...]]:
    r: list[tuple[Any, ...]] = []
    a, b = "plant-a", "plant-b"
    # plant-a: floods at 01:00 (7 + 5 = 12), 05:20 (11) and 18:00 (11 urgent ones)
    for i in range(12):
        _alarm(r, START + 1 * H + 30 * i, a, "r-flood", "p:1" if i < 7 else "p:2")
    for i in range(11):
        _alarm(r, START + 5 * H + 20 * 60 + 50 * i, a, "r-burst", "p:3")
    for i in range(11):
        _alarm(r, START + 18 * H + 30 * i, a, "r-urgent", "p:98", severity="urgent")
    # exactly 10 in 08:00-08:10: not a flood ("more than 10")
    for i in range(10):
        _alarm(r, START + 8 * H + 60 * i, a, "r-ten", "p:4")
    # 11 from 09:05 every 50 s: 6 before 09:10, 5 after: no flood
    for i in range(11):
        _alarm(r, START + 9 * H + 5 * 60 + 50 * i, a, "r-flood", "p:1")
    # not alarms to the operator: 15 shelved (not annunciated) at 12:00, 15 `low` at 13:00
    for i in range(15):
        _alarm(r, START + 12 * H + 10 * i, a, "r-shelved", "p:6", annunciate=False)
        _alarm(r, START + 13 * H + 10 * i, a, "r-low", "p:7", severity="low")
    # 12 singletons r-s00 .. r-s11 from 15:00, every 20 minutes
    for i in range(12):
        _alarm(r, START + 15 * H + 20 * 60 * i, a, f"r-s{i:02d}", "p:9")
    # standing or not at the end of the day
    _alarm(r, START - 2 * D, a, "r-stand", "p:50", severity="urgent")  # standing (bureau desk too)
    _alarm(r, START - 3 * D, a, "r-old", "p:51")  # cleared before the day
    _alarm(r, START - 2 * D, a, "r-old", "p:51", "clear")
    _alarm(r, END - 23 * H, a, "r-recent", "p:52")  # active 23 h at the end: not standing; 1 alarm in the day
    _alarm(r, START - 2 * D, a, "r-late", "p:53")  # cleared an hour before the end
    _alarm(r, END - 1 * H, a, "r-late", "p:53", "clear")
    _alarm(r, START - 2 * D, a, "r-after", "p:54")  # cleared an hour after the end: standing at the end
    _alarm(r, END + 1 * H, a, "r-after", "p:54", "clear")
    _alarm(r, START - 2 * D, a, "r-lowstand", "p:55", severity="low")  # below every position
    _alarm(r, START - 3 * D, a, "r-twice", "p:56")  # raised twice, never cleared: standing
    _alarm(r, START - 2 * D, a, "r-twice", "p:56")
    # plant-b: quiet, one alarm an hour alternating medium and high; its control room sees high and above
    for h in range(24):
        _alarm(r, START + h * H + 300, b, "r-q", "p:99", severity="high" if h % 2 else "medium")
    return r


# --- the figures by hand, from how the history was made ---------------------------------------------------------

INTERVALS = 144
A_TOTAL = 12 + 11 + 11 + 10 + 11 + 12 + 1  # 68
HAND: dict[str, dict[str, Any]] = {
    "cr-plant-a": {
        "alarms": A_TOTAL,
        "flood_buckets": {DAY + timedelta(hours=1), DAY + timedelta(hours=5, minutes=20),
                          DAY + timedelta(hours=18)},
        "standing": 3,  # r-stand, r-after, r-twice
        "top": [("r-flood", "p:1", 18), ("r-burst", "p:3", 11), ("r-urgent", "p:98", 11), ("r-ten", "p:4", 10),
                ("r-flood", "p:2", 5), ("r-recent", "p:52", 1), ("r-s00", "p:9", 1), ("r-s01", "p:9", 1),
                ("r-s02", "p:9", 1), ("r-s03", "p:9", 1)],
    },
    "ctl-b": {"alarms": 12, "flood_buckets": set(), "standing": 0, "top": [("r-q", "p:99", 12)]},
    "bureau-desk": {"alarms": 11, "flood_buckets": {DAY + timedelta(hours=18)}, "standing": 1,
                    "top": [("r-urgent", "p:98", 11)]},
}


@pytest.fixture
def filled(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        with conn.transaction():
            registry.upsert_site(conn, registry.parse_site(MINI))
        service.define_position(conn, "ctl-b", "乙公司联合中控室 shared control room", "ent-b", ["plant-b"],
                                service.Actor("值班员 duty", "bureau"), min_severity="high")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO alarm_events (time, rule_id, subject, plant_id, event, from_state, to_state,"
                            " annunciate, severity, catalog_version) VALUES (%s,%s,%s,%s,%s,'normal','unack',%s,%s,"
                            "'t')", history())
    return db_url


def _target(title: str, targets: list[TargetSpec]) -> TargetSpec:
    (t,) = [t for t in targets if title in t.where]
    return t


def _run(conn: psycopg.Connection, t: TargetSpec, ctx: QueryContext) -> tuple[list[str], list[tuple[Any, ...]]]:
    with conn.cursor() as cur:
        cur.execute(expand(t.sql, ctx).sql)
        assert cur.description is not None
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    conn.rollback()
    return names, rows


def test_alarm_health_panels_match_hand_computed_figures_and_records_health(filled: str) -> None:
    with psycopg.connect(filled) as owner:
        bureau = next(d for d in generate(owner) if d.uid == BUREAU_UID)
        health = {p: service.position_health(owner, p, START, END, None)[1] for p in HAND}
        labels = {p.id: f"{p.id} {p.name}" for p in store.positions(owner, None)}
    # every position of the registry is on the panels: plant-a's default room, ctl-b (not cr-plant-b), the desk
    assert set(labels) == set(HAND)
    js = bureau.to_json()
    row = next(i for i, p in enumerate(js["panels"]) if p["type"] == "row" and "报警系统健康" in p["title"])
    assert [p["type"] for p in js["panels"][row + 1:]] == ["timeseries", "bargauge", "stat", "table"]
    steps = js["panels"][row + 1]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps] == [None, 1, 10]  # EEMUA 191's 1 per 10 min, the flood above 10

    ctx = QueryContext(DAY, DAY + timedelta(days=1))
    with grafana_login(filled) as reader_url, psycopg.connect(reader_url) as conn:
        # alarms per 10 minutes, per position
        names, rows = _run(conn, _target("Alarms per 10 minutes", bureau.targets), ctx)
        assert names[:2] == ["time", "metric"]
        series: dict[str, dict[datetime, float]] = {}
        for t, pos, n in rows:
            series.setdefault(pos, {})[t] = n
        assert set(series) == set(HAND)
        a = series["cr-plant-a"]
        assert a[DAY + timedelta(hours=8)] == 10  # exactly 10: not a flood
        assert (a[DAY + timedelta(hours=9)], a[DAY + timedelta(hours=9, minutes=10)]) == (6, 5)
        assert DAY + timedelta(hours=12) not in a and DAY + timedelta(hours=13) not in a  # shelved, low
        for pos, want in HAND.items():
            got = series[pos]
            assert sum(got.values()) == want["alarms"] == health[pos].alarms
            assert {t for t, n in got.items() if n > 10} == want["flood_buckets"]
            assert max(got.values()) == health[pos].max_10min

        # % of time in flood
        names, rows = _run(conn, _target("% of time in flood", bureau.targets), ctx)
        flood = {r[0]: (r[1], r[2]) for r in rows}
        assert set(flood) == {labels[p] for p in HAND}
        for pos, want in HAND.items():
            pct, minutes = flood[labels[pos]]
            n = len(want["flood_buckets"])
            assert pct == pytest.approx(100.0 * n / INTERVALS) and minutes == 10.0 * n
            assert pct == pytest.approx(health[pos].pct_time_in_flood) and minutes == health[pos].flood_minutes
            assert health[pos].intervals == INTERVALS
        assert flood[labels["ctl-b"]] == (0.0, 0.0) and not health["ctl-b"].flooding  # the quiet one
        assert [r[0] for r in rows] == [labels["cr-plant-a"], labels["bureau-desk"], labels["ctl-b"]]

        # standing alarms at the end of the range
        _, rows = _run(conn, _target("Standing alarms", bureau.targets), ctx)
        standing = dict(rows)
        for pos, want in HAND.items():
            assert standing[labels[pos]] == want["standing"] == len(health[pos].standing), pos
        assert sorted(s.rule_id for s in health["cr-plant-a"].standing) == ["r-after", "r-stand", "r-twice"]

        # top-10 bad actors, with their share
        names, rows = _run(conn, _target("Top-10 bad actors", bureau.targets), ctx)
        assert names == list(_target("Top-10 bad actors", bureau.targets).expect.columns)
        by_pos: dict[str, list[tuple[Any, ...]]] = {}
        for pos, rank, _alarm_title, rule, subject, n, share in rows:
            by_pos.setdefault(pos, []).append((rank, rule, subject, n, share))
        for pos, want in HAND.items():
            got = by_pos[pos]
            assert [g[0] for g in got] == list(range(1, len(want["top"]) + 1))
            assert [(g[1], g[2], g[3]) for g in got] == want["top"]
            assert [g[4] for g in got] == pytest.approx([100.0 * n / want["alarms"] for _, _, n in want["top"]])
            assert [(b.rule_id, b.subject, b.count) for b in health[pos].top] == want["top"]
            assert [g[4] for g in got] == pytest.approx([100.0 * b.share for b in health[pos].top])
        assert by_pos["cr-plant-a"][0][4] == pytest.approx(100.0 * 18 / 68)


def test_a_quiet_range_reports_no_flood_and_ranges_are_half_open_like_health(filled: str) -> None:
    with psycopg.connect(filled) as owner:
        bureau = next(d for d in generate(owner) if d.uid == BUREAU_UID)
        quiet = service.position_health(owner, "cr-plant-a", START + 2 * H, START + 5 * H + 1200, None)[1]
        burst = service.position_health(owner, "cr-plant-a", START + 5 * H + 1200, START + 5 * H + 1800, None)[1]
    flood, per_10, top = (_target(s, bureau.targets) for s in ("% of time in flood", "Alarms per 10 minutes",
                                                                "Top-10 bad actors"))
    # 02:00-05:20, between the first two floods; the second starts exactly at 05:20:00 and must not count
    ctx = QueryContext(DAY + timedelta(hours=2), DAY + timedelta(hours=5, minutes=20))
    with grafana_login(filled) as reader_url, psycopg.connect(reader_url) as conn:
        _, rows = _run(conn, flood, ctx)
        assert len(rows) == 3 and all(r[1] == 0.0 and r[2] == 0.0 for r in rows)
        _, rows = _run(conn, per_10, ctx)
        assert {r[1] for r in rows} == {"ctl-b"}  # only plant-b's hourly alarms
        assert quiet.alarms == 0 and not quiet.flooding and quiet.intervals == 20
        _, rows = _run(conn, top, ctx)
        assert [r[0] for r in rows] == ["ctl-b"]
        # 05:20-05:30: the whole range is one flooded interval
        ctx = QueryContext(DAY + timedelta(hours=5, minutes=20), DAY + timedelta(hours=5, minutes=30))
        _, rows = _run(conn, flood, ctx)
        pct = {r[0].split(" ")[0]: r[1] for r in rows}
        assert pct == {"cr-plant-a": 100.0, "ctl-b": 0.0, "bureau-desk": 0.0}
        assert burst.pct_time_in_flood == 100.0 and burst.alarms == 11
        _, rows = _run(conn, top, ctx)
        assert [(r[0], r[3], r[5], r[6]) for r in rows] == [("cr-plant-a", "r-burst", 11, 100.0)]


def test_the_views_are_enterprise_free_and_read_only(filled: str) -> None:
    with grafana_login(filled) as reader_url, psycopg.connect(reader_url) as conn:
        cols = conn.execute("SELECT table_name, column_name FROM information_schema.columns"
                            " WHERE table_schema = 'grafana' AND table_name IN"
                            " ('alarm_positions', 'position_alarm_events')").fetchall()
        assert {c[1] for c in cols} == {"position_id", "name", "kind", "min_severity", "time", "rule_id", "subject",
                                        "event", "annunciate", "severity"}
        # acks, shelving and who did them stay out of the position view
        events = conn.execute("SELECT DISTINCT event FROM grafana.position_alarm_events").fetchall()
        assert {e[0] for e in events} == {"activate", "clear"}
        # the reader may only SELECT (the views are not updatable anyway; the grant is what protects them)
        privs = conn.execute("SELECT v, p, has_table_privilege(current_user, 'grafana.' || v, p)"
                             " FROM unnest(ARRAY['alarm_positions', 'position_alarm_events']) AS v,"
                             " unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS p").fetchall()
        assert {(v, p) for v, p, ok in privs if ok} == {("alarm_positions", "SELECT"),
                                                        ("position_alarm_events", "SELECT")}
        for stmt in ("SELECT * FROM public.operator_positions", "SELECT * FROM public.plant_positions",
                     "SELECT * FROM public.alarm_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(stmt)
            conn.rollback()


def test_a_position_name_cannot_inject_sql_into_the_panels(filled: str) -> None:
    """Position ids and names are data in the views, never text in the panel SQL."""
    with psycopg.connect(filled, autocommit=True) as owner:
        with pytest.raises(psycopg.errors.CheckViolation):  # the id is constrained
            owner.execute("INSERT INTO operator_positions (id, name, kind, min_severity)"
                          " VALUES ('x''; DROP TABLE alarm_events; --', 'n', 'bureau_desk', 'urgent')")
        owner.execute("INSERT INTO operator_positions (id, name, kind, min_severity)"
                      " VALUES ('desk-2', 'x''); DROP TABLE alarm_events; --', 'bureau_desk', 'urgent')")
        bureau = next(d for d in generate(owner) if d.uid == BUREAU_UID)
        assert all("DROP TABLE" not in t.sql for t in bureau.targets)
    with grafana_login(filled) as reader_url, psycopg.connect(reader_url) as conn:
        _, rows = _run(conn, _target("Standing alarms", bureau.targets), QueryContext(DAY, DAY + timedelta(days=1)))
        assert dict(rows)["desk-2 x'); DROP TABLE alarm_events; --"] == 1  # r-stand is urgent: the new desk sees it
    with psycopg.connect(filled) as owner:
        assert owner.execute("SELECT count(*) FROM alarm_events").fetchone() == (len(history()),)
        with pytest.raises(RecordNotFound):  # an enterprise does not see the bureau's desks in the records API
            service.position_health(owner, "desk-2", START, END, "ent-a")
