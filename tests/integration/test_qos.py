"""Issue 15, "ingest without exceptions": QoS0 and QoS2 publishers, and topics outside the contract.

Gateways are third-party clients here (mosquitto_pub, plain paho), as a gateway vendor's audit would use.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Iterator

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from core.clock import SystemClock
from core.services import COLLECTOR_USER
from core.settings import MqttUrl
from ingest.collector import Collector
from tests.conftest import CollectorProcess, Site, connect_to, mqtt_client, pub_args, sql_one, wait_for

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return int(time.time() * 1000)


def readings(site: Site) -> int:
    return int(sql_one(site.db_url, "SELECT count(*) FROM readings"))  # type: ignore[arg-type]


def dead(site: Site) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(site.db_url) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT reason, topic, gateway_id FROM dead_letters ORDER BY id").fetchall()]


def pub(site: Site, gateway: str, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
        ) -> None:
    args = ["mosquitto_pub", *pub_args(site.broker), "-q", str(qos), "-u", gateway, "-P", site.credentials[gateway],
            "-t", topic, *(["-r"] if retain else [])]
    args += ["-n"] if not payload else ["-s"]
    res = subprocess.run(args, input=payload or None, capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr


@pytest.fixture
def in_process(mini_site: Site, caplog: pytest.LogCaptureFixture) -> Iterator[Collector]:
    """The real collector in a thread of this process, so the test can read its stats (and caplog its log)."""
    caplog.set_level(logging.INFO, logger="riskwatch.collector")
    col = Collector(mini_site.db_url, MqttUrl.parse(mini_site.broker.url(COLLECTOR_USER)), clock=SystemClock())
    t = threading.Thread(target=col.run, name="collector", daemon=True)
    t.start()
    wait_for(lambda: col.stats.mqtt_connects >= 1, timeout=20, message="collector connected")
    yield col
    col.stop()
    t.join(30)
    assert not t.is_alive()


def test_qos0_flood_is_stored_without_a_disconnect(mini_site: Site, in_process: Collector,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    n = 5000
    t0 = now_ms() - n - 1000
    lines = b"\n".join(orjson.dumps({"ts": t0 + i, "seq": i + 1, "readings": [{"tag": "TT-101", "v": i}]})
                       for i in range(n)) + b"\n"
    res = subprocess.run(["mosquitto_pub", *pub_args(mini_site.broker), "-q", "0", "-u", "gw-a1",
                          "-P", mini_site.credentials["gw-a1"], "-t", "rw/v1/gw-a1/telemetry", "-l"],
                         input=lines, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    wait_for(lambda: readings(mini_site) == n, timeout=60, interval=0.5,
             message=f"{n} QoS0 readings stored (have {readings(mini_site)})")
    assert in_process.stats.qos0_messages == n  # counted as best effort
    assert in_process.stats.mqtt_connects == 1
    assert dead(mini_site) == []
    # the connection happened in the fixture's setup phase: read both phases' records
    text = "\n".join(r.getMessage() for r in caplog.get_records("setup") + caplog.get_records("call"))
    assert text.count("MQTT connected") == 1
    assert "disconnected" not in text


def test_qos2_stream_stored_exactly(mini_site: Site, collector: CollectorProcess) -> None:
    collector.start()
    c = mqtt_client(mini_site.broker, "gw-a1", mini_site.credentials["gw-a1"], client_id="gw-a1",
                    clean_session=False)
    c.max_inflight_messages_set(100)
    connect_to(c, mini_site.broker)
    c.loop_start()
    try:
        n = 2000
        t0 = now_ms() - 2 * n - 1000
        infos = [c.publish("rw/v1/gw-a1/telemetry",
                           orjson.dumps({"ts": t0, "seq": i + 1,
                                         "readings": [{"tag": "TT-101", "v": i, "ts": t0 + 2 * i},
                                                      {"tag": "CO-101", "v": i, "ts": t0 + 2 * i + 1}]}),
                           qos=2) for i in range(n)]
        for info in infos:
            info.wait_for_publish(60)
        assert all(i.is_published() for i in infos)
    finally:
        c.disconnect()
        c.loop_stop()
    wait_for(lambda: readings(mini_site) >= 2 * n, timeout=60, interval=0.5,
             message=f"{2 * n} readings (have {readings(mini_site)})")
    assert collector.stop() == 0
    assert readings(mini_site) == 2 * n
    assert sql_one(mini_site.db_url, "SELECT count(DISTINCT (point_id, time)) FROM readings") == 2 * n
    assert dead(mini_site) == []
    section = collector.log.read_text()
    assert section.count("MQTT connected") == 1 and "MQTT disconnected" not in section


def test_unknown_topics_are_dead_lettered_with_their_topic(mini_site: Site, collector: CollectorProcess) -> None:
    collector.start()
    body = orjson.dumps({"ts": now_ms(), "seq": 1, "readings": [{"tag": "TT-101", "v": 1.0}]})
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/telemetry/extra", body)
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/foo", b"hello")
    # The service's downlink and the collector's own confirmation topic: not a gateway's data, ignored.
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/cmd/reboot", b"{}")
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/stored", b'{"seq": 99}')
    # A marker after them, from the same client and QoS: once stored, everything before it was handled.
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/telemetry",
        orjson.dumps({"ts": now_ms(), "readings": [{"tag": "CO-101", "v": 2.0}]}))
    wait_for(lambda: readings(mini_site) == 1, message="marker stored")
    assert dead(mini_site) == [("bad_topic", "rw/v1/gw-a1/telemetry/extra", "gw-a1"),
                               ("bad_topic", "rw/v1/gw-a1/foo", "gw-a1")]
    with psycopg.connect(mini_site.db_url) as conn:
        row = conn.execute("SELECT payload FROM dead_letters WHERE topic = 'rw/v1/gw-a1/telemetry/extra'").fetchone()
    assert row is not None and bytes(row[0]) == body  # the raw message is kept for inspection
    assert collector.alive()


def test_old_narrow_subscriptions_do_not_double_deliveries(mini_site: Site, collector: CollectorProcess) -> None:
    """A collector session made before issue 15 holds rw/v1/+/telemetry: after the upgrade each message
    still arrives once (the collector unsubscribes the old filters)."""
    old = mqtt_client(mini_site.broker, COLLECTOR_USER, mini_site.broker.state.collector_password,
                      client_id=COLLECTOR_USER, protocol=mqtt.MQTTv5)
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    connect_to(old, mini_site.broker, clean_start=False, properties=props)
    old.loop_start()
    sub = threading.Event()
    old.on_subscribe = lambda *_a: sub.set()
    old.subscribe([("rw/v1/+/telemetry", 1), ("rw/v1/+/status", 1)])
    assert sub.wait(10)
    old.disconnect()
    old.loop_stop()
    collector.start()
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/telemetry/x", b"{}")  # one dead letter, not two
    pub(mini_site, "gw-a1", "rw/v1/gw-a1/telemetry", orjson.dumps({"ts": now_ms(), "readings": [{"tag": "TT-101",
                                                                                                   "v": 1}]}))
    wait_for(lambda: readings(mini_site) == 1, message="reading stored")
    assert collector.stop() == 0
    assert [d[0] for d in dead(mini_site)] == ["bad_topic"]
    assert "duplicates absorbed" in collector.log.read_text()
    assert "0 duplicates absorbed" in collector.log.read_text()
