"""Issue 18: "a scenario played through `simulate --via edge` raises the same alarms as the direct simulator".

One data-time scenario (gas-main overpressure with the shut-off valve stuck open) is played in real time twice,
each against its own fresh database + TLS broker + collector: (a) directly (the simulator publishes JSON v1),
(b) via edge (the simulator writes a simulated Modbus TCP PLC, a real edge agent polls it and publishes). The
(rule, tag) activations must be the same and contain the scenario's expected ones; the edge run must also have
stored exactly the readings its agent took (nothing lost, nothing twice). Plus the refusals at the boundary.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import psycopg
import pytest

from api.run.context import RunContext
from api.run.simulate import SimOptions
from api.run.simulate import simulate as run_simulate
from core.db import migrate
from core.errors import ConfigError
from core.services import LocalMosquitto, LocalPostgres, ServicesState, free_port
from core.settings import MqttUrl
from simulators.run import SimResult, default_site_path, load_site, simulate
from simulators.scenarios import SCENARIOS, Scenario
from simulators.via_edge import edge_publisher_factory
from tests.conftest import CollectorProcess, Site, sql_one, wait_for
from tests.integration.test_scenarios import activations

GW = "gw-ref-01"
SHIFT_S = 50.0  # the fault at +10 s instead of +60 s: same physics, a third of the wall time


def short_scenario() -> Scenario:
    """gas_overpressure_esv_stuck with its fault (and expected windows) moved earlier by SHIFT_S."""
    sc = SCENARIOS["gas_overpressure_esv_stuck"]
    return replace(sc, faults=tuple(replace(f, at_s=f.at_s - SHIFT_S) for f in sc.faults),
                   expects=tuple(replace(e, at_s=e.at_s - SHIFT_S) for e in sc.expects))


@dataclass
class Env:
    site: Site
    collector: CollectorProcess
    workdir: Path


@pytest.fixture
def second(pg: LocalPostgres, tmp_path: Path) -> Iterator[Env]:
    """A second fresh database + TLS broker + collector, independent of the `db_url`/`broker` fixtures."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    work = tmp_path / "second"
    work.mkdir()
    state = ServicesState(pg_dir="", pg_port=0, pg_password="", mqtt_port=free_port(),
                          collector_password=secrets.token_urlsafe(12), mqtt_mtls_port=free_port())
    broker = LocalMosquitto(work, state)
    broker.write_config()
    broker.start()
    coll = CollectorProcess(url, broker, work)
    try:
        yield Env(Site(url, broker, default_site_path()), coll, work)
    finally:
        if coll.alive():
            coll.kill()
        broker.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle(env: Env, res: SimResult) -> None:
    assert res.acked, res
    wait_for(lambda: sql_one(env.site.db_url, "SELECT count(*) FROM readings") == res.readings_sent, timeout=30,
             message="every reading sent is stored")
    time.sleep(1.5)  # the rule tick


def play_direct(env: Env, sc: Scenario) -> SimResult:
    """The scenario in real time from now on gateway GW only, published as JSON v1 by the simulator."""
    res = simulate(env.site.spec, "127.0.0.1", env.site.broker.state.mqtt_port, env.site.credentials,
                   duration_s=run_s(sc), rate_hz=1.0, batch=20, log_path=None, realtime=True, scenario=sc, seed=5,
                   gateways=[GW], tls=env.site.tls)
    settle(env, res)
    return res


def play_via_edge(env: Env, sc: Scenario, monkeypatch: pytest.MonkeyPatch) -> SimResult:
    """The same through the command's own wiring (`riskwatch simulate --via edge`, api.run.simulate) with a
    context naming this environment's broker and data dir (the shortened scenario registered under a test name)."""
    monkeypatch.setitem(SCENARIOS, "test_gas_short", sc)
    creds = env.workdir / "creds.json"
    creds.write_text(json.dumps(env.site.credentials))
    ctx = SimpleNamespace(private=False, settings=SimpleNamespace(data_dir=env.workdir / "data"),
                          mqtt=MqttUrl.parse(env.site.broker.url()))
    opts = SimOptions(site=default_site_path(), duration=run_s(sc), rate=1.0, credentials=creds, gateways=[GW],
                      seed=5, scenario="test_gas_short", via="edge")
    res = run_simulate(cast(RunContext, ctx), opts, stop=threading.Event(), say=lambda _s: None)
    settle(env, res)
    return res


def run_s(sc: Scenario) -> float:
    return max(e.at_s + e.latest_s for e in sc.expects) + 6


@pytest.mark.integration
@pytest.mark.slow
def test_scenario_via_edge_raises_the_same_alarms_as_direct(
    db_url: str, broker: LocalMosquitto, collector: CollectorProcess, tmp_path: Path, second: Env,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sc = short_scenario()
    expected = {(e.rule_id, e.tag) for e in sc.expects}
    direct = Env(Site(db_url, broker, default_site_path()), collector, tmp_path / "direct")
    # The played gateway and its points; the site's other gateways stay silent in both runs, so their
    # wall-clock offline alarms depend only on how long each run took, not on the path.
    ours = {GW} | {p.tag for _, _, d, p in direct.site.spec.points() if d.gateway == GW}
    direct.collector.start()
    res_direct = play_direct(direct, sc)
    direct_acts = {(a[0], a[1]) for a in activations(db_url) if a[1] in ours}

    second.collector.start()
    res_edge = play_via_edge(second, sc, monkeypatch)
    edge_acts = {(a[0], a[1]) for a in activations(second.site.db_url) if a[1] in ours}

    assert expected <= direct_acts, direct_acts
    assert edge_acts == direct_acts, f"via edge {sorted(edge_acts)} != direct {sorted(direct_acts)}"
    # The edge run really went PLC -> agent -> broker: the agent's generated config, its readings all stored
    # exactly once (the wait in play), every point of the gateway polled about once a second.
    cfg = (second.workdir / "data" / "via-edge" / f"edge-{GW}.yaml").read_text()
    assert "kind: modbus" in cfg and "float32" in cfg and "int32" in cfg
    n_points = res_direct.gateways[GW].points
    assert res_edge.gateways[GW].readings_sent >= n_points * (res_direct.samples_per_point - 4)
    # the faulted value as the PLC served it (float32 12.0 is exact) is what was stored
    n12 = sql_one(second.site.db_url, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id "
                                      "WHERE p.tag = 'PT-501' AND r.value = 12.0")
    assert int(n12) >= 8  # type: ignore[call-overload]


def test_via_edge_refuses_what_it_cannot_play(tmp_path: Path) -> None:
    """Backfill / history / an unknown --via / an absurd rate / an unplug scenario: a clear error, nothing
    started (the checks come before credentials, services or ports are touched)."""
    ctx = cast(RunContext, object())
    for opts, words in ((SimOptions(via="edge", backfill=True), "--backfill"),
                        (SimOptions(via="edge", start_ago=60.0), "--start-ago"),
                        (SimOptions(via="plc"), "--via")):
        with pytest.raises(ConfigError, match=words):
            run_simulate(ctx, opts, stop=threading.Event(), say=lambda _s: None)
    county = load_site(default_site_path())
    with pytest.raises(ConfigError, match=r"--rate"):
        edge_publisher_factory(county, tmp_path, rate_hz=50.0, cafile=None)
    factory = edge_publisher_factory(county, tmp_path, rate_hz=1.0, cafile=None)
    sc = SCENARIOS["gateway_unplugged"]
    creds = {gw.id: "x" for _, gw in county.gateways()}
    with pytest.raises(ConfigError, match="unplug"):
        simulate(county, "127.0.0.1", free_port(), creds, duration_s=5, rate_hz=1.0, batch=20, log_path=None,
                 scenario=sc, publisher_factory=factory, gateways=list(sc.gateways))
