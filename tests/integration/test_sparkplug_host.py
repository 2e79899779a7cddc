"""The Sparkplug B host in the real collector (issue 18): real TLS Mosquitto with the generated ACL, real
TimescaleDB, the rule engine in process; the gateway is a plain paho client with the gateway's own credentials
publishing payloads built by hand with the protobuf codec (ingest.sparkplug.payload), as an edge node would.

The third-party edge (pysparkplug) is tests/integration/test_sparkplug_thirdparty.py; this file drives the host
through every case one message at a time: births and aliases stored under mapped points, an unknown metric
quarantined and backfilled by mapping it, one rebirth request for a gap observed by the gateway itself, the will
(NDEATH) raising the offline alarm, a stale NDEATH ignored, the malformed payload dead-lettered with the stream
going on, riskwatch/seq confirmed on rw/v1/{gw}/stored, the host STATE, and the ACL refusing another gateway's
edge node id.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from core.services import COLLECTOR_USER
from core.settings import IngestLimits, MqttUrl
from ingest.collector import Collector
from ingest.quarantine import PointSpec, map_tag
from ingest.sparkplug import payload as sp
from ingest.sparkplug.payload import DataType as DT
from ingest.sparkplug.payload import MetricOut as M
from rules.engine import RuleEngine
from rules.model import load_catalog
from tests.conftest import Site, connect_to, mqtt_client, sql_one, wait_for

pytestmark = pytest.mark.integration

GW = "gw-a1"
GROUP = "plant-a"


class MovableClock:
    """The wall clock plus an offset the test moves (the offline rule's 30 s without waiting them)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def host(mini_site: Site) -> Iterator[tuple[Collector, MovableClock]]:
    """An in-process collector (Sparkplug host) with the rule engine, on a clock the test can move."""
    clock = MovableClock()
    engine = RuleEngine(catalog=load_catalog(), clock=clock, tick_s=0.2)
    col = Collector(mini_site.db_url, MqttUrl.parse(mini_site.broker.url(COLLECTOR_USER)), clock=clock,
                    processors=[engine])
    t = threading.Thread(target=col.run, name="collector", daemon=True)
    t.start()
    wait_for(lambda: col.stats.mqtt_connects >= 1, timeout=20, message="collector connected")
    yield col, clock
    col.stop()
    t.join(30)
    assert not t.is_alive()


class Edge:
    """A Sparkplug edge node as a gateway: client id = username = edge node id, will = NDEATH with its bdSeq.

    Subscribes to its own NCMD (what the ACL lets a gateway read) and records every command and STATE seen."""

    def __init__(self, site: Site, gw: str = GW, bdseq: int = 0, group: str = GROUP) -> None:
        self.gw, self.group, self.bdseq, self.seq = gw, group, bdseq, 0
        self.commands: list[tuple[str, sp.Payload]] = []
        self.states: list[tuple[str, dict[str, object]]] = []
        self.refused: list[int] = []
        self._subscribed = threading.Event()
        self.c = mqtt_client(site.broker, gw, site.credentials[gw], client_id=gw, protocol=mqtt.MQTTv5)
        self.c.will_set(f"spBv1.0/{group}/NDEATH/{gw}", sp.encode_ndeath(bdseq, now_ms()), qos=1)
        self.c.on_message = self._on_message
        self.c.on_subscribe = lambda *_a: self._subscribed.set()
        self.c.on_publish = self._on_publish
        connect_to(self.c, site.broker)
        self.c.loop_start()
        self.c.subscribe([(f"spBv1.0/+/NCMD/{gw}", 1), ("spBv1.0/STATE/+", 1)])
        assert self._subscribed.wait(10), "edge subscription"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if "/STATE/" in msg.topic:
            self.states.append((msg.topic, orjson.loads(msg.payload)))
        else:
            self.commands.append((msg.topic, sp.decode(bytes(msg.payload), 1 << 20)))

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, rc: mqtt.ReasonCode, _p: object) -> None:
        if rc.is_failure:
            self.refused.append(mid)

    def publish(self, kind: str, data: bytes, device: str | None = None, *, edge: str | None = None) -> None:
        topic = f"spBv1.0/{self.group}/{kind}/{edge or self.gw}" + (f"/{device}" if device else "")
        info = self.c.publish(topic, data, qos=1)
        info.wait_for_publish(10)

    def send(self, kind: str, metrics: list[M], device: str | None = None, *, seq: int | None = None,
             ts: int | None = None) -> None:
        """A sequenced message: the next seq unless one is given (a gap)."""
        if kind == "NBIRTH":
            self.seq = 0 if seq is None else seq
            metrics = [M(sp.BDSEQ, self.bdseq, DT.UInt64), *metrics]
        else:
            self.seq = (self.seq + 1) % 256 if seq is None else seq
        self.publish(kind, sp.encode(metrics, seq=self.seq, timestamp_ms=ts or now_ms()), device)

    def die(self) -> None:
        """The connection drops without a DISCONNECT: the broker publishes the will (NDEATH)."""
        sock = self.c.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.c.loop_stop()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def edge(mini_site: Site, host: tuple[Collector, MovableClock]) -> Iterator[Edge]:
    e = Edge(mini_site)
    yield e
    e.close()


def stored(site: Site, gw: str = GW) -> list[tuple[str, int, float]]:
    with psycopg.connect(site.db_url) as conn:
        return [(str(r[0]), int(r[1]), float(r[2])) for r in conn.execute(
            """SELECT p.tag, (extract(epoch FROM r.time) * 1000)::bigint, r.value FROM readings r
               JOIN points p ON p.id = r.point_id WHERE p.gateway_id = %s ORDER BY r.time, p.tag""",
            (gw,)).fetchall()]


def dead(site: Site) -> list[tuple[str, str | None, int | None, str]]:
    with psycopg.connect(site.db_url) as conn:
        return [(r[0], r[1], r[2], r[3]) for r in conn.execute(
            "SELECT reason, gateway_id, reading_index, topic FROM dead_letters ORDER BY id").fetchall()]


def test_births_and_aliased_data_are_stored_under_mapped_points(mini_site: Site, edge: Edge,
                                                                host: tuple[Collector, MovableClock]) -> None:
    t0 = now_ms() - 10_000
    edge.send("NBIRTH", [M("TT-101", 60.5, DT.Double, alias=1, timestamp_ms=t0),
                         M("CO-101", 8.25, DT.Float, alias=2, timestamp_ms=t0),
                         M("PDT-101", -3, DT.Int16, alias=3, timestamp_ms=t0),
                         M("MODE", "auto", DT.String, alias=4, timestamp_ms=t0)], ts=t0)
    edge.send("NDATA", [M(alias=1, value=61.0), M(alias=2, value=8.5), M(alias=3, value=-2)], ts=t0 + 1000)
    edge.send("NDATA", [M(alias=1, value=62.0, timestamp_ms=t0 + 1500), M(alias=3, is_null=True)], ts=t0 + 2000)
    want = [("CO-101", t0, 8.25), ("PDT-101", t0, -3.0), ("TT-101", t0, 60.5),
            ("CO-101", t0 + 1000, 8.5), ("PDT-101", t0 + 1000, -2.0), ("TT-101", t0 + 1000, 61.0),
            ("TT-101", t0 + 1500, 62.0)]
    wait_for(lambda: len(stored(mini_site)) == len(want), timeout=20, message="readings stored")
    assert stored(mini_site) == want
    # the String metric and the null are reading-level dead letters of their message; nothing else is
    wait_for(lambda: len(dead(mini_site)) == 2, timeout=10, message="dead letters")
    assert [(r, g, i) for r, g, i, _ in dead(mini_site)] == [("sparkplug_type", GW, 4), ("sparkplug_null", GW, 1)]
    assert sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True
    detail = str(sql_one(mini_site.db_url, "SELECT detail FROM dead_letters WHERE reason = 'sparkplug_type'"))
    assert "plant-a" in detail and "NBIRTH" in detail and "MODE" in detail
    col, _ = host
    assert col.stats.rebirth_requests == 0 and edge.commands == []


def test_unknown_metrics_are_quarantined_and_backfilled_when_mapped(mini_site: Site, edge: Edge) -> None:
    t0 = now_ms() - 5000
    edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1, timestamp_ms=t0),
                         M("XT-9", 1.5, DT.Double, alias=2, timestamp_ms=t0)], ts=t0)
    edge.send("DBIRTH", [M("FT-1", 7, DT.UInt32, alias=10, timestamp_ms=t0)], "bf1", ts=t0)
    edge.send("DDATA", [M(alias=10, value=8)], "bf1", ts=t0 + 1000)
    edge.send("NDATA", [M(alias=2, value=2.5)], ts=t0 + 1000)
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM quarantined_readings") == 4, timeout=20,
             message="quarantined readings")
    with psycopg.connect(mini_site.db_url) as conn:
        unm = conn.execute("SELECT gateway_id, tag, count FROM unmapped_points ORDER BY tag").fetchall()
        assert [tuple(r) for r in unm] == [(GW, "XT-9", 2), (GW, "bf1:FT-1", 2)]
        device = int(conn.execute("SELECT id FROM devices WHERE code = 'coal-bf'").fetchone()[0])  # type: ignore[index]
        res = map_tag(conn, GW, "bf1:FT-1", PointSpec(device, "flow", "m3/h"), scope=None)
    assert res.backfilled == 2
    assert [(tag, v) for tag, _, v in stored(mini_site) if tag == "bf1:FT-1"] == [("bf1:FT-1", 7.0), ("bf1:FT-1", 8.0)]
    # mapped now: the next DDATA is stored directly, not quarantined
    edge.send("DDATA", [M(alias=10, value=9)], "bf1", ts=t0 + 2000)
    wait_for(lambda: ("bf1:FT-1", t0 + 2000, 9.0) in stored(mini_site), timeout=20, message="mapped DDATA stored")
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM quarantined_readings WHERE tag = 'bf1:FT-1'") == 0


def test_a_seq_gap_gets_exactly_one_rebirth_request(mini_site: Site, edge: Edge,
                                                    host: tuple[Collector, MovableClock]) -> None:
    col, _ = host
    t0 = now_ms() - 5000
    edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1)], ts=t0)
    edge.send("NDATA", [M(alias=1, value=51.0)], ts=t0 + 100)
    edge.send("NDATA", [M(alias=1, value=52.0)], seq=9, ts=t0 + 200)  # seq 2..8 lost
    edge.send("NDATA", [M(alias=1, value=53.0)], seq=20, ts=t0 + 300)  # another gap, within the 10 s hold
    edge.send("NDATA", [M(alias=77, value=1.0)], ts=t0 + 400)  # an unknown alias, within the hold too
    wait_for(lambda: len(stored(mini_site)) == 4, timeout=20, message="readings of the gap messages kept")
    wait_for(lambda: len(edge.commands) >= 1, timeout=10, message="NCMD rebirth at the gateway")
    time.sleep(1.5)  # any second request would have arrived by now
    assert len(edge.commands) == 1, edge.commands
    topic, cmd = edge.commands[0]
    assert topic == f"spBv1.0/{GROUP}/NCMD/{GW}"
    assert [(m.name, m.datatype, m.value) for m in cmd.metrics] == [("Node Control/Rebirth", DT.Boolean, True)]
    assert cmd.timestamp_ms is not None
    assert col.stats.rebirth_requests == 1
    assert [r for r, *_ in dead(mini_site)] == ["sparkplug_alias"]
    # the edge answers with a new NBIRTH: the stream goes on, a later gap asks again at once
    edge.send("NBIRTH", [M("TT-101", 54.0, DT.Double, alias=1)], ts=t0 + 500)
    edge.send("NDATA", [M(alias=1, value=55.0)], ts=t0 + 600)
    wait_for(lambda: len(stored(mini_site)) == 6, timeout=20, message="after the rebirth")
    edge.send("NDATA", [M(alias=1, value=56.0)], seq=100, ts=t0 + 700)
    wait_for(lambda: len(edge.commands) == 2, timeout=10, message="second rebirth after a new gap")


def test_data_before_birth_asks_for_a_rebirth(mini_site: Site, edge: Edge) -> None:
    t0 = now_ms() - 1000
    edge.send("NDATA", [M(alias=1, value=1.0), M("TT-101", 40.0, DT.Double)], seq=33, ts=t0)
    wait_for(lambda: len(edge.commands) == 1, timeout=10, message="rebirth for data before birth")
    wait_for(lambda: stored(mini_site) == [("TT-101", t0, 40.0)], timeout=10, message="the self-describing metric")
    assert [(r, i) for r, _, i, _ in dead(mini_site)] == [("sparkplug_alias", 0)]


def test_the_will_marks_the_gateway_offline_and_raises_the_offline_alarm(
        mini_site: Site, host: tuple[Collector, MovableClock]) -> None:
    col, clock = host
    e = Edge(mini_site, bdseq=5)
    e.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1)])
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True,
             timeout=20, message="online after NBIRTH")
    e.die()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is False,
             timeout=30, message="offline after the will")
    alarm = ("SELECT count(*) FROM alarms WHERE rule_id = 'common.gateway.offline' AND subject = 'g:gw-a1' "
             "AND active")
    time.sleep(0.5)
    assert sql_one(mini_site.db_url, alarm) == 0  # not before the rule's 30 s
    clock.offset += 31
    wait_for(lambda: sql_one(mini_site.db_url, alarm) == 1, timeout=20, message="gateway-offline alarm")
    assert col.stats.stale_deaths == 0


def test_a_stale_ndeath_is_ignored(mini_site: Site, edge: Edge, host: tuple[Collector, MovableClock]) -> None:
    col, _ = host
    edge.bdseq = 6
    edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1)])
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True,
             timeout=20, message="online after NBIRTH")
    edge.publish("NDEATH", sp.encode_ndeath(5, now_ms()))  # the will of the connection before
    t = now_ms()
    edge.send("NDATA", [M(alias=1, value=51.0)], ts=t)  # aliases still known: the session did not end
    wait_for(lambda: ("TT-101", t, 51.0) in stored(mini_site), timeout=20, message="data after the stale death")
    assert col.stats.stale_deaths == 1
    assert sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True
    edge.publish("NDEATH", sp.encode_ndeath(6, now_ms()))  # the current one
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is False,
             timeout=20, message="offline after the current NDEATH")


def test_malformed_payload_is_dead_lettered_and_the_stream_continues(mini_site: Site, edge: Edge) -> None:
    t0 = now_ms() - 2000
    edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1)], ts=t0)
    edge.publish("NDATA", b"\xff\xfe not protobuf")
    edge.publish("DDATA", b'{"readings": [{"tag": "TT-101", "v": 1}]}', "bf1")
    edge.seq += 2  # the two malformed messages took their seq with them (a gap follows, as on the wire)
    edge.send("NDATA", [M(alias=1, value=51.0)], ts=t0 + 100)
    wait_for(lambda: ("TT-101", t0 + 100, 51.0) in stored(mini_site), timeout=20, message="next message stored")
    assert [(r, g, i, t) for r, g, i, t in dead(mini_site)] == [
        ("sparkplug_decode", GW, None, f"spBv1.0/{GROUP}/NDATA/{GW}"),
        ("sparkplug_decode", GW, None, f"spBv1.0/{GROUP}/DDATA/{GW}/bf1")]
    kept = sql_one(mini_site.db_url, "SELECT payload FROM dead_letters ORDER BY id LIMIT 1")
    assert bytes(kept) == b"\xff\xfe not protobuf"  # type: ignore[arg-type]


def test_bad_topic_under_spbv1(mini_site: Site, edge: Edge) -> None:
    edge.publish("NFOO", sp.encode([M("TT-101", 1.0, DT.Double)], seq=0, timestamp_ms=now_ms()))
    wait_for(lambda: len(dead(mini_site)) == 1, timeout=20, message="dead letter")
    assert dead(mini_site)[0][:2] == ("sparkplug_topic", GW)


def test_riskwatch_seq_is_confirmed_on_stored(mini_site: Site, edge: Edge) -> None:
    got: list[dict[str, object]] = []
    # the gateway's own login reads its confirmation, on the edge's connection (the ACL allows it; a second
    # connection with the same client id would take the edge's session over)
    edge.c.message_callback_add(f"rw/v1/{GW}/stored", lambda _c, _u, m: got.append(orjson.loads(m.payload)))
    edge.c.subscribe(f"rw/v1/{GW}/stored", 1)
    t0 = now_ms() - 1000
    edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1), M(sp.RW_SEQ, 0, DT.UInt64, alias=99)], ts=t0)
    edge.send("NDATA", [M(alias=1, value=51.0), M(sp.RW_SEQ, 2**40 + 1, DT.UInt64)], ts=t0 + 100)
    edge.send("DDATA", [M("CO-101", 2.0, DT.Double), M(alias=99, value=2**40 + 2)], "bf1", ts=t0 + 200)
    wait_for(lambda: any(g.get("seq") == 2**40 + 2 for g in got), timeout=20, message="stored confirmation")
    assert sql_one(mini_site.db_url, "SELECT seq FROM gateway_stored_seq WHERE gateway_id = %s", (GW,)) == 2**40 + 2
    assert dead(mini_site) == []  # riskwatch/seq is neither a reading nor a dead letter
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM quarantined_readings WHERE position('seq' IN tag) > 0"
                   ) == 0


def test_a_message_rejected_as_a_whole_is_dead_lettered_and_its_riskwatch_seq_confirmed(mini_site: Site) -> None:
    """More metrics than the collector's IngestLimits allow: the NDATA decodes, is dead-lettered as a whole, and
    its riskwatch/seq (by the NBIRTH's alias) is listed, or riskwatch's agent would re-send it for ever."""
    col = Collector(mini_site.db_url, MqttUrl.parse(mini_site.broker.url(COLLECTOR_USER)), clock=MovableClock(),
                    limits=IngestLimits(max_readings=3))
    t = threading.Thread(target=col.run, name="collector", daemon=True)
    t.start()
    edge: Edge | None = None
    try:
        wait_for(lambda: col.stats.mqtt_connects >= 1, timeout=20, message="collector connected")
        edge = Edge(mini_site)
        got: list[dict[str, object]] = []
        edge.c.message_callback_add(f"rw/v1/{GW}/stored", lambda _c, _u, m: got.append(orjson.loads(m.payload)))
        edge.c.subscribe(f"rw/v1/{GW}/stored", 1)
        t0 = now_ms() - 1000
        edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1), M(sp.RW_SEQ, 0, DT.UInt64, alias=99)], ts=t0)
        big = 2**40 + 1
        edge.send("NDATA", [M(alias=1, value=v) for v in (51.0, 52.0, 53.0)] + [M(alias=99, value=big)],
                  ts=t0 + 100)
        wait_for(lambda: any([big, big] in g.get("seqs", []) for g in got),  # type: ignore[operator]
                 timeout=20, message="the rejected message's seq confirmed")
        assert [(r, i) for r, _g, i, _t in dead(mini_site)] == [("too_many_readings", None)]
        edge.send("NDATA", [M(alias=1, value=54.0), M(alias=99, value=big + 1)], ts=t0 + 200)
        wait_for(lambda: ("TT-101", t0 + 200, 54.0) in stored(mini_site), timeout=20, message="next message stored")
        wait_for(lambda: any([big + 1, big + 1] in g.get("seqs", []) for g in got),  # type: ignore[operator]
                 timeout=20, message="the next message confirmed")
        assert edge.commands == []  # the rejected message took its Sparkplug seq: no gap, no rebirth request
    finally:
        if edge is not None:
            edge.close()
        col.stop()
        t.join(30)
    assert not t.is_alive()


def test_state_is_published_retained_with_the_same_timestamp_as_its_will(mini_site: Site) -> None:
    states: list[dict[str, object]] = []
    watcher = mqtt_client(mini_site.broker, "gw-b1", mini_site.credentials["gw-b1"], client_id="gw-b1")
    watcher.on_message = lambda _c, _u, m: states.append(orjson.loads(m.payload))
    connect_to(watcher, mini_site.broker)
    watcher.loop_start()
    watcher.subscribe("spBv1.0/STATE/riskwatch", 1)
    try:
        col = Collector(mini_site.db_url, MqttUrl.parse(mini_site.broker.url(COLLECTOR_USER)), clock=MovableClock())
        t = threading.Thread(target=col.run, name="collector", daemon=True)
        t.start()
        wait_for(lambda: any(s.get("online") is True for s in states), timeout=20, message="STATE online")
        born = next(s for s in states if s.get("online") is True)
        assert isinstance(born["timestamp"], int) and abs(born["timestamp"] - now_ms()) < 60_000
        col.stop()
        t.join(30)
        wait_for(lambda: states[-1].get("online") is False, timeout=20, message="STATE offline at a clean stop")
        assert states[-1]["timestamp"] == born["timestamp"]
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    # retained: a late reader sees the last state
    late: list[dict[str, object]] = []
    r = mqtt_client(mini_site.broker, "gw-a2", mini_site.credentials["gw-a2"], client_id="gw-a2")
    r.on_message = lambda _c, _u, m: late.append(orjson.loads(m.payload))
    connect_to(r, mini_site.broker)
    r.loop_start()
    r.subscribe("spBv1.0/STATE/riskwatch", 1)
    wait_for(lambda: late != [], timeout=10, message="retained STATE")
    r.disconnect()
    r.loop_stop()
    assert late[0]["online"] is False


def test_state_will_fires_when_the_collector_dies(mini_site: Site, tmp_path: Path) -> None:
    from tests.conftest import CollectorProcess

    states: list[dict[str, object]] = []
    watcher = mqtt_client(mini_site.broker, "gw-b1", mini_site.credentials["gw-b1"], client_id="gw-b1")
    watcher.on_message = lambda _c, _u, m: states.append(orjson.loads(m.payload))
    connect_to(watcher, mini_site.broker)
    watcher.loop_start()
    watcher.subscribe("spBv1.0/STATE/riskwatch", 1)
    proc = CollectorProcess(mini_site.db_url, mini_site.broker, tmp_path)
    try:
        proc.start()
        wait_for(lambda: any(s.get("online") is True for s in states), timeout=20, message="STATE online")
        born = [s for s in states if s.get("online") is True][-1]
        proc.kill()
        wait_for(lambda: states[-1].get("online") is False, timeout=60, message="the will: STATE offline")
        assert states[-1]["timestamp"] == born["timestamp"]
    finally:
        if proc.alive():
            proc.kill()
        watcher.disconnect()
        watcher.loop_stop()


def test_acl_refuses_another_gateways_edge_node_id(mini_site: Site, edge: Edge,
                                                   host: tuple[Collector, MovableClock]) -> None:
    col, _ = host
    t0 = now_ms() - 1000
    birth = sp.encode([M(sp.BDSEQ, 0, DT.UInt64), M("TT-201", 99.0, DT.Double, alias=1)], seq=0, timestamp_ms=t0)
    edge.publish("NBIRTH", birth, edge="gw-a2")  # gw-a1's login, gw-a2's edge node id
    edge.publish("NDEATH", sp.encode_ndeath(0, t0), edge="gw-a2")
    edge.publish("DDATA", birth, "dev", edge="gw-a2")
    # and an ordinary message of its own afterwards: once it is stored, the forged ones would have been too
    edge.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1)], ts=t0)
    wait_for(lambda: stored(mini_site) == [("TT-101", t0, 50.0)], timeout=20, message="own message stored")
    assert len(edge.refused) == 3  # MQTT 5: the broker answers "not authorised" to each forged publish
    assert stored(mini_site, "gw-a2") == []
    assert dead(mini_site) == []
    assert sql_one(mini_site.db_url, "SELECT online FROM gateways WHERE id = 'gw-a2'") is not True
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM gateways WHERE id = 'gw-a2' AND last_seen IS NOT NULL") == 0
    # nor may a gateway read another's commands or write the host's STATE
    assert col.stats.sparkplug_messages == 1
    info = edge.c.publish("spBv1.0/STATE/riskwatch", b'{"online": false}', qos=1, retain=True)
    info.wait_for_publish(10)
    time.sleep(0.3)
    assert len(edge.refused) == 4


def test_group_member_subscribes_per_gateway_and_leaves_no_will(mini_site: Site, tmp_path: Path) -> None:
    """`collect --group`: Sparkplug traffic reaches the member through its per-gateway filters (no spBv1.0/#), the
    owner alone asks for rebirths, and a member's death does not publish STATE offline (no will in a group)."""
    from tests.conftest import CollectorProcess

    proc = CollectorProcess(mini_site.db_url, mini_site.broker, tmp_path)
    proc.extra_args = ["--group", "--lease-ttl", "4", "--lease-renew", "1"]
    states: list[dict[str, object]] = []
    watcher = mqtt_client(mini_site.broker, "gw-b1", mini_site.credentials["gw-b1"], client_id="gw-b1")
    watcher.on_message = lambda _c, _u, m: states.append(orjson.loads(m.payload))
    connect_to(watcher, mini_site.broker)
    watcher.loop_start()
    watcher.subscribe("spBv1.0/STATE/riskwatch", 1)
    e: Edge | None = None
    try:
        proc.start()
        wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM gateway_leases WHERE gateway_id = %s "
                                 "AND collector_id IS NOT NULL AND expires_at > now()", (GW,)) == 1,
                 timeout=30, message="gw-a1 held by the member")
        wait_for(lambda: any(s.get("online") is True for s in states), timeout=20, message="STATE online")
        time.sleep(1.5)  # the member subscribes to what it claimed right after the lease round
        e = Edge(mini_site)
        t0 = now_ms() - 2000
        e.send("NBIRTH", [M("TT-101", 50.0, DT.Double, alias=1)], ts=t0)
        e.send("NDATA", [M(alias=1, value=51.0)], ts=t0 + 100)
        wait_for(lambda: len(stored(mini_site)) == 2, timeout=20, message="Sparkplug readings via group filters")
        e.send("NDATA", [M(alias=1, value=52.0)], seq=50, ts=t0 + 200)
        edge = e
        wait_for(lambda: len(edge.commands) == 1, timeout=10, message="rebirth from the owner")
        time.sleep(1.0)
        assert len(edge.commands) == 1
        proc.kill()
        time.sleep(2.0)  # a will would have been delivered by now
        assert states[-1].get("online") is True, states
    finally:
        if e is not None:
            e.close()
        if proc.alive():
            proc.kill()
        watcher.disconnect()
        watcher.loop_stop()
