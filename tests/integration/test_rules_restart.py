"""The rule engine inside the collector: transitions commit with the readings and survive SIGKILL.

The expected transitions are computed by running the pure evaluator over the
same readings in one go; the collector, killed at random instants and
restarted, must have recorded exactly those: none doubled, none missed.
"""

from __future__ import annotations

import random
import time

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from rules.compile import compile_rules
from rules.evaluate import BatchArrays, Index, PointState, State, evaluate_batch
from rules.model import Catalog, load_file
from rules.store import load_registry
from tests.conftest import FIXTURES, CollectorProcess, Site, connect_to, mqtt_client, sql_one, wait_for

pytestmark = pytest.mark.integration
CATALOG = FIXTURES / "rules_test.yaml"


class Gateway:
    def __init__(self, site: Site, gw: str):
        self.gw = gw
        self.c = mqtt_client(site.broker, gw, site.credentials[gw], client_id=gw, clean_session=False)
        self.c.max_inflight_messages_set(100)
        connect_to(self.c, site.broker)
        self.c.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def send(self, readings: list[tuple[str, int, float]]) -> None:
        payload = orjson.dumps({"readings": [{"tag": tag, "ts": ts, "v": v} for tag, ts, v in readings]})
        self.infos.append(self.c.publish(f"rw/v1/{self.gw}/telemetry", payload, qos=1))

    def flush(self) -> None:
        for i in self.infos:
            i.wait_for_publish(30)
        self.infos.clear()

    def close(self) -> None:
        self.flush()
        self.c.disconnect()
        self.c.loop_stop()


def expected_transitions(db_url: str, rows: list[tuple[str, int, float]]) -> list[tuple[str, str, float]]:
    """Run the pure evaluator over all readings at once."""
    catalog = Catalog([(CATALOG, load_file(CATALOG))])
    with psycopg.connect(db_url) as conn:
        view, _, _ = load_registry(conn)
    compiled = compile_rules(catalog, view)
    pid_of = {p.tag: p.id for p in view.points if p.gateway_id == "gw-a1"}
    size = max(p.id for p in view.points) + 1
    state = State(PointState.empty(size), seen=np.zeros(size, bool))
    arr = BatchArrays(np.array([pid_of[r[0]] for r in rows], np.int32), np.array([r[1] * 1000 for r in rows]),
                      np.array([r[2] for r in rows]), np.zeros(len(rows), np.int16))
    _, trs = evaluate_batch(arr, state, Index(compiled, size), time.time())
    return sorted((compiled.instances[t.index].rule_id, t.kind, t.time_us / 1e6) for t in trs)


def recorded(db_url: str) -> list[tuple[str, str, float]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT rule_id, event, extract(epoch FROM time) FROM alarm_events"
                            " WHERE event IN ('activate', 'clear') ORDER BY time, rule_id").fetchall()
    return sorted((r[0], r[1], round(float(r[2]), 3)) for r in rows)


def test_kill_during_on_delay_and_while_active(mini_site: Site, collector: CollectorProcess) -> None:
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    gw = Gateway(mini_site, "gw-a1")
    t0 = int(time.time() * 1000) - 60_000
    # CO high at once (no on-delay): active; TT-101 high for 3 s of a 5 s on-delay: pending
    gw.send([("CO-101", t0 + k * 1000, 30.0) for k in range(3)] + [("TT-101", t0 + k * 1000, 75.0) for k in range(4)])
    gw.flush()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 7)
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT cond FROM alarms WHERE rule_id = 'it.temp:hi'") is True)
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM alarm_events WHERE event = 'activate'") == 1
    collector.kill()
    collector.start()
    # still high: the pending on-delay completes at t0+5 s; CO stays active (no second activation)
    gw.send([("TT-101", t0 + k * 1000, 75.0) for k in range(4, 8)] + [("CO-101", t0 + 3000, 31.0)])
    gw.flush()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 12)
    collector.kill()
    collector.start()
    # both return to normal; off-delay 3 s for the temperature
    gw.send([("TT-101", t0 + k * 1000, 60.0) for k in range(8, 13)] + [("CO-101", t0 + 4000, 10.0)])
    gw.close()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 18)
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM alarm_events WHERE event = 'clear'") == 2)
    t = t0 / 1000
    assert recorded(mini_site.db_url) == sorted([
        ("it.co:hi", "activate", round(t, 3)), ("it.co:hi", "clear", round(t + 4, 3)),
        ("it.temp:hi", "activate", round(t + 5, 3)), ("it.temp:hi", "clear", round(t + 11, 3)),
    ])
    # the CO rule is flagged candidate: exactly one candidate with its evidence window
    with psycopg.connect(mini_site.db_url) as conn:
        cands = conn.execute("SELECT rule_id, basis, evidence FROM hazard_candidates").fetchall()
        states = dict(conn.execute("SELECT rule_id, state FROM alarms").fetchall())
    assert len(cands) == 1 and cands[0][0] == "it.co:hi" and "5.5.2" in cands[0][1]
    assert [r["value"] for r in cands[0][2]["readings"]] == [30.0]
    assert states == {"it.co:hi": "rtn_unack", "it.temp:hi": "rtn_unack"}
    assert collector.stop() == 0


def test_random_kills_neither_double_nor_miss_transitions(mini_site: Site, collector: CollectorProcess) -> None:
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    rng = random.Random(11)
    t0 = int(time.time() * 1000) - 600_000
    rows: list[tuple[str, int, float]] = []
    temp, co = 60.0, 10.0
    for k in range(600):  # 10 minutes at 1 Hz: excursions above the limits now and then
        temp = 75.0 if rng.random() < 0.06 else (temp if temp > 70 and rng.random() < 0.8 else 60 + rng.random())
        co = 30.0 if rng.random() < 0.03 else (co if co > 24 and rng.random() < 0.7 else 10 + rng.random())
        rows += [("TT-101", t0 + k * 1000, temp), ("CO-101", t0 + k * 1000, co)]
    want = expected_transitions(mini_site.db_url, rows)
    assert len(want) > 20
    gw = Gateway(mini_site, "gw-a1")
    kills = sorted(rng.sample(range(10, 590), 3))
    for k in range(0, 600, 5):
        gw.send(rows[2 * k: 2 * (k + 5)])
        if kills and k >= kills[0]:
            kills.pop(0)
            gw.flush()
            time.sleep(rng.uniform(0, 0.3))
            collector.kill()
            collector.start()
        time.sleep(0.02)
    gw.close()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == len(rows), timeout=60)
    wait_for(lambda: len(recorded(mini_site.db_url)) >= len(want), timeout=30)
    time.sleep(1)
    got = recorded(mini_site.db_url)
    assert got == [(r, k, round(t, 3)) for r, k, t in want]
    assert collector.starts == 4
    assert collector.stop() == 0


