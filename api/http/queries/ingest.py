"""What HTTP ingest reads (issue 18): a gateway's stored `seq`, its tag map, whether readings are stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stored_seq(conn: psycopg.Connection, gateway_id: str) -> int:
    """The highest `seq` of the gateway durably stored (gateway_stored_seq, raised in the batch's transaction); -1."""
    row = conn.execute("SELECT seq FROM gateway_stored_seq WHERE gateway_id = %s", (gateway_id,)).fetchone()
    return int(row[0]) if row else -1


def point_ids(conn: psycopg.Connection, gateway_id: str, tags: list[str]) -> dict[str, int]:
    """tag -> point id for the tags of this gateway the registry knows (the rest are quarantined by the collector)."""
    rows = conn.execute("SELECT tag, id FROM points WHERE gateway_id = %s AND tag = ANY(%s)",
                        (gateway_id, sorted(set(tags)))).fetchall()
    return {str(t): int(i) for t, i in rows}


def stored_count(conn: psycopg.Connection, pids: list[int], times_us: list[int]) -> int:
    """How many of these (point, time) readings are in `readings` (a retry's body already stored?)."""
    if not pids:
        return 0
    times = [_EPOCH + timedelta(microseconds=t) for t in times_us]  # exact: no float on the way
    row = conn.execute(
        """SELECT count(*) FROM (SELECT DISTINCT * FROM unnest(%s::int[], %s::timestamptz[]) AS u(p, t)) u
           JOIN readings r ON r.point_id = u.p AND r.time = u.t""", (pids, times)).fetchone()
    return int(row[0]) if row else 0
