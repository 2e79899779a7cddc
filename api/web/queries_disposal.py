"""The console's reads for the disposal and stop pages and the board's point trends.

Writes go through the stage's stores (`rules.store_disposal`, `rules.store_stops`), the ones the API calls;
these are the extra reads a page needs around them (plant names, the readings of one alarm's point, which
board rows still owe a feedback). Every read takes the viewer's scope (None for bureau and admin, else the
one enterprise) and applies it in SQL, so another enterprise's rows are simply not there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from core.clock import ts

Row = dict[str, Any]

#: At most this many points per trend chart: a longer window is averaged into time buckets (time_bucket).
MAX_TREND_POINTS = 240
#: A trend never reads more than this span of raw readings (an alarm active for days shows its last 12 h).
MAX_TREND_SPAN_S = 12 * 3600.0

_SCOPE = "(%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)"


def plant_names(conn: psycopg.Connection, plant_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Plant id -> (plant name, enterprise name), for the rows a page lists (one query, not one per row)."""
    ids = sorted(set(plant_ids))
    if not ids:
        return {}
    rows = conn.execute("""SELECT pl.id, pl.name, e.name FROM plants pl JOIN enterprises e ON e.id = pl.enterprise_id
                           WHERE pl.id = ANY(%s)""", (ids,)).fetchall()
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}


def plants_in_scope(conn: psycopg.Connection, scope: str | None) -> list[Row]:
    """The plants a viewer may file a stop for: its enterprise's own, or every plant for the bureau."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"""SELECT pl.id, pl.name, e.name AS enterprise_name FROM plants pl
                               JOIN enterprises e ON e.id = pl.enterprise_id WHERE {_SCOPE}
                               ORDER BY e.name, pl.name""", {"scope": scope}).fetchall()


def owed_disposals(conn: psycopg.Connection, scope: str | None, keys: Iterable[tuple[str, str]]) -> dict[
        tuple[str, str], int]:
    """(rule id, subject) -> id of its latest unanswered disposal, for the board's rows only (bounded by them)."""
    pairs = list(set(keys))
    if not pairs:
        return {}
    rows = conn.execute(
        """SELECT DISTINCT ON (d.rule_id, d.subject) d.rule_id, d.subject, d.id FROM alarm_disposals d
           JOIN unnest(%(rules)s::text[], %(subjects)s::text[]) AS k(rule_id, subject)
             ON k.rule_id = d.rule_id AND k.subject = d.subject
           WHERE d.feedback_at IS NULL AND (%(scope)s::text IS NULL OR d.enterprise_id = %(scope)s)
           ORDER BY d.rule_id, d.subject, d.activated_at DESC""",
        {"rules": [p[0] for p in pairs], "subjects": [p[1] for p in pairs], "scope": scope}).fetchall()
    return {(str(r[0]), str(r[1])): int(r[2]) for r in rows}


def trend_window(activated_at: float, cleared_at: float | None, now: float, before_s: float = 1800.0,
                 after_s: float = 300.0) -> tuple[float, float]:
    """The span a board trend shows: from `before_s` ahead of the activation to the return to normal (plus
    `after_s`) or now, never longer than MAX_TREND_SPAN_S (then the most recent part). Pure."""
    end = min(now, cleared_at + after_s) if cleared_at is not None and cleared_at >= activated_at else now
    start = activated_at - before_s
    if end <= start:
        end = start + before_s
    return max(start, end - MAX_TREND_SPAN_S), end


def bucket_seconds(start: float, end: float, max_points: int = MAX_TREND_POINTS) -> int:
    """Width of the time buckets that keep a window within `max_points` points (at least 1 s). Pure."""
    return max(1, math.ceil((end - start) / max_points))


def point_trend(conn: psycopg.Connection, point_id: int, start: float, end: float,
                max_points: int = MAX_TREND_POINTS) -> list[tuple[datetime, float]]:
    """The point's readings in [start, end], averaged into buckets so at most `max_points` come back. Reads the
    (point_id, time) index range only: the board's charts cost one bounded range scan each."""
    width = bucket_seconds(start, end, max_points)
    rows = conn.execute(
        """SELECT time_bucket(make_interval(secs => %(w)s), time) AS t, avg(value) FROM readings
           WHERE point_id = %(p)s AND time >= %(a)s AND time <= %(b)s GROUP BY 1 ORDER BY 1 LIMIT %(n)s""",
        {"w": width, "p": point_id, "a": ts(start), "b": ts(end), "n": max_points + 1}).fetchall()
    return [(r[0], float(r[1])) for r in rows if r[1] is not None]


def disposal_events(conn: psycopg.Connection, rule_id: str, subject: str, since: float) -> list[Row]:
    """The alarm's timeline entries of its disposal since the activation: each escalation step (actor system)
    and the feedback, with their reason (the store writes them; the caller has checked the disposal's scope)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """SELECT time, event, actor, reason FROM alarm_events
               WHERE rule_id = %s AND subject = %s AND time >= %s
                 AND event IN ('disposal_escalate', 'disposal_feedback') ORDER BY time, id LIMIT 50""",
            (rule_id, subject, ts(since))).fetchall()


def device_points(conn: psycopg.Connection, point_id: int, scope: str | None) -> list[Row]:
    """Every point of the device the given point belongs to (id, tag, name, quantity, role, required,
    interval_s, setpoints), within the viewer's scope: what a multi-point rule's aliases are bound among, the
    way the rule compiler binds them (`rules.compile._multi`: the same device's points, by selector)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT p.id, p.tag, p.name, p.quantity, p.role, p.required, p.interval_s,
                       coalesce(p.setpoints, '{{}}'::jsonb) AS setpoints
                FROM points s JOIN points p ON p.device_id = s.device_id
                JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
                WHERE s.id = %(p)s AND {_SCOPE} ORDER BY p.id""", {"p": point_id, "scope": scope}).fetchall()


def difference_trend(conn: psycopg.Connection, a: int, b: int, start: float, end: float,
                     max_points: int = MAX_TREND_POINTS, min_bucket_s: float = 1.0
                     ) -> list[tuple[datetime, float, float]]:
    """Points a and b in [start, end], each averaged into the same time buckets; only the buckets where both
    have readings come back, as (bucket, mean of a, mean of b), so a − b is taken on aligned times. The
    bucket is at least `min_bucket_s` wide (the slower point's interval: a bucket holding only one of the two
    would be a gap). One range scan of `readings (point_id, time)` for the two points."""
    width = max(bucket_seconds(start, end, max_points), math.ceil(min_bucket_s))
    rows = conn.execute(
        """SELECT time_bucket(make_interval(secs => %(w)s), time) AS t,
                  avg(value) FILTER (WHERE point_id = %(a)s), avg(value) FILTER (WHERE point_id = %(b)s)
           FROM readings WHERE point_id = ANY(%(ids)s) AND time >= %(s)s AND time <= %(e)s
           GROUP BY 1 HAVING count(*) FILTER (WHERE point_id = %(a)s) > 0
                         AND count(*) FILTER (WHERE point_id = %(b)s) > 0
           ORDER BY 1 LIMIT %(n)s""",
        {"w": width, "a": a, "b": b, "ids": [a, b], "s": ts(start), "e": ts(end), "n": max_points + 1}).fetchall()
    return [(r[0], float(r[1]), float(r[2])) for r in rows]


def devices_of_plant(conn: psycopg.Connection, plant_id: str, scope: str | None) -> list[Row]:
    """The devices of one plant (code, name, kind) the viewer may file a stop for: none when the plant is
    another enterprise's (scoped in SQL like every read here), so the picker never offers another's device."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT d.code, d.name, d.kind FROM devices d JOIN plants pl ON pl.id = d.plant_id
                WHERE d.plant_id = %(plant)s AND {_SCOPE} ORDER BY d.code""",
            {"plant": plant_id, "scope": scope}).fetchall()


def device_label(conn: psycopg.Connection, device_id: int) -> str | None:
    """`name (code)` of a device, for a stop filing's page (the caller has checked the filing's scope)."""
    row = conn.execute("SELECT name, code FROM devices WHERE id = %s", (device_id,)).fetchone()
    return None if row is None else f"{row[0]}（{row[1]}）"
