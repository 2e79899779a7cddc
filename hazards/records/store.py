"""SQL of the records: inspections, findings, drills, training, headcount, meetings, operator positions.

Every read takes `scope` (the caller's enterprise, or None for the bureau): a
row of another enterprise is not found. Writes are checked by `records.service`
before they get here. Dates (inspected_on, held_on) are calendar days in China
Standard Time, the bureau's calendar; times are epoch seconds at this boundary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row

from core.clock import ts
from hazards.records.health import SEVERITY_RANK, AlarmKey, HistoryEvent, StartState


def _scope(scope: str | None, col: str = "enterprise_id") -> tuple[str, list[Any]]:
    return ("", []) if scope is None else (f" AND {col} = %s", [scope])


def _conds(pairs: Sequence[tuple[str, object]]) -> tuple[str, list[Any]]:
    sql, args = "", []
    for cond, val in pairs:
        if val is not None:
            sql += f" AND {cond}"
            args.append(val)
    return sql, args


# --- the registry as the records see it ---------------------------------------------------------


def enterprise_exists(conn: psycopg.Connection, enterprise_id: str) -> bool:
    return conn.execute("SELECT 1 FROM enterprises WHERE id = %s", (enterprise_id,)).fetchone() is not None


def plant_enterprise(conn: psycopg.Connection, plant_id: str) -> str | None:
    row = conn.execute("SELECT enterprise_id FROM plants WHERE id = %s", (plant_id,)).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class EnterpriseInfo:
    id: str
    name: str
    industries: tuple[str, ...]


def enterprises(conn: psycopg.Connection, scope: str | None) -> list[EnterpriseInfo]:
    where, args = _scope(scope, "e.id")
    rows = conn.execute(
        "SELECT e.id, e.name, coalesce(array_agg(DISTINCT pl.industry) FILTER (WHERE pl.industry IS NOT NULL), '{}')"
        f" FROM enterprises e LEFT JOIN plants pl ON pl.enterprise_id = e.id WHERE true{where}"
        " GROUP BY e.id, e.name ORDER BY e.id", args).fetchall()
    return [EnterpriseInfo(str(r[0]), str(r[1]), tuple(sorted(r[2]))) for r in rows]


# --- self-inspections ---------------------------------------------------------------------------


@dataclass
class InspectionRecord:
    id: int
    enterprise_id: str
    plant_id: str | None
    level: str
    inspected_on: date
    inspector: str
    scope: str
    summary: str
    recorded_by: str
    recorded_at: datetime


_INSPECTION_COLS = ("id, enterprise_id, plant_id, level, inspected_on, inspector, scope, summary, recorded_by,"
                    " recorded_at")


@dataclass(frozen=True)
class NewInspection:
    enterprise_id: str
    level: str
    inspected_on: date
    inspector: str
    scope: str = ""
    summary: str = ""
    plant_id: str | None = None


def insert_inspection(conn: psycopg.Connection, i: NewInspection, recorded_by: str, now: float) -> InspectionRecord:
    with conn.cursor(row_factory=class_row(InspectionRecord)) as cur:
        row = cur.execute(
            f"""INSERT INTO self_inspections (enterprise_id, plant_id, level, inspected_on, inspector, scope, summary,
                    recorded_by, recorded_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING {_INSPECTION_COLS}""",
            (i.enterprise_id, i.plant_id, i.level, i.inspected_on, i.inspector, i.scope, i.summary, recorded_by,
             ts(now))).fetchone()
    assert row is not None
    return row


def get_inspection(conn: psycopg.Connection, inspection_id: int, scope: str | None) -> InspectionRecord | None:
    where, args = _scope(scope)
    with conn.cursor(row_factory=class_row(InspectionRecord)) as cur:
        return cur.execute(f"SELECT {_INSPECTION_COLS} FROM self_inspections WHERE id = %s{where}",
                           [inspection_id, *args]).fetchone()


def list_inspections(conn: psycopg.Connection, scope: str | None, *, enterprise_id: str | None = None,
                     level: str | None = None, frm: date | None = None, to: date | None = None, limit: int = 50,
                     offset: int = 0) -> tuple[list[InspectionRecord], int]:
    where, args = _scope(scope)
    more, margs = _conds([("enterprise_id = %s", enterprise_id), ("level = %s", level),
                          ("inspected_on >= %s", frm), ("inspected_on < %s", to)])
    where, args = " WHERE true" + where + more, [*args, *margs]
    total = conn.execute("SELECT count(*) FROM self_inspections" + where, args).fetchone()
    with conn.cursor(row_factory=class_row(InspectionRecord)) as cur:
        rows = cur.execute(f"SELECT {_INSPECTION_COLS} FROM self_inspections{where}"
                           " ORDER BY inspected_on DESC, id DESC LIMIT %s OFFSET %s", [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0


def inspection_dates(conn: psycopg.Connection, scope: str | None, start: date,
                     end: date) -> dict[tuple[str, str], list[date]]:
    """(enterprise, level) -> inspection days in [start, end) (widened by callers for straddling periods)."""
    where, args = _scope(scope)
    rows = conn.execute(f"SELECT enterprise_id, level, inspected_on FROM self_inspections"
                        f" WHERE inspected_on >= %s AND inspected_on < %s{where}", [start, end, *args]).fetchall()
    out: dict[tuple[str, str], list[date]] = defaultdict(list)
    for ent, level, d in rows:
        out[(str(ent), str(level))].append(d)
    return dict(out)


# --- findings (of an inspection or a drill) -------------------------------------------------------


@dataclass
class FindingRecord:
    id: int
    enterprise_id: str
    inspection_id: int | None
    drill_id: int | None
    description: str
    location: str
    hazard_id: int | None
    hazard_opened_at: datetime | None
    recorded_by: str
    recorded_at: datetime


_FINDING_COLS = ("id, enterprise_id, inspection_id, drill_id, description, location, hazard_id, hazard_opened_at,"
                 " recorded_by, recorded_at")


def insert_finding(conn: psycopg.Connection, enterprise_id: str, description: str, location: str, recorded_by: str,
                   now: float, *, inspection_id: int | None = None, drill_id: int | None = None) -> FindingRecord:
    with conn.cursor(row_factory=class_row(FindingRecord)) as cur:
        row = cur.execute(
            f"""INSERT INTO record_findings (enterprise_id, inspection_id, drill_id, description, location,
                    recorded_by, recorded_at) VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING {_FINDING_COLS}""",
            (enterprise_id, inspection_id, drill_id, description, location, recorded_by, ts(now))).fetchone()
    assert row is not None
    return row


def get_finding(conn: psycopg.Connection, finding_id: int, scope: str | None, *,
                lock: bool = False) -> FindingRecord | None:
    where, args = _scope(scope)
    with conn.cursor(row_factory=class_row(FindingRecord)) as cur:
        return cur.execute(f"SELECT {_FINDING_COLS} FROM record_findings WHERE id = %s{where}"
                           + (" FOR UPDATE" if lock else ""), [finding_id, *args]).fetchone()


def findings(conn: psycopg.Connection, scope: str | None, *, inspection_id: int | None = None,
             drill_id: int | None = None) -> list[FindingRecord]:
    where, args = _scope(scope)
    more, margs = _conds([("inspection_id = %s", inspection_id), ("drill_id = %s", drill_id)])
    with conn.cursor(row_factory=class_row(FindingRecord)) as cur:
        return cur.execute(f"SELECT {_FINDING_COLS} FROM record_findings WHERE true{where}{more} ORDER BY id",
                           [*args, *margs]).fetchall()


def link_hazard(conn: psycopg.Connection, finding_id: int, hazard_id: int, now: float) -> None:
    conn.execute("UPDATE record_findings SET hazard_id = %s, hazard_opened_at = %s WHERE id = %s AND hazard_id IS NULL",
                 (hazard_id, ts(now), finding_id))


def finding_for_hazard(conn: psycopg.Connection, hazard_id: int, scope: str | None) -> FindingRecord | None:
    """The other direction of the link: the finding (and so the inspection or drill) a hazard came from."""
    where, args = _scope(scope)
    with conn.cursor(row_factory=class_row(FindingRecord)) as cur:
        return cur.execute(f"SELECT {_FINDING_COLS} FROM record_findings WHERE hazard_id = %s{where}",
                           [hazard_id, *args]).fetchone()


# --- drills -------------------------------------------------------------------------------------


@dataclass
class DrillRecord:
    id: int
    enterprise_id: str
    plant_id: str | None
    held_on: date
    scenario: str
    participants: int
    participant_names: str
    summary: str
    recorded_by: str
    recorded_at: datetime


_DRILL_COLS = ("id, enterprise_id, plant_id, held_on, scenario, participants, participant_names, summary, recorded_by,"
               " recorded_at")


@dataclass(frozen=True)
class NewDrill:
    enterprise_id: str
    held_on: date
    scenario: str
    participants: int
    participant_names: str = ""
    summary: str = ""
    plant_id: str | None = None


def insert_drill(conn: psycopg.Connection, d: NewDrill, recorded_by: str, now: float) -> DrillRecord:
    with conn.cursor(row_factory=class_row(DrillRecord)) as cur:
        row = cur.execute(
            f"""INSERT INTO drills (enterprise_id, plant_id, held_on, scenario, participants, participant_names,
                    summary, recorded_by, recorded_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING {_DRILL_COLS}""",
            (d.enterprise_id, d.plant_id, d.held_on, d.scenario, d.participants, d.participant_names, d.summary,
             recorded_by, ts(now))).fetchone()
    assert row is not None
    return row


def get_drill(conn: psycopg.Connection, drill_id: int, scope: str | None) -> DrillRecord | None:
    where, args = _scope(scope)
    with conn.cursor(row_factory=class_row(DrillRecord)) as cur:
        return cur.execute(f"SELECT {_DRILL_COLS} FROM drills WHERE id = %s{where}", [drill_id, *args]).fetchone()


def list_drills(conn: psycopg.Connection, scope: str | None, *, enterprise_id: str | None = None,
                year: int | None = None, limit: int = 50, offset: int = 0) -> tuple[list[DrillRecord], int]:
    where, args = _scope(scope)
    more, margs = _conds([("enterprise_id = %s", enterprise_id),
                          ("extract(year FROM held_on) = %s", year)])
    where, args = " WHERE true" + where + more, [*args, *margs]
    total = conn.execute("SELECT count(*) FROM drills" + where, args).fetchone()
    with conn.cursor(row_factory=class_row(DrillRecord)) as cur:
        rows = cur.execute(f"SELECT {_DRILL_COLS} FROM drills{where} ORDER BY held_on DESC, id DESC"
                           " LIMIT %s OFFSET %s", [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0


# --- training and headcount ---------------------------------------------------------------------


@dataclass
class TrainingRecord:
    id: int
    enterprise_id: str
    held_on: date
    course: str
    hours: Decimal
    trainer: str
    recorded_by: str
    recorded_at: datetime
    attendees: int


@dataclass(frozen=True)
class Attendee:
    person_key: str
    name: str = ""


@dataclass(frozen=True)
class NewTraining:
    enterprise_id: str
    held_on: date
    course: str
    attendees: Sequence[Attendee]
    hours: Decimal = Decimal(0)
    trainer: str = ""


_TRAINING_SELECT = """SELECT t.id, t.enterprise_id, t.held_on, t.course, t.hours, t.trainer, t.recorded_by,
    t.recorded_at, (SELECT count(*) FROM training_attendees a WHERE a.training_id = t.id)::int AS attendees
FROM trainings t"""


def insert_training(conn: psycopg.Connection, t: NewTraining, recorded_by: str, now: float) -> int:
    row = conn.execute(
        "INSERT INTO trainings (enterprise_id, held_on, course, hours, trainer, recorded_by, recorded_at)"
        " VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
        (t.enterprise_id, t.held_on, t.course, t.hours, t.trainer, recorded_by, ts(now))).fetchone()
    assert row is not None
    tid = int(row[0])
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO training_attendees (training_id, person_key, name) VALUES (%s,%s,%s)"
                        " ON CONFLICT DO NOTHING", [(tid, a.person_key, a.name) for a in t.attendees])
    return tid


def get_training(conn: psycopg.Connection, training_id: int, scope: str | None) -> TrainingRecord | None:
    where, args = _scope(scope, "t.enterprise_id")
    with conn.cursor(row_factory=class_row(TrainingRecord)) as cur:
        return cur.execute(_TRAINING_SELECT + f" WHERE t.id = %s{where}", [training_id, *args]).fetchone()


def list_trainings(conn: psycopg.Connection, scope: str | None, *, enterprise_id: str | None = None,
                   year: int | None = None, limit: int = 50, offset: int = 0) -> tuple[list[TrainingRecord], int]:
    where, args = _scope(scope, "t.enterprise_id")
    more, margs = _conds([("t.enterprise_id = %s", enterprise_id), ("extract(year FROM t.held_on) = %s", year)])
    where, args = " WHERE true" + where + more, [*args, *margs]
    total = conn.execute("SELECT count(*) FROM trainings t" + where, args).fetchone()
    with conn.cursor(row_factory=class_row(TrainingRecord)) as cur:
        rows = cur.execute(_TRAINING_SELECT + where + " ORDER BY t.held_on DESC, t.id DESC LIMIT %s OFFSET %s",
                           [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0


def set_headcount(conn: psycopg.Connection, enterprise_id: str, year: int, headcount: int, recorded_by: str,
                  now: float) -> None:
    conn.execute(
        "INSERT INTO enterprise_headcounts (enterprise_id, year, headcount, recorded_by, recorded_at)"
        " VALUES (%s,%s,%s,%s,%s) ON CONFLICT (enterprise_id, year) DO UPDATE SET headcount = EXCLUDED.headcount,"
        " recorded_by = EXCLUDED.recorded_by, recorded_at = EXCLUDED.recorded_at",
        (enterprise_id, year, headcount, recorded_by, ts(now)))


@dataclass(frozen=True)
class YearTraining:
    """One enterprise's training and drills in one year."""

    enterprise_id: str
    year: int
    headcount: int | None
    trained: int  # distinct attendees over the year's courses
    courses: int
    drills: int
    drill_participants: int

    @property
    def coverage(self) -> float | None:
        """Distinct attendees / headcount, capped at 1 (fewer staff than attendees is a data error, not >100 %)."""
        return None if not self.headcount else min(1.0, self.trained / self.headcount)


def year_training(conn: psycopg.Connection, scope: str | None, year: int) -> list[YearTraining]:
    rows = conn.execute(
        """SELECT e.id,
                   (SELECT h.headcount FROM enterprise_headcounts h WHERE h.enterprise_id = e.id AND h.year = %(y)s),
                   (SELECT count(DISTINCT a.person_key) FROM trainings t
                      JOIN training_attendees a ON a.training_id = t.id
                     WHERE t.enterprise_id = e.id AND extract(year FROM t.held_on) = %(y)s),
                   (SELECT count(*) FROM trainings t
                     WHERE t.enterprise_id = e.id AND extract(year FROM t.held_on) = %(y)s),
                   (SELECT count(*) FROM drills d
                     WHERE d.enterprise_id = e.id AND extract(year FROM d.held_on) = %(y)s),
                   (SELECT coalesce(sum(d.participants), 0) FROM drills d
                     WHERE d.enterprise_id = e.id AND extract(year FROM d.held_on) = %(y)s)
            FROM enterprises e WHERE (%(scope)s::text IS NULL OR e.id = %(scope)s) ORDER BY e.id""",
        {"y": year, "scope": scope}).fetchall()
    return [YearTraining(str(r[0]), year, None if r[1] is None else int(r[1]), int(r[2]), int(r[3]), int(r[4]),
                         int(r[5])) for r in rows]


# --- monthly analysis meetings ------------------------------------------------------------------


@dataclass
class MeetingRecord:
    id: int
    enterprise_id: str | None
    held_on: date
    chair: str
    attendees: list[str]
    decisions: list[str]
    summary: str
    recorded_by: str
    recorded_at: datetime


_MEETING_COLS = "id, enterprise_id, held_on, chair, attendees, decisions, summary, recorded_by, recorded_at"


@dataclass(frozen=True)
class NewMeeting:
    enterprise_id: str | None
    held_on: date
    attendees: Sequence[str]
    decisions: Sequence[str] = ()
    chair: str = ""
    summary: str = ""


def insert_meeting(conn: psycopg.Connection, m: NewMeeting, recorded_by: str, now: float) -> MeetingRecord:
    with conn.cursor(row_factory=class_row(MeetingRecord)) as cur:
        row = cur.execute(
            f"""INSERT INTO analysis_meetings (enterprise_id, held_on, chair, attendees, decisions, summary,
                    recorded_by, recorded_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING {_MEETING_COLS}""",
            (m.enterprise_id, m.held_on, m.chair, list(m.attendees), list(m.decisions), m.summary, recorded_by,
             ts(now))).fetchone()
    assert row is not None
    return row


def get_meeting(conn: psycopg.Connection, meeting_id: int, scope: str | None) -> MeetingRecord | None:
    where, args = _scope(scope)
    with conn.cursor(row_factory=class_row(MeetingRecord)) as cur:
        return cur.execute(f"SELECT {_MEETING_COLS} FROM analysis_meetings WHERE id = %s{where}",
                           [meeting_id, *args]).fetchone()


def list_meetings(conn: psycopg.Connection, scope: str | None, *, enterprise_id: str | None = None,
                  year: int | None = None, limit: int = 50, offset: int = 0) -> tuple[list[MeetingRecord], int]:
    where, args = _scope(scope)
    more, margs = _conds([("enterprise_id = %s", enterprise_id), ("extract(year FROM held_on) = %s", year)])
    where, args = " WHERE true" + where + more, [*args, *margs]
    total = conn.execute("SELECT count(*) FROM analysis_meetings" + where, args).fetchone()
    with conn.cursor(row_factory=class_row(MeetingRecord)) as cur:
        rows = cur.execute(f"SELECT {_MEETING_COLS} FROM analysis_meetings{where}"
                           " ORDER BY held_on DESC, id DESC LIMIT %s OFFSET %s", [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0


# --- operator positions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    id: str
    name: str
    kind: str  # control_room | bureau_desk
    enterprise_id: str | None
    min_severity: str
    plant_ids: tuple[str, ...]


def positions(conn: psycopg.Connection, scope: str | None) -> list[Position]:
    """Every position the caller may see: explicit ones, a control room per unmapped plant, the bureau desks.

    An enterprise sees its own control rooms only; the bureau desk watches the whole county."""
    plants = conn.execute("SELECT pl.id, pl.name, pl.enterprise_id, pp.position_id FROM plants pl"
                          " LEFT JOIN plant_positions pp ON pp.plant_id = pl.id ORDER BY pl.id").fetchall()
    explicit = conn.execute("SELECT id, name, kind, enterprise_id, min_severity FROM operator_positions ORDER BY id"
                            ).fetchall()
    members: dict[str, list[str]] = defaultdict(list)
    out: list[Position] = []
    for pid, pname, ent, pos in plants:
        if pos is None:
            out.append(Position(f"cr-{pid}", f"{pname} 中控室 control room", "control_room", str(ent), "medium",
                                (str(pid),)))
        else:
            members[str(pos)].append(str(pid))
    all_plants = tuple(str(p[0]) for p in plants)
    for pid, name, kind, ent, sev in explicit:
        out.append(Position(str(pid), str(name), str(kind), ent, str(sev),
                            all_plants if kind == "bureau_desk" else tuple(members.get(str(pid), ()))))
    out.sort(key=lambda p: (p.kind != "bureau_desk", p.id))
    if scope is not None:
        out = [p for p in out if p.enterprise_id == scope]
    return out


def create_position(conn: psycopg.Connection, position_id: str, name: str, kind: str, enterprise_id: str | None,
                    min_severity: str) -> None:
    conn.execute("INSERT INTO operator_positions (id, name, kind, enterprise_id, min_severity)"
                 " VALUES (%s,%s,%s,%s,%s)", (position_id, name, kind, enterprise_id, min_severity))


def assign_plant(conn: psycopg.Connection, plant_id: str, position_id: str | None) -> None:
    """Map a plant to a control room (None: back to its own default control room)."""
    if position_id is None:
        conn.execute("DELETE FROM plant_positions WHERE plant_id = %s", (plant_id,))
    else:
        conn.execute("INSERT INTO plant_positions (plant_id, position_id) VALUES (%s, %s) ON CONFLICT (plant_id)"
                     " DO UPDATE SET position_id = EXCLUDED.position_id", (plant_id, position_id))


def position_row(conn: psycopg.Connection, position_id: str) -> tuple[str, str | None] | None:
    """(kind, enterprise) of an explicit position."""
    row = conn.execute("SELECT kind, enterprise_id FROM operator_positions WHERE id = %s", (position_id,)).fetchone()
    return None if row is None else (str(row[0]), row[1])


#: Events the health figures read; the rest (chatter markers, out of service) do not change them.
_HEALTH_EVENTS = ["activate", "clear", "ack", "shelve", "unshelve"]


def alarm_history(conn: psycopg.Connection, plant_ids: Sequence[str], start: float, end: float,
                  min_severity: str = "medium") -> tuple[list[HistoryEvent], dict[AlarmKey, StartState]]:
    """The events of these plants in [start, end) at or above a severity, and each alarm's state when the
    period began."""
    plants = list(plant_ids)
    sev = [s for s, r in SEVERITY_RANK.items() if r >= SEVERITY_RANK.get(min_severity, 0)]
    rows = conn.execute(
        "SELECT extract(epoch FROM time)::float8, rule_id, subject, event, annunciate, severity FROM alarm_events"
        " WHERE plant_id = ANY(%s) AND time >= %s AND time < %s AND event = ANY(%s) AND severity = ANY(%s)"
        " ORDER BY time, id", (plants, ts(start), ts(end), _HEALTH_EVENTS, sev)).fetchall()
    events = [HistoryEvent(float(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), str(r[5])) for r in rows]
    initial: dict[AlarmKey, StartState] = {}
    # the last activate/clear, ack/activate and shelve/unshelve of each alarm before the period
    last: dict[str, dict[AlarmKey, tuple[str, float]]] = {}
    for name, evs in (("active", ["activate", "clear"]), ("ack", ["activate", "ack"]),
                      ("shelf", ["shelve", "unshelve"])):
        found = conn.execute(
            "SELECT DISTINCT ON (rule_id, subject) rule_id, subject, event, extract(epoch FROM time)::float8"
            " FROM alarm_events WHERE plant_id = ANY(%s) AND time < %s AND event = ANY(%s) AND severity = ANY(%s)"
            " ORDER BY rule_id, subject, time DESC, id DESC", (plants, ts(start), evs, sev)).fetchall()
        last[name] = {(str(r[0]), str(r[1])): (str(r[2]), float(r[3])) for r in found}
    for key in set(last["active"]) | set(last["shelf"]):
        act = last["active"].get(key)
        since = act[1] if act is not None and act[0] == "activate" else None
        ack = last["ack"].get(key)
        shelf = last["shelf"].get(key)
        initial[key] = StartState(since, ack is not None and ack[0] == "ack",
                                  shelf is not None and shelf[0] == "shelve")
    return events, initial
