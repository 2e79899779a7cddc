"""Data trust and mandatory points (issue 14) against the real registry tables, broker and collector.

- `missing_mandatory(conn)` over a registry loaded from a site YAML missing one mandatory point names the
  enterprise, the collector and the point, and nothing else; a point of the same quantity and role on another
  device does not fill the gap;
- the baseline-age rule reads `serviced_at` / `baseline_at` as the registry stores them (migration 0013);
- a gateway whose clock is 5.5 minutes fast: real Mosquitto -> the real collector (in this process, with the
  rule engine and a clock the test moves) dead-letters every reading as before, and the skew it records raises
  the trust.clock_skew alarm and its hazard candidate after the on-delay.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import psycopg
import pytest

from core import registry
from core.mandatory import Missing, missing_mandatory
from core.services import COLLECTOR_USER, LocalMosquitto
from core.settings import MqttUrl
from ingest.collector import Collector
from rules import store
from rules.compile import compile_rules
from rules.engine import RuleEngine
from rules.evaluate import Index, PointState, State, TickInputs, evaluate_tick
from rules.model import load_catalog
from simulators.run import simulate
from simulators.scenarios import SCENARIOS, SITES_DIR
from tests.conftest import CollectorProcess, Site, pub_args, sql_one, wait_for
from tests.integration.test_scenarios import activations, check_expected

pytestmark = [pytest.mark.integration]

FULL = SITES_DIR / "county_full.yaml"


def _without_point(text: str, tag: str) -> str:
    """The site YAML with one point's block (from its `- tag:` line to the next point or device) removed."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if re.match(rf"\s+- tag: {re.escape(tag)}\s*$", ln))
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (len(lines[end]) - len(lines[end].lstrip()) > indent or not lines[end].strip()):
        end += 1
    return "".join(lines[:start] + lines[end:])


def _load(db_url: str, path: Path) -> registry.SiteSpec:
    site = registry.parse_site(path)
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, site)
    return site


def test_the_full_sample_site_has_every_mandatory_point(db_url: str) -> None:
    site = _load(db_url, FULL)
    with psycopg.connect(db_url) as conn:
        assert missing_mandatory(conn) == [] == missing_mandatory(site)


def test_registry_check_names_the_enterprise_the_collector_and_the_missing_point(db_url: str,
                                                                                 tmp_path: Path) -> None:
    # the shot-blast collector DC-35 loses its hopper temperature TT-3501; the same quantity and role stays on
    # another enterprise's collector, which does not fill this one's gap
    path = tmp_path / "site.yaml"
    path.write_text(_without_point(FULL.read_text(encoding="utf-8"), "TT-3501"), encoding="utf-8")
    site = _load(db_url, path)
    want = [Missing("hf-foundry", "hf-p1", "DC-35", "hopper_temperature", "抛丸清理脉冲袋式除尘器（干式）",
                    "灰斗温度", "hopper temperature")]
    with psycopg.connect(db_url) as conn:
        got = missing_mandatory(conn)
    assert [(m.enterprise, m.device, m.role) for m in got] == [(w.enterprise, w.device, w.role) for w in want]
    assert got[0].plant == site_plant(site, "DC-35")
    assert got == missing_mandatory(site)
    text = got[0].describe()
    assert "hf-foundry" in text and "DC-35" in text and "灰斗温度" in text and "hopper temperature" in text


def site_plant(site: registry.SiteSpec, code: str) -> str:
    return next(p.id for e in site.enterprises for p in e.plants for d in p.devices if d.code == code)


def test_a_wet_collector_without_its_circulation_flow_is_named(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_without_point(FULL.read_text(encoding="utf-8"), "FT-4301"), encoding="utf-8")
    _load(db_url, path)
    with psycopg.connect(db_url) as conn:
        got = missing_mandatory(conn)
    assert [(m.enterprise, m.device, m.role) for m in got] == [("yl-alloy", "WDC-43", "circulation_flow")]


# --- baseline age through the registry tables (migration 0013) ------------------------------------------


def _baseline_acts(db_url: str, now: float) -> list[str]:
    with psycopg.connect(db_url) as conn:
        view, created, gw_created = store.load_registry(conn)
    compiled = compile_rules(load_catalog(), view)
    size = max(p.id for p in view.points) + 1
    index = Index(compiled, size)
    state = State(points=PointState.empty(size), seen=None)
    pc = [0.0] * size
    for pid, c in created.items():
        pc[pid] = c
    _, tr = evaluate_tick(state, index, TickInputs(now, np.array(pc), gw_created))
    return [compiled.instances[t.index].rule_id + "@" + view_tag(view, compiled.instances[t.index].point_id)
            for t in tr if t.kind == "activate" and compiled.instances[t.index].base_id == "trust.dp.baseline_age"]


def view_tag(view: object, pid: int | None) -> str:
    return next(p.tag for p in view.points if p.id == pid)  # type: ignore[attr-defined]


def test_bags_changed_and_no_new_baseline_is_flagged_8_h_later(db_url: str, tmp_path: Path) -> None:
    site = _load(db_url, FULL)
    now = time.time()
    assert _baseline_acts(db_url, now + 30 * 86400) == []  # baselines loaded with the site: recorded at install
    # the baseline was recorded at installation a month ago; the registry records a bag change on DC-35
    # nine hours ago; nobody records a new baseline
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE points SET baseline_at = now() - interval '30 days' WHERE tag = 'PDT-3501'")
    text = FULL.read_text(encoding="utf-8")
    changed = (datetime.now(UTC) - timedelta(hours=9)).isoformat()
    text = text.replace("                baseline: 990             # Pa; AQ 4273-2016 §5.1.4\n",
                        f"                baseline: 990             # Pa; AQ 4273-2016 §5.1.4\n"
                        f"                serviced_at: {changed}\n", 1)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    _load(db_url, path)
    assert _baseline_acts(db_url, now) == ["trust.dp.baseline_age@PDT-3501"]
    assert _baseline_acts(db_url, now - 2 * 3600) == []  # 7 h after the change: not yet due
    # the new baseline is recorded (riskwatch rules baseline ...): baseline_at moves past serviced_at
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE points SET baseline = 1000, baseline_at = now(), updated_at = now()"
                     " WHERE tag = 'PDT-3501'")
    assert _baseline_acts(db_url, now) == []
    assert site.enterprises  # loaded


# --- a fast gateway clock, end to end -----------------------------------------------------------------


class MovableClock:
    """The wall clock plus an offset the test moves: real time for MQTT and the DB, a jump for the on-delay."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def mini(db_url: str, broker: LocalMosquitto) -> Site:
    return Site(db_url, broker, Path(__file__).resolve().parent.parent / "fixtures" / "mini_site.yaml")


def _engine_collector(site: Site) -> Iterator[tuple[Collector, MovableClock]]:
    """An in-process collector and rule engine on a clock the test can move."""
    clock = MovableClock()
    engine = RuleEngine(catalog=load_catalog(), clock=clock, tick_s=0.2)
    col = Collector(site.db_url, MqttUrl.parse(site.broker.url(COLLECTOR_USER)), clock=clock, processors=[engine])
    t = threading.Thread(target=col.run, name="collector", daemon=True)
    t.start()
    wait_for(lambda: col.stats.mqtt_connects >= 1, timeout=20, message="collector connected")
    yield col, clock
    col.stop()
    t.join(30)


@pytest.fixture
def engine_collector(mini: Site) -> Iterator[tuple[Collector, MovableClock]]:
    yield from _engine_collector(mini)


def _pub(site: Site, gateway: str, payload: bytes) -> None:
    res = subprocess.run(["mosquitto_pub", *pub_args(site.broker), "-q", "1", "-u", gateway, "-P",
                          site.credentials[gateway], "-t", f"rw/v1/{gateway}/telemetry", "-s"],
                         input=payload, capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr


def test_a_gateway_clock_5_minutes_fast_is_dead_lettered_and_raises_a_candidate(
        mini: Site, engine_collector: tuple[Collector, MovableClock]) -> None:
    col, clock = engine_collector
    ahead_ms = 330_000
    for k in range(3):
        t = int(clock.now() * 1000) + ahead_ms
        _pub(mini, "gw-a1", orjson.dumps({"ts": t, "seq": k + 1,
                                          "readings": [{"tag": "TT-101", "v": 50.0 + k, "ts": t}]}))
    wait_for(lambda: sql_one(mini.db_url, "SELECT count(*) FROM dead_letters WHERE reason = 'timestamp_out_of_range'")
             == 3, timeout=30, message="three readings dead-lettered as from the future")
    assert sql_one(mini.db_url, "SELECT count(*) FROM readings") == 0  # the dead letter is kept, as before
    time.sleep(1.0)  # a few ticks: the skew is seen, the on-delay starts
    alarm = "SELECT count(*) FROM alarm_events WHERE rule_id = 'trust.clock_skew' AND event = 'activate'"
    assert sql_one(mini.db_url, alarm) == 0
    clock.offset += 301  # past the 300 s on-delay on the collector's clock
    wait_for(lambda: sql_one(mini.db_url, alarm) == 1, timeout=20, message="clock-skew alarm")
    assert sql_one(mini.db_url, "SELECT gateway_id FROM alarm_events WHERE rule_id = 'trust.clock_skew'") == "gw-a1"
    assert sql_one(mini.db_url, "SELECT count(*) FROM hazard_candidates WHERE rule_id = 'trust.clock_skew'") == 1
    # the other gateways' clocks were never measured ahead: no alarm for them
    assert sql_one(mini.db_url, "SELECT count(DISTINCT gateway_id) FROM alarm_events WHERE rule_id = "
                                "'trust.clock_skew'") == 1
    assert col.stats.dead_letters >= 3


@pytest.mark.slow
def test_simulate_plays_a_fast_gateway_clock_through_mqtt(db_url: str, broker: LocalMosquitto) -> None:
    """`simulate --scenario gateway_clock_fast`: from at_s the gateway stamps its readings and messages 330 s
    fast; in real time the collector dead-letters every such reading as from the future, keeps what came
    before, and the clock-skew rule raises its candidate once the on-delay has run on the collector's clock."""
    sc = SCENARIOS["gateway_clock_fast"]
    [fault] = sc.faults
    [e] = sc.expects
    site = Site(db_url, broker, sc.site_path)
    runner = _engine_collector(site)
    col, clock = next(runner)
    try:
        # 50 s of history at once, then live: the clock turns fast 10 s into the live part
        start_ms = int(time.time() * 1000) - int((fault.at_s - 10) * 1000)
        res = simulate(site.spec, "127.0.0.1", broker.state.mqtt_port, site.credentials,
                       duration_s=fault.at_s + 15, rate_hz=1.0, batch=50, log_path=None, realtime=True,
                       start_ms=start_ms, scenario=sc, seed=5, gateways=list(sc.gateways), tls=site.tls)
        assert res.acked
        fast = "SELECT count(*) FROM dead_letters WHERE reason = 'timestamp_out_of_range' AND gateway_id = %s"
        wait_for(lambda: sql_one(db_url, fast, (e.gateway,)) > 0, timeout=30, message="fast readings dead-lettered")
        cut = datetime.fromtimestamp((start_ms + fault.at_s * 1000) / 1000, UTC)
        wait_for(lambda: sql_one(db_url, "SELECT count(*) FROM readings") > 0, timeout=30, message="history stored")
        # what was sampled before the clock turned is stored; nothing stamped by the fast clock is
        assert sql_one(db_url, "SELECT max(time) FROM readings") < cut
        assert sql_one(db_url, "SELECT count(*) FROM dead_letters WHERE gateway_id <> %s", (e.gateway,)) == 0
        alarm = "SELECT count(*) FROM alarm_events WHERE rule_id = %s AND event = 'activate' AND gateway_id = %s"
        time.sleep(1.0)
        assert sql_one(db_url, alarm, (e.rule_id, e.gateway)) == 0  # the on-delay runs
        clock.offset += e.assumes["on_delay_s"] + 1  # type: ignore[operator]
        wait_for(lambda: sql_one(db_url, alarm, (e.rule_id, e.gateway)) == 1, timeout=20, message="clock-skew alarm")
        assert sql_one(db_url, "SELECT count(*) FROM hazard_candidates WHERE rule_id = %s", (e.rule_id,)) == 1
    finally:
        next(runner, None)


# --- the data-trust scenarios through real Mosquitto -> collector -> TimescaleDB -------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["impossible_temperature", "copied_filter_temperature", "stuck_co_analyser"])
def test_trust_scenario_end_to_end(name: str, db_url: str, broker: LocalMosquitto,
                                   collector: CollectorProcess) -> None:
    """A frozen analyser, a copied series, an impossible value, played by the simulator on county_full (backfill:
    data time; one scenario per database, as they share a gateway), each raises exactly its candidate(s) inside
    the declared window and no other data-trust alarm."""
    sc = SCENARIOS[name]
    site = Site(db_url, broker, sc.site_path)
    collector.start()
    end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
    start_ms = int(time.time() * 1000) - int((end_s + 20) * 1000)
    res = simulate(site.spec, "127.0.0.1", broker.state.mqtt_port, site.credentials, duration_s=end_s,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=start_ms, scenario=sc, seed=5,
                   gateways=list(sc.gateways), tls=site.tls)
    assert res.acked
    wait_for(lambda: sql_one(db_url, "SELECT count(*) FROM readings") == res.readings_sent, timeout=120)
    time.sleep(0.5)
    want = {(e.rule_id, e.tag) for e in sc.expects}
    acts = activations(db_url)
    check_expected(site, sc, start_ms, res.fault_wall_ms, [a for a in acts if (a[0], a[1]) in want])
    # no other data-trust alarm (the clock-driven common rules may see the rest of the site silent)
    assert {(a[0], a[1]) for a in acts if a[0].startswith("trust.")} == want
