"""The dispatcher's backlog: what it still owes by a time, and skipping events left by earlier runs.

Used where a run notifies only its own events and waits for them (`riskwatch demo`, the bench).
"""

from __future__ import annotations

import psycopg


def owed(conn: psycopg.Connection, by: float) -> int:
    """What the dispatcher still has to do by `by` (epoch s): outbox rows to route, groups and deliveries due."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM outbox WHERE routed_at IS NULL)"
        " + (SELECT count(*) FROM alert_groups WHERE flush_at <= to_timestamp(%s))"
        " + (SELECT count(*) FROM notifications WHERE status = 'pending' AND next_attempt_at <= to_timestamp(%s))",
        (by, by)).fetchone()
    return int(row[0]) if row else 0


def skip_unrouted(conn: psycopg.Connection) -> int:
    """Mark every outbox row not yet routed as routed, so none of them is notified; how many. Commits."""
    n = conn.execute("UPDATE outbox SET routed_at = now() WHERE routed_at IS NULL").rowcount
    conn.commit()
    return n
