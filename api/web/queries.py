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


#: Open and confirmed at time t: confirmed at or before t and not closed by then (a confirmed ticket is never
#: dismissed; see hazards.model.CONFIRMED_OPEN). For the day t_k = now - k * 86400 s that is
#: k <= floor((now - confirmed_at) / 1 day) and (closed_at IS NULL or k >= floor((now - closed_at) / 1 day) + 1):
#: each ticket is open on one run of days [lo, hi], so tickets are first grouped by (enterprise, plant, lo, hi)
#: and only the groups are spread over the days (bench, 10,000 tickets: ~900 ms before, ~130 ms after).
_DAYS_OPEN = """CASE WHEN h.closed_at IS NULL THEN 0
                     ELSE greatest(0, floor((%(now)s - extract(epoch FROM h.closed_at)) / 86400)::int + 1) END AS lo,
                least(%(days)s, floor((%(now)s - extract(epoch FROM h.confirmed_at)) / 86400)::int) AS hi"""


def clearance_trend(conn: psycopg.Connection, scope: str | None, now: float, days: int = 30) -> list[Row]:
    """动态清零: the open confirmed major hazards count at the end of each of the last `days` days and now,
    per industry and enterprise (rows: t, industry, enterprise_id, enterprise_name, n); t = now - k days
    exactly (k * 86400 s: the page keys its window the same way)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""WITH h AS (SELECT h.enterprise_id, h.plant_id, {_DAYS_OPEN} FROM hazards h
                           WHERE h.confirmed_at IS NOT NULL
                             AND (%(scope)s::text IS NULL OR h.enterprise_id = %(scope)s)),
                     g AS (SELECT enterprise_id, plant_id, lo, hi, count(*) AS n FROM h WHERE lo <= hi
                           GROUP BY 1, 2, 3, 4),
                     c AS (SELECT k, enterprise_id, plant_id, sum(n) AS n
                           FROM g JOIN generate_series(0, %(days)s) k ON k BETWEEN g.lo AND g.hi GROUP BY 1, 2, 3)
                SELECT to_timestamp(%(now)s - k * 86400) AS t, coalesce(pl.industry, '') AS industry,
                       c.enterprise_id, e.name AS enterprise_name, sum(c.n)::bigint AS n
                FROM c JOIN enterprises e ON e.id = c.enterprise_id LEFT JOIN plants pl ON pl.id = c.plant_id
                GROUP BY k, pl.industry, c.enterprise_id, e.name ORDER BY k DESC""",
            {"now": now, "days": days, "scope": scope}).fetchall()
