"""Intake: a candidate major hazard raised by a rule becomes a ticket, or evidence on the open one.

`open_or_attach(conn, candidate_id)` is the rule engine's `on_candidate`
hook: it runs inside the collector's batch transaction, right after the
candidate row is inserted, so a candidate and its ticket commit together.

One open ticket per (rule, point or gateway): a repeat while that ticket is
open adds its alarm and readings window as evidence and counts one more
occurrence; after the ticket is closed or dismissed, the next detection opens
a new one. A transaction-scoped advisory lock on the key serialises two
collectors seeing the same key at once.

Failure here must never cost readings: the work runs in a savepoint and a
database error is logged and swallowed, leaving the candidate without a
ticket for the hazards tick's sweep (`ledger.sweep_candidates`) to take up.
"""

from __future__ import annotations

import logging

import psycopg

from hazards import store, workflow
from hazards.errors import HazardError, ReferenceNotFound
from hazards.model import SYSTEM, Source, Status, Ticket
from hazards.store import Details, NewEvidence

log = logging.getLogger("riskwatch.hazards.intake")

_LOCK_NS = 0x48415A  # "HAZ"
#: Readings the engine copies into a candidate cover this long before the detection.
CANDIDATE_WINDOW_S = 300.0


def open_or_attach(conn: psycopg.Connection, candidate_id: int) -> int | None:
    """The ticket that now holds this candidate (new or existing); None if intake failed (logged)."""
    try:
        with conn.transaction():
            return take_up(conn, candidate_id)
    except (psycopg.Error, HazardError) as exc:
        log.error("hazard intake of candidate %d failed (the sweep retries it): %s", candidate_id, exc)
        return None


def take_up(conn: psycopg.Connection, candidate_id: int) -> int:
    """Like open_or_attach, but errors propagate (for the API and the sweep's callers)."""
    c = store.lock_candidate(conn, candidate_id)
    if c is None:
        raise ReferenceNotFound(f"候选隐患 #{candidate_id} 不存在。 Hazard candidate #{candidate_id} not found.")
    if c.ticket_id is not None:
        return c.ticket_id  # already taken up: intake is idempotent
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NS, f"{c.rule_id}|{c.subject}"))
    now = c.created_at.timestamp()
    detected = c.detected_at.timestamp()
    ev = c.evidence or {}
    reason = c.reason or ""
    items = [
        NewEvidence("alarm", SYSTEM.name, reason, candidate_id=c.id, alarm_rule_id=c.rule_id,
                    alarm_subject=c.subject, alarm_time=detected),
        NewEvidence("readings", SYSTEM.name, f"触发前 {CANDIDATE_WINDOW_S:g} 秒读数 readings before detection",
                    candidate_id=c.id, point_ids=[c.point_id] if c.point_id is not None else [],
                    window_from=detected - CANDIDATE_WINDOW_S, window_to=detected,
                    readings=list(ev.get("readings") or [])),
    ]
    existing = store.find_open(conn, c.rule_id, c.subject)
    if existing is not None:
        tid = existing.id
        t, event = workflow.apply(existing.ticket(), workflow.NoteEvidence(
            f"再次触发 repeated detection: {reason}".strip()), SYSTEM, now)
        store.add_occurrence(conn, tid)
        ids = store.insert_evidence(conn, tid, items, now)
        event.data.update({"candidate_id": c.id, "evidence_ids": ids, "detected_at": detected})
        store.insert_events(conn, tid, [event])
        log.info("candidate %d (%s %s) attached to open hazard #%d", c.id, c.rule_id, c.subject, tid)
    else:
        t, events = workflow.open_ticket(Ticket(0, c.enterprise_id, Source.SENSOR, Status.CANDIDATE), SYSTEM, now,
                                         f"规则触发 raised by rule {c.rule_id}: {reason}".strip())
        device_id, location = None, None
        if c.point_id is not None:
            loc = store.point_location(conn, c.point_id)
            if loc is not None:
                device_id, location = loc
        tid = store.insert_ticket(conn, t, Details(
            title=f"{c.title_zh} {c.title_en}", detected_at=detected, created_by=SYSTEM.name,
            description=reason, basis=c.basis, location=location or c.gateway_id, plant_id=c.plant_id,
            device_id=device_id, point_id=c.point_id, gateway_id=c.gateway_id, rule_id=c.rule_id,
            subject=c.subject), now)
        ids = store.insert_evidence(conn, tid, items, now)
        events[0].data.update({"candidate_id": c.id, "evidence_ids": ids, "catalog_version": c.catalog_version})
        store.insert_events(conn, tid, events)
        log.info("candidate %d (%s %s) opened hazard #%d", c.id, c.rule_id, c.subject, tid)
    store.set_candidate_ticket(conn, c.id, tid)
    return tid
