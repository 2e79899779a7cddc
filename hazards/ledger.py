"""The ledger's operations: lock, apply the pure workflow, write, append the event — one transaction each.

This is the adapter around `hazards.workflow`: it checks what a request
names (plants, points, alarms) against the caller's enterprise, so a caller
bound to one enterprise can neither read nor reference another's objects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from core.timeconst import S_PER_DAY
from hazards import store, workflow
from hazards.errors import ActionForbidden, InvalidAction, ReferenceNotFound, TicketNotFound
from hazards.intake import open_or_attach
from hazards.model import Actor, Event, Source, Status, Ticket
from hazards.store import Details, NewEvidence, NewInterview, TicketRecord

log = logging.getLogger("riskwatch.hazards")

#: The longest window of readings one evidence item copies.
MAX_EVIDENCE_WINDOW_S = float(S_PER_DAY)


def _scope(actor: Actor) -> str | None:
    return actor.enterprise_id if actor.role == "enterprise" else None


def _not_found(ticket_id: int) -> TicketNotFound:
    return TicketNotFound(f"隐患 #{ticket_id} 不存在。 Hazard #{ticket_id} not found.", ticket_id=ticket_id)


def get(conn: psycopg.Connection, ticket_id: int, actor: Actor) -> TicketRecord:
    rec = store.get(conn, ticket_id, _scope(actor))
    if rec is None:
        raise _not_found(ticket_id)
    return rec


@dataclass(frozen=True)
class NewTicket:
    """A ticket opened by hand: an enterprise self-report, an inspection finding or a public tip."""

    source: Source
    enterprise_id: str
    title: str
    description: str = ""
    basis: str | None = None
    location: str | None = None
    plant_id: str | None = None
    device_id: int | None = None
    point_id: int | None = None
    detected_at: float | None = None
    inspection_team: str | None = None
    reporter_name: str | None = None
    reporter_contact: str | None = None
    reporter_internal: bool | None = None
    comment: str = ""


def _ref_missing(what_zh: str, what_en: str, ident: object) -> ReferenceNotFound:
    return ReferenceNotFound(f"{what_zh} {ident} 不存在。 {what_en} {ident} not found.", ref=str(ident))


def open_ticket(conn: psycopg.Connection, new: NewTicket, actor: Actor, now: float) -> int:
    """Open a ticket by hand (the sensor source goes through `hazards.intake`)."""
    scope = _scope(actor)
    if new.source is Source.SENSOR:
        raise InvalidAction("监测预警来源的隐患由规则引擎自动登记（或从候选隐患登记）。 "
                            "Sensor tickets are opened by the rule engine, or from a hazard candidate.")
    if not new.title.strip():
        raise InvalidAction("隐患需有标题。 A hazard needs a title.")
    with conn.transaction():
        if (scope is not None and new.enterprise_id != scope) or not store.enterprise_exists(conn, new.enterprise_id):
            raise _ref_missing("企业", "Enterprise", new.enterprise_id)
        plant_id, device_id, location = new.plant_id, new.device_id, new.location
        if new.point_id is not None:
            ref = store.point_refs(conn, [new.point_id]).get(new.point_id)
            if ref is None or ref.enterprise_id != new.enterprise_id:
                raise _ref_missing("测点", "Point", new.point_id)
            if (plant_id and plant_id != ref.plant_id) or (device_id and device_id != ref.device_id):
                raise InvalidAction("测点不属于所填的厂区或设备。 The point is not on that plant or device.")
            plant_id, device_id = ref.plant_id, ref.device_id
            loc = store.point_location(conn, new.point_id)
            location = location or (loc[1] if loc else None)
        if device_id is not None:
            dref = store.device_ref(conn, device_id)
            if dref is None or dref[1] != new.enterprise_id:
                raise _ref_missing("设备", "Device", device_id)
            if plant_id and plant_id != dref[0]:
                raise InvalidAction("设备不属于所填的厂区。 The device is not on that plant.")
            plant_id = dref[0]
        if plant_id is not None and store.plant_enterprise(conn, plant_id) != new.enterprise_id:
            raise _ref_missing("厂区", "Plant", plant_id)
        t, events = workflow.open_ticket(Ticket(0, new.enterprise_id, new.source, Status.CANDIDATE), actor, now,
                                         new.comment)
        tip = new.source is Source.PUBLIC_TIP
        tid = store.insert_ticket(conn, t, Details(
            title=new.title.strip(), detected_at=new.detected_at if new.detected_at is not None else now,
            created_by=actor.name, description=new.description, basis=new.basis, location=location,
            plant_id=plant_id, device_id=device_id, point_id=new.point_id,
            inspection_team=new.inspection_team if new.source is Source.INSPECTION else None,
            reporter_name=new.reporter_name if tip else None, reporter_contact=new.reporter_contact if tip else None,
            reporter_internal=new.reporter_internal if tip else None), now)
        t = replace(t, id=tid)
        store.write_ticket(conn, t, now)
        store.insert_events(conn, tid, events)
    return tid


def act(conn: psycopg.Connection, ticket_id: int, action: workflow.Action, actor: Actor,
        now: float) -> tuple[TicketRecord, store.EventRecord]:
    """One workflow action on one ticket, in its own transaction; the ticket after it and the event appended."""
    with conn.transaction():
        rec = store.get(conn, ticket_id, _scope(actor), lock=True)
        if rec is None:
            raise _not_found(ticket_id)
        new, event = workflow.apply(rec.ticket(), action, actor, now)
        store.write_ticket(conn, new, now)
        stored = store.insert_event(conn, ticket_id, event)
        after = store.get(conn, ticket_id, None)
    assert after is not None
    return after, stored


@dataclass(frozen=True)
class EvidenceInput:
    """Evidence a caller attaches: an alarm, a window of readings, or an attachment's metadata."""

    kind: str
    note: str = ""
    alarm_rule_id: str | None = None
    alarm_subject: str | None = None
    alarm_event_id: int | None = None
    point_ids: Sequence[int] = ()
    window_from: float | None = None
    window_to: float | None = None
    attachment: dict[str, Any] | None = None


def add_evidence(conn: psycopg.Connection, ticket_id: int, ev: EvidenceInput, actor: Actor,
                 now: float) -> store.EvidenceRecord:
    with conn.transaction():
        rec = store.get(conn, ticket_id, _scope(actor), lock=True)
        if rec is None:
            raise _not_found(ticket_id)
        item = _evidence_item(conn, rec, ev, actor)
        new, event = workflow.apply(rec.ticket(), workflow.NoteEvidence(_summary(item, ev.note)), actor, now)
        (eid,) = store.insert_evidence(conn, ticket_id, [item], now)
        store.insert_events(conn, ticket_id, [_with_data(event, {"evidence_id": eid, "kind": item.kind})])
    return next(e for e in store.evidence(conn, ticket_id, with_readings=False) if e.id == eid)


def _with_data(e: Event, data: dict[str, Any]) -> Event:
    return Event(e.action, e.from_status, e.to_status, e.actor, e.role, e.time, e.comment, e.enterprise_id,
                 {**e.data, **data})


def _summary(item: NewEvidence, note: str) -> str:
    what = {"alarm": f"报警 alarm {item.alarm_rule_id} {item.alarm_subject}",
            "readings": f"读数 {len(item.readings or [])} readings",
            "attachment": f"附件 attachment {(item.attachment or {}).get('filename', '')}"}[item.kind]
    return f"{what}" + (f" — {note.strip()}" if note.strip() else "")


def _evidence_item(conn: psycopg.Connection, rec: TicketRecord, ev: EvidenceInput, actor: Actor) -> NewEvidence:
    if ev.kind == "alarm":
        if not ev.alarm_rule_id or not ev.alarm_subject:
            raise InvalidAction("报警证据需指明规则和对象。 Alarm evidence needs a rule id and a subject.")
        ref = store.alarm_ref(conn, ev.alarm_rule_id, ev.alarm_subject)
        if ref is None or ref[0] != rec.enterprise_id:
            raise _ref_missing("报警", "Alarm", f"{ev.alarm_rule_id} {ev.alarm_subject}")
        at = ref[1].timestamp() if ref[1] else None
        if ev.alarm_event_id is not None:
            t = store.alarm_event_matches(conn, ev.alarm_event_id, ev.alarm_rule_id, ev.alarm_subject)
            if t is None:
                raise _ref_missing("报警事件", "Alarm event", ev.alarm_event_id)
            at = t.timestamp()
        return NewEvidence("alarm", actor.name, ev.note, alarm_rule_id=ev.alarm_rule_id,
                           alarm_subject=ev.alarm_subject, alarm_event_id=ev.alarm_event_id, alarm_time=at)
    if ev.kind == "readings":
        if not ev.point_ids or ev.window_from is None or ev.window_to is None:
            raise InvalidAction("读数证据需指明测点和时间窗。 Readings evidence needs points and a time window.")
        if not 0 < ev.window_to - ev.window_from <= MAX_EVIDENCE_WINDOW_S:
            raise InvalidAction("时间窗须大于0且不超过24小时。 The window must be longer than 0 and at most 24 h.")
        refs = store.point_refs(conn, ev.point_ids)
        for pid in ev.point_ids:
            if pid not in refs or refs[pid].enterprise_id != rec.enterprise_id:
                raise _ref_missing("测点", "Point", pid)
        rows = store.snapshot_readings(conn, ev.point_ids, ev.window_from, ev.window_to)
        return NewEvidence("readings", actor.name, ev.note, point_ids=list(dict.fromkeys(ev.point_ids)),
                           window_from=ev.window_from, window_to=ev.window_to, readings=rows)
    if ev.kind == "attachment":
        if not ev.attachment or not str(ev.attachment.get("filename", "")).strip():
            raise InvalidAction("附件证据需有文件名。 Attachment evidence needs a file name.")
        return NewEvidence("attachment", actor.name, ev.note, attachment=dict(ev.attachment))
    raise InvalidAction(f"未知的证据类型 unknown evidence kind {ev.kind!r}")


def record_interview(conn: psycopg.Connection, new: NewInterview, actor: Actor,
                     now: float) -> store.InterviewRecord:
    """A warning interview (警示约谈); when it is about a ticket, that ticket's history notes it too."""
    if actor.role not in workflow.BUREAU:
        raise ActionForbidden("只有监管部门可以记录约谈。 Only the bureau records interviews.")
    for text, zh, en in ((new.interviewer, "约谈人", "interviewer"), (new.interviewees, "被约谈人", "interviewees"),
                         (new.reason, "约谈事由", "reason")):
        if not text.strip():
            raise InvalidAction(f"{zh}不能为空。 The {en} must be given.")
    event: Event | None = None
    with conn.transaction():
        if not store.enterprise_exists(conn, new.enterprise_id):
            raise _ref_missing("企业", "Enterprise", new.enterprise_id)
        if new.hazard_id is not None:
            rec = store.get(conn, new.hazard_id, None, lock=True)
            if rec is None:
                raise _not_found(new.hazard_id)
            if rec.enterprise_id != new.enterprise_id:
                raise InvalidAction("约谈对象与隐患所属企业不一致。 The hazard belongs to another enterprise.")
            t, event = workflow.apply(rec.ticket(), workflow.NoteInterview(
                f"约谈 {new.interviewees.strip()}：{new.reason.strip()}"), actor, now)
            store.write_ticket(conn, t, now)
        rec_i = store.insert_interview(conn, new, actor.name, now)
        if new.hazard_id is not None and event is not None:
            store.insert_events(conn, new.hazard_id, [_with_data(event, {"interview_id": rec_i.id})])
    return rec_i


def get_interview(conn: psycopg.Connection, interview_id: int, actor: Actor) -> store.InterviewRecord:
    rec = store.get_interview(conn, interview_id, _scope(actor))
    if rec is None:
        raise ReferenceNotFound(f"约谈记录 #{interview_id} 不存在。 Interview #{interview_id} not found.")
    return rec


# --- clock-driven work ----------------------------------------------------------------------


def tick(conn: psycopg.Connection, now: float,
         city_after_s: float = workflow.CITY_AFTER_S) -> list[tuple[int, Event]]:
    """List overdue tickets for supervision (挂牌督办); return what changed."""
    done: list[tuple[int, Event]] = []
    with conn.transaction():
        for rec in store.due_for_supervision(conn, now, city_after_s):
            out = workflow.tick(rec.ticket(), now, city_after_s)
            if out is None:
                continue
            t, event = out
            store.write_ticket(conn, t, now)
            store.insert_events(conn, rec.id, [event])
            done.append((rec.id, event))
    for tid, e in done:
        log.info("hazard #%d listed for supervision: %s", tid, e.comment)
    return done


def sweep_candidates(conn: psycopg.Connection) -> list[int]:
    """Take up candidates that have no ticket yet (raised before the ledger existed, or whose intake failed)."""
    ids = store.pending_candidates(conn)
    conn.commit()
    out = []
    for cid in ids:
        with conn.transaction():
            tid = open_or_attach(conn, cid)
        if tid is not None:
            out.append(tid)
    return out

