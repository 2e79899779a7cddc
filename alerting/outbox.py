"""Writing the outbox: called inside the transaction of an alarm or hazard transition.

Nothing here sends anything. The rows commit (or roll back) with the
transition they announce, so an alarm is never raised without its
notification being owed, and a notification is never owed for a transition
that did not happen. `pg_notify` wakes the dispatcher at commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from core.clock import ts

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


def alarm_event(event: str, annunciate: bool) -> str | None:
    """The outbox event an alarm lifecycle event becomes, or None."""
    if event in ANNOUNCING:
        return "firing" if annunciate else None
    return {"clear": "resolved", "ack": "acked"}.get(event)


def enqueue(conn: psycopg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows in `_INSERT` column order."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(_INSERT, rows)
        cur.execute("SELECT pg_notify(%s, '')", (CHANNEL,))


def enqueue_alarm_events(conn: psycopg.Connection,
                         events: Sequence[tuple[str, str, str, str, bool, float, str | None, float | None, str, str]]
                         ) -> None:
    """(rule_id, subject, plant_id, severity, annunciate, time, lifecycle event, value, actor, reason) each."""
    rows = []
    for rule_id, subject, plant_id, severity, annunciate, t, ev, value, actor, reason in events:
        kind = alarm_event(ev or "", annunciate)
        if kind is not None:
            rows.append(("alarm", kind, ts(t), rule_id, subject, plant_id, severity, None, value, actor, reason))
    enqueue(conn, rows)


def enqueue_hazard_events(conn: psycopg.Connection, hazard_id: int,
                          events: Sequence[tuple[str, float, str, str]]) -> None:
    """(action, time, actor, comment) each; actions outside HAZARD_EVENTS are not announced."""
    enqueue(conn, [("hazard", HAZARD_EVENTS[action], ts(t), None, None, None, None, hazard_id, None, actor, comment)
                   for action, t, actor, comment in events if action in HAZARD_EVENTS])
