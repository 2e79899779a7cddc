"""The rating's inputs for every enterprise in scope, in one SQL statement plus the availability report.

`gather` reads, per enterprise: open confirmed major hazards, overdue rectifications, open candidates
(one pass over `hazards`), active urgent alarms (one pass over `alarms`), warnings overdue for their
disposal feedback (`alarm_disposals`), its industries and name — all in one statement — and its data
availability from `core.availability.report` (the one definition of expected and received readings;
nothing here re-derives it). `scope` is the caller's enterprise (None for the
bureau): another enterprise is not in the result at all, whatever else the caller asks.

The availability report reads the 1-minute rollup of every point in scope over the model's window, the
costly part at county scale; `AvailabilityCache` keeps it for a minute per scope, so a board refreshed by
many screens every 30 s does not recompute it each time (availability over a day moves slowly).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from core import availability
from core.mandatory import Missing, missing_mandatory
from hazards.model import CONFIRMED_OPEN, DEADLINE_RUNNING, Status
from hazards.risk.evaluate import Inputs, Rating, rate
from hazards.risk.model import RatingModel

__all__ = ["AvailabilityCache", "EnterpriseRating", "availability_pct", "gather", "ratings"]

#: An alarm is urgent at this catalog severity.
URGENT = "urgent"

_SQL = """
WITH h AS (
    SELECT enterprise_id,
           count(*) FILTER (WHERE status = ANY(%(confirmed)s)) AS confirmed_open,
           count(*) FILTER (WHERE status = ANY(%(running)s) AND plan_deadline < to_timestamp(%(now)s)) AS overdue,
           count(*) FILTER (WHERE status = %(candidate)s) AS candidates
    FROM hazards
    WHERE status = ANY(%(open)s) AND (%(scope)s::text IS NULL OR enterprise_id = %(scope)s)
    GROUP BY enterprise_id
), a AS (
    SELECT pl.enterprise_id, count(*) AS urgent
    FROM alarms al JOIN plants pl ON pl.id = al.plant_id
    WHERE al.active AND NOT al.out_of_service AND al.severity = %(urgent)s
      AND (%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)
    GROUP BY pl.enterprise_id
), d AS (
    SELECT enterprise_id, count(*) AS feedback_overdue
    FROM alarm_disposals
    WHERE feedback_at IS NULL AND due_at < to_timestamp(%(now)s)
      AND (%(scope)s::text IS NULL OR enterprise_id = %(scope)s)
    GROUP BY enterprise_id
), ind AS (
    SELECT enterprise_id, array_agg(DISTINCT industry ORDER BY industry) AS industries
    FROM plants WHERE (%(scope)s::text IS NULL OR enterprise_id = %(scope)s)
    GROUP BY enterprise_id
)
SELECT e.id, e.name, coalesce(ind.industries, '{}'::text[]), coalesce(h.confirmed_open, 0),
       coalesce(h.overdue, 0), coalesce(h.candidates, 0), coalesce(a.urgent, 0), coalesce(d.feedback_overdue, 0)
FROM enterprises e
LEFT JOIN h ON h.enterprise_id = e.id LEFT JOIN a ON a.enterprise_id = e.id LEFT JOIN ind ON ind.enterprise_id = e.id
LEFT JOIN d ON d.enterprise_id = e.id
WHERE (%(scope)s::text IS NULL OR e.id = %(scope)s)
ORDER BY e.id
"""


@dataclass(frozen=True)
class EnterpriseRating:
    enterprise_id: str
    name: str
    industries: tuple[str, ...]
    inputs: Inputs
    rating: Rating
    #: The mandatory points it lacks (接入完整性), for the board to list under the reason.
    missing: tuple[Missing, ...] = ()


def mandatory_gaps(conn: psycopg.Connection, scope: str | None) -> dict[str, tuple[Missing, ...]]:
    """Enterprise id -> the mandatory dust-collector points its registry lacks (core.mandatory: the one rule)."""
    out: dict[str, list[Missing]] = {}
    for m in missing_mandatory(conn):
        if scope is None or m.enterprise == scope:
            out.setdefault(m.enterprise, []).append(m)
    return {k: tuple(v) for k, v in out.items()}


def availability_pct(conn: psycopg.Connection, scope: str | None, now: float, hours: int) -> dict[str, float]:
    """Enterprise id -> availability of its points over the last `hours`, in percent; absent: none expected."""
    out: dict[str, float] = {}
    for ent, (expected, received) in availability.enterprise_counts(conn, now - hours * 3600, now, now, "day",
                                                                     scope=scope).items():
        sh = availability.share(received, expected)
        if sh is not None:
            out[ent] = sh * 100
    return out


class AvailabilityCache:
    """The two costly, slow-moving inputs — availability (`availability_pct`) and the mandatory gaps — for the
    whole county, kept `ttl_s` seconds, thread-safe (pages run in threads). A scoped viewer gets its own
    enterprise's entries of the county's figures (the same numbers a scoped computation gives: both are per
    enterprise). `serve` keeps it fresh from a background task (`refresh`), so a page never waits for the
    computation; without that task (tests, a bare app) an expired entry is recomputed on the request."""

    def __init__(self, ttl_s: float = 60.0):
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._kept: dict[tuple[str | None, int], tuple[float, dict[str, float]]] = {}
        self._gaps: dict[str | None, tuple[float, dict[str, tuple[Missing, ...]]]] = {}

    def get(self, conn: psycopg.Connection, scope: str | None, now: float, hours: int) -> dict[str, float]:
        key = (None, hours)
        with self._lock:
            hit = self._kept.get(key)
        if hit is None or not 0 <= now - hit[0] < self.ttl_s:
            hit = (now, availability_pct(conn, None, now, hours))
            with self._lock:
                self._kept[key] = hit
        return hit[1] if scope is None else {k: v for k, v in hit[1].items() if k == scope}

    def gaps(self, conn: psycopg.Connection, scope: str | None, now: float) -> dict[str, tuple[Missing, ...]]:
        with self._lock:
            hit = self._gaps.get(None)
        if hit is None or not 0 <= now - hit[0] < self.ttl_s:
            hit = (now, mandatory_gaps(conn, None))
            with self._lock:
                self._gaps[None] = hit
        return hit[1] if scope is None else {k: v for k, v in hit[1].items() if k == scope}

    def refresh(self, conn: psycopg.Connection, now: float, hours: int) -> None:
        """Recompute both for the county now (serve's background task, every `ttl_s` / 2)."""
        avail, gaps = availability_pct(conn, None, now, hours), mandatory_gaps(conn, None)
        with self._lock:
            self._kept[(None, hours)] = (now, avail)
            self._gaps[None] = (now, gaps)


def gather(conn: psycopg.Connection, scope: str | None, now: float, hours: int,
           avail: Callable[[psycopg.Connection, str | None, float, int], dict[str, float]] = availability_pct,
           gaps: dict[str, tuple[Missing, ...]] | None = None,
           ) -> list[tuple[str, str, tuple[str, ...], Inputs]]:
    """(enterprise id, name, industries, inputs) of every enterprise in scope, by id."""
    rows = conn.execute(_SQL, {
        "confirmed": [s.value for s in CONFIRMED_OPEN], "running": [s.value for s in DEADLINE_RUNNING],
        "candidate": Status.CANDIDATE.value, "open": [s.value for s in CONFIRMED_OPEN | {Status.CANDIDATE}],
        "urgent": URGENT, "now": now, "scope": scope}).fetchall()
    pct = avail(conn, scope, now, hours) if rows else {}
    gaps = mandatory_gaps(conn, scope) if gaps is None else gaps
    return [(str(eid), str(name), tuple(str(i) for i in inds),
             Inputs(int(c), int(o), int(cand), int(u), pct.get(str(eid)), int(fb), len(gaps.get(str(eid), ()))))
            for eid, name, inds, c, o, cand, u, fb in rows]


def ratings(conn: psycopg.Connection, scope: str | None, now: float, model: RatingModel,
            cache: AvailabilityCache | None = None) -> list[EnterpriseRating]:
    """Every enterprise in scope with its inputs and rating under `model`, by id."""
    avail = cache.get if cache is not None else availability_pct
    gaps = cache.gaps(conn, scope, now) if cache is not None else mandatory_gaps(conn, scope)
    return [EnterpriseRating(eid, name, inds, inp, rate(inp, model), gaps.get(eid, ()))
            for eid, name, inds, inp in gather(conn, scope, now, model.availability_window_hours, avail, gaps)]
