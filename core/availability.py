"""Data availability (数据完整率) per point, gateway and enterprise, and gateway online rate (网关在线率).

Issue 14: the provincial platforms grade an enterprise by whether its data actually arrives, so the bureau
needs, per point, gateway and enterprise, the share of expected readings received by hour, day and month.

Definitions (the API documents them in the same words):

- Buckets are calendar hours, days or months in China Standard Time (UTC+8, no DST), clipped to the
  requested window [from, to): a day is 00:00-24:00 Beijing time, as the bureau reads it.
- Expected readings of a point in a bucket: ``floor(seconds / interval_s)`` over the part of the bucket
  after the point was registered (``points.created_at``) and before ``now`` — a point is not blamed for
  time before it existed or time that has not happened yet.
- Received: the 1-minute rollup's ``count`` (``readings_1m``, which outlives raw retention) summed over the
  minutes in the bucket, capped at expected per point and bucket, so a point reporting faster than its
  interval cannot hide another point's gaps in an aggregate. The same rule as the annual evaluation
  (hazards/records/evaluation.py).
- Share: received / expected, None when nothing was expected.
- A gateway's or enterprise's share sums expected and received over its points (a 1 s point weighs more than
  a 60 s point: it is the share of readings, not the mean of shares).
- Gateway online rate: the share of the observed window (bucket clipped to the gateway's registration and
  ``now``) during which its ``common.gateway.offline`` alarm was NOT active, reconstructed from the alarm's
  ``activate`` / ``clear`` events in ``alarm_events`` (the state at the window's start is the last such event
  before it). ``gateways.online`` / ``status_at`` and ``gateway_arrivals`` hold only the current state; the
  alarm events are the only history. Consequence, stated so nobody over-reads the figure: the alarm
  activates ``silent_s`` (30 s in the catalog) after the gateway reports itself offline or goes quiet, so an
  outage shorter than that does not count and each outage counts from its detection. A disabled gateway has
  no alarm instance, hence no events: its rate reads 1.0 and the API shows ``enabled: false`` beside it.
- An enterprise's online rate: online seconds over observed seconds summed over its gateways.

Pure functions first (buckets, expected, share, online seconds), then the SQL adapter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

import psycopg

from core.clock import ts

__all__ = ["CST", "MAX_BUCKETS", "MAX_CELLS", "OFFLINE_RULE", "Cell", "Granularity", "Report", "Series", "TooLarge",
           "bucket_bounds", "enterprise_counts", "expected_readings", "online_seconds", "points_page", "report",
           "share"]

CST = timezone(timedelta(hours=8), "CST")
Granularity = Literal["hour", "day", "month"]
#: The catalog rule whose activate/clear events are the gateway's online history.
OFFLINE_RULE = "common.gateway.offline"
#: A request may ask for at most this many buckets (31 days by hour is 744; 3 years by day is 1096).
MAX_BUCKETS = 1200
#: Points x buckets one aggregate request may compute (each is a Python cell; ~1 s per million). A county's
#: few thousand points by day over a month is ~100k; by hour over a month it asks for a gateway filter.
MAX_CELLS = 1_000_000


class TooLarge(ValueError):
    """The request would compute more than MAX_CELLS point-buckets."""


# --- pure core ----------------------------------------------------------------------------------


def _floor(t: datetime, g: Granularity) -> datetime:
    if g == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    if g == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next(t: datetime, g: Granularity) -> datetime:
    if g == "hour":
        return t + timedelta(hours=1)
    if g == "day":
        return t + timedelta(days=1)
    return t.replace(year=t.year + 1, month=1) if t.month == 12 else t.replace(month=t.month + 1)


def bucket_bounds(frm: float, to: float, g: Granularity) -> list[tuple[float, float]]:
    """The calendar buckets (CST) covering [frm, to), each clipped to it; [] when to <= frm.

    Raises ValueError past MAX_BUCKETS, so a caller cannot make the server enumerate a century by hour.
    """
    out: list[tuple[float, float]] = []
    if to <= frm:
        return out
    cur = _floor(datetime.fromtimestamp(frm, CST), g)
    while cur.timestamp() < to:
        nxt = _next(cur, g)
        out.append((max(frm, cur.timestamp()), min(to, nxt.timestamp())))
        if len(out) > MAX_BUCKETS:
            raise ValueError(f"more than {MAX_BUCKETS} buckets")
        cur = nxt
    return out


def expected_readings(interval_s: float, frm: float, to: float) -> int:
    """Readings a point reporting every interval_s should have delivered in [frm, to)."""
    return 0 if to <= frm else int((to - frm) // interval_s)


def share(received: int, expected: int) -> float | None:
    """received / expected with received capped at expected; None when nothing was expected."""
    return None if expected <= 0 else min(received, expected) / expected


def online_seconds(events: Sequence[tuple[float, bool]], offline_at_start: bool, frm: float, to: float) -> float:
    """Seconds of [frm, to) the gateway was online.

    ``events`` are (time, offline) transitions in time order — True at the offline alarm's activation, False
    at its clearing; ``offline_at_start`` is the state at ``frm`` (the last transition before it). Events
    outside [frm, to) only matter through ``offline_at_start``.
    """
    if to <= frm:
        return 0.0
    offline, since, down = offline_at_start, frm, 0.0
    for t, off in events:
        if t <= frm:
            offline = off
            continue
        if t >= to:
            break
        if offline and not off:
            down += t - since
        if off and not offline:
            since = t
        offline = off
    if offline:
        down += to - max(since, frm)
    return (to - frm) - down


# --- results ------------------------------------------------------------------------------------


@dataclass
class Cell:
    """One bucket of one series. online_s / observed_s are set for gateways and enterprises only."""

    start: float
    end: float
    expected: int = 0
    received: int = 0
    online_s: float = 0.0
    observed_s: float = 0.0

    @property
    def share(self) -> float | None:
        return share(self.received, self.expected)

    @property
    def online_rate(self) -> float | None:
        return None if self.observed_s <= 0 else self.online_s / self.observed_s


@dataclass
class Series:
    """A point, gateway or enterprise over the window: its buckets and their total."""

    key: str  # point id, gateway id or enterprise id
    enterprise_id: str
    plant_id: str | None
    gateway_id: str | None
    label: str  # the point's tag, the gateway's name, the enterprise's name
    interval_s: float | None = None
    enabled: bool | None = None
    points: int = 0
    cells: list[Cell] = field(default_factory=list)

    @property
    def total(self) -> Cell:
        t = Cell(self.cells[0].start if self.cells else 0.0, self.cells[-1].end if self.cells else 0.0)
        for c in self.cells:
            t.expected += c.expected
            t.received += c.received
            t.online_s += c.online_s
            t.observed_s += c.observed_s
        return t


@dataclass
class Report:
    points: list[Series]
    gateways: list[Series]
    enterprises: list[Series]


def _add(into: Series, cells: Sequence[Cell]) -> None:
    if not into.cells:
        into.cells = [Cell(c.start, c.end) for c in cells]
    for a, c in zip(into.cells, cells, strict=True):
        a.expected += c.expected
        a.received += c.received
        a.online_s += c.online_s
        a.observed_s += c.observed_s


# --- SQL adapter --------------------------------------------------------------------------------


def report(conn: psycopg.Connection, frm: float, to: float, now: float, g: Granularity, *,
           scope: str | None = None, enterprise_id: str | None = None,
           gateway_id: str | None = None) -> Report:
    """Availability of every point in scope (an enterprise token's scope, and the filters) over [frm, to).

    One query for the points, one for the rollup counts binned into the buckets, one each for the gateways
    and their offline-alarm history. ValueError when the window has too many buckets.
    """
    bounds = bucket_bounds(frm, to, g)
    if not bounds:
        return Report([], [], [])
    cut = min(to, now)
    args = {"scope": scope, "ent": enterprise_id, "gw": gateway_id}
    n = int(conn.execute("SELECT count(*) " + _POINTS_WHERE, args).fetchone()[0])  # type: ignore[index]
    if n * len(bounds) > MAX_CELLS:
        raise TooLarge(f"{n} points x {len(bounds)} buckets exceeds {MAX_CELLS}")
    points, _ = _points(conn, bounds, frm, cut, now, args, None, 0)
    gws = conn.execute(
        """SELECT g.id, coalesce(g.name, g.id), g.plant_id, pl.enterprise_id, g.enabled,
                  extract(epoch FROM g.created_at)::float8
           FROM gateways g JOIN plants pl ON pl.id = g.plant_id
           WHERE (%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)
             AND (%(ent)s::text IS NULL OR pl.enterprise_id = %(ent)s)
             AND (%(gw)s::text IS NULL OR g.id = %(gw)s)
           ORDER BY g.id""", args).fetchall()
    history = _offline_history(conn, [str(r[0]) for r in gws], frm, cut)
    gateways: dict[str, Series] = {}
    for gid, name, plant, ent, enabled, created in gws:
        s = Series(str(gid), str(ent), str(plant), str(gid), str(name), enabled=bool(enabled))
        start_state, events = history.get(str(gid), (False, []))
        for b0, b1 in bounds:
            o0, o1 = max(b0, float(created)), min(b1, now)
            on = online_seconds(events, start_state, o0, o1) if o1 > o0 else 0.0
            s.cells.append(Cell(b0, b1, online_s=on, observed_s=max(0.0, o1 - o0)))
        gateways[str(gid)] = s
    for p in points:
        gs = gateways.get(str(p.gateway_id))
        if gs is not None:
            gs.points += 1
            _add(gs, [Cell(c.start, c.end, c.expected, c.received) for c in p.cells])

    names: dict[str, str] = dict(conn.execute(
        """SELECT id, name FROM enterprises WHERE (%(scope)s::text IS NULL OR id = %(scope)s)
             AND (%(ent)s::text IS NULL OR id = %(ent)s)""", args).fetchall())
    enterprises: dict[str, Series] = defaultdict(lambda: Series("", "", None, None, ""))
    for s in gateways.values():
        e = enterprises[s.enterprise_id]
        e.key = e.enterprise_id = s.enterprise_id
        e.label = str(names.get(s.enterprise_id, s.enterprise_id))
        e.points += s.points
        _add(e, s.cells)
    return Report(points, list(gateways.values()), [enterprises[k] for k in sorted(enterprises)])


def points_page(conn: psycopg.Connection, frm: float, to: float, now: float, g: Granularity, *,
                scope: str | None = None, enterprise_id: str | None = None, gateway_id: str | None = None,
                limit: int = 50, offset: int = 0) -> tuple[list[Series], int]:
    """One page of points (by id) and the number of points in scope; ValueError on too many buckets."""
    bounds = bucket_bounds(frm, to, g)
    args = {"scope": scope, "ent": enterprise_id, "gw": gateway_id}
    return _points(conn, bounds, frm, min(to, now), now, args, limit, offset)


def enterprise_counts(conn: psycopg.Connection, frm: float, to: float, now: float, g: Granularity, *,
                      scope: str | None = None) -> dict[str, tuple[int, int]]:
    """Enterprise id -> (expected, received) readings over [frm, to): the totals `report` gives its enterprise
    series, computed in the database in one statement.

    The risk board needs only these two numbers per enterprise, refreshed every half minute; `report` builds a
    Series per point in Python (about 2 s of CPU, holding the GIL, at 100,000 points). The arithmetic is the
    same: per point and calendar bucket, expected = floor((min(bucket end, now) - max(bucket start, point
    registered)) / interval), received = readings_1m counts in the bucket capped at expected; points whose
    gateway is gone count nowhere. tests/integration/test_availability.py holds the two equal."""
    bounds = bucket_bounds(frm, to, g)
    if not bounds:
        return {}
    cut = min(to, now)
    edges = [b[0] for b in bounds] + [bounds[-1][1]]
    rows = conn.execute(
        """WITH b AS (SELECT k::int AS k, b0, b1 FROM unnest(%(b0)s::float8[], %(b1)s::float8[])
                          WITH ORDINALITY AS t(b0, b1, k)),
                pts AS (SELECT p.id, pl.enterprise_id, p.interval_s::float8 AS interval_s,
                               extract(epoch FROM p.created_at)::float8 AS created
                        FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
                        JOIN gateways g ON g.id = p.gateway_id JOIN plants gp ON gp.id = g.plant_id
                        WHERE (%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)
                          AND gp.enterprise_id = pl.enterprise_id),
                got AS (SELECT point_id, width_bucket(extract(epoch FROM bucket)::float8, %(edges)s::float8[]) AS k,
                               sum(count)::bigint AS n
                        FROM readings_1m WHERE %(cut)s > %(frm)s AND point_id IN (SELECT id FROM pts)
                          AND bucket >= to_timestamp(%(frm)s) AND bucket < to_timestamp(%(cut)s)
                        GROUP BY 1, 2),
                cells AS (SELECT pts.enterprise_id,
                                 greatest(0, floor((least(b.b1, %(now)s) - greatest(b.b0, pts.created))
                                                   / pts.interval_s))::bigint AS exp,
                                 coalesce(got.n, 0) AS n
                          FROM pts CROSS JOIN b LEFT JOIN got ON got.point_id = pts.id AND got.k = b.k)
           SELECT enterprise_id, sum(exp)::bigint, sum(least(n, exp))::bigint FROM cells GROUP BY 1""",
        {"b0": [b[0] for b in bounds], "b1": [b[1] for b in bounds], "edges": edges, "scope": scope,
         "cut": cut, "frm": frm, "now": now}).fetchall()
    return {str(e): (int(x), int(r)) for e, x, r in rows}


_POINTS_WHERE = """FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
           WHERE (%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)
             AND (%(ent)s::text IS NULL OR pl.enterprise_id = %(ent)s)
             AND (%(gw)s::text IS NULL OR p.gateway_id = %(gw)s)"""


def _points(conn: psycopg.Connection, bounds: list[tuple[float, float]], frm: float, cut: float, now: float,
            args: dict[str, str | None], limit: int | None, offset: int) -> tuple[list[Series], int]:
    total = int(conn.execute("SELECT count(*) " + _POINTS_WHERE, args).fetchone()[0])  # type: ignore[index]
    if not bounds:
        return [], total
    pts = conn.execute(
        "SELECT p.id, p.tag, p.gateway_id, pl.id, pl.enterprise_id, p.interval_s,"
        " extract(epoch FROM p.created_at)::float8 " + _POINTS_WHERE
        + " ORDER BY p.id LIMIT %(limit)s OFFSET %(offset)s", {**args, "limit": limit, "offset": offset}).fetchall()
    edges = [b[0] for b in bounds] + [bounds[-1][1]]
    got: dict[tuple[int, int], int] = {}
    if pts and cut > frm:
        for pid, i, n in conn.execute(
                """SELECT point_id, width_bucket(extract(epoch FROM bucket)::float8, %(edges)s::float8[]), sum(count)
                   FROM readings_1m WHERE point_id = ANY(%(ids)s) AND bucket >= %(s)s AND bucket < %(c)s
                   GROUP BY 1, 2""",
                {"edges": edges, "ids": [int(p[0]) for p in pts], "s": ts(frm), "c": ts(cut)}).fetchall():
            if 1 <= int(i) <= len(bounds):
                got[(int(pid), int(i) - 1)] = int(n)
    out: list[Series] = []
    for pid, tag, gw, plant, ent, interval, created in pts:
        s = Series(str(pid), str(ent), str(plant), str(gw), str(tag), interval_s=float(interval), points=1)
        for k, (b0, b1) in enumerate(bounds):
            exp = expected_readings(float(interval), max(b0, float(created)), min(b1, now))
            s.cells.append(Cell(b0, b1, exp, min(got.get((int(pid), k), 0), exp)))
        out.append(s)
    return out, total


def _offline_history(conn: psycopg.Connection, gateway_ids: list[str], frm: float, to: float
                     ) -> dict[str, tuple[bool, list[tuple[float, bool]]]]:
    """Per gateway: offline at frm (its last activate/clear before frm), and its transitions in [frm, to)."""
    out: dict[str, tuple[bool, list[tuple[float, bool]]]] = {}
    if not gateway_ids or to <= frm:
        return out
    subjects = [f"g:{g}" for g in gateway_ids]
    for subject, event in conn.execute(
            """SELECT DISTINCT ON (subject) subject, event FROM alarm_events
               WHERE rule_id = %s AND subject = ANY(%s) AND event IN ('activate', 'clear') AND time < %s
               ORDER BY subject, time DESC, id DESC""", (OFFLINE_RULE, subjects, ts(frm))).fetchall():
        out[str(subject)[2:]] = (event == "activate", [])
    for subject, t, event in conn.execute(
            """SELECT subject, extract(epoch FROM time)::float8, event FROM alarm_events
               WHERE rule_id = %s AND subject = ANY(%s) AND event IN ('activate', 'clear')
                 AND time >= %s AND time < %s
               ORDER BY time, id""", (OFFLINE_RULE, subjects, ts(frm), ts(to))).fetchall():
        _, events = out.setdefault(str(subject)[2:], (False, []))
        events.append((float(t), event == "activate"))
    return out
