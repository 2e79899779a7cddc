"""Broker identity (issue #11, item 2): no credential can act as another client — the collector above all.

The review's attack: a gateway connects with client id `riskwatch-collector`, takes over the collector's
persistent session and is handed what the broker had already acknowledged to the gateways (16 acknowledged,
1 stored). The broker now binds client ids to usernames (Mosquitto `use_username_as_clientid`): it does not
refuse such a CONNECT, it *replaces* the requested id with the username, so the impostor gets its own id and
its own session, and the collector never notices.

Each test runs the real collector (`riskwatch collect`) against the private TLS broker while gateway A streams
confirmed (QoS 1, PUBACK-counted) readings, and checks three witnesses: the broker's log (which id each client
got, no "already connected" takeover), the collector's log (one connection, no disconnect) and the database
(stored == acknowledged).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from api.http import health
from core.services import COLLECTOR_USER, HEALTH_USER
from core.settings import MqttUrl
from simulators.gateway import GatewayPublisher, GatewayStats
from tests.conftest import CollectorProcess, Site, connect_to, mqtt_client, sql_one, wait_for

pytestmark = pytest.mark.integration

A, B = "gw-a1", "gw-b1"  # two enterprises' gateways: B is the hostile tenant
TAG = "PDT-101"  # a point of A's


class Stream(threading.Thread):
    """Gateway A publishing one distinct reading every 10 ms until stopped, through the simulator's client."""

    def __init__(self, site: Site):
        super().__init__(name="stream", daemon=True)
        self.pub = GatewayPublisher(A, site.credentials[A], "127.0.0.1", site.broker.state.mqtt_port, tls=site.tls)
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        base = int(time.time() * 1000) - 60_000
        i = 0
        try:
            while not self.halt.is_set():
                self.pub.publish_telemetry([TAG], [float(i)], [base + i])
                i += 1
                time.sleep(0.01)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self) -> GatewayStats:
        """Stop and wait for every PUBACK: `messages` telemetry messages, all acknowledged by the broker."""
        self.halt.set()
        self.join(10)
        if self.error:
            raise self.error
        assert self.pub.wait_acked(30), self.pub.stats()
        st = self.pub.stats()
        self.pub.close()
        assert st.acked == st.published, st
        return st


@pytest.fixture
def stream(mini_site: Site, collector: CollectorProcess) -> Iterator[Stream]:
    collector.start()
    s = Stream(mini_site)
    s.pub.start(10)
    s.start()
    yield s
    s.halt.set()


@dataclass
class Attempt:
    rc: int
    received: list[str]


def impostor(site: Site, client_id: str, protocol: mqtt.MQTTProtocolVersion, clean: bool) -> Attempt:
    """Gateway B's valid credentials asking for `client_id`; holds the connection 1 s, PUBACKing whatever it gets
    (as a thief would), subscribed to everything it may ask for."""
    got: list[str] = []
    rc: list[int] = []
    v5 = protocol == mqtt.MQTTv5
    c = mqtt_client(site.broker, B, site.credentials[B], client_id=client_id, protocol=protocol,
                    clean_session=None if v5 else clean)
    c.on_connect = lambda _c, _u, _f, reason, _p: rc.append(reason.value)
    c.on_message = lambda _c, _u, m: got.append(m.topic)
    kw: dict[str, object] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else 300
        kw = {"clean_start": clean, "properties": props}
    connect_to(c, site.broker, **kw)
    c.loop_start()
    try:
        wait_for(lambda: bool(rc), timeout=10, interval=0.02, message=f"CONNACK for {client_id}")
        c.subscribe("rw/v1/#", qos=1)
        time.sleep(1.0)
    finally:
        c.disconnect()
        c.loop_stop()
    return Attempt(rc[0], got)


def broker_log(site: Site) -> str:
    return site.broker.logfile.read_text(errors="replace")


def connected_as(log: str, client_id: str) -> list[str]:
    """The broker's `New client connected ... as <id> (p., c., k.., u'<user>')` lines for one id."""
    return re.findall(rf"New client connected from \S+ as {re.escape(client_id)} \((p\d, c\d), k\d+, u'([^']*)'\)",
                      log)


def assert_collector_undisturbed(site: Site, collector: CollectorProcess) -> None:
    text = collector.log.read_text(errors="replace")
    assert text.count("MQTT connected") == 1, text[-3000:]
    assert "MQTT disconnected" not in text, text[-3000:]
    log = broker_log(site)
    assert connected_as(log, COLLECTOR_USER) == [("p5, c0", COLLECTOR_USER)], log[-3000:]
    assert "already connected, closing old connection" not in log, log[-3000:]


VARIANTS = [(cid, proto, clean) for cid in (COLLECTOR_USER, A) for proto in (mqtt.MQTTv311, mqtt.MQTTv5)
            for clean in (True, False)]


def test_gateway_credentials_cannot_act_as_the_collector_or_another_gateway(
        mini_site: Site, collector: CollectorProcess, stream: Stream) -> None:
    for cid, proto, clean in VARIANTS:
        att = impostor(mini_site, cid, proto, clean)
        # Mosquitto accepts the login (the credentials are valid) but under B's own id, not the one asked for.
        assert att.rc == 0, (cid, proto, clean, att)
        assert att.received == [], (cid, proto, clean, att)  # nothing of A's, nothing of the collector's
    st = stream.finish()
    acked = st.messages
    assert acked > 100

    # everything the broker acknowledged to A is stored, exactly once
    def stored() -> int:
        return int(sql_one(mini_site.db_url, "SELECT count(*) FROM readings"))  # type: ignore[arg-type]

    wait_for(lambda: stored() >= acked, timeout=30, message=f"{acked} readings stored (have {stored()})")
    time.sleep(0.5)
    assert stored() == acked

    log = broker_log(mini_site)
    flags = sorted(connected_as(log, B))
    expected = sorted((f"p{2 if proto == mqtt.MQTTv311 else 5}, c{int(clean)}", B) for _, proto, clean in VARIANTS)
    assert flags == expected, log[-3000:]
    # A's own connection is the only one with A's id: the impostor asking for it did not get it
    assert connected_as(log, A) == [("p2, c0", A)], log[-3000:]
    assert st.connects == 1 and st.disconnects == 0, st  # A was never kicked off
    assert_collector_undisturbed(mini_site, collector)
    assert collector.stop() == 0


def test_health_check_logs_in_with_its_own_account_and_leaves_the_collector_alone(
        mini_site: Site, collector: CollectorProcess, stream: Stream) -> None:
    url = MqttUrl.parse(mini_site.broker.url(HEALTH_USER))
    assert url.tls and url.username == HEALTH_USER
    checks = [health.broker(url) for _ in range(20)]
    assert all(c.ok and c.detail == "CONNACK accepted" for c in checks), checks
    acked = stream.finish().messages

    log = broker_log(mini_site)
    assert len(connected_as(log, HEALTH_USER)) == 20, log[-3000:]
    assert_collector_undisturbed(mini_site, collector)
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == acked, timeout=30,
             message=f"{acked} readings stored")
    assert collector.stop() == 0


def test_the_witnesses_see_a_takeover_when_there_is_one(mini_site: Site, collector: CollectorProcess) -> None:
    """The check above could pass by looking in the wrong place; here a login under the collector's own account
    (what a health check with the collector's URL would do) must show up in both logs."""
    collector.start()
    c = health.broker(MqttUrl.parse(mini_site.broker.url(COLLECTOR_USER)))
    assert c.ok, c
    wait_for(lambda: collector.log.read_text().count("MQTT connected") == 2, timeout=30,
             message="the collector reconnecting after being taken over")
    text = collector.log.read_text()
    assert "MQTT disconnected" in text
    log = broker_log(mini_site)
    assert "Client riskwatch-collector already connected, closing old connection" in log, log[-3000:]
    assert len(connected_as(log, COLLECTOR_USER)) == 3  # collector, the login, the collector again
    assert collector.stop() == 0
