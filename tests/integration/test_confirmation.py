"""Issue 15: retained telemetry handled once, and the end-to-end `stored` confirmation.

The confirming publisher (simulators.gateway.ConfirmingPublisher) keeps every message until the collector's
retained rw/v1/{gw}/stored covers it, so even a SIGKILLed broker, which loses what it acknowledged since its
last save, loses nothing end to end.
"""

from __future__ import annotations

import re
import signal
import threading
import time

import orjson
import psycopg
import pytest

from simulators.gateway import ConfirmingPublisher
from tests.conftest import CollectorProcess, Site, connect_to, mqtt_client, sql_one, wait_for
from tests.integration.test_qos import dead, now_ms, pub, readings

pytestmark = pytest.mark.integration


def replays_seen(collector: CollectorProcess) -> int:
    """Retained messages the current collector run has received (it logs them per batch)."""
    section = collector.log.read_text().split(f"--- start {collector.starts}\n")[-1]
    return sum(int(n) for n in re.findall(r"(\d+) retained messages replayed", section))


def test_retained_telemetry_stored_once_and_dead_lettered_once_across_reconnects(
    mini_site: Site, collector: CollectorProcess
) -> None:
    ts = now_ms()
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/telemetry",
        orjson.dumps({"ts": ts, "seq": 5, "readings": [{"tag": "TT-101", "v": 1.5}]}), retain=True)
    pub(mini_site, "gw-a2", "rw/v1/gw-a2/telemetry", b"{not json", retain=True)
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/junk", b"retained junk", retain=True)
    for run in range(4):  # the first start and three reconnects
        collector.start()
        wait_for(lambda: replays_seen(collector) >= 3, message=f"3 retained replays in run {run + 1}")
        assert collector.stop() == 0
        assert readings(mini_site) == 1
        assert sorted(d[0] for d in dead(mini_site)) == ["bad_topic", "invalid_json"]
    # Clearing retained messages (zero-length retained publishes) is not a dead letter, on any topic.
    collector.start()
    for topic, gw in (("rw/v1/gw-a1/telemetry", "gw-a1"), ("rw/v1/gw-a2/telemetry", "gw-a2"),
                      ("rw/v1/gw-a1/status", "gw-a1"), ("rw/v1/gw-a1/junk", "gw-a1")):
        pub(mini_site, gw, topic, b"", retain=True)
    pub(mini_site, "gw-a2", "rw/v1/gw-a2/telemetry",
        orjson.dumps({"ts": ts, "readings": [{"tag": "TT-201", "v": 2.0}]}))
    wait_for(lambda: readings(mini_site) == 2, message="marker stored")
    assert collector.stop() == 0
    assert sorted(d[0] for d in dead(mini_site)) == ["bad_topic", "invalid_json"]
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM retained_seen WHERE topic LIKE %s",
                  ("%/telemetry",)) == 0
    # Nothing retained is left: a restart replays nothing.
    collector.start()
    pub(mini_site, "gw-a2", "rw/v1/gw-a2/telemetry",
        orjson.dumps({"ts": ts + 1, "readings": [{"tag": "TT-201", "v": 3.0}]}))
    wait_for(lambda: readings(mini_site) == 3, message="second marker stored")
    assert replays_seen(collector) == 0
    assert len(dead(mini_site)) == 2


class StoredWatcher:
    """Every rw/v1/{gw}/stored value the gateway itself can read (its ACL allows its own)."""

    def __init__(self, site: Site, gw: str):
        self.seqs: list[int] = []
        self.lock = threading.Lock()
        self.c = mqtt_client(site.broker, gw, site.credentials[gw], client_id=f"{gw}")
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, *_a: c.subscribe(f"rw/v1/{gw}/stored", 1)

    def _msg(self, _c: object, _u: object, msg: object) -> None:
        doc = orjson.loads(msg.payload)  # type: ignore[attr-defined]
        assert set(doc) == {"seq", "ts", "seqs"} and abs(doc["ts"] - now_ms()) < 60_000
        with self.lock:
            self.seqs.append(doc["seq"])

    def last(self) -> int | None:
        with self.lock:
            return self.seqs[-1] if self.seqs else None


def test_stored_confirmation_equals_last_seq_and_never_goes_down(mini_site: Site, collector: CollectorProcess) -> None:
    collector.start()
    gw = ConfirmingPublisher("gw-a1", mini_site.credentials["gw-a1"], "127.0.0.1", mini_site.broker.state.mqtt_port,
                             tls=mini_site.tls, first_seq=1)
    gw.start()
    try:
        t0 = now_ms() - 10_000
        for i in range(600):
            gw.publish_telemetry(["TT-101", "CO-101"], [i, i], [t0 + 2 * i, t0 + 2 * i + 1])
        assert gw.wait_confirmed(60), f"{gw.buffered()} unconfirmed"
        assert gw.confirmed_seq == gw.last_seq == 600
        # A redelivery of old messages (a gateway re-sending from its buffer) must not lower the confirmation.
        pub(mini_site, "gw-a1", "rw/v1/gw-a1/telemetry",
            orjson.dumps({"ts": t0, "seq": 3, "readings": [{"tag": "TT-101", "v": 3, "ts": t0 + 6}]}))
        # A message without seq confirms nothing.
        pub(mini_site, "gw-a2", "rw/v1/gw-a2/telemetry",
            orjson.dumps({"ts": now_ms(), "readings": [{"tag": "TT-201", "v": 1}]}))
        wait_for(lambda: readings(mini_site) == 1201, message="all readings")
    finally:
        gw.close()
    # What a gateway reconnecting later reads: the retained confirmation.
    seen = StoredWatcher(mini_site, "gw-a1")
    connect_to(seen.c, mini_site.broker)
    seen.c.loop_start()
    try:
        wait_for(lambda: seen.last() is not None, message="retained stored")
        assert seen.last() == 600
    finally:
        seen.c.disconnect()
        seen.c.loop_stop()
    with psycopg.connect(mini_site.db_url) as conn:
        rows = conn.execute("SELECT gateway_id, seq FROM gateway_stored_seq").fetchall()
    assert rows == [("gw-a1", 600)]
    assert collector.stop() == 0
    got = gw.confirmations_seen()
    assert got and got == sorted(got) and got[-1] == 600  # every stored value on the wire, never going down


def test_broker_sigkill_mid_stream_loses_nothing_with_the_confirming_publisher(
    mini_site: Site, collector: CollectorProcess
) -> None:
    collector.start()
    gw = ConfirmingPublisher("gw-a1", mini_site.credentials["gw-a1"], "127.0.0.1", mini_site.broker.state.mqtt_port,
                             tls=mini_site.tls, stall_timeout_s=120)
    gw.start()
    seen: list[int] = []
    watcher_stop = threading.Event()

    def watch_confirmations() -> None:
        while not watcher_stop.wait(0.05):
            c = gw.confirmed_seq
            if c is not None and (not seen or seen[-1] != c):
                seen.append(c)

    w = threading.Thread(target=watch_confirmations, daemon=True)
    w.start()
    sent: set[tuple[str, int]] = set()
    n = 4000
    t0 = now_ms() - 3 * n - 5000
    try:
        for i in range(n):
            times = [t0 + 3 * i, t0 + 3 * i + 1, t0 + 3 * i + 2]
            gw.publish_telemetry(["TT-101", "CO-101", "PDT-101"], [i, i, i], times)
            sent.update(zip(["TT-101", "CO-101", "PDT-101"], times, strict=True))
            if i == n // 2:
                mini_site.broker.stop(signal.SIGKILL)
                mini_site.broker.start()
            elif i % 100 == 0:
                time.sleep(0.02)  # a stream, not one burst
        assert gw.wait_confirmed(180), f"{gw.buffered()} messages unconfirmed"
    finally:
        watcher_stop.set()
        gw.close()
    assert gw.stats().connects >= 2  # it did reconnect to the restarted broker
    wait_for(lambda: readings(mini_site) >= len(sent), timeout=60, message="all readings")
    assert readings(mini_site) == len(sent) == 3 * n
    assert sql_one(mini_site.db_url, "SELECT count(DISTINCT (point_id, time)) FROM readings") == 3 * n
    assert dead(mini_site) == []
    assert seen == sorted(seen)
    # On the wire a lower value can appear once: the restarted broker replays the retained confirmation of
    # its last save. The publisher's confirmed seq never goes down (`seen`), and the last word is the last seq.
    got = gw.confirmations_seen()
    assert got[-1] == gw.last_seq and max(got) == gw.last_seq
    assert gw.confirmed_seq == gw.last_seq
