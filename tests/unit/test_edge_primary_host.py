"""The agent waits for its Sparkplug primary host (issue 18, Sparkplug 3.0 tck-id-message-flow-edge-node-birth-publish-
phid-*): STATE payloads read strictly, the newest by timestamp wins (a stale will is ignored), a connection births
only after hearing the host online, a host going offline ends the connection with an NDEATH, and the config's
default is riskwatch's own host id.

The publisher tests drive `Publisher._serve` with a recording client: paho is the boundary (the real broker is in
tests/integration/test_edge_sparkplug.py); the buffer, the format and the publisher are the real ones.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode

from core.errors import SourceError
from core.settings import MqttUrl
from ingest.edge.buffer import Buffer
from ingest.edge.config import load_config
from ingest.edge.formats import HostState, PrimaryHost, Reading, SparkplugB, StateError, parse_state
from ingest.edge.publisher import Publisher
from ingest.sparkplug import sparkplug_b_pb2 as pb
from tests.conftest import wait_for
from tests.unit.test_edge_sparkplug import CONFIG, GW, T0, FakeClock

TOPIC = "spBv1.0/STATE/riskwatch"


def state(online: bool, ts: int) -> bytes:
    return orjson.dumps({"online": online, "timestamp": ts})


@pytest.mark.parametrize(("payload", "expected"), [
    (b'{"online": true, "timestamp": 1700000000000}', HostState(True, 1_700_000_000_000)),
    (b'{"online": false, "timestamp": 0}', HostState(False, 0)),
    (b'{"timestamp": 5, "online": true, "extra": 1}', HostState(True, 5)),
])
def test_a_sparkplug_3_state_is_read(payload: bytes, expected: HostState) -> None:
    assert parse_state(payload) == expected


@pytest.mark.parametrize(("payload", "needle"), [
    (b"", "not JSON"),
    (b"ONLINE", "not JSON"),  # Sparkplug 2.2's form: no timestamp to order by
    (b"[true, 5]", "not a JSON object"),
    (b'{"online": "true", "timestamp": 5}', "'online' must be"),
    (b'{"online": 1, "timestamp": 5}', "'online' must be"),
    (b'{"timestamp": 5}', "'online' must be"),
    (b'{"online": true}', "'timestamp' must be"),
    (b'{"online": true, "timestamp": "5"}', "'timestamp' must be"),
    (b'{"online": true, "timestamp": true}', "'timestamp' must be"),
    (b'{"online": true, "timestamp": -1}', "'timestamp' must be"),
    (b'{"online": true, "timestamp": 1.5}', "'timestamp' must be"),
])
def test_anything_else_is_not_a_state(payload: bytes, needle: str) -> None:
    with pytest.raises(StateError, match=needle):
        parse_state(payload)


def test_the_newest_state_wins_and_an_older_one_is_ignored() -> None:
    host = PrimaryHost("riskwatch")
    assert host.topic == TOPIC and not host.online
    assert host.observe(state(True, 100)).outcome == "online" and host.online
    # the will of the host's previous connection, delivered after its new birth: stale, ignored
    seen = host.observe(state(False, 99))
    assert seen.outcome == "stale" and "older than 100" in seen.why and host.online
    # a clean stop or the will of the current connection carries its birth's timestamp: equal counts
    assert host.observe(state(False, 100)).outcome == "offline" and not host.online
    assert host.observe(state(True, 100)).outcome == "online"
    assert host.observe(b"garbage").outcome == "unreadable" and host.online
    assert host.ignored == 2
    assert host.health() == {"id": "riskwatch", "online": True, "timestamp": 100, "waiting": False, "ignored": 2}


def test_each_connection_must_hear_the_host_itself() -> None:
    """A broker restarted without its retained STATE has no host behind it yet, whatever the last connection saw;
    a stale retained STATE (a late will that overwrote the birth) still counts as hearing, and the newest wins."""
    host = PrimaryHost("riskwatch")
    host.observe(state(True, 100))
    host.new_connection()
    assert not host.online and host.health()["waiting"] is True and host.health()["online"] is True
    assert host.observe(b"").outcome == "unreadable" and not host.online  # a retained clear is not a STATE
    assert host.observe(state(False, 50)).outcome == "stale"
    assert host.online


# -- the publisher's gate -------------------------------------------------------------------------------------


class _Info:
    rc = MQTTErrorCode.MQTT_ERR_SUCCESS


class RecordingClient:
    """Stands in for paho's client in `_serve`: records what the publisher publishes, and acknowledges it."""

    def __init__(self, pub: Publisher):
        self.pub = pub
        self.lock = threading.Lock()
        self.sent: list[tuple[str, bytes]] = []
        self.qos: dict[str, set[int]] = {}  # Sparkplug message type (or `status`) -> the QoS it went out with

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> _Info:
        with self.lock:
            self.sent.append((topic, payload))
            if payload:
                kind = "status" if topic.endswith("/status") else topic.split("/")[2]
                self.qos.setdefault(kind, set()).add(qos)
        # the PUBACK comes later, on another thread, as paho's would
        threading.Timer(0.01, self.pub._on_publish, (self, None, 0, None, None)).start()
        return _Info()

    def kinds(self) -> list[str]:
        """Sparkplug message types, and `status` for the health document (the retained clear is left out)."""
        with self.lock:
            return ["status" if t.endswith("/status") else t.split("/")[2] for t, p in self.sent if p]


def deliver(pub: Publisher, payload: bytes) -> None:
    msg = mqtt.MQTTMessage(topic=TOPIC.encode())
    msg.payload = payload
    pub._on_state(None, None, msg)  # type: ignore[arg-type]


def serving(tmp_path: Path, host_id: str | None) -> tuple[Publisher, RecordingClient, threading.Thread]:
    buf = Buffer(tmp_path / "b.sqlite", clock=FakeClock())
    fmt = SparkplugB("Plant A", ["TT-101"], buf, clock=FakeClock(), primary_host_id=host_id)
    buf.use_format(fmt)
    for i in range(3):
        buf.add([Reading("TT-101", T0 + i, float(i))])
        buf.seal(100)
    pub = Publisher(GW, MqttUrl.parse("mqtts://gw-a1@127.0.0.1:8883"), buf, fmt, status_interval_s=0.2,
                    clock=FakeClock())
    fmt.will(GW)
    pub.state.connected = True
    if fmt.primary_host is not None:
        fmt.primary_host.new_connection()
    client = RecordingClient(pub)
    t = threading.Thread(target=pub._serve, args=(client,), daemon=True)
    t.start()
    return pub, client, t


def test_nothing_sparkplug_goes_out_until_the_host_is_online_then_birth_and_data(tmp_path: Path) -> None:
    pub, client, t = serving(tmp_path, "riskwatch")
    try:
        wait_for(lambda: client.kinds().count("status") >= 2, timeout=5, message="health while waiting")
        assert set(client.kinds()) == {"status"}
        with client.lock:
            doc = orjson.loads(next(p for topic, p in client.sent if topic.endswith("/status") and p))
        assert doc["sparkplug"]["primary_host"] == {"id": "riskwatch", "online": None, "timestamp": None,
                                                    "waiting": True, "ignored": 0}
        deliver(pub, state(False, 10))  # the retained will of a host that is down: still waiting
        time.sleep(0.5)
        assert set(client.kinds()) == {"status"}
        deliver(pub, state(True, 20))
        wait_for(lambda: "NDATA" in client.kinds(), timeout=5, message="NDATA after the host came online")
        kinds = [k for k in client.kinds() if k != "status"]
        assert kinds[0] == "NBIRTH"
        # the host leaves: the connection ends with an NDEATH, and `_run` connects again without a backoff
        deliver(pub, state(False, 20))
        t.join(5)
        assert not t.is_alive() and pub._host_left
        assert [k for k in client.kinds() if k != "status"][-1] == "NDEATH"
    finally:
        pub._stop.set()
        t.join(5)


def test_births_and_data_go_out_at_qos_0_and_the_ndeath_at_qos_1(tmp_path: Path) -> None:
    """Sparkplug 3.0 (tck-id-topics-nbirth-mqtt, tck-id-topics-ndata-mqtt): NBIRTH and NDATA QoS 0; the NDEATH QoS 1.
    The buffer, not the broker's queue, keeps a message until the collector's confirmation lists it."""
    pub, client, t = serving(tmp_path, "riskwatch")
    try:
        deliver(pub, state(True, 20))
        wait_for(lambda: "NDATA" in client.kinds(), timeout=5, message="NDATA")
        deliver(pub, state(False, 20))
        t.join(5)
        with client.lock:
            assert client.qos["NBIRTH"] == {0} and client.qos["NDATA"] == {0} and client.qos["NDEATH"] == {1}
    finally:
        pub._stop.set()
        t.join(5)


def test_a_stale_offline_does_not_end_the_connection(tmp_path: Path) -> None:
    pub, client, t = serving(tmp_path, "riskwatch")
    try:
        deliver(pub, state(True, 20))
        wait_for(lambda: "NDATA" in client.kinds(), timeout=5, message="NDATA")
        deliver(pub, state(False, 19))  # an earlier connection's will
        time.sleep(0.5)
        assert t.is_alive() and "NDEATH" not in client.kinds()
    finally:
        pub._stop.set()
        t.join(5)


def test_without_a_primary_host_the_birth_goes_out_at_once(tmp_path: Path) -> None:
    pub, client, t = serving(tmp_path, None)
    try:
        wait_for(lambda: "NDATA" in client.kinds(), timeout=5, message="NDATA")
        assert [k for k in client.kinds() if k != "status"][0] == "NBIRTH"
        with client.lock:
            doc = orjson.loads(next(p for topic, p in client.sent if topic.endswith("/status") and p))
        assert "primary_host" not in doc["sparkplug"]
    finally:
        pub._stop.set()
        t.join(5)
    assert pb.Payload.FromString(client.sent[1][1]).seq == 0


# -- configuration ---------------------------------------------------------------------------------------------


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SourceError) as ei:
        load_config("edge.yaml", text)
    return [(p.line, p.message) for p in ei.value.problems]


def test_config_waits_for_riskwatch_by_default_and_null_turns_it_off() -> None:
    assert load_config("edge.yaml", CONFIG).publish.primary_host_id == "riskwatch"
    off = CONFIG.replace("  group_id: Plant A\n", "  group_id: Plant A\n  primary_host_id: null\n")
    assert load_config("edge.yaml", off).publish.primary_host_id is None
    other = CONFIG.replace("  group_id: Plant A\n", "  group_id: Plant A\n  primary_host_id: scada-1\n")
    assert load_config("edge.yaml", other).publish.primary_host_id == "scada-1"
    for bad in ("a/b", "STATE+", "#", " x", ""):
        [(line, msg)] = problems(CONFIG.replace("  group_id: Plant A\n",
                                                f"  group_id: Plant A\n  primary_host_id: '{bad}'\n"))
        assert line == 10 and "primary_host_id must be" in msg, (bad, msg)
    json_v1 = CONFIG.replace("format: sparkplug_b", "format: json_v1").replace("  group_id: Plant A\n", "")
    assert load_config("edge.yaml", json_v1).publish.primary_host_id is None
    [(line, msg)] = problems(json_v1.replace("format: json_v1", "format: json_v1\n  primary_host_id: riskwatch"))
    assert line == 8 and "primary_host_id applies to format sparkplug_b only" in msg
