"""The records' operations: check the caller's scope and references, write, in one transaction each.

A finding opens a self-report hazard (企业自查) in one step through the same
function the API's self-report route uses (`hazards.ledger.open_ticket`), in
the same transaction as the link, so a finding is never linked to a ticket
that did not commit, nor a ticket left without its finding. The link is both
ways: the finding stores the hazard id (unique), the ticket's opening event
names the finding and its record, and `store.finding_for_hazard` answers from
the ticket's side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from hazards import ledger
from hazards.model import Actor, Source
from hazards.records import store
from hazards.records.cadence import Level
from hazards.records.errors import RecordForbidden, RecordInvalid, not_found
from hazards.records.health import SEVERITY_RANK, Health, compute
from hazards.records.store import FindingRecord

BUREAU = ("admin", "bureau")
MAX_FINDINGS = 200
MAX_ATTENDEES = 5000


def scope_of(actor: Actor) -> str | None:
    return actor.enterprise_id if actor.role == "enterprise" else None


def _check_enterprise(conn: psycopg.Connection, actor: Actor, enterprise_id: str, plant_id: str | None) -> None:
    """An enterprise writes only its own records; a plant named must be that enterprise's."""
    scope = scope_of(actor)
    if (scope is not None and enterprise_id != scope) or not store.enterprise_exists(conn, enterprise_id):
        raise not_found("企业", "Enterprise", enterprise_id)
    if plant_id is not None and store.plant_enterprise(conn, plant_id) != enterprise_id:
        raise not_found("厂区", "Plant", plant_id)


def _text(value: str, zh: str, en: str, limit: int = 500) -> str:
    """Required free text, trimmed; refused (not truncated) past its limit, before the database's CHECK."""
    if not value.strip():
        raise RecordInvalid(f"{zh}不能为空。 The {en} must be given.")
    if len(value.strip()) > limit:
        raise RecordInvalid(f"{zh}不超过 {limit} 字。 The {en} is longer than {limit} characters.")
    return value.strip()


@dataclass(frozen=True)
class NewFinding:
    description: str
    location: str = ""
    open_hazard: bool = False  # open a self-report hazard from it in the same step
    hazard_title: str | None = None


@dataclass
class Recorded:
    """A record and its findings as stored (findings carry the hazard they opened)."""

    id: int
    findings: list[FindingRecord]


def _findings(conn: psycopg.Connection, actor: Actor, enterprise_id: str, plant_id: str | None,
              items: Sequence[NewFinding], now: float, *, inspection_id: int | None = None,
              drill_id: int | None = None, origin: str) -> list[FindingRecord]:
    if len(items) > MAX_FINDINGS:
        raise RecordInvalid(f"发现项不超过 {MAX_FINDINGS} 条。 At most {MAX_FINDINGS} findings per record.")
    out = []
    for f in items:
        text = _text(f.description, "发现项描述", "finding's description", 2000)
        rec = store.insert_finding(conn, enterprise_id, text, f.location.strip()[:500], actor.name, now,
                                   inspection_id=inspection_id, drill_id=drill_id)
        if f.open_hazard:
            rec = _open(conn, rec, actor, now, plant_id, f.hazard_title, origin)
        out.append(rec)
    return out


def _open(conn: psycopg.Connection, f: FindingRecord, actor: Actor, now: float, plant_id: str | None,
          title: str | None, origin: str) -> FindingRecord:
    ref = f"{origin} 发现项 finding #{f.id}"
    tid = ledger.open_ticket(conn, ledger.NewTicket(
        source=Source.SELF_REPORT, enterprise_id=f.enterprise_id, title=(title or f.description).strip()[:500],
        description=f"{f.description}\n\n来源 from: {ref}", location=f.location or None, plant_id=plant_id,
        comment=f"由{ref}登记 opened from {ref}"), actor, now)
    store.link_hazard(conn, f.id, tid, now)
    got = store.get_finding(conn, f.id, None)
    assert got is not None
    return got


def record_inspection(conn: psycopg.Connection, new: store.NewInspection, items: Sequence[NewFinding],
                      actor: Actor, now: float) -> Recorded:
    """A self-inspection with its findings; findings marked `open_hazard` open linked self-reports at once."""
    if new.level not in {lv.value for lv in Level}:
        raise RecordInvalid(f"未知的检查层级 unknown inspection level {new.level!r}")
    with conn.transaction():
        _check_enterprise(conn, actor, new.enterprise_id, new.plant_id)
        rec = store.insert_inspection(conn, store.NewInspection(
            new.enterprise_id, new.level, new.inspected_on, _text(new.inspector, "检查人", "inspector", 200),
            new.scope.strip(), new.summary, new.plant_id), actor.name, now)
        found = _findings(conn, actor, new.enterprise_id, new.plant_id, items, now, inspection_id=rec.id,
                          origin=f"自查记录 self-inspection #{rec.id}")
    return Recorded(rec.id, found)


def open_hazard(conn: psycopg.Connection, finding_id: int, actor: Actor, now: float,
                title: str | None = None) -> FindingRecord:
    """Open the self-report of an existing finding; a finding already linked answers with its ticket (idempotent)."""
    with conn.transaction():
        f = store.get_finding(conn, finding_id, scope_of(actor), lock=True)
        if f is None:
            raise not_found("发现项", "Finding", finding_id)
        if f.hazard_id is not None:
            return f
        plant_id: str | None = None
        if f.inspection_id is not None:
            i = store.get_inspection(conn, f.inspection_id, None)
            plant_id, origin = (i.plant_id if i else None), f"自查记录 self-inspection #{f.inspection_id}"
        else:
            d = store.get_drill(conn, f.drill_id or 0, None)
            plant_id, origin = (d.plant_id if d else None), f"应急演练 drill #{f.drill_id}"
        return _open(conn, f, actor, now, plant_id, title, origin)


def record_drill(conn: psycopg.Connection, new: store.NewDrill, items: Sequence[NewFinding], actor: Actor,
                 now: float) -> Recorded:
    """A drill; its findings may open rectifications (self-report hazards) in the same step."""
    with conn.transaction():
        _check_enterprise(conn, actor, new.enterprise_id, new.plant_id)
        _text(new.scenario, "演练科目", "scenario")
        rec = store.insert_drill(conn, new, actor.name, now)
        found = _findings(conn, actor, new.enterprise_id, new.plant_id, items, now, drill_id=rec.id,
                          origin=f"应急演练 drill #{rec.id}")
    return Recorded(rec.id, found)


def record_training(conn: psycopg.Connection, new: store.NewTraining, actor: Actor, now: float) -> int:
    if not new.attendees:
        raise RecordInvalid("培训需有参训人员。 A training needs its attendees.")
    if len(new.attendees) > MAX_ATTENDEES:
        raise RecordInvalid(f"参训人员不超过 {MAX_ATTENDEES} 人。 At most {MAX_ATTENDEES} attendees.")
    for a in new.attendees:
        _text(a.person_key, "参训人员编号", "attendee's staff number", 100)
    with conn.transaction():
        _check_enterprise(conn, actor, new.enterprise_id, None)
        _text(new.course, "课程", "course")
        return store.insert_training(conn, new, actor.name, now)


def set_headcount(conn: psycopg.Connection, enterprise_id: str, year: int, headcount: int, actor: Actor,
                  now: float) -> None:
    if not 0 < headcount <= 1_000_000:
        raise RecordInvalid("职工人数须为正数。 The headcount must be positive.")
    with conn.transaction():
        _check_enterprise(conn, actor, enterprise_id, None)
        store.set_headcount(conn, enterprise_id, year, headcount, actor.name, now)


def record_meeting(conn: psycopg.Connection, new: store.NewMeeting, actor: Actor, now: float) -> store.MeetingRecord:
    """An enterprise's monthly analysis meeting, or (enterprise None) the bureau's own county meeting."""
    if not [a for a in new.attendees if a.strip()]:
        raise RecordInvalid("会议需有参会人员。 A meeting needs its attendees.")
    with conn.transaction():
        if new.enterprise_id is None:
            if actor.role not in BUREAU:
                raise RecordForbidden("只有监管部门可以记录县级分析会。 Only the bureau records the county meeting.")
        else:
            _check_enterprise(conn, actor, new.enterprise_id, None)
        return store.insert_meeting(conn, new, actor.name, now)


# --- operator positions and their alarm health ----------------------------------------------------


def define_position(conn: psycopg.Connection, position_id: str, name: str, enterprise_id: str,
                    plant_ids: Sequence[str], actor: Actor, min_severity: str = "medium") -> store.Position:
    """A control room shared by several plants of one enterprise (bureau and admin only)."""
    if actor.role not in BUREAU:
        raise RecordForbidden("只有监管部门可以定义操作岗位。 Only the bureau defines operator positions.")
    if min_severity not in SEVERITY_RANK:
        raise RecordInvalid(f"未知的严重度 unknown severity {min_severity!r}")
    with conn.transaction():
        _check_enterprise(conn, actor, enterprise_id, None)
        for pid in plant_ids:
            if store.plant_enterprise(conn, pid) != enterprise_id:
                raise not_found("厂区", "Plant", pid)
        if store.position_row(conn, position_id) is None:
            store.create_position(conn, position_id, _text(name, "岗位名称", "position name"), "control_room",
                                  enterprise_id, min_severity)
        elif store.position_row(conn, position_id) != ("control_room", enterprise_id):
            raise RecordInvalid("岗位已属于其他企业或为值班席。 The position belongs elsewhere.")
        for pid in plant_ids:
            store.assign_plant(conn, pid, position_id)
    return next(p for p in store.positions(conn, None) if p.id == position_id)


def position_health(conn: psycopg.Connection, position_id: str, start: float, end: float,
                    scope: str | None) -> tuple[store.Position, Health]:
    pos = next((p for p in store.positions(conn, scope) if p.id == position_id), None)
    if pos is None:
        raise not_found("操作岗位", "Operator position", position_id)
    events, initial = store.alarm_history(conn, pos.plant_ids, start, end, pos.min_severity)
    return pos, compute(events, start, end, initial, pos.min_severity)

