"""SQL of the hazard ledger: tickets, their history, evidence, interviews.

Every lookup takes `scope`: the enterprise a caller is bound to, or None for
the bureau. A ticket outside the scope is simply not found, so callers cannot
tell "not yours" from "does not exist".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from core import outbox
from core.clock import secs, ts
from hazards.model import (
    DEADLINE_RUNNING,
    OPEN,
    Event,
    Level,
    Plan,
    Reward,
    RewardStatus,
    Source,
    Status,
    Supervision,
    Ticket,
)


@dataclass
class TicketRecord:
    """A ticket row with the names the API and reports show next to it."""

    id: int
    enterprise_id: str
    enterprise_name: str
    plant_id: str | None
    plant_name: str | None
    industry: str | None
    device_id: int | None
    point_id: int | None
    point_tag: str | None
    gateway_id: str | None
    rule_id: str | None
    subject: str | None
    source: str
    status: str
    title: str
    description: str
    basis: str | None
    location: str | None
    detected_at: datetime
    created_at: datetime
    created_by: str
    updated_at: datetime
    confirmed_at: datetime | None
    confirmed_by: str | None
    dismissed_at: datetime | None
    dismissed_reason: str | None
    plan_responsible: str | None
    plan_responsible_phone: str | None
    plan_measures: str | None
    plan_funds_yuan: Decimal | None
    plan_deadline: datetime | None
    plan_contingency: str | None
    plan_filed_at: datetime | None
    submitted_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    sent_back_count: int
    supervision_level: str | None
    supervised_at: datetime | None
    supervised_by: str | None
    supervision_reason: str | None
    supervision_lifted_at: datetime | None
    inspection_team: str | None
    tip_reporter_name: str | None
    tip_reporter_contact: str | None
    tip_internal: bool | None
    reward_status: str | None
    reward_amount_yuan: Decimal | None
    reward_note: str | None
    occurrences: int
    evidence_count: int
    last_evidence_at: datetime | None

    def ticket(self) -> Ticket:
        """The workflow's view of this row."""
        plan = None
        if self.plan_deadline is not None:
            plan = Plan(self.plan_responsible or "", self.plan_measures or "",
                        self.plan_funds_yuan if self.plan_funds_yuan is not None else Decimal(0),
                        self.plan_deadline.timestamp(), self.plan_contingency or "", self.plan_responsible_phone)
        sup = None
        if self.supervision_level is not None:
            assert self.supervised_at is not None
            sup = Supervision(Level(self.supervision_level), self.supervised_at.timestamp(),
                              self.supervised_by or "", self.supervision_reason or "",
                              secs(self.supervision_lifted_at))
        reward = None
        if self.reward_status is not None:
            reward = Reward(RewardStatus(self.reward_status), self.reward_amount_yuan, self.reward_note or "")
        return Ticket(
            id=self.id, enterprise_id=self.enterprise_id, source=Source(self.source), status=Status(self.status),
            plan=plan, supervision=sup, reward=reward, confirmed_at=secs(self.confirmed_at),
            confirmed_by=self.confirmed_by, dismissed_at=secs(self.dismissed_at),
            dismissed_reason=self.dismissed_reason,
            plan_filed_at=secs(self.plan_filed_at), submitted_at=secs(self.submitted_at),
            closed_at=secs(self.closed_at), closed_by=self.closed_by, sent_back_count=self.sent_back_count,
        )

    def overdue(self, now: float) -> bool:
        return self.ticket().overdue(now)


_SELECT = """
SELECT h.id, h.enterprise_id, e.name AS enterprise_name, h.plant_id, pl.name AS plant_name, pl.industry,
       h.device_id, h.point_id, pt.tag AS point_tag, h.gateway_id, h.rule_id, h.subject, h.source, h.status,
       h.title, h.description, h.basis, h.location, h.detected_at, h.created_at, h.created_by, h.updated_at,
       h.confirmed_at, h.confirmed_by, h.dismissed_at, h.dismissed_reason, h.plan_responsible, h.plan_responsible_phone,
       h.plan_measures, h.plan_funds_yuan, h.plan_deadline, h.plan_contingency, h.plan_filed_at, h.submitted_at,
       h.closed_at, h.closed_by, h.sent_back_count, h.supervision_level, h.supervised_at, h.supervised_by,
       h.supervision_reason, h.supervision_lifted_at, h.inspection_team, h.tip_reporter_name,
       h.tip_reporter_contact, h.tip_internal, h.reward_status, h.reward_amount_yuan, h.reward_note,
       h.occurrences, h.evidence_count, h.last_evidence_at
FROM hazards h
JOIN enterprises e ON e.id = h.enterprise_id
LEFT JOIN plants pl ON pl.id = h.plant_id
LEFT JOIN points pt ON pt.id = h.point_id
"""


@dataclass(frozen=True)
class Details:
    """What a ticket says beyond its workflow state: where, what, from whom."""

    title: str
    detected_at: float
    created_by: str
    description: str = ""
    basis: str | None = None
    location: str | None = None
    plant_id: str | None = None
    device_id: int | None = None
    point_id: int | None = None
    gateway_id: str | None = None
    rule_id: str | None = None
    subject: str | None = None
    inspection_team: str | None = None
    reporter_name: str | None = None
    reporter_contact: str | None = None
    reporter_internal: bool | None = None


def insert_ticket(conn: psycopg.Connection, t: Ticket, d: Details, now: float) -> int:
    row = conn.execute(
        """INSERT INTO hazards (enterprise_id, plant_id, device_id, point_id, gateway_id, rule_id, subject, source,
               status, title, description, basis, location, detected_at, created_at, created_by, updated_at,
               inspection_team, tip_reporter_name, tip_reporter_contact, tip_internal, reward_status)
           VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id""",
        (t.enterprise_id, d.plant_id, d.device_id, d.point_id, d.gateway_id, d.rule_id, d.subject, t.source.value,
         t.status.value, d.title, d.description, d.basis, d.location, ts(d.detected_at), ts(now), d.created_by,
         ts(now), d.inspection_team, d.reporter_name, d.reporter_contact, d.reporter_internal,
         t.reward.status.value if t.reward else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def write_ticket(conn: psycopg.Connection, t: Ticket, now: float) -> None:
    """Store the workflow's fields of a ticket (the descriptive ones never change through it)."""
    p, s, r = t.plan, t.supervision, t.reward
    conn.execute(
        """UPDATE hazards SET status=%s, confirmed_at=%s, confirmed_by=%s, dismissed_at=%s, dismissed_reason=%s,
               plan_responsible=%s, plan_responsible_phone=%s, plan_measures=%s, plan_funds_yuan=%s,
               plan_deadline=%s, plan_contingency=%s, plan_filed_at=%s, submitted_at=%s, closed_at=%s, closed_by=%s,
               sent_back_count=%s, supervision_level=%s, supervised_at=%s, supervised_by=%s, supervision_reason=%s,
               supervision_lifted_at=%s, reward_status=%s, reward_amount_yuan=%s, reward_note=%s, updated_at=%s
           WHERE id=%s""",
        (t.status.value, ts(t.confirmed_at), t.confirmed_by, ts(t.dismissed_at), t.dismissed_reason,
         p and p.responsible_person, p and p.responsible_phone, p and p.measures, p and p.funds_yuan,
         ts(p.deadline) if p else None, p and p.contingency_plan, ts(t.plan_filed_at), ts(t.submitted_at),
         ts(t.closed_at), t.closed_by, t.sent_back_count,
         s.level.value if s else None, ts(s.since) if s else None, s and s.by, s and s.reason,
         ts(s.lifted_at) if s else None,
         r.status.value if r else None, r and r.amount_yuan, r and r.note, ts(now), t.id),
    )


@dataclass
class EventRecord:
    id: int
    hazard_id: int
    time: datetime
    action: str
    from_status: str
    to_status: str
    actor: str
    actor_role: str
    actor_enterprise_id: str | None
    comment: str
    data: dict[str, Any]


def _announcement(e: Event) -> outbox.HazardAnnouncement:
    return outbox.HazardAnnouncement(e.action, e.time, e.actor, e.comment)


def insert_events(conn: psycopg.Connection, hazard_id: int, events: Sequence[Event]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO hazard_events (hazard_id, time, action, from_status, to_status, actor, actor_role,
                   actor_enterprise_id, comment, data) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
            [(hazard_id, ts(e.time), e.action, e.from_status.value, e.to_status.value, e.actor, e.role,
              e.enterprise_id, e.comment, Jsonb(e.data)) for e in events],
        )
    outbox.enqueue_hazard_events(conn, hazard_id, [_announcement(e) for e in events])


def insert_event(conn: psycopg.Connection, hazard_id: int, e: Event) -> EventRecord:
    """Append one event and return it as stored (with its id)."""
    with conn.cursor(row_factory=class_row(EventRecord)) as cur:
        row = cur.execute(
            """INSERT INTO hazard_events (hazard_id, time, action, from_status, to_status, actor, actor_role,
                   actor_enterprise_id, comment, data) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
               RETURNING id, hazard_id, time, action, from_status, to_status, actor, actor_role, actor_enterprise_id,
                         comment, data""",
            (hazard_id, ts(e.time), e.action, e.from_status.value, e.to_status.value, e.actor, e.role,
             e.enterprise_id, e.comment, Jsonb(e.data))).fetchone()
    assert row is not None
    outbox.enqueue_hazard_events(conn, hazard_id, [_announcement(e)])
    return row


def _scope_sql(scope: str | None) -> tuple[str, tuple[Any, ...]]:
    return ("", ()) if scope is None else (" AND h.enterprise_id = %s", (scope,))


def get(conn: psycopg.Connection, ticket_id: int, scope: str | None, *, lock: bool = False) -> TicketRecord | None:
    where, args = _scope_sql(scope)
    with conn.cursor(row_factory=class_row(TicketRecord)) as cur:
        return cur.execute(_SELECT + " WHERE h.id = %s" + where + (" FOR UPDATE OF h" if lock else ""),
                           (ticket_id, *args)).fetchone()


def find_open(conn: psycopg.Connection, rule_id: str, subject: str) -> TicketRecord | None:
    """The open ticket of a (rule, point or gateway), locked."""
    with conn.cursor(row_factory=class_row(TicketRecord)) as cur:
        return cur.execute(_SELECT + " WHERE h.rule_id = %s AND h.subject = %s AND h.status = ANY(%s)"
                           " FOR UPDATE OF h", (rule_id, subject, [s.value for s in OPEN])).fetchone()


@dataclass(frozen=True)
class Filters:
    status: Sequence[str] = ()
    source: Sequence[str] = ()
    enterprise_id: str | None = None
    plant_id: str | None = None
    industry: str | None = None
    rule_id: str | None = None
    supervised: bool | None = None
    overdue: bool | None = None
    open: bool | None = None
    created_from: float | None = None
    created_to: float | None = None
    q: str | None = None


def _filter_sql(f: Filters, scope: str | None, now: float) -> tuple[str, list[Any]]:
    conds: list[str] = ["true"]
    args: list[Any] = []
    if scope is not None:
        conds.append("h.enterprise_id = %s")
        args.append(scope)
    if f.status:
        conds.append("h.status = ANY(%s)")
        args.append(list(f.status))
    if f.source:
        conds.append("h.source = ANY(%s)")
        args.append(list(f.source))
    for col, val in (("h.enterprise_id", f.enterprise_id), ("h.plant_id", f.plant_id), ("pl.industry", f.industry),
                     ("h.rule_id", f.rule_id)):
        if val is not None:
            conds.append(f"{col} = %s")
            args.append(val)
    if f.supervised is not None:
        conds.append("(h.supervision_level IS NOT NULL AND h.supervision_lifted_at IS NULL) = %s")
        args.append(f.supervised)
    if f.overdue is not None:
        conds.append("(h.status = ANY(%s) AND h.plan_deadline < %s) = %s")
        args += [[s.value for s in DEADLINE_RUNNING], ts(now), f.overdue]
    if f.open is not None:
        conds.append("(h.status = ANY(%s)) = %s")
        args += [[s.value for s in OPEN], f.open]
    if f.created_from is not None:
        conds.append("h.created_at >= %s")
        args.append(ts(f.created_from))
    if f.created_to is not None:
        conds.append("h.created_at < %s")
        args.append(ts(f.created_to))
    if f.q:
        conds.append("(h.title ILIKE %s OR h.description ILIKE %s)")
        like = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [like, like]
    return " WHERE " + " AND ".join(conds), args


def list_tickets(conn: psycopg.Connection, f: Filters, scope: str | None, now: float, *, limit: int = 50,
                 offset: int = 0, order: str = "-created_at") -> tuple[list[TicketRecord], int]:
    where, args = _filter_sql(f, scope, now)
    col = {"created_at": "h.created_at", "detected_at": "h.detected_at", "deadline": "h.plan_deadline",
           "id": "h.id", "updated_at": "h.updated_at"}[order.lstrip("-")]
    direction = "DESC" if order.startswith("-") else "ASC"
    total_row = conn.execute("SELECT count(*) FROM hazards h LEFT JOIN plants pl ON pl.id = h.plant_id" + where,
                             args).fetchone()
    with conn.cursor(row_factory=class_row(TicketRecord)) as cur:
        rows = cur.execute(_SELECT + where + f" ORDER BY {col} {direction} NULLS LAST, h.id {direction}"
                           " LIMIT %s OFFSET %s", [*args, limit, offset]).fetchall()
    return rows, int(total_row[0]) if total_row else 0


def events(conn: psycopg.Connection, ticket_id: int) -> list[EventRecord]:
    with conn.cursor(row_factory=class_row(EventRecord)) as cur:
        return cur.execute(
            "SELECT id, hazard_id, time, action, from_status, to_status, actor, actor_role, actor_enterprise_id,"
            " comment, data FROM hazard_events WHERE hazard_id = %s ORDER BY id", (ticket_id,)).fetchall()


# --- evidence -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvidence:
    kind: str  # alarm | readings | attachment
    added_by: str
    note: str = ""
    candidate_id: int | None = None
    alarm_rule_id: str | None = None
    alarm_subject: str | None = None
    alarm_event_id: int | None = None
    alarm_time: float | None = None
    point_ids: Sequence[int] | None = None
    window_from: float | None = None
    window_to: float | None = None
    readings: list[dict[str, Any]] | None = None
    attachment: dict[str, Any] | None = None


@dataclass
class EvidenceRecord:
    id: int
    hazard_id: int
    kind: str
    added_at: datetime
    added_by: str
    candidate_id: int | None
    alarm_rule_id: str | None
    alarm_subject: str | None
    alarm_event_id: int | None
    alarm_time: datetime | None
    point_ids: list[int] | None
    window_from: datetime | None
    window_to: datetime | None
    readings: list[dict[str, Any]] | None
    attachment: dict[str, Any] | None
    note: str
    readings_count: int = field(default=0)


def insert_evidence(conn: psycopg.Connection, hazard_id: int, items: Iterable[NewEvidence], now: float) -> list[int]:
    ids = []
    for e in items:
        row = conn.execute(
            """INSERT INTO hazard_evidence (hazard_id, kind, added_at, added_by, candidate_id, alarm_rule_id,
                   alarm_subject, alarm_event_id, alarm_time, point_ids, window_from, window_to, readings,
                   attachment, note) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id""",
            (hazard_id, e.kind, ts(now), e.added_by, e.candidate_id, e.alarm_rule_id, e.alarm_subject,
             e.alarm_event_id, ts(e.alarm_time), list(e.point_ids) if e.point_ids is not None else None,
             ts(e.window_from), ts(e.window_to), Jsonb(e.readings) if e.readings is not None else None,
             Jsonb(e.attachment) if e.attachment is not None else None, e.note),
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    if ids:
        conn.execute("UPDATE hazards SET evidence_count = evidence_count + %s, last_evidence_at = %s,"
                     " updated_at = %s WHERE id = %s", (len(ids), ts(now), ts(now), hazard_id))
    return ids


def evidence(conn: psycopg.Connection, ticket_id: int, *, with_readings: bool = True) -> list[EvidenceRecord]:
    readings = "readings" if with_readings else "NULL::jsonb AS readings"
    with conn.cursor(row_factory=class_row(EvidenceRecord)) as cur:
        return cur.execute(
            f"""SELECT id, hazard_id, kind, added_at, added_by, candidate_id, alarm_rule_id, alarm_subject,
                       alarm_event_id, alarm_time, point_ids, window_from, window_to, {readings}, attachment, note,
                       coalesce(jsonb_array_length(readings), 0) AS readings_count
                FROM hazard_evidence WHERE hazard_id = %s ORDER BY id""", (ticket_id,)).fetchall()


def add_occurrence(conn: psycopg.Connection, hazard_id: int) -> None:
    conn.execute("UPDATE hazards SET occurrences = occurrences + 1 WHERE id = %s", (hazard_id,))


def snapshot_readings(conn: psycopg.Connection, point_ids: Sequence[int], frm: float, to: float,
                      limit: int = 5000) -> list[dict[str, Any]]:
    """A copy of the readings in a window: evidence must outlive the readings' retention."""
    rows = conn.execute(
        """SELECT r.point_id, p.tag, r.time, r.value, r.quality FROM readings r JOIN points p ON p.id = r.point_id
           WHERE r.point_id = ANY(%s) AND r.time >= %s AND r.time <= %s ORDER BY r.time, r.point_id LIMIT %s""",
        (list(point_ids), ts(frm), ts(to), limit)).fetchall()
    return [{"point_id": pid, "tag": tag, "time": t.isoformat(), "value": v, "quality": q}
            for pid, tag, t, v, q in rows]


# --- references the ledger checks against the caller's enterprise ----------------------------


def enterprise_exists(conn: psycopg.Connection, enterprise_id: str) -> bool:
    return conn.execute("SELECT 1 FROM enterprises WHERE id = %s", (enterprise_id,)).fetchone() is not None


def plant_enterprise(conn: psycopg.Connection, plant_id: str) -> str | None:
    row = conn.execute("SELECT enterprise_id FROM plants WHERE id = %s", (plant_id,)).fetchone()
    return None if row is None else str(row[0])


@dataclass(frozen=True)
class PointRef:
    id: int
    device_id: int
    plant_id: str
    enterprise_id: str
    gateway_id: str
    tag: str


def point_refs(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, PointRef]:
    rows = conn.execute(
        """SELECT p.id, p.device_id, d.plant_id, pl.enterprise_id, p.gateway_id, p.tag FROM points p
           JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id WHERE p.id = ANY(%s)""",
        (list(ids),)).fetchall()
    return {r[0]: PointRef(*r) for r in rows}


def device_ref(conn: psycopg.Connection, device_id: int) -> tuple[str, str] | None:
    """(plant, enterprise) of a device."""
    row = conn.execute("SELECT d.plant_id, pl.enterprise_id FROM devices d JOIN plants pl ON pl.id = d.plant_id"
                       " WHERE d.id = %s", (device_id,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def alarm_ref(conn: psycopg.Connection, rule_id: str, subject: str) -> tuple[str, datetime | None] | None:
    """(enterprise, activated_at) of an alarm."""
    row = conn.execute("SELECT pl.enterprise_id, a.activated_at FROM alarms a JOIN plants pl ON pl.id = a.plant_id"
                       " WHERE a.rule_id = %s AND a.subject = %s", (rule_id, subject)).fetchone()
    return None if row is None else (str(row[0]), row[1])


def alarm_event_matches(conn: psycopg.Connection, event_id: int, rule_id: str, subject: str) -> datetime | None:
    row = conn.execute("SELECT time FROM alarm_events WHERE id = %s AND rule_id = %s AND subject = %s",
                       (event_id, rule_id, subject)).fetchone()
    return None if row is None else row[0]


# --- the clock and the intake sweep ----------------------------------------------------------


def due_for_supervision(conn: psycopg.Connection, now: float, city_after_s: float) -> list[TicketRecord]:
    """Overdue tickets not yet listed at the level their lateness calls for, locked (others skip them)."""
    with conn.cursor(row_factory=class_row(TicketRecord)) as cur:
        return cur.execute(
            _SELECT + """ WHERE h.status = ANY(%s) AND h.plan_deadline < %s
                 AND (h.supervision_level IS NULL OR h.supervision_lifted_at IS NOT NULL
                      OR (h.supervision_level = 'county' AND h.plan_deadline < %s))
               ORDER BY h.id FOR UPDATE OF h SKIP LOCKED""",
            ([s.value for s in DEADLINE_RUNNING], ts(now), ts(now - city_after_s))).fetchall()


def pending_candidates(conn: psycopg.Connection, limit: int = 1000) -> list[int]:
    rows = conn.execute("SELECT id FROM hazard_candidates WHERE ticket_id IS NULL ORDER BY id LIMIT %s",
                        (limit,)).fetchall()
    return [int(r[0]) for r in rows]


@dataclass
class CandidateRow:
    id: int
    created_at: datetime
    detected_at: datetime
    rule_id: str
    subject: str
    point_id: int | None
    gateway_id: str | None
    plant_id: str
    enterprise_id: str
    basis: str
    title_zh: str
    title_en: str
    catalog_version: str
    reason: str | None
    evidence: dict[str, Any]
    ticket_id: int | None


def lock_candidate(conn: psycopg.Connection, candidate_id: int) -> CandidateRow | None:
    with conn.cursor(row_factory=class_row(CandidateRow)) as cur:
        return cur.execute(
            "SELECT id, created_at, detected_at, rule_id, subject, point_id, gateway_id, plant_id, enterprise_id,"
            " basis, title_zh, title_en, catalog_version, reason, evidence, ticket_id FROM hazard_candidates"
            " WHERE id = %s FOR UPDATE", (candidate_id,)).fetchone()


def set_candidate_ticket(conn: psycopg.Connection, candidate_id: int, ticket_id: int) -> None:
    conn.execute("UPDATE hazard_candidates SET ticket_id = %s WHERE id = %s", (ticket_id, candidate_id))


def point_location(conn: psycopg.Connection, point_id: int) -> tuple[int, str] | None:
    """(device id, "plant / device / tag") of a point, for a ticket's location line."""
    row = conn.execute(
        """SELECT d.id, pl.name || ' / ' || d.name || ' / ' || p.tag || coalesce(' ' || p.name, '')
           FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
           WHERE p.id = %s""", (point_id,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]))


# --- interviews (约谈) ---------------------------------------------------------------------------


@dataclass
class InterviewRecord:
    id: int
    enterprise_id: str
    hazard_id: int | None
    held_at: datetime
    interviewer: str
    interviewees: str
    reason: str
    summary: str
    follow_up: str
    recorded_by: str
    recorded_at: datetime


@dataclass(frozen=True)
class NewInterview:
    enterprise_id: str
    held_at: float
    interviewer: str
    interviewees: str
    reason: str
    summary: str = ""
    follow_up: str = ""
    hazard_id: int | None = None


_INTERVIEW_COLS = ("id, enterprise_id, hazard_id, held_at, interviewer, interviewees, reason, summary, follow_up,"
                   " recorded_by, recorded_at")


def insert_interview(conn: psycopg.Connection, i: NewInterview, recorded_by: str, now: float) -> InterviewRecord:
    with conn.cursor(row_factory=class_row(InterviewRecord)) as cur:
        row = cur.execute(
            f"""INSERT INTO hazard_interviews (enterprise_id, hazard_id, held_at, interviewer, interviewees, reason,
                    summary, follow_up, recorded_by, recorded_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
                RETURNING {_INTERVIEW_COLS}""",
            (i.enterprise_id, i.hazard_id, ts(i.held_at), i.interviewer, i.interviewees, i.reason, i.summary,
             i.follow_up, recorded_by, ts(now))).fetchone()
    assert row is not None
    return row


def list_interviews(conn: psycopg.Connection, scope: str | None, *, enterprise_id: str | None = None,
                    hazard_id: int | None = None, limit: int = 50, offset: int = 0
                    ) -> tuple[list[InterviewRecord], int]:
    conds, args = ["true"], []  # type: list[str], list[Any]
    for col, val in (("enterprise_id", scope), ("enterprise_id", enterprise_id), ("hazard_id", hazard_id)):
        if val is not None:
            conds.append(f"{col} = %s")
            args.append(val)
    where = " WHERE " + " AND ".join(conds)
    total = conn.execute("SELECT count(*) FROM hazard_interviews" + where, args).fetchone()
    with conn.cursor(row_factory=class_row(InterviewRecord)) as cur:
        rows = cur.execute(f"SELECT {_INTERVIEW_COLS} FROM hazard_interviews{where}"
                           " ORDER BY held_at DESC, id DESC LIMIT %s OFFSET %s", [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0


def get_interview(conn: psycopg.Connection, interview_id: int, scope: str | None) -> InterviewRecord | None:
    where, args = ("", ()) if scope is None else (" AND enterprise_id = %s", (scope,))
    with conn.cursor(row_factory=class_row(InterviewRecord)) as cur:
        return cur.execute(f"SELECT {_INTERVIEW_COLS} FROM hazard_interviews WHERE id = %s" + where,
                           (interview_id, *args)).fetchone()

