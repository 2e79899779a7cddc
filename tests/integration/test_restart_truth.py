"""Restart truth (issues 14 and 15): a collector restart neither raises, clears nor delays anything.

What the engine restores — last arrival per point, gateway traffic and offline state, on-delays in
progress — must come from what was recorded with each batch, never from the readings' own timestamps
(back-filled data is hours old, a slow gateway clock lags minutes) nor from the broker's replay of
retained status messages at subscribe time. The collector is a real `riskwatch collect` subprocess,
killed with SIGKILL and restarted; the catalog is tests/fixtures/rules_restart.yaml (the shipped common
rules with limits of seconds: stale 12 s on required points, gateway offline 8 s; a 20 s on-delay).
"""

from __future__ import annotations

import threading
import time

import orjson
import psycopg
import pytest

from rules.store import load_point_arrivals
from tests.conftest import FIXTURES, CollectorProcess, Site, sql_one, wait_for
from tests.integration.test_rules_restart import Gateway

pytestmark = pytest.mark.integration
CATALOG = FIXTURES / "rules_restart.yaml"


def events(db_url: str, rule: str) -> list[tuple[str, str, float, str]]:
    """(subject, event, time, reason) of a rule's activations and clears, in time order."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT subject, event, extract(epoch FROM time), reason FROM alarm_events"
                            " WHERE rule_id = %s AND event IN ('activate', 'clear') ORDER BY time, subject",
                            (rule,)).fetchall()
    return [(r[0], r[1], float(r[2]), r[3]) for r in rows]


def point_id(db_url: str, gw: str, tag: str) -> int:
    pid = sql_one(db_url, "SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gw, tag))
    assert isinstance(pid, int)
    return pid


def test_replayed_offline_status_keeps_offline_alarms(mini_site: Site, collector: CollectorProcess) -> None:
    """Issue 14: after a restart the broker replays each gateway's retained {"online": false}; the alarms stay."""
    db = mini_site.db_url
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    for name in ("gw-a1", "gw-a2"):
        g = Gateway(mini_site, name)
        g.infos.append(g.c.publish(f"rw/v1/{name}/status", orjson.dumps({"online": False}), qos=1, retain=True))
        g.close()
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM gateways WHERE online = false") == 2)
    # 8 s after the live offline status (gw-b1: 8 s of silence since it was registered) the alarms activate
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM alarms WHERE rule_id = 'rt.gateway.offline' AND active") == 3,
             timeout=40, message="three gateway-offline alarms")
    before = events(db, "rt.gateway.offline")
    assert sorted(s for s, e, _, _ in before if e == "activate") == ["g:gw-a1", "g:gw-a2", "g:gw-b1"]

    collector.kill()
    collector.start()
    # The replayed statuses come with the SUBACK; gw-b1's live telemetry after it marks a tick later on:
    # gw-b1 is back (a positive sign that the tick ran after the replay), gw-a1 and gw-a2 are not.
    b1 = Gateway(mini_site, "gw-b1")
    b1.send([("FT-301", int(time.time() * 1000), 12.0)])
    b1.flush()
    wait_for(lambda: ("g:gw-b1", "clear") in [(s, e) for s, e, _, _ in events(db, "rt.gateway.offline")],
             message="gw-b1 back online")
    b1.send([("FT-301", int(time.time() * 1000) + 1, 12.5)])
    b1.close()
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM readings") == 2)
    time.sleep(2.5)  # margin: two more ticks after the batch that followed the replay
    after = events(db, "rt.gateway.offline")[len(before):]
    assert [(s, e) for s, e, _, _ in after] == [("g:gw-b1", "clear")], after
    with psycopg.connect(db) as conn:
        active = dict(conn.execute("SELECT subject, active FROM alarms WHERE rule_id = 'rt.gateway.offline'")
                      .fetchall())
        # a replay is not traffic: last_seen is still the live status of before the restart
        replay_seen = conn.execute("SELECT count(*) FROM gateways WHERE id IN ('gw-a1', 'gw-a2')"
                                   " AND last_seen > status_at + interval '1 second'").fetchone()
    assert active == {"g:gw-a1": True, "g:gw-a2": True, "g:gw-b1": False}
    assert replay_seen == (0,)
    assert collector.stop() == 0


class SlowClockGateway:
    """gw-a1 sending CO-101 every half second stamped 2 minutes behind the wall clock, until stopped."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, name="slow-clock", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.gw.send([("CO-101", int(time.time() * 1000) - 120_000, 10.0)])
            self.sent += 1
            self.stop.wait(0.5)


def test_backfill_and_slow_clock_survive_a_restart(mini_site: Site, collector: CollectorProcess) -> None:
    """Issue 15: stale is measured from the recorded arrival, not from the readings' timestamps."""
    db = mini_site.db_url
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    gw = Gateway(mini_site, "gw-a1")
    slow = SlowClockGateway(gw)
    slow.thread.start()
    # TT-101: a back-fill of 10 readings three hours old, then silence
    t_old = int(time.time() * 1000) - 3 * 3600 * 1000
    sent_at = time.time()
    gw.send([("TT-101", t_old + k * 1000, 60.0) for k in range(10)])
    tt, co = point_id(db, "gw-a1", "TT-101"), point_id(db, "gw-a1", "CO-101")
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM readings WHERE point_id = %s", (tt,)) == 10)
    with psycopg.connect(db) as conn:
        arrivals, _ = load_point_arrivals(conn, max(tt, co) + 1)
    arrived = float(arrivals[tt])
    assert sent_at - 0.5 <= arrived <= time.time()  # the batch's clock, not the readings' time (3 h ago)
    wait_for(lambda: time.time() > arrived + 6, timeout=20)
    collector.kill()  # 6 s into the 12 s stale limit of TT-101
    collector.start()
    # Without the restart TT-101 goes stale 12 s after its data arrived and CO-101 never does.
    wait_for(lambda: any(e == "activate" for _, e, _, _ in events(db, "rt.required.stale")), timeout=40,
             message="TT-101 stale")
    time.sleep(2.5)  # margin: CO-101 keeps reporting; nothing else may appear
    slow.stop.set()
    slow.thread.join(5)
    gw.close()
    got = events(db, "rt.required.stale")
    assert [(s, e) for s, e, _, _ in got] == [(f"p:{tt}", "activate")], got
    fired = got[0][2]
    # fired when the recorded arrival says (one tick of slack), not at once after the restart (old: data time
    # 3 h ago) nor 12 s after the restart (arrival taken as the restart time)
    assert arrived + 12 <= fired <= arrived + 15, (arrived, fired)
    assert sql_one(db, "SELECT count(*) FROM hazard_candidates WHERE rule_id = 'rt.required.stale'") == 1
    assert sql_one(db, "SELECT subject FROM hazard_candidates WHERE rule_id = 'rt.required.stale'") == f"p:{tt}"
    assert sql_one(db, "SELECT count(*) FROM alarm_events WHERE event = 'clear'") == 0
    assert slow.sent > 20
    assert collector.stop() == 0


def test_on_delay_across_a_restart_fires_once_at_its_data_time(mini_site: Site,
                                                               collector: CollectorProcess) -> None:
    """A 20 s on-delay running when the collector dies completes at t0 + 20 s of data time, exactly once."""
    db = mini_site.db_url
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    gw = Gateway(mini_site, "gw-a1")
    t0 = int(time.time() * 1000) - 60_000
    gw.send([("TT-101", t0 + k * 1000, 75.0) for k in range(11)])
    gw.flush()
    wait_for(lambda: sql_one(db, "SELECT cond FROM alarms WHERE rule_id = 'rt.temp:hi'") is True)
    since = sql_one(db, "SELECT extract(epoch FROM cond_since) FROM alarms WHERE rule_id = 'rt.temp:hi'")
    assert float(since) == t0 / 1000  # type: ignore[arg-type]
    collector.kill()
    # readings published while the collector is down wait in its persistent session
    gw.send([("TT-101", t0 + k * 1000, 75.0) for k in range(11, 16)])
    gw.flush()
    collector.start()
    gw.send([("TT-101", t0 + k * 1000, 75.0) for k in range(16, 26)])
    gw.close()
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM readings") == 26)
    wait_for(lambda: len(events(db, "rt.temp:hi")) >= 1)
    collector.kill()  # and once more while active: the restart must not repeat the activation
    collector.start()
    g2 = Gateway(mini_site, "gw-a1")
    g2.send([("TT-101", t0 + k * 1000, 75.0) for k in range(26, 30)])
    g2.close()
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM readings") == 30)
    time.sleep(1.5)  # margin: the batch of those readings is evaluated with the one that stored them
    got = events(db, "rt.temp:hi")
    assert [(e, round(t, 3)) for _, e, t, _ in got] == [("activate", round(t0 / 1000 + 20, 3))], got
    assert "for 20 s" in got[0][3]
    assert collector.stop() == 0
