"""Issue 18, the edge agent's boundaries against real servers: a tag at an invalid register, a PLC that drops
its connection, bad-quality and malformed OPC UA values, a restart while the broker is unreachable, a clock
that is off, and the retained status with buffer depth."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.settings import MqttUrl
from ingest.edge.buffer import Buffer
from ingest.edge.formats import JsonV1, Reading
from ingest.edge.publisher import Publisher
from tests.conftest import CollectorProcess, Site, sql_one, wait_for
from tests.integration import edge_harness as edge
from tests.integration.edge_harness import GW, county  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration


def count(site: Site, tag: str) -> int:
    return int(sql_one(site.db_url, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id "  # type: ignore[arg-type]
                                    "WHERE p.tag = %s AND p.gateway_id = %s", (tag, GW)))


def test_invalid_register_and_a_plc_that_disconnects_do_not_stop_the_agent(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    collector.start()
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port)
    cfg = __import__("yaml").safe_load(agent.config_path.read_text())
    modbus = cfg["sources"][0]
    good_tag = modbus["tags"][0]["tag"]
    bad = dict(modbus["tags"][0], tag="XX-BAD", address=9000)  # beyond what the PLC serves
    modbus["tags"].append(bad)
    agent.config_path.write_text(__import__("yaml").safe_dump(cfg))
    with edge.running(sim, agent):
        edge.start_polled(sim, agent)
        agent.wait_log(f"tag XX-BAD: {bad['function']} register 9000: device answered exception 2")
        wait_for(lambda: count(county, good_tag) >= 3, message="good modbus tag stored")
        # the PLC goes away for 5 s (listener closed, connections dropped), then comes back
        sim.call(sim.stop_modbus)
        agent.wait_log("connection lost", timeout=20)
        opc_tag = next(t.tag for t in sim.tags if t.protocol == "opcua")
        before = count(county, opc_tag)
        time.sleep(5)
        assert agent.alive()
        sim.call(sim.start_modbus)
        agent.wait_log("source plc-modbus: connected", count=2, timeout=30)
        n = count(county, good_tag)
        wait_for(lambda: count(county, good_tag) >= n + 3, message="modbus readings resume")
        assert count(county, opc_tag) >= before + 3  # OPC UA went on while Modbus was down
        edge.drain(sim, agent)
    assert "Traceback" not in agent.log.read_text()
    assert count(county, "XX-BAD") == 0
    assert sql_one(county.db_url, "SELECT count(*) FROM dead_letters") == 0
    assert sql_one(county.db_url, "SELECT count(*) FROM unmapped_points") == 0


def test_bad_quality_is_stored_as_bad_and_a_malformed_opcua_value_is_reported_not_invented(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    collector.start()
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port)
    with edge.running(sim, agent, clean_exit=False):
        edge.bad_then_malformed_opcua(sim, agent)
    edge.check_bad_quality_stored(sim, county.db_url)


def test_agent_sigkilled_while_the_broker_is_unreachable_loses_nothing(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    collector.start()
    proxy = edge.LoopbackProxy(county.broker.state.mqtt_port)
    sim, agent = edge.plc_and_agent(county, tmp_path, proxy.port)
    with edge.running(sim, agent, proxy, clean_exit=False):
        proxy.cut("refuse")  # connection refused from the start: everything goes to the disk buffer
        edge.start_polled(sim, agent)
        time.sleep(8)
        assert agent.buffered() > 30
        sim.paused = True
        agent.kill()
        held = agent.buffered()
        restarts = [edge.start_polled(sim, agent)]
        agent.wait_log(f"({held} readings held from before)")
        time.sleep(5)
        assert sql_one(county.db_url, "SELECT count(*) FROM readings") == 0
        proxy.restore()
        agent.wait_log(f"{GW}: connected to 127.0.0.1:{proxy.port}", timeout=60)
        edge.drain(sim, agent)
    edge.check_exactly_once(sim, county.db_url, restarts)


def test_clock_skew_is_detected_and_status_reports_the_buffer(
    county: Site, collector: CollectorProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    """An agent whose clock runs 30 s ahead: the collector's live confirmations show it; its status says so.

    (Only the collector's account may read other gateways' status, and it is bound to the collector's client
    id, so the status document is checked at the publisher rather than by a second subscriber.)"""
    collector.start()
    url = MqttUrl.parse(county.broker.url(GW, county.credentials[GW]))
    skewed = lambda: time.time() + 30  # noqa: E731
    buf = Buffer(tmp_path / "b.sqlite", clock=skewed)
    pub = Publisher(GW, url, buf, JsonV1(), max_clock_skew_s=5, status_interval_s=0.5, clock=skewed,
                    status=lambda: {"sources": {"x": {"connected": True}}})
    pub.start()
    try:
        now = int(time.time() * 1000)
        with caplog.at_level("WARNING", logger="riskwatch.edge.publisher"):
            for i in range(5):
                buf.add([Reading("TT-101", now - 5000 + i, float(i))])
                buf.seal(10)
            pub.wake()
            wait_for(lambda: buf.depth().messages == 0, message="confirmed")
            wait_for(lambda: pub.state.clock_skew_ms is not None and pub.state.clock_skew_ms > 25_000,
                     message="skew measured")
            wait_for(lambda: "local clock is +3" in caplog.text, message="skew warning")
        doc = pub._status_doc()
        assert doc["online"] is True and doc["clock_skew_ms"] > 25_000 and doc["sources"] == {"x": {"connected": True}}
        assert doc["buffer"]["messages"] == 0 and doc["buffer"]["oldest_age_s"] is None
        assert abs(doc["ts"] - (time.time() + 30) * 1000) < 5000  # stamped with the agent's own clock
        buf.add([Reading("TT-101", now - 4000, 9.0)])
        assert pub._status_doc()["buffer"]["readings"] == 1
        assert pub.state.published >= 6  # status messages went out too
    finally:
        pub.stop()
    wait_for(lambda: count(county, "TT-101") == 5, message="stored")


def test_broker_restart_that_lost_the_collector_session_loses_nothing(
    county: Site, collector: CollectorProcess, tmp_path: Path  # noqa: F811
) -> None:
    """The race the soak found: the broker restarts without the collector's session and the agent reconnects
    first. What it sends then goes to nobody; a later stored seq must not confirm it (the agent probes)."""
    import signal

    collector.start()
    sim, agent = edge.plc_and_agent(county, tmp_path, county.broker.state.mqtt_port)
    with edge.running(sim, agent, clean_exit=False):
        edge.start_polled(sim, agent)
        agent.wait_log(f"{GW}: connected to 127.0.0.1:{county.broker.state.mqtt_port}")
        time.sleep(4)
        collector.kill()
        county.broker.stop(signal.SIGKILL)
        (county.broker.dir / "data" / "mosquitto.db").unlink(missing_ok=True)  # no session survives
        county.broker.start()
        agent.wait_log(f"{GW}: connected to 127.0.0.1:{county.broker.state.mqtt_port}", count=2, timeout=60)
        time.sleep(4)  # the agent is connected and sending; nobody is subscribed
        collector.start()
        assert "session present: False" in collector.log.read_text().split("--- start 2")[-1]
        time.sleep(6)
        edge.drain(sim, agent)
    edge.check_exactly_once(sim, county.db_url)
    assert "probing again" in agent.log.read_text()
