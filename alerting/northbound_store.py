"""The northbound tables (migration 0021): targets of the running config, items owed, attempts made.

Items are written by triggers in the producing transaction (see the migration); this module only
registers targets, claims due items of one target (FOR UPDATE SKIP LOCKED, inside the caller's
transaction, so the lock is held for the send) and records what happened to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from core.clock import ts

__all__ = ["Item", "claim", "count_by_status", "record", "register_targets"]


@dataclass(frozen=True)
class Item:
    id: int
    kind: str
    key: str
    data: dict[str, Any]
    attempts: int


def register_targets(conn: psycopg.Connection, kinds: dict[str, list[str]]) -> None:
    """Make the triggers owe items to exactly these targets from now on (others stop being fed)."""
    with conn.transaction():
        conn.execute("DELETE FROM northbound_targets WHERE NOT (name = ANY(%s))", (list(kinds),))
        for name, ks in kinds.items():
            conn.execute("""INSERT INTO northbound_targets (name, kinds) VALUES (%s, %s)
                            ON CONFLICT (name) DO UPDATE SET kinds = EXCLUDED.kinds, updated_at = now()""",
                         (name, ks))
        # A row trigger on every reading costs ingest (the collector's COPY) even when it forwards nothing:
        # it exists only while some target takes readings (migration 0021).
        wanted = any("reading" in ks for ks in kinds.values())
        present = conn.execute("SELECT 1 FROM pg_trigger WHERE tgname = 'readings_northbound' "
                               "AND tgrelid = 'readings'::regclass").fetchone() is not None
        if wanted and not present:
            conn.execute("CREATE TRIGGER readings_northbound AFTER INSERT ON readings "
                         "FOR EACH ROW EXECUTE FUNCTION riskwatch_northbound_reading()")
        elif present and not wanted:
            conn.execute("DROP TRIGGER readings_northbound ON readings")


def claim(conn: psycopg.Connection, target: str, now: float, limit: int) -> list[Item]:
    """Due pending items of `target`, oldest first, locked until the caller's transaction ends."""
    rows = conn.execute(
        """SELECT id, kind, key, data, attempts FROM northbound_items
           WHERE target = %s AND status = 'pending' AND next_at <= %s
           ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""", (target, ts(now), limit)).fetchall()
    return [Item(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def record(conn: psycopg.Connection, target: str, items: Sequence[Item], *, now: float, batch_key: str, ok: bool,
           http_status: int | None, error: str | None, duration_ms: float, next_at: float | None,
           dead: bool) -> None:
    """One attempt of a batch: an attempts row per item, and each item sent, retried at `next_at`, or dead."""
    ids = [i.id for i in items]
    conn.cursor().executemany(
        """INSERT INTO northbound_attempts (item_id, target, at, batch_key, ok, http_status, error, duration_ms)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
        [(i, target, ts(now), batch_key, ok, http_status, error, duration_ms) for i in ids])
    if ok:
        conn.execute("""UPDATE northbound_items SET status = 'sent', attempts = attempts + 1, sent_at = %s,
                        last_error = NULL WHERE id = ANY(%s)""", (ts(now), ids))
    elif dead:
        conn.execute("""UPDATE northbound_items SET status = 'dead', attempts = attempts + 1, last_error = %s
                        WHERE id = ANY(%s)""", (error, ids))
    else:
        conn.execute("""UPDATE northbound_items SET attempts = attempts + 1, last_error = %s, next_at = %s
                        WHERE id = ANY(%s)""", (error, ts(next_at or now), ids))


def count_by_status(conn: psycopg.Connection) -> dict[tuple[str, str], int]:
    """(target, status) -> items, for `riskwatch northbound status`."""
    rows = conn.execute("SELECT target, status, count(*) FROM northbound_items GROUP BY 1, 2").fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}
