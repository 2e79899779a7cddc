"""The annual summary and the 2024-2026 three-year evaluation: the figures the action plan asks for.

Every figure is read from the raw tables (hazards, hazard_events,
hazard_interviews, the records, points and readings_1m) for calendar years in
China Standard Time and cut at the injected `now`, so a report run in
November 2026 counts 2026 up to that day. `scope` None is the bureau's county
view; an enterprise's view has its own rows only and no whistle-blower figures
at all (the reporters' safety: rewards are the bureau's).

Definitions:
- hazards found: tickets created in the year (any source, including those later
  dismissed); closed: tickets closed (销号) in the year; by source × industry.
- 动态清零: confirmed major hazards open at the end of each month (confirmed
  before it, not closed or dismissed before it) — the figure driven to zero.
- supervision listings: 挂牌督办 events in the year, by level (an escalation
  from county to city counts once at each level).
- data availability: per point, readings received (the 1-minute rollup's
  counts, which outlive raw retention) / readings expected from the point's
  interval over the year, from the later of the year's start and the point's
  registration, up to `now`; received is capped at expected per point.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg

from core.clock import ts
from hazards.records import cadence as cad
from hazards.records import store

CST = timezone(timedelta(hours=8), "CST")
EVALUATION_YEARS = (2024, 2025, 2026)


def year_bounds(year: int) -> tuple[float, float]:
    return datetime(year, 1, 1, tzinfo=CST).timestamp(), datetime(year + 1, 1, 1, tzinfo=CST).timestamp()


def cst_date(t: float) -> date:
    return datetime.fromtimestamp(t, CST).date()


@dataclass
class HazardCell:
    source: str
    industry: str
    found: int
    closed: int


@dataclass
class CadenceRow:
    enterprise_id: str
    enterprise_name: str
    level: str
    frequency: str
    due: int
    done: int
    missed: int
    open: int
    missed_periods: list[str]


@dataclass
class TrainingRow:
    enterprise_id: str
    enterprise_name: str
    headcount: int | None
    trained: int
    coverage: float | None
    courses: int
    drills: int
    drill_participants: int
    meetings: int  # monthly analysis meetings held in the year


@dataclass
class AvailabilityRow:
    enterprise_id: str
    enterprise_name: str
    points: int
    expected: int
    received: int

    @property
    def availability(self) -> float | None:
        return None if self.expected == 0 else self.received / self.expected


@dataclass
class YearFigures:
    year: int
    hazards: list[HazardCell]
    hazards_found: int
    hazards_closed: int
    zero_progress: list[tuple[str, int]]  # (month, confirmed open at its end)
    supervision_county: int
    supervision_city: int
    interviews: int
    meetings: int
    public_tips: int | None  # bureau only
    rewards_approved_yuan: Decimal | None  # bureau only
    cadence: list[CadenceRow]
    missed_cadences: int
    training: list[TrainingRow]
    enterprises_with_drill: int
    enterprises: int
    training_coverage: float | None  # county: sum trained / sum headcount (enterprises with a headcount)
    availability: list[AvailabilityRow]
    availability_total: float | None


@dataclass
class Evaluation:
    kind: str  # annual | evaluation
    years: list[YearFigures]
    scope: str | None
    generated_at: float
    totals: dict[str, int] = field(default_factory=dict)


# --- hazards ----------------------------------------------------------------------------------


def _hazards(conn: psycopg.Connection, s: float, e: float, scope: str | None) -> list[HazardCell]:
    rows = conn.execute(
        """SELECT h.source, coalesce(pl.industry, ''),
                  count(*) FILTER (WHERE h.created_at >= %(s)s AND h.created_at < %(e)s),
                  count(*) FILTER (WHERE h.closed_at >= %(s)s AND h.closed_at < %(e)s)
           FROM hazards h LEFT JOIN plants pl ON pl.id = h.plant_id
           WHERE (%(scope)s::text IS NULL OR h.enterprise_id = %(scope)s)
             AND ((h.created_at >= %(s)s AND h.created_at < %(e)s) OR (h.closed_at >= %(s)s AND h.closed_at < %(e)s))
           GROUP BY 1, 2 ORDER BY 1, 2""", {"s": ts(s), "e": ts(e), "scope": scope}).fetchall()
    return [HazardCell(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in rows]


def month_ends(year: int, now: float) -> list[tuple[str, float]]:
    """(month, its end) for the months of a year that have ended by now, plus the running month cut at now."""
    out = []
    for m in range(1, 13):
        start = datetime(year, m, 1, tzinfo=CST).timestamp()
        if start > now:
            break
        end = datetime(year + (m == 12), m % 12 + 1, 1, tzinfo=CST).timestamp()
        out.append((f"{year:04d}-{m:02d}", min(end, now)))
    return out


def _zero_progress(conn: psycopg.Connection, year: int, now: float, scope: str | None) -> list[tuple[str, int]]:
    out = []
    for month, cut in month_ends(year, now):
        row = conn.execute(
            """SELECT count(*) FROM hazards h WHERE h.confirmed_at < %(c)s
                 AND (h.closed_at IS NULL OR h.closed_at >= %(c)s)
                 AND (h.dismissed_at IS NULL OR h.dismissed_at >= %(c)s)
                 AND (%(scope)s::text IS NULL OR h.enterprise_id = %(scope)s)""",
            {"c": ts(cut), "scope": scope}).fetchone()
        out.append((month, int(row[0]) if row else 0))
    return out


def _count(conn: psycopg.Connection, sql: str, args: dict[str, object]) -> int:
    row = conn.execute(sql, args).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# --- availability -----------------------------------------------------------------------------


def expected_readings(interval_s: float, frm: float, to: float) -> int:
    """Readings a point reporting every interval_s should have delivered in [frm, to)."""
    return 0 if to <= frm else int((to - frm) // interval_s)


def _availability(conn: psycopg.Connection, s: float, e: float, now: float, scope: str | None,
                  names: dict[str, str]) -> list[AvailabilityRow]:
    cut = min(e, now)
    rows = conn.execute(
        """SELECT pl.enterprise_id, p.interval_s, extract(epoch FROM p.created_at)::float8,
                  (SELECT coalesce(sum(r.count), 0) FROM readings_1m r
                    WHERE r.point_id = p.id AND r.bucket >= %(s)s AND r.bucket < %(c)s)
           FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
           WHERE (%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s) ORDER BY p.id""",
        {"s": ts(s), "c": ts(cut), "scope": scope}).fetchall()
    agg: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for ent, interval, created, got in rows:
        exp = expected_readings(float(interval), max(s, float(created)), cut)
        a = agg[str(ent)]
        a[0] += 1
        a[1] += exp
        a[2] += min(int(got), exp)
    return [AvailabilityRow(ent, names.get(ent, ent), *v) for ent, v in sorted(agg.items())]


# --- assembling one year ------------------------------------------------------------------------


def year_figures(conn: psycopg.Connection, year: int, now: float, scope: str | None,
                 cadence: cad.Cadence = cad.DEFAULT) -> YearFigures:
    s, e = year_bounds(year)
    args: dict[str, object] = {"s": ts(s), "e": ts(e), "scope": scope}
    cells = _hazards(conn, s, e, scope)
    scope_h = "(%(scope)s::text IS NULL OR h.enterprise_id = %(scope)s)"
    sup = conn.execute(
        f"""SELECT ev.data->>'level', count(*) FROM hazard_events ev JOIN hazards h ON h.id = ev.hazard_id
            WHERE ev.action = 'supervise' AND ev.time >= %(s)s AND ev.time < %(e)s AND {scope_h} GROUP BY 1""",
        args).fetchall()
    sup_by = {str(r[0]): int(r[1]) for r in sup}
    interviews = _count(conn, "SELECT count(*) FROM hazard_interviews WHERE held_at >= %(s)s AND held_at < %(e)s"
                              " AND (%(scope)s::text IS NULL OR enterprise_id = %(scope)s)", args)
    tips = rewards = None
    if scope is None:
        tips = _count(conn, "SELECT count(*) FROM hazards WHERE source = 'public_tip' AND created_at >= %(s)s"
                            " AND created_at < %(e)s", args)
        row = conn.execute(
            "SELECT coalesce(sum((ev.data->>'amount_yuan')::numeric), 0) FROM hazard_events ev"
            " WHERE ev.action = 'set_reward' AND ev.data->>'reward_status' = 'approved'"
            " AND ev.time >= %(s)s AND ev.time < %(e)s", args).fetchone()
        rewards = Decimal(row[0] if row else 0).quantize(Decimal("0.01"))
    ents = store.enterprises(conn, scope)
    names = {x.id: x.name for x in ents}
    # cadence: inspections of the year, widened by a week each side for periods straddling its edges
    first, last = date(year, 1, 1), date(year + 1, 1, 1)
    today = cst_date(now)
    dates = store.inspection_dates(conn, scope, first - timedelta(days=7), last + timedelta(days=7))
    cadence_rows: list[CadenceRow] = []
    for ent in ents:
        freq = cadence.for_industries(ent.industries)
        for lv in cad.Level:
            c = cad.compliance(lv, freq[lv], dates.get((ent.id, lv.value), []), first, last, today)
            cadence_rows.append(CadenceRow(ent.id, ent.name, lv.value, c.frequency, c.due, c.done, c.missed, c.open,
                                           list(c.missed_periods)))
    meetings_by: dict[str | None, int] = {
        (None if r[0] is None else str(r[0])): int(r[1]) for r in conn.execute(
            "SELECT enterprise_id, count(DISTINCT extract(month FROM held_on)) FROM analysis_meetings"
            " WHERE held_on >= %(f)s AND held_on < %(l)s AND (%(scope)s::text IS NULL OR enterprise_id = %(scope)s)"
            " GROUP BY 1", {"f": first, "l": last, "scope": scope}).fetchall()}
    training = [TrainingRow(t.enterprise_id, names.get(t.enterprise_id, t.enterprise_id), t.headcount, t.trained,
                            t.coverage, t.courses, t.drills, t.drill_participants,
                            meetings_by.get(t.enterprise_id, 0))
                for t in store.year_training(conn, scope, year)]
    with_head = [t for t in training if t.headcount]
    head = sum(t.headcount or 0 for t in with_head)
    avail = _availability(conn, s, e, now, scope, names)
    exp = sum(a.expected for a in avail)
    return YearFigures(
        year=year, hazards=cells, hazards_found=sum(c.found for c in cells),
        hazards_closed=sum(c.closed for c in cells), zero_progress=_zero_progress(conn, year, now, scope),
        supervision_county=sup_by.get("county", 0), supervision_city=sup_by.get("city", 0),
        interviews=interviews, meetings=sum(meetings_by.values()), public_tips=tips, rewards_approved_yuan=rewards,
        cadence=cadence_rows, missed_cadences=sum(r.missed for r in cadence_rows), training=training,
        enterprises_with_drill=sum(1 for t in training if t.drills > 0), enterprises=len(training),
        training_coverage=None if head == 0 else min(sum(min(t.trained, t.headcount or 0) for t in with_head), head)
        / head,
        availability=avail, availability_total=None if exp == 0 else sum(a.received for a in avail) / exp)


def annual(conn: psycopg.Connection, year: int, now: float, scope: str | None,
           cadence: cad.Cadence = cad.DEFAULT) -> Evaluation:
    """The annual summary (due before 1 December)."""
    return Evaluation("annual", [year_figures(conn, year, now, scope, cadence)], scope, now)


def three_year(conn: psycopg.Connection, now: float, scope: str | None, cadence: cad.Cadence = cad.DEFAULT,
               years: tuple[int, ...] = EVALUATION_YEARS) -> Evaluation:
    """The three-year evaluation of the action plan (due before 10 November 2026): each year and the totals."""
    ys = [year_figures(conn, y, now, scope, cadence) for y in years]
    totals = {"hazards_found": sum(y.hazards_found for y in ys), "hazards_closed": sum(y.hazards_closed for y in ys),
              "supervision_county": sum(y.supervision_county for y in ys),
              "supervision_city": sum(y.supervision_city for y in ys), "interviews": sum(y.interviews for y in ys),
              "meetings": sum(y.meetings for y in ys), "missed_cadences": sum(y.missed_cadences for y in ys)}
    if scope is None:
        totals["public_tips"] = sum(y.public_tips or 0 for y in ys)
    return Evaluation("evaluation", ys, scope, now, totals)
