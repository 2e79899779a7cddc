"""Issue 18: riskwatch's edge agent publishing Sparkplug B (`publish.format: sparkplug_b`) end to end.

Simulated PLC (Modbus TCP + OPC UA) -> the agent as a real process -> Mosquitto (TLS, the gateway's own account,
the Sparkplug ACL) -> the real collector (its Sparkplug host). Every value the PLC's own log says it produced is
stored exactly once and the buffer drains, so `riskwatch/seq` drives the `rw/v1/{gw}/stored` confirmation as a
JSON v1 seq does; a collector restart (the host forgets the aliases) costs nothing; a rebirth NCMD published by
another client makes the agent publish a new NBIRTH and carry on with a fresh seq; a malformed NCMD is ignored;
a clean stop publishes the NDEATH with the session's bdSeq. The agent waits for riskwatch's host STATE before its
NBIRTH, leaves (NDEATH) when the collector goes offline, cleanly or by its will, and births again when it is back.

The observer is a second collector login (`riskwatch-collector-2`, same rights as the collector's: read
`spBv1.0/#`, write NCMD), so it can watch the agent's births and send commands without taking over the
collector's session (the broker binds client ids to usernames).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from core.mqtt import configure
from core.settings import MqttUrl
from ingest.sparkplug import payload as host_payload
from ingest.sparkplug import sparkplug_b_pb2 as pb
from tests.conftest import CollectorProcess, Site, sql_one, wait_for
from tests.integration import edge_harness as edge
from tests.integration.edge_harness import GW, county  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

GROUP = "Plant A"
SPARKPLUG = {"publish": {"format": "sparkplug_b", "group_id": GROUP, "resend_after_s": 10.0}}
# No primary host: what an agent sees behind a group of collectors (no STATE will, so no offline), or opted out.
SPARKPLUG_NO_HOST = {"publish": {**SPARKPLUG["publish"], "primary_host_id": None}}


class Observer:
    """A client under the second collector login: records the agent's Sparkplug traffic (and, subscribed to more,
    the host's STATE as its JSON) in arrival order."""

    def __init__(self, site: Site, topic: str = f"spBv1.0/{GROUP}/+/{GW}"):
        site.broker.state.collector_instances = 2
        with psycopg.connect(site.db_url) as conn:
            site.sync(conn)
        self.user = "riskwatch-collector-2"
        url = MqttUrl.parse(site.broker.url(self.user))
        self.lock = threading.Lock()
        self.seen: list[tuple[str, Any]] = []  # (message type, pb.Payload or the STATE's JSON)
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.user,
                             protocol=MQTTProtocolVersion.MQTTv311, clean_session=True)
        configure(self.c, url)
        self.subscribed = threading.Event()
        self.c.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *_: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(url.host, url.port)
        self.c.loop_start()
        assert self.subscribed.wait(10), "observer could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.split("/")[1] == "STATE":
            with self.lock:
                self.seen.append(("STATE", orjson.loads(msg.payload)))
            return
        kind = msg.topic.split("/")[2]
        if kind == "NCMD":
            return  # the commands (our own, malformed ones included): not the agent's traffic
        with self.lock:
            self.seen.append((kind, pb.Payload.FromString(msg.payload)))

    def of(self, kind: str) -> list[Any]:
        with self.lock:
            return [p for k, p in self.seen if k == kind]

    def kinds(self) -> list[str]:
        with self.lock:
            return [k for k, _p in self.seen]

    def snapshot(self) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self.seen)

    def publish(self, kind: str, payload: bytes) -> None:
        self.c.publish(f"spBv1.0/{GROUP}/{kind}/{GW}", payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def metric(p: pb.Payload, name: str) -> pb.Payload.Metric:
    return next(m for m in p.metrics if m.name == name)


def seq_runs_are_contiguous(seen: list[tuple[str, Any]]) -> list[str]:
    """Problems with the Sparkplug seq: each NBIRTH starts at 0, each NDATA follows the previous message by one
    (mod 256)."""
    problems = []
    last: int | None = None
    for i, (kind, p) in enumerate(seen):
        if kind == "NBIRTH":
            if p.seq != 0:
                problems.append(f"#{i} NBIRTH seq {p.seq}")
            last = 0
        elif kind == "NDATA":
            if last is None or p.seq != (last + 1) % 256:
                problems.append(f"#{i} NDATA seq {p.seq} after {last}")
            last = p.seq
    return problems


def publish_as_another_gateway(site: Site, topic: str, payload: bytes, retain: bool = False) -> None:
    """Publish under gw-cem-02's own login, as a compromised neighbour would: the broker's ACL must drop it."""
    other = "gw-cem-02"
    url = MqttUrl.parse(site.broker.url(other, site.credentials[other]))
    forger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=other, protocol=MQTTProtocolVersion.MQTTv311)
    configure(forger, url)
    forger.connect(url.host, url.port)
    forger.loop_start()
    try:
        forger.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        forger.disconnect()
        forger.loop_stop()


def dead_letter_reasons(db_url: str) -> str:
    """The distinct dead-letter reasons, comma-separated: a collector that restarted, or an agent that left,
    may leave NDATA its host could not resolve (`sparkplug_alias`) and nothing else."""
    return str(sql_one(db_url, "SELECT coalesce(string_agg(DISTINCT reason, ','), '') FROM dead_letters"))


def test_sparkplug_agent_stores_every_plc_value_exactly_once_across_a_collector_restart_and_drains(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    """Without a primary host (the agent of a collector group sees no offline STATE) a collector restart goes
    through the rebirth request; with one, see test_agent_waits_for_the_host_state_…"""
    collector.start()
    obs = Observer(county)
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port, **SPARKPLUG_NO_HOST)
    with edge.running(sim, agent, obs):
        edge.start_polled(sim, agent)
        agent.wait_log(f"{GW}: connected to 127.0.0.1:{county.broker.state.mqtt_port}")
        wait_for(lambda: len(obs.of("NDATA")) >= 5, message="NDATA flowing")
        time.sleep(3)
        # The collector restarts: its host forgets the aliases; the agent's next NDATA cannot be resolved, the host
        # asks for a rebirth, and what it could not store is sent again behind the new NBIRTH.
        collector.kill()
        time.sleep(3)
        collector.start()
        agent.wait_log("rebirth requested by the host", timeout=60)
        time.sleep(5)
        edge.drain(sim, agent)
    edge.check_exactly_once(sim, county.db_url)
    births = obs.of("NBIRTH")
    assert len(births) >= 2  # the connect's and the rebirth's
    assert len({metric(b, "bdSeq").long_value for b in births}) == 1  # one connection, one bdSeq
    declared = {m.name for m in births[0].metrics if m.HasField("alias")}
    assert declared == {t.tag for t in sim.tags}
    assert all(not m.HasField("name") for p in obs.of("NDATA") for m in p.metrics if m.name != "riskwatch/seq")
    seq_problems = seq_runs_are_contiguous(obs.snapshot())
    assert not seq_problems, seq_problems
    # the clean stop said goodbye with the session's bdSeq, and the gateway is offline
    [death] = obs.of("NDEATH")
    assert metric(death, "bdSeq").long_value == metric(births[0], "bdSeq").long_value
    assert sql_one(county.db_url, "SELECT count(*) FROM unmapped_points") == 0
    reasons = dead_letter_reasons(county.db_url)
    assert reasons in ("", "sparkplug_alias"), reasons  # only what the restarted host could not resolve
    wait_for(lambda: sql_one(county.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is False,
             message="gateway offline after the NDEATH")
    assert "Traceback" not in agent.log.read_text()


def test_rebirth_ncmd_from_another_client_makes_the_agent_birth_again_and_a_bad_one_is_ignored(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    collector.start()
    obs = Observer(county)
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port, **SPARKPLUG)
    with edge.running(sim, agent, obs):
        edge.start_polled(sim, agent)
        wait_for(lambda: len(obs.of("NBIRTH")) == 1 and len(obs.of("NDATA")) >= 3, message="born and sending")
        first = obs.of("NBIRTH")[0]
        # not a command: garbage, and a rebirth that is not a Boolean -> logged, ignored, no birth
        obs.publish("NCMD", b"\x08\xff\xff garbage")
        bad = pb.Payload(timestamp=int(time.time() * 1000))
        bad.metrics.add(name="Node Control/Rebirth", datatype=pb.String, string_value="yes")
        obs.publish("NCMD", bad.SerializeToString())
        agent.wait_log("command on spBv1.0/Plant A/NCMD/gw-cem-01 ignored", count=2)
        # another gateway forging a rebirth request for this one: the broker's ACL drops it
        publish_as_another_gateway(county, f"spBv1.0/{GROUP}/NCMD/{GW}",
                                   host_payload.rebirth_request(int(time.time() * 1000)))
        time.sleep(2)
        assert len(obs.of("NBIRTH")) == 1 and agent.alive()
        assert "rebirth requested by the host" not in agent.section()
        # the real request
        n_data = len(obs.of("NDATA"))
        obs.publish("NCMD", host_payload.rebirth_request(int(time.time() * 1000)))
        wait_for(lambda: len(obs.of("NBIRTH")) == 2, message="a new NBIRTH")
        wait_for(lambda: len(obs.of("NDATA")) >= n_data + 3, message="NDATA after the rebirth")
        second = obs.of("NBIRTH")[1]
        assert second.seq == 0
        assert metric(second, "bdSeq").long_value == metric(first, "bdSeq").long_value  # same session
        assert [(m.name, m.alias) for m in second.metrics] == [(m.name, m.alias) for m in first.metrics]
        edge.drain(sim, agent)
    seq_problems = seq_runs_are_contiguous(obs.snapshot())
    assert not seq_problems, seq_problems
    edge.check_exactly_once(sim, county.db_url)
    with psycopg.connect(county.db_url) as conn:
        dead = conn.execute("SELECT reason, topic, detail FROM dead_letters ORDER BY id").fetchall()
    assert dead == [], dead


def test_bad_quality_travels_as_the_quality_property_and_is_stored_as_bad(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    """The OPC UA server reports Bad for a tag: the agent sends its last value with `Quality` 0 and the collector
    stores it with quality 2 at the PLC's time, as for JSON v1's `q: bad`; a malformed value is not sent at all."""
    collector.start()
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port, **SPARKPLUG)
    with edge.running(sim, agent, clean_exit=False):
        edge.bad_then_malformed_opcua(sim, agent)
    edge.check_bad_quality_stored(sim, county.db_url)


def test_agent_sigkilled_its_will_is_the_ndeath_and_the_restart_births_with_the_next_bdseq(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    """A power cut of the box: the broker publishes the will (NDEATH, the dead session's bdSeq) and the gateway
    goes offline; the restarted agent births with a higher bdSeq (persisted in its SQLite), goes online again,
    and sends what it had buffered in the new session without a seq gap; nothing is lost or doubled."""
    collector.start()
    obs = Observer(county)
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port, **SPARKPLUG)
    online = "SELECT online FROM gateways WHERE id = %s"
    with edge.running(sim, agent, obs):
        edge.start_polled(sim, agent)
        wait_for(lambda: len(obs.of("NDATA")) >= 5, message="NDATA flowing")
        wait_for(lambda: sql_one(county.db_url, online, (GW,)) is True, message="online after the NBIRTH")
        first = metric(obs.of("NBIRTH")[0], "bdSeq").long_value
        sim.paused = True
        time.sleep(1)
        agent.kill()
        # keepalive 10 s: the broker gives up after 15 s and publishes the will
        wait_for(lambda: len(obs.of("NDEATH")) == 1, timeout=40, message="the will (NDEATH)")
        assert metric(obs.of("NDEATH")[0], "bdSeq").long_value == first
        wait_for(lambda: sql_one(county.db_url, online, (GW,)) is False, message="offline after the will")
        restarts = [edge.start_polled(sim, agent)]
        wait_for(lambda: len(obs.of("NBIRTH")) == 2, message="the restarted agent's NBIRTH")
        wait_for(lambda: sql_one(county.db_url, online, (GW,)) is True, message="online again")
        time.sleep(4)
        edge.drain(sim, agent)
    second = metric(obs.of("NBIRTH")[1], "bdSeq").long_value
    assert second == (first + 1) % 256  # one CONNECT since, persisted across the kill
    seq_problems = seq_runs_are_contiguous(obs.snapshot())
    assert not seq_problems, seq_problems
    edge.check_exactly_once(sim, county.db_url, restarts)
    assert sql_one(county.db_url, "SELECT count(*) FROM dead_letters") == 0


def lifecycle_problems(seen: list[tuple[str, Any]]) -> list[str]:
    """Sparkplug 3.0 primary host rules, read off one ordered stream: every NBIRTH follows a STATE online (the
    newest STATE before it), and every NDATA belongs to a birth not yet ended by an NDEATH."""
    problems = []
    host_online = False
    born = False
    for i, (kind, p) in enumerate(seen):
        if kind == "STATE":
            host_online = p["online"] is True
        elif kind == "NBIRTH":
            if not host_online:
                problems.append(f"#{i} NBIRTH while the host's STATE says offline (or before any STATE)")
            born = True
        elif kind == "NDEATH":
            born = False
        elif kind == "NDATA" and not born:
            problems.append(f"#{i} NDATA outside a birth")
    return problems


def test_agent_waits_for_the_host_state_leaves_when_it_goes_offline_and_births_again_when_it_is_back(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    """Sparkplug 3.0 primary host (default `primary_host_id: riskwatch`): the agent, started before the collector,
    sends neither NBIRTH nor NDATA until the collector's STATE says online; the collector stopping cleanly (its
    STATE offline) and SIGKILLed (its will) each make the agent publish its NDEATH and stop sending; each return
    brings a new NBIRTH (next bdSeq) and the backlog behind it. Every PLC value is stored exactly once."""
    obs = Observer(county, "spBv1.0/#")
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port, **SPARKPLUG)

    def kinds() -> list[str]:
        return [k for k in obs.kinds() if k != "STATE"]

    with edge.running(sim, agent, obs):
        edge.start_polled(sim, agent)
        agent.wait_log("waiting for primary host 'riskwatch' to be online")
        # another gateway cannot fake riskwatch's STATE: the broker's ACL drops it
        forged = orjson.dumps({"online": True, "timestamp": int(time.time() * 1000)})
        publish_as_another_gateway(county, "spBv1.0/STATE/riskwatch", forged, retain=True)
        time.sleep(5)
        assert obs.kinds() == [], obs.kinds()
        assert agent.buffered() > 0  # readings wait on the box, not at the broker
        assert agent.alive()

        collector.start()
        wait_for(lambda: "NDATA" in kinds(), message="NDATA once the host is online")
        agent.wait_log("primary host 'riskwatch' online")
        time.sleep(3)

        for leave in ("stop", "kill"):
            deaths, births = len(obs.of("NDEATH")), len(obs.of("NBIRTH"))
            if leave == "stop":
                assert collector.stop() == 0  # STATE offline published on its way out
            else:
                collector.kill()  # the broker publishes its will: STATE offline with the same timestamp
            wait_for(lambda d=deaths: len(obs.of("NDEATH")) == d + 1, message=f"the agent's NDEATH after the {leave}")
            assert obs.of("STATE")[-1]["online"] is False
            time.sleep(4)
            assert kinds()[-1] == "NDEATH", kinds()[-5:]  # nothing sent since
            assert len(obs.of("NBIRTH")) == births
            collector.start()
            wait_for(lambda b=births: len(obs.of("NBIRTH")) > b, message=f"a new NBIRTH after the {leave}")
            wait_for(lambda: kinds()[-1] == "NDATA", message="NDATA again")
            time.sleep(3)
        edge.drain(sim, agent)
    seen = obs.snapshot()
    problems = lifecycle_problems(seen) + seq_runs_are_contiguous(seen)
    assert not problems, problems
    states = [p for k, p in seen if k == "STATE"]
    assert [st["online"] for st in states][:5] == [True, False, True, False, True], states
    bdseqs = [metric(b, "bdSeq").long_value for b in obs.of("NBIRTH")]
    assert len(set(bdseqs)) >= 3 and bdseqs == sorted(bdseqs), bdseqs  # a new session after each departure
    log = agent.log.read_text()
    assert log.count("went offline: NDEATH") == 2, log[-3000:]
    assert "Traceback" not in log
    edge.check_exactly_once(sim, county.db_url)
    reasons = dead_letter_reasons(county.db_url)
    assert reasons in ("", "sparkplug_alias"), reasons  # NDATA queued for the collector before the agent left


@pytest.mark.slow
def test_sparkplug_soak_broker_kill_network_cut_and_agent_kill_lose_nothing(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    """The issue's acceptance run (test_edge_soak.py) in sparkplug_b: broker SIGKILLed and restarted, the agent's
    link blackholed for 60 s (its will fires at the broker, a later session births with a newer bdSeq; the will of
    the dead session may arrive after it and must be ignored as stale), the agent SIGKILLed and restarted. Every
    PLC value stored once. RISKWATCH_EDGE_SPARKPLUG_SOAK_S, default 150 s."""
    soak_s = float(os.environ.get("RISKWATCH_EDGE_SPARKPLUG_SOAK_S", "150"))
    collector.start()
    proxy = edge.LoopbackProxy(county.broker.state.mqtt_port)
    sim, agent = edge.plc_and_agent(county, tmp_path, proxy.port, **SPARKPLUG)
    with edge.running(sim, agent, proxy):
        restarts = edge.soak_with_faults(county, proxy, sim, agent, soak_s)
    edge.check_exactly_once(sim, county.db_url, restarts)
    assert sql_one(county.db_url, "SELECT count(*) FROM unmapped_points") == 0
    reasons = dead_letter_reasons(county.db_url)
    assert reasons in ("", "sparkplug_alias"), reasons
    assert "Traceback" not in agent.log.read_text()
