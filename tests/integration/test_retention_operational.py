"""Retention of the operational tables (issue 16): outbox, notifications with deliveries, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core.errors import ConfigError
from core.retention import RetentionPolicy, run_retention
from core.retention_operational import OperationalRetention

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a fixed clock: ages are exact


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def fill(conn: psycopg.Connection) -> dict[str, int]:
    """Rows on both sides of each cut-off, and the ones that must stay whatever their age."""
    ids: dict[str, int] = {}
    for name, created, routed in [("ob_old_routed", 40, 39), ("ob_old_unrouted", 40, None), ("ob_young", 5, 5)]:
        ids[name] = conn.execute(
            "INSERT INTO outbox (created_at, kind, event, event_time, routed_at) VALUES (%s, 'alarm', 'firing', %s, %s)"
            " RETURNING id", (ago(created), ago(created), ago(routed) if routed is not None else None)).fetchone()[0]  # type: ignore[index]
    group = conn.execute(
        "INSERT INTO alert_groups (route, receiver, group_key, group_wait, group_interval, repeat_interval,"
        " created_at) VALUES ('root', 'duty', 'k', 10, 120, 1800, %s) RETURNING id", (ago(400),)).fetchone()[0]  # type: ignore[index]
    for name, created, status in [("n_old_sent", 200, "sent"), ("n_old_dead", 190, "dead"),
                                  ("n_old_pending", 200, "pending"), ("n_young_sent", 100, "sent")]:
        nid = conn.execute(
            "INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel, items,"
            " message, status, next_attempt_at, created_at) VALUES (%s, %s, 1, 'firing', 'test', 'duty', 'sms',"
            " '[]', '{}', %s, %s, %s) RETURNING id", (name, group, status, ago(created), ago(created))).fetchone()[0]  # type: ignore[index]
        ids[name] = nid
        for attempt in (1, 2):
            conn.execute("INSERT INTO deliveries (notification_id, attempt, started_at, finished_at, ok, detail)"
                         " VALUES (%s, %s, %s, %s, %s, 'x')",
                         (nid, attempt, ago(created), ago(created), attempt == 2))
    for name, received in [("dl_old", 31), ("dl_young", 29)]:
        ids[name] = conn.execute("INSERT INTO dead_letters (received_at, topic, reason, payload)"
                                 " VALUES (%s, 'rw/v1/x/telemetry', 'invalid_json', '\\x00') RETURNING id",
                                 (ago(received),)).fetchone()[0]  # type: ignore[index]
    return ids


def left(conn: psycopg.Connection, table: str) -> set[int]:
    return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}  # type: ignore[arg-type]


def test_old_finished_rows_go_work_in_progress_stays(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        ids = fill(conn)
        conn.commit()
        policy = RetentionPolicy(operational=OperationalRetention(deliveries_days=150))
        dry = run_retention(conn, policy, now=NOW, dry_run=True)
        # young sent notification (100 days): its deliveries are younger than 150 days too; nothing else qualifies
        assert dry.rows == {"outbox": 1, "deliveries": 4, "notifications": 2, "dead_letters": 1,
                            "quarantined_readings": 0}
        assert len(left(conn, "deliveries")) == 8  # a dry run removes nothing

        res = run_retention(conn, policy, now=NOW)
        assert res.rows == dry.rows
        assert left(conn, "outbox") == {ids["ob_old_unrouted"], ids["ob_young"]}  # unrouted work is never purged
        assert left(conn, "notifications") == {ids["n_old_pending"], ids["n_young_sent"]}
        kept = {r[0] for r in conn.execute("SELECT DISTINCT notification_id FROM deliveries")}
        assert kept == {ids["n_old_pending"], ids["n_young_sent"]}  # a pending notification keeps its attempts
        assert left(conn, "dead_letters") == {ids["dl_young"]}
        conn.commit()

        # the purge switched the append-only trigger back on: nobody else may delete a delivery
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM deliveries")
        conn.rollback()

        # a second run finds nothing more
        assert run_retention(conn, policy, now=NOW).rows == {"outbox": 0, "deliveries": 0, "notifications": 0,
                                                             "dead_letters": 0, "quarantined_readings": 0}


def test_shorter_delivery_age_keeps_the_notification(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        ids = fill(conn)
        conn.commit()
        res = run_retention(conn, RetentionPolicy(operational=OperationalRetention(deliveries_days=90)), now=NOW)
        assert res.rows["deliveries"] == 6  # old sent, old dead, young sent (100 d > 90 d); not the pending one
        assert ids["n_young_sent"] in left(conn, "notifications")


@pytest.mark.parametrize("kw", [{"outbox_days": 0}, {"dead_letter_days": -1}, {"notifications_days": float("nan")},
                                {"notifications_days": 30, "deliveries_days": 60}])
def test_bad_ages_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        OperationalRetention(**kw)
