"""Retention for the operational tables: outbox, notifications with their deliveries, dead letters,
quarantined readings.

These are ordinary tables, not hypertables, so rows go by DELETE with an
index on the age column; `riskwatch retention run` calls this in the same
transaction as the chunk drops (core/retention.py).

What is never removed, whatever its age:
- an outbox row not yet routed (`routed_at IS NULL`): it is work to do;
- a notification still `pending` (being retried) and its deliveries: the
  dispatcher needs them, and a delivery log must not lose the attempts of a
  notification whose outcome is not known yet;
- anything younger than its table's age.
Quarantined readings (readings of unmapped tags, kept for a backfill once the tag is mapped: ingest/quarantine.py)
are bounded twice: nothing received more than `quarantine_days` ago (30: a tag nobody maps within a month will
not be), and per (gateway, tag) only the newest `quarantine_rows` readings (100,000: a runaway 1 Hz tag keeps
~28 h, so a misconfigured gateway cannot fill the disk between two retention runs' ages).
A notification goes together with its deliveries (they reference it), so
deliveries are kept at most as long as notifications. `deliveries` is
append-only (a trigger refuses UPDATE and DELETE); only this purge, run by
the tables' owner, switches the trigger off, inside its transaction: no other
session ever sees the table without it (ALTER TABLE holds its lock to commit).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from core.errors import ConfigError

DEFAULT_OUTBOX_DAYS = 30.0
#: Who was told what, and when, is asked for after an incident: keep it half a year by default.
DEFAULT_NOTIFICATIONS_DAYS = 180.0
DEFAULT_DELIVERIES_DAYS = 180.0
DEFAULT_DEAD_LETTER_DAYS = 30.0
DEFAULT_QUARANTINE_DAYS = 30.0
DEFAULT_QUARANTINE_ROWS = 100_000


@dataclass(frozen=True)
class OperationalRetention:
    outbox_days: float = DEFAULT_OUTBOX_DAYS
    notifications_days: float = DEFAULT_NOTIFICATIONS_DAYS
    deliveries_days: float = DEFAULT_DELIVERIES_DAYS
    dead_letter_days: float = DEFAULT_DEAD_LETTER_DAYS
    quarantine_days: float = DEFAULT_QUARANTINE_DAYS
    quarantine_rows: int = DEFAULT_QUARANTINE_ROWS

    def __post_init__(self) -> None:
        if not (isinstance(self.quarantine_rows, int) and self.quarantine_rows >= 1):
            raise ConfigError(f"quarantine rows must be a positive integer (got {self.quarantine_rows!r})")
        for name in ("outbox_days", "notifications_days", "deliveries_days", "dead_letter_days", "quarantine_days"):
            v = getattr(self, name)
            if not v > 0:
                raise ConfigError(f"{name.replace('_', ' ')} must be positive (got {v:g})")
        if self.deliveries_days > self.notifications_days:
            raise ConfigError(f"deliveries cannot outlive their notifications (deliveries {self.deliveries_days:g}"
                              f" days > notifications {self.notifications_days:g} days)")


@dataclass(frozen=True)
class Cutoffs:
    outbox: datetime
    notifications: datetime
    deliveries: datetime
    dead_letters: datetime
    quarantine: datetime


def cutoffs(policy: OperationalRetention, now: datetime) -> Cutoffs:
    """The instant before which each table's rows may go (pure)."""
    return Cutoffs(now - timedelta(days=policy.outbox_days), now - timedelta(days=policy.notifications_days),
                   now - timedelta(days=policy.deliveries_days), now - timedelta(days=policy.dead_letter_days),
                   now - timedelta(days=policy.quarantine_days))


_FINAL = "('sent', 'dead')"
#: Per (gateway, tag): the time of its `quarantine_rows`-th newest reading; older ones go.
_CAPS = """WITH caps AS (
               SELECT k.gateway_id, k.tag, c.ts FROM (SELECT DISTINCT gateway_id, tag FROM quarantined_readings) k
               CROSS JOIN LATERAL (SELECT x.ts FROM quarantined_readings x
                                   WHERE x.gateway_id = k.gateway_id AND x.tag = k.tag
                                   ORDER BY x.ts DESC OFFSET %(quarantine_rows)s - 1 LIMIT 1) c)"""
_QUARANTINE_OUT = """q.received_at < %(quarantine)s OR EXISTS (
                         SELECT 1 FROM caps c WHERE c.gateway_id = q.gateway_id AND c.tag = q.tag AND q.ts < c.ts)"""
_COUNTS = {
    "outbox": "SELECT count(*) FROM outbox WHERE routed_at IS NOT NULL AND created_at < %(outbox)s",
    "deliveries": f"""SELECT count(*) FROM deliveries d JOIN notifications n ON n.id = d.notification_id
                      WHERE n.status IN {_FINAL}
                        AND (d.finished_at < %(deliveries)s OR n.created_at < %(notifications)s)""",
    "notifications": f"SELECT count(*) FROM notifications WHERE status IN {_FINAL} AND created_at < %(notifications)s",
    "dead_letters": "SELECT count(*) FROM dead_letters WHERE received_at < %(dead_letters)s",
    "quarantined_readings": f"{_CAPS} SELECT count(*) FROM quarantined_readings q WHERE {_QUARANTINE_OUT}",
}
_DELETES = {
    "outbox": "DELETE FROM outbox WHERE routed_at IS NOT NULL AND created_at < %(outbox)s",
    "deliveries": f"""DELETE FROM deliveries d USING notifications n
                      WHERE n.id = d.notification_id AND n.status IN {_FINAL}
                        AND (d.finished_at < %(deliveries)s OR n.created_at < %(notifications)s)""",
    "notifications": f"DELETE FROM notifications WHERE status IN {_FINAL} AND created_at < %(notifications)s",
    "dead_letters": "DELETE FROM dead_letters WHERE received_at < %(dead_letters)s",
    "quarantined_readings": f"{_CAPS} DELETE FROM quarantined_readings q WHERE {_QUARANTINE_OUT}",
}


def purge_operational(conn: psycopg.Connection, policy: OperationalRetention, now: datetime,
                      dry_run: bool = False) -> dict[str, int]:
    """Delete (dry run: count) what the policy lets go; the caller holds the transaction. Returns rows per table."""
    cut = cutoffs(policy, now)
    params = {"outbox": cut.outbox, "notifications": cut.notifications, "deliveries": cut.deliveries,
              "dead_letters": cut.dead_letters, "quarantine": cut.quarantine,
              "quarantine_rows": policy.quarantine_rows}
    out: dict[str, int] = {}
    if dry_run:
        for table, q in _COUNTS.items():
            row = conn.execute(q, params).fetchone()
            out[table] = int(row[0]) if row else 0
        return out
    out["outbox"] = conn.execute(_DELETES["outbox"], params).rowcount
    # No try/finally: an error aborts the caller's transaction, and with it the DISABLE.
    conn.execute("ALTER TABLE deliveries DISABLE TRIGGER deliveries_append_only")
    out["deliveries"] = conn.execute(_DELETES["deliveries"], params).rowcount
    conn.execute("ALTER TABLE deliveries ENABLE TRIGGER deliveries_append_only")
    out["notifications"] = conn.execute(_DELETES["notifications"], params).rowcount
    out["dead_letters"] = conn.execute(_DELETES["dead_letters"], params).rowcount
    out["quarantined_readings"] = conn.execute(_DELETES["quarantined_readings"], params).rowcount
    return out
