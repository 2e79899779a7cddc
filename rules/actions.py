"""Operator actions on alarms (acknowledge, shelve, out of service) and alarm queries.

Each action locks the alarm row, applies the pure lifecycle function and
records the event, in one transaction, so it composes safely with the
collector applying transitions to the same row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from core.clock import ts
from core.errors import RiskwatchError
from core.keys import AlarmKey, Subject
from rules import lifecycle, store


class AlarmNotFound(RiskwatchError, LookupError):
    pass


def _act(conn: psycopg.Connection, rule_id: str, subject: str,
         fn: Callable[[lifecycle.Alarm], tuple[lifecycle.Alarm, list[lifecycle.Event]]]) -> list[lifecycle.Event]:
    key = AlarmKey(rule_id, subject)
    with conn.transaction():
        alarms = store.lock_alarms(conn, [key])
        if key not in alarms:
            raise AlarmNotFound(f"报警不存在 no alarm {rule_id} on {subject}")
        a, events = fn(alarms[key])
        store.write_alarm(conn, key, a)
        meta = store.meta_of(conn, key)
        store.insert_events(conn, [(key, meta, e, None) for e in events])
    return events


def acknowledge(conn: psycopg.Connection, rule_id: str, subject: str, actor: str, comment: str,
                now: float) -> list[lifecycle.Event]:
    return _act(conn, rule_id, subject, lambda a: lifecycle.acknowledge(a, actor, comment, now))


def acknowledge_from_link(conn: psycopg.Connection, key: AlarmKey, actor: str, comment: str, now: float) -> bool:
    """Acknowledge if there is something to acknowledge (a notification's link names alarms that may have been
    acknowledged, or deleted, since): True if acknowledged now. Passed to `alerting.acknowledge` by the HTTP face."""
    try:
        acknowledge(conn, key.rule_id, key.subject, actor, comment, now)
    except (lifecycle.LifecycleError, AlarmNotFound):
        return False
    return True


def shelve(conn: psycopg.Connection, rule_id: str, subject: str, actor: str, duration_s: float, reason: str,
           now: float) -> list[lifecycle.Event]:
    return _act(conn, rule_id, subject, lambda a: lifecycle.shelve(a, actor, duration_s, reason, now))


def unshelve(conn: psycopg.Connection, rule_id: str, subject: str, actor: str, now: float) -> list[lifecycle.Event]:
    return _act(conn, rule_id, subject, lambda a: lifecycle.unshelve(a, actor, now))


def out_of_service(conn: psycopg.Connection, rule_id: str, subject: str, actor: str, reason: str, now: float,
                   on: bool) -> list[lifecycle.Event]:
    return _act(conn, rule_id, subject, lambda a: lifecycle.set_out_of_service(a, actor, reason, now, on))


@dataclass(frozen=True)
class AlarmRow:
    rule_id: str
    subject: str
    plant_id: str
    tag: str | None
    state: str
    active: bool
    severity: str
    candidate: bool
    activated_at: datetime | None
    value: float | None
    reason: str | None
    shelved: bool
    chattering: bool
    out_of_service: bool


def list_alarms(conn: psycopg.Connection, *, plant: str | None = None, include_normal: bool = False,
                limit: int = 200) -> list[AlarmRow]:
    rows = conn.execute(
        """SELECT a.rule_id, a.subject, a.plant_id, p.tag, a.state, a.active, a.severity, a.candidate,
                  a.activated_at, a.value, a.reason, a.shelved_until IS NOT NULL AND a.shelved_until > now(),
                  a.chattering, a.out_of_service
           FROM alarms a LEFT JOIN points p ON p.id = a.point_id
           WHERE (%s OR a.state <> 'normal') AND (%s::text IS NULL OR a.plant_id = %s)
           ORDER BY CASE a.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
                    a.activated_at DESC NULLS LAST
           LIMIT %s""",
        (include_normal, plant, plant, limit),
    ).fetchall()
    return [AlarmRow(*r) for r in rows]


FLOOD_PER_10MIN = 10  # ISA-18.2: more than 10 alarms in 10 minutes per operator position is a flood


def flood(conn: psycopg.Connection, now: float, window_s: float = 600.0) -> list[tuple[str, int, bool]]:
    """Annunciated activations per plant in the last window: (plant, count, flooding)."""
    rows = conn.execute(
        """SELECT plant_id, count(*) FROM alarm_events
           WHERE event = 'activate' AND annunciate AND time > %s GROUP BY plant_id ORDER BY 2 DESC""",
        (ts(now - window_s),),
    ).fetchall()
    return [(r[0], int(r[1]), int(r[1]) > FLOOD_PER_10MIN * window_s / 600.0) for r in rows]


def history(conn: psycopg.Connection, rule_id: str, subject: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT time, event, from_state, to_state, annunciate, actor, reason, value FROM alarm_events"
        " WHERE rule_id = %s AND subject = %s ORDER BY time, id", (rule_id, subject)).fetchall()


def subject_for(conn: psycopg.Connection, gateway_or_subject: str, tag: str | None) -> str:
    """'p:<id>' from a gateway and tag, or a gateway subject, or a subject given as is."""
    if tag is None:
        if gateway_or_subject.startswith(("p:", "g:", "d:")):
            return gateway_or_subject  # as is, even if malformed: the lookup then finds no alarm
        return Subject.gateway(gateway_or_subject).format()
    row = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway_or_subject, tag)).fetchone()
    if row is None:
        raise AlarmNotFound(f"no point {tag} on gateway {gateway_or_subject}")
    return Subject.point(row[0]).format()


def set_baseline(conn: psycopg.Connection, gateway: str, tag: str, value: float | None,
                 capture_minutes: float | None) -> float:
    """Record a point's baseline (AQ 4273: after installation or a bag change): a value, or the mean
    of its valid readings over the last minutes."""
    with conn.transaction():
        row = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s FOR UPDATE",
                           (gateway, tag)).fetchone()
        if row is None:
            raise AlarmNotFound(f"no point {tag} on gateway {gateway}")
        if value is None:
            assert capture_minutes is not None
            got = conn.execute(
                "SELECT avg(value), count(*) FROM readings WHERE point_id = %s AND quality < 2"
                " AND time > now() - %s * interval '1 minute'", (row[0], capture_minutes)).fetchone()
            if got is None or not got[1]:
                raise AlarmNotFound(f"no valid readings of {tag} in the last {capture_minutes:g} min")
            value = float(got[0])
        conn.execute("UPDATE points SET baseline = %s, baseline_at = now(), updated_at = now() WHERE id = %s",
                     (value, row[0]))
    return value
