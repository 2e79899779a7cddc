"""Writing the outbox: called inside the transaction of an alarm or hazard transition.

Nothing here sends anything. The rows commit (or roll back) with the
transition they announce, so an alarm is never raised without its
notification being owed, and a notification is never owed for a transition
that did not happen. `pg_notify` wakes the dispatcher at commit.

This is the one table two stages write (rules and hazards) and a third reads
(alerting), so the writer lives in core: the stages that announce depend on it,
not on alerting.

Time: an announcement carries epoch seconds, as the transition that made it;
the one conversion to a datetime is the SQL parameter here (`core.clock.ts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from core.clock import ts
from core.keys import AlarmKey

__all__ = ["ANNOUNCING", "CHANNEL", "HAZARD_EVENTS", "AlarmAnnouncement", "DisposalAnnouncement", "HazardAnnouncement",
           "alarm_event", "enqueue_alarm_events", "enqueue_disposal_steps", "enqueue_hazard_events"]

CHANNEL = "riskwatch_outbox"

#: Alarm lifecycle events that (re)announce an alarm when annunciated (ISA-18.2: not while shelved,
#: out of service, in maintenance or chattering).
ANNOUNCING = frozenset({"activate", "unshelve", "return_to_service", "chatter_end"})
#: Hazard workflow actions worth a notification, and the event they are routed as (the rest — plans,
#: comments, evidence — are in the ledger).
HAZARD_EVENTS = {"create": "opened", "confirm": "confirmed", "dismiss": "dismissed", "supervise": "supervised",
                 "send_back": "sent_back", "verify": "closed"}

_INSERT = """INSERT INTO outbox (kind, event, event_time, rule_id, subject, plant_id, severity, hazard_id, value,
                                 actor, reason)
             VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"""


@dataclass(frozen=True, slots=True)
class AlarmAnnouncement:
    """One alarm lifecycle event as the outbox hears it (only some become notifications)."""

    key: AlarmKey
    plant_id: str
    severity: str
    annunciate: bool
    time: float                # epoch s, the event's time
    event: str | None          # lifecycle event (activate, clear, ack, ...)
    value: float | None
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class HazardAnnouncement:
    """One hazard workflow step; steps outside HAZARD_EVENTS are not announced."""

    action: str
    time: float                # epoch s
    actor: str
    comment: str


def alarm_event(event: str, annunciate: bool) -> str | None:
    """The outbox event an alarm lifecycle event becomes, or None."""
    if event in ANNOUNCING:
        return "firing" if annunciate else None
    return {"clear": "resolved", "ack": "acked"}.get(event)


_Row = tuple[str, str, object, str | None, str | None, str | None, str | None, int | None, float | None, str, str]


def _enqueue(conn: psycopg.Connection, rows: Sequence[_Row]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT, rows)
        cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


def enqueue_alarm_events(conn: psycopg.Connection, events: Sequence[AlarmAnnouncement]) -> None:
    rows: list[_Row] = []
    for e in events:
        kind = alarm_event(e.event or "", e.annunciate)
        if kind is not None:
            rows.append(("alarm", kind, ts(e.time), e.key.rule_id, e.key.subject, e.plant_id, e.severity, None,
                         e.value, e.actor, e.reason))
    _enqueue(conn, rows)


def enqueue_hazard_events(conn: psycopg.Connection, hazard_id: int, events: Sequence[HazardAnnouncement]) -> None:
    _enqueue(conn, [("hazard", HAZARD_EVENTS[e.action], ts(e.time), None, None, None, None, hazard_id, None, e.actor,
                     e.comment) for e in events if e.action in HAZARD_EVENTS])


@dataclass(frozen=True, slots=True)
class DisposalAnnouncement:
    """An unanswered warning escalated to one tier (core.vocab.DisposalTier): routed by the routing file's
    `disposal:` section to that tier's receivers (migration 0016)."""

    disposal_id: int
    key: AlarmKey
    plant_id: str
    severity: str
    tier: str
    time: float                # epoch s, when the step was taken
    reason: str


def enqueue_disposal_steps(conn: psycopg.Connection, steps: Sequence[DisposalAnnouncement]) -> None:
    if not steps:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO outbox (kind, event, event_time, rule_id, subject, plant_id, severity, disposal_id, actor,
                                   reason) VALUES ('disposal', %s, %s, %s, %s, %s, %s, %s, 'system', %s)""",
            [(s.tier, ts(s.time), s.key.rule_id, s.key.subject, s.plant_id, s.severity, s.disposal_id, s.reason)
             for s in steps])
        cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
