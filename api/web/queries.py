"""The console's reads. Every alarm read takes the viewer's scope (None for bureau and admin, else the one
enterprise) and applies it in SQL through the plant's enterprise, the way the HTTP API scopes its own:
an alarm outside the scope is simply not there."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]

_SEVERITY_ORDER = "CASE a.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"
_ALARM = """SELECT a.rule_id, a.subject, a.plant_id, pl.name AS plant_name, pl.enterprise_id,
                   e.name AS enterprise_name, a.point_id, a.gateway_id, p.tag, a.state, a.active, a.severity,
                   a.candidate, a.activated_at, a.cleared_at, a.acked_at, a.acked_by, a.ack_comment, a.value,
                   a.reason, a.shelved_until, a.shelved_by, a.shelve_reason, a.out_of_service
            FROM alarms a JOIN plants pl ON pl.id = a.plant_id JOIN enterprises e ON e.id = pl.enterprise_id
            LEFT JOIN points p ON p.id = a.point_id"""
_SCOPE = "(%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)"


def board_alarms(conn: psycopg.Connection, scope: str | None, limit: int = 200) -> list[Row]:
    """Active alarms and those awaiting acknowledgement, most severe and newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""{_ALARM} WHERE {_SCOPE} AND (a.state <> 'normal' OR a.active)
                ORDER BY {_SEVERITY_ORDER}, a.activated_at DESC NULLS LAST, a.rule_id, a.subject
                LIMIT %(limit)s""", {"scope": scope, "limit": limit}).fetchall()


def get_alarm(conn: psycopg.Connection, rule_id: str, subject: str, scope: str | None) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{_ALARM} WHERE a.rule_id = %(rule)s AND a.subject = %(subject)s AND {_SCOPE}",
                           {"rule": rule_id, "subject": subject, "scope": scope}).fetchone()


def enterprise_choices(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(id, name) of every enterprise, for binding an enterprise account (admin only)."""
    return [(str(r[0]), str(r[1])) for r in conn.execute("SELECT id, name FROM enterprises ORDER BY id").fetchall()]


def industries(conn: psycopg.Connection, scope: str | None) -> list[str]:
    """The industries of the plants in scope, for the ledger's filter."""
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT industry FROM plants pl WHERE industry IS NOT NULL AND " + _SCOPE + " ORDER BY 1",
        {"scope": scope}).fetchall()]


def enterprises_in_scope(conn: psycopg.Connection, scope: str | None) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute(
        "SELECT id, name FROM enterprises WHERE (%(scope)s::text IS NULL OR id = %(scope)s) ORDER BY id",
        {"scope": scope}).fetchall()]


#: Open and confirmed at time d: confirmed at or before d and not closed by then (a confirmed ticket
#: is never dismissed; see hazards.model.CONFIRMED_OPEN).
_OPEN_AT = "h.confirmed_at <= d.t AND (h.closed_at IS NULL OR h.closed_at > d.t)"


def clearance_trend(conn: psycopg.Connection, scope: str | None, now: float, days: int = 30) -> list[Row]:
    """动态清零: the open confirmed major hazards count at the end of each of the last `days` days and now,
    per industry and enterprise (rows: t, industry, enterprise_id, enterprise_name, n)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""WITH d(t) AS (SELECT to_timestamp(%(now)s) - make_interval(days => k)
                              FROM generate_series(0, %(days)s) k)
                SELECT d.t, coalesce(pl.industry, '') AS industry, h.enterprise_id, e.name AS enterprise_name,
                       count(h.id) AS n
                FROM d JOIN hazards h ON {_OPEN_AT}
                JOIN enterprises e ON e.id = h.enterprise_id LEFT JOIN plants pl ON pl.id = h.plant_id
                WHERE (%(scope)s::text IS NULL OR h.enterprise_id = %(scope)s)
                GROUP BY d.t, pl.industry, h.enterprise_id, e.name ORDER BY d.t""",
            {"now": now, "days": days, "scope": scope}).fetchall()
