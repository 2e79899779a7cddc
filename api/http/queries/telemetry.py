"""Readings (raw and bucketed with TimescaleDB's time_bucket) and alarms, scoped to an enterprise."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]

SEVERITY_ORDER = "CASE a.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"


def raw_readings(conn: psycopg.Connection, point_id: int, frm: datetime, to: datetime, limit: int,
                 newest_first: bool) -> list[Row]:
    order = "DESC" if newest_first else "ASC"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT time, value, quality FROM readings WHERE point_id = %s AND time >= %s AND time < %s"
            f" ORDER BY time {order} LIMIT %s", (point_id, frm, to, limit)).fetchall()


def bucketed_readings(conn: psycopg.Connection, point_id: int, frm: datetime, to: datetime, bucket_s: int,
                      include_bad: bool) -> list[Row]:
    """Min / max / avg / last / count per bucket; `bad` quality readings left out unless asked for."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT time_bucket(make_interval(secs => %s), time) AS bucket, min(value) AS min, max(value) AS max,
                      avg(value) AS avg, last(value, time) AS last, count(*) AS count
               FROM readings WHERE point_id = %s AND time >= %s AND time < %s AND (%s OR quality < 2)
               GROUP BY 1 ORDER BY 1 LIMIT 100000""", (bucket_s, point_id, frm, to, include_bad)).fetchall()


_ALARM = """SELECT a.rule_id, a.subject, a.plant_id, pl.enterprise_id, a.point_id, a.gateway_id, p.tag, a.state,
                   a.active, a.severity, a.candidate, a.activated_at, a.cleared_at, a.acked_at, a.acked_by,
                   a.ack_comment, a.value, a.reason, a.shelved_until, a.shelved_by, a.shelve_reason, a.chattering,
                   a.out_of_service, a.catalog_version
            FROM alarms a JOIN plants pl ON pl.id = a.plant_id LEFT JOIN points p ON p.id = a.point_id"""


def list_alarms(conn: psycopg.Connection, scope: str | None, *, plant_id: str | None, enterprise_id: str | None,
                state: list[str], severity: list[str], active: bool | None, candidate: bool | None,
                rule_id: str | None, include_normal: bool, limit: int, offset: int) -> tuple[list[Row], int]:
    conds: list[str] = ["true"]
    args: list[Any] = []
    for col, val in (("pl.enterprise_id", scope), ("a.plant_id", plant_id), ("pl.enterprise_id", enterprise_id),
                     ("a.active", active), ("a.candidate", candidate), ("a.rule_id", rule_id)):
        if val is not None:
            conds.append(f"{col} = %s")
            args.append(val)
    if state:
        conds.append("a.state = ANY(%s)")
        args.append(state)
    elif not include_normal:
        conds.append("(a.state <> 'normal' OR a.active)")
    if severity:
        conds.append("a.severity = ANY(%s)")
        args.append(severity)
    where = " WHERE " + " AND ".join(conds)
    total = conn.execute("SELECT count(*) FROM alarms a JOIN plants pl ON pl.id = a.plant_id" + where,
                         args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"{_ALARM}{where} ORDER BY {SEVERITY_ORDER}, a.activated_at DESC NULLS LAST,"
                           " a.rule_id, a.subject LIMIT %s OFFSET %s", [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0


def get_alarm(conn: psycopg.Connection, rule_id: str, subject: str, scope: str | None) -> Row | None:
    args: list[Any] = [rule_id, subject]
    where = " WHERE a.rule_id = %s AND a.subject = %s"
    if scope is not None:
        where += " AND pl.enterprise_id = %s"
        args.append(scope)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_ALARM + where, args).fetchone()


def alarm_events(conn: psycopg.Connection, rule_id: str, subject: str, limit: int, offset: int) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT id, time, event, from_state, to_state, annunciate, actor, reason, value FROM alarm_events
               WHERE rule_id = %s AND subject = %s ORDER BY time DESC, id DESC LIMIT %s OFFSET %s""",
            (rule_id, subject, limit, offset)).fetchall()


def candidate_enterprise(conn: psycopg.Connection, candidate_id: int) -> str | None:
    row = conn.execute("SELECT enterprise_id FROM hazard_candidates WHERE id = %s", (candidate_id,)).fetchone()
    return None if row is None else str(row[0])


def list_audit(conn: psycopg.Connection, limit: int, offset: int, token_id: int | None) -> tuple[list[Row], int]:
    where, args = ("", []) if token_id is None else (" WHERE token_id = %s", [token_id])
    total = conn.execute("SELECT count(*) FROM audit_log" + where, args).fetchone()
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM audit_log{where} ORDER BY id DESC LIMIT %s OFFSET %s",
                           [*args, limit, offset]).fetchall()
    return rows, int(total[0]) if total else 0
