"""The `stored` confirmation lists the seqs a commit holds, and the edge buffer deletes exactly those.

A broker drops QoS1 messages for the collector's session while both connections stay up when its queue for a
slow collector is full (Mosquitto's `max_queued_messages`, 1000 by default). The collector then stores n-5 .. n
but not n-10; a confirmation read as "everything up to n" would make the agent delete n-10, a reading lost
although the agent kept it "until riskwatch stored it". Here the gap is made by hand (seqs 1, 2, 3, 5) and for
real (a broker with a small queue, the collector SIGSTOPped while the agent streams).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from core.services import COLLECTOR_USER, port_open
from core.settings import MqttUrl
from ingest.edge.buffer import Buffer
from ingest.edge.formats import JsonV1, Reading
from ingest.edge.publisher import Publisher
from simulators.gateway import ConfirmingPublisher
from tests.conftest import CollectorProcess, Site, connect_to, mqtt_client, pub_args, wait_for
from tests.integration.edge_harness import stored
from tests.integration.test_qos import dead, now_ms, readings

pytestmark = pytest.mark.integration

GW = "gw-a1"


@contextmanager
def stopped(collector: CollectorProcess) -> Iterator[None]:
    """The collector SIGSTOPped: still connected, taking nothing, so the broker's small queue for it overflows."""
    collector.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        collector.proc.send_signal(signal.SIGCONT)


def check_dropped_and_all_stored(site: Site, produced: list[tuple[int, float, int]]) -> None:
    """The broker really dropped messages for the collector, and still every reading produced is stored once."""
    log = site.broker.logfile.read_text()
    assert "Outgoing messages are being dropped for client riskwatch-collector" in log, log[-2000:]
    got = stored(site.db_url, GW)["TT-101"]
    missing = sorted(set(produced) - set(got))
    assert not missing, f"{len(missing)} of {len(produced)} readings lost, e.g. {missing[:5]}"
    assert got == produced


class Gateway:
    """One connection as the gateway (its client id is its login, so publishing and reading `stored` share it)."""

    def __init__(self, site: Site):
        self.docs: list[dict] = []  # type: ignore[type-arg]
        self.lock = threading.Lock()
        self.c = mqtt_client(site.broker, GW, site.credentials[GW], client_id=GW)
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, *_a: c.subscribe(f"rw/v1/{GW}/stored", 1)
        connect_to(self.c, site.broker)
        self.c.loop_start()

    def _msg(self, _c: object, _u: object, msg: object) -> None:
        if not msg.retain:  # type: ignore[attr-defined]
            with self.lock:
                self.docs.append(orjson.loads(msg.payload))  # type: ignore[attr-defined]

    def send(self, seq: int, t_ms: int) -> None:
        body = {"ts": t_ms, "seq": seq, "readings": [{"tag": "TT-101", "v": float(seq), "ts": t_ms}]}
        self.c.publish(f"rw/v1/{GW}/telemetry", orjson.dumps(body), qos=1).wait_for_publish(10)

    def confirmations(self) -> list[dict]:  # type: ignore[type-arg]
        with self.lock:
            return list(self.docs)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_confirmation_lists_exactly_the_stored_seqs_and_confirms_a_resent_hole(
    mini_site: Site, collector: CollectorProcess
) -> None:
    collector.start()
    gw = Gateway(mini_site)
    assert collector.proc is not None
    t0 = now_ms() - 10_000
    try:
        collector.proc.send_signal(signal.SIGSTOP)  # the four arrive together, in one batch
        try:
            for seq in (1, 2, 3, 5):
                gw.send(seq, t0 + seq)
        finally:
            collector.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: gw.confirmations(), message="a confirmation")
        [first] = gw.confirmations()
        assert (first["seq"], first["seqs"]) == (5, [[1, 3], [5, 5]])
        # the hole re-sent, and a duplicate: both confirmed, `seq` stays at the highest ever stored
        gw.send(4, t0 + 4)
        wait_for(lambda: len(gw.confirmations()) == 2, message="the hole confirmed")
        gw.send(2, t0 + 2)
        wait_for(lambda: len(gw.confirmations()) == 3, message="the duplicate confirmed")
        assert [(d["seq"], d["seqs"]) for d in gw.confirmations()[1:]] == [(5, [[4, 4]]), (5, [[2, 2]])]
        assert readings(mini_site) == 5
        # a message rejected as a whole is handled (its dead letter): listed, or the agent would re-send it for ever
        gw.c.publish(f"rw/v1/{GW}/telemetry", orjson.dumps({"seq": 6, "readings": "none"}), qos=1)
        wait_for(lambda: len(gw.confirmations()) == 4, message="the rejected message confirmed")
        assert (gw.confirmations()[3]["seq"], gw.confirmations()[3]["seqs"]) == (6, [[6, 6]])
        assert [d[0] for d in dead(mini_site)] == ["bad_schema"]
    finally:
        gw.close()


def small_queue_broker(site: Site) -> None:
    """Restart the test's broker with a short queue for sessions whose in-flight window is full. The collector
    asks for 1000 in flight (MQTT v5 Receive Maximum); past that and these 40 the broker drops, connected or not."""
    b = site.broker
    b.stop()
    conf = b.conf.read_text()
    assert "max_queued_messages 1000000\n" in conf
    b.conf.write_text(conf.replace("max_queued_messages 1000000\n", "max_queued_messages 40\n"))
    os.chmod(b.conf, 0o600)
    subprocess.run(["mosquitto", "-c", str(b.conf), "-d"], check=True, timeout=30)  # start() would rewrite it
    wait_for(lambda: port_open(b.state.mqtt_port), message="broker up")


def test_messages_the_broker_drops_for_a_connected_collector_are_resent_and_stored_once(
    mini_site: Site, collector: CollectorProcess, tmp_path: Path
) -> None:
    """The real agent's buffer and publisher against a broker that drops for the collector's session: every
    reading the source produced is stored exactly once and the buffer empties. (The old "everything up to
    `seq`" deletion emptied it too, with the dropped readings lost.)"""
    small_queue_broker(mini_site)
    collector.start()
    assert collector.proc is not None
    url = MqttUrl.parse(mini_site.broker.url(GW, mini_site.credentials[GW]))
    buf = Buffer(tmp_path / "b.sqlite")
    pub = Publisher(GW, url, buf, JsonV1(), window=200, resend_after_s=10.0, status_interval_s=3600)
    pub.start()
    t0 = now_ms() - 120_000
    produced: list[tuple[int, float, int]] = []

    def produce(n: int, pause_s: float) -> None:
        for _ in range(n):
            r = Reading("TT-101", t0 + len(produced), float(len(produced)))
            buf.add([r])
            buf.seal(10)
            produced.append((r.ts_ms, r.v, 0))
            pub.wake()
            time.sleep(pause_s)

    try:
        wait_for(pub.connected, message="agent connected")
        produce(50, 0.01)
        wait_for(lambda: buf.depth().messages == 0, message="the first messages confirmed")
        # Slow, not gone (shorter than resend_after_s): the broker fills the collector's window and queue and
        # drops the rest, while both connections stay up.
        with stopped(collector):
            produce(1200, 0)
            wait_for(lambda: pub.state.acked >= pub.state.published, message="the broker took them all")
        produce(100, 0.01)  # stored above the hole and confirmed while the stream goes on
        wait_for(lambda: buf.depth().messages == 0, timeout=120, message="the buffer confirmed empty")
    finally:
        collector.proc.send_signal(signal.SIGCONT)
        pub.stop()
    check_dropped_and_all_stored(mini_site, produced)
    assert pub.state.resends >= 1  # the hole went out again while connected


def test_the_simulators_confirming_publisher_keeps_and_resends_an_unlisted_seq(
    mini_site: Site, collector: CollectorProcess
) -> None:
    """simulators.gateway.ConfirmingPublisher deletes what `seqs` lists, as the agent does: a confirmation of
    [[1, 3], [5, 5]] (given by hand, the collector not yet running) keeps 4, which goes out again after
    `resend_after_s`."""
    pub = ConfirmingPublisher(GW, mini_site.credentials[GW], "127.0.0.1", mini_site.broker.state.mqtt_port,
                              tls=mini_site.tls, first_seq=1, resend_after_s=1.0)
    pub.start()
    t0 = now_ms() - 60_000
    try:
        for i in range(1, 6):
            assert pub.publish_telemetry(["TT-101"], [float(i)], [t0 + i]) == i
        assert pub.wait_acked(10)
        forger = mqtt_client(mini_site.broker, COLLECTOR_USER, mini_site.broker.state.collector_password)
        connect_to(forger, mini_site.broker)
        forger.loop_start()
        try:
            forger.publish(f"rw/v1/{GW}/stored", orjson.dumps({"seq": 5, "ts": now_ms(), "seqs": [[1, 3], [5, 5]]}),
                           qos=1).wait_for_publish(10)
        finally:
            forger.disconnect()
            forger.loop_stop()
        wait_for(lambda: pub.confirmed_seq == 5, message="the confirmation received")
        assert pub.buffered() == 1  # 4 kept: "everything up to 5" would have lost it
        collector.start()
        resends = pub.resends
        i = 6
        deadline = time.monotonic() + 20
        while (t0 + 4, 4.0, 0) not in stored(mini_site.db_url, GW)["TT-101"] and time.monotonic() < deadline:
            pub.publish_telemetry(["TT-101"], [float(i)], [t0 + i])  # confirmed above the hole as it goes
            i += 1
            time.sleep(0.1)
        assert (t0 + 4, 4.0, 0) in stored(mini_site.db_url, GW)["TT-101"], "the hole re-sent while streaming"
        assert pub.resends > resends
        assert pub.wait_confirmed(30), f"{pub.buffered()} unconfirmed"
    finally:
        pub.close()
    got = [t - t0 for t, _v, _q in stored(mini_site.db_url, GW)["TT-101"]]
    assert 4 in got and set(range(6, i)) <= set(got)


def test_the_confirming_publisher_resends_what_the_broker_dropped_while_the_stream_goes_on(
    mini_site: Site, collector: CollectorProcess
) -> None:
    """The broker drops for the SIGSTOPped collector's session (as in the agent's test above); the holes go out
    again after `resend_after_s` although the stream goes on and its confirmations keep arriving above them, and
    every reading is stored exactly once."""
    small_queue_broker(mini_site)
    collector.start()
    assert collector.proc is not None
    pub = ConfirmingPublisher(GW, mini_site.credentials[GW], "127.0.0.1", mini_site.broker.state.mqtt_port,
                              tls=mini_site.tls, first_seq=1, resend_after_s=2.0)
    pub.start()
    t0 = now_ms() - 120_000
    produced: list[tuple[int, float, int]] = []

    def produce(n: int, pause_s: float) -> None:
        for _ in range(n):
            r = (t0 + len(produced), float(len(produced)), 0)
            pub.publish_telemetry(["TT-101"], [r[1]], [r[0]])
            produced.append(r)
            time.sleep(pause_s)

    try:
        produce(50, 0.01)
        assert pub.wait_confirmed(30), "the first messages confirmed"
        with stopped(collector):
            produce(1200, 0)
            assert pub.wait_acked(30), "the broker took them all"
        resends = pub.resends
        deadline = time.monotonic() + 30
        while set(produced[:1250]) - set(stored(mini_site.db_url, GW)["TT-101"]) and time.monotonic() < deadline:
            produce(10, 0.05)  # confirmed above the holes as it goes
        assert pub.resends > resends
        assert not set(produced[:1250]) - set(stored(mini_site.db_url, GW)["TT-101"]), "holes re-sent while streaming"
        assert pub.wait_confirmed(60), f"{pub.buffered()} unconfirmed"
    finally:
        collector.proc.send_signal(signal.SIGCONT)
        pub.close()
    check_dropped_and_all_stored(mini_site, produced)


def test_another_gateway_cannot_confirm_for_a_gateway(mini_site: Site) -> None:
    """A confirmation listing every seq deletes them all from a gateway's buffer, so only the collector may publish
    one: gw-a2 forging gw-a1's (live and retained) is dropped by the broker, and gw-a1 keeps its data. The
    collector's own confirmation of seq 1, sent after, is the marker that the forged ones would have arrived."""
    pub = ConfirmingPublisher(GW, mini_site.credentials[GW], "127.0.0.1", mini_site.broker.state.mqtt_port,
                              tls=mini_site.tls, first_seq=1, resend_after_s=60.0)
    pub.start()
    t0 = now_ms() - 60_000
    try:
        for i in range(1, 6):
            pub.publish_telemetry(["TT-101"], [float(i)], [t0 + i])
        assert pub.wait_acked(10)
        forged = orjson.dumps({"seq": 5, "ts": now_ms(), "seqs": [[1, 5]]})
        for retain in (False, True):
            res = subprocess.run(["mosquitto_pub", *pub_args(mini_site.broker), "-q", "1", "-u", "gw-a2", "-P",
                                  mini_site.credentials["gw-a2"], "-t", f"rw/v1/{GW}/stored", "-s",
                                  *(["-r"] if retain else [])], input=forged, capture_output=True, timeout=30)
            assert res.returncode == 0, res.stderr
        marker = mqtt_client(mini_site.broker, COLLECTOR_USER, mini_site.broker.state.collector_password)
        connect_to(marker, mini_site.broker)
        marker.loop_start()
        try:
            marker.publish(f"rw/v1/{GW}/stored", orjson.dumps({"seq": 1, "ts": now_ms(), "seqs": [[1, 1]]}),
                           qos=1).wait_for_publish(10)
        finally:
            marker.disconnect()
            marker.loop_stop()
        wait_for(lambda: pub.buffered() == 4, message="the collector's confirmation of seq 1")
        time.sleep(1.0)
        assert pub.buffered() == 4  # seqs 2-5 kept: the forged "1 to 5" never reached gw-a1
    finally:
        pub.close()
