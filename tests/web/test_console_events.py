"""The board's live feed on real PostgreSQL: the alarm_events trigger announces committed transitions only,
the hub hands each to the subscribers allowed to see it, a user's ended sessions close its streams, and the
listener's connection exists only while someone watches."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from api.web.events import AlarmHub, FeedEvent, Subscriber
from core import accounts
from tests.conftest import wait_for
from tests.web.fix_console import T0, insert_alarm, load_site

pytestmark = pytest.mark.integration


async def next_events(sub: Subscriber, timeout: float) -> list[FeedEvent]:
    out: list[FeedEvent] = []
    try:
        while True:
            out.append(await asyncio.wait_for(sub.queue.get(), timeout=timeout))
    except TimeoutError:
        return out


def listeners(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                           " 'riskwatch-console-listen' AND datname = current_database()").fetchone()
    return int(row[0]) if row else 0


def test_feed_is_scoped_committed_only_and_listens_only_while_watched(db_url: str) -> None:
    load_site(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        uid = accounts.create_user(conn, "ea", "correct-horse-42", "enterprise_officer", enterprise_id="ent-a").id
    hub = AlarmHub(db_url, poll_s=0.1)

    async def scenario() -> None:
        a = hub.subscribe(uid, "ent-a")
        bureau = hub.subscribe(999, None)
        assert await asyncio.to_thread(hub.listening.wait, 10)
        insert_alarm(db_url, "r.a", "gw-a1", "TT-101", "plant-a", T0)
        insert_alarm(db_url, "r.b", "gw-b1", "FT-301", "plant-b", T0)
        with psycopg.connect(db_url) as conn:  # rolled back: never announced
            conn.execute("INSERT INTO alarm_events (time, rule_id, subject, plant_id, event, from_state, to_state,"
                         " severity, catalog_version) VALUES (now(), 'r.rolled-back', 'p:1', 'plant-a', 'activate',"
                         " 'normal', 'unack', 'high', 't')")
            conn.rollback()
        got_a = await next_events(a, 1.5)
        got_bureau = await next_events(bureau, 0.5)
        assert [(e.kind, e.data["rule_id"], e.data["enterprise_id"]) for e in got_a] == [("alarm", "r.a", "ent-a")]
        assert sorted(e.data["rule_id"] for e in got_bureau) == ["r.a", "r.b"]
        assert got_a[0].data["event"] == "activate" and got_a[0].data["to_state"] == "unack"
        # deactivating the user ends its stream, not the others'
        with psycopg.connect(db_url, autocommit=True) as conn:
            accounts.set_active(conn, uid, False)
        assert [e.kind for e in await next_events(a, 1.0)] == ["ended"]
        assert await next_events(bureau, 0.3) == []
        hub.unsubscribe(a)
        hub.unsubscribe(bureau)

    asyncio.run(scenario())
    wait_for(lambda: listeners(db_url) == 0, timeout=10, message="the listener to leave")
