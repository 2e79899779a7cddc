"""Every scenario through real Mosquitto -> collector (with the shipped catalog) -> TimescaleDB.

Each scenario must raise exactly its expected alarms (rule id and point or
gateway) inside the window its fault implies; the same plants without an
incident raise nothing over 10+ simulated minutes of noisy data.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from core.services import LocalMosquitto
from simulators.run import default_site_path, simulate
from simulators.scenarios import SCENARIOS, Scenario
from tests.conftest import CollectorProcess, Site, sql_one, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNTY = {n: s for n, s in SCENARIOS.items() if s.site == "county.yaml"}
DATA = sorted(n for n, s in COUNTY.items() if not s.wall_clock)
WALL = sorted(n for n, s in COUNTY.items() if s.wall_clock)


@pytest.fixture
def county(db_url: str, broker: LocalMosquitto) -> Site:
    return Site(db_url, broker, default_site_path())


def activations(db_url: str) -> list[tuple[str, str, float, str]]:
    """(rule id, tag or gateway, epoch ms, subject) of every activation."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            """SELECT e.rule_id, coalesce(p.tag, e.gateway_id), extract(epoch FROM e.time) * 1000, e.subject
               FROM alarm_events e LEFT JOIN points p ON p.id = e.point_id
               WHERE e.event = 'activate' ORDER BY e.time""").fetchall()
    return [(r[0], r[1], float(r[2]), r[3]) for r in rows]


def check_expected(site: Site, sc: Scenario, start_ms: int, fault_wall_ms: dict[float, int],
                   acts: list[tuple[str, str, float, str]]) -> None:
    for e in sc.expects:
        lo, hi = e.window_ms(start_ms, fault_wall_ms if e.kind == "wall" else None)
        hits = [a for a in acts if a[0] == e.rule_id and a[1] == e.tag]
        assert len(hits) == 1, f"{sc.name}: expected one {e.rule_id} on {e.tag}, got {hits} (all: {acts})"
        slack = 1500 if e.kind == "wall" else 0  # the tick runs once a second
        assert lo - slack <= hits[0][2] <= hi + slack, (
            f"{sc.name}: {e.rule_id} on {e.tag} at {hits[0][2] - start_ms:.0f} ms, want [{lo - start_ms}, "
            f"{hi - start_ms}] ms after start")
        if e.candidate:
            n = sql_one(site.db_url, "SELECT count(*) FROM hazard_candidates WHERE rule_id = %s AND subject = %s",
                        (e.rule_id, hits[0][3]))
            assert n == 1, f"{sc.name}: no hazard candidate for {e.rule_id}"


@pytest.mark.parametrize("name", DATA)
def test_data_time_scenario(name: str, county: Site, collector: CollectorProcess) -> None:
    sc = SCENARIOS[name]
    collector.start()
    end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
    start_ms = int(time.time() * 1000) - int((end_s + 20) * 1000)
    res = simulate(county.spec, "127.0.0.1", county.broker.state.mqtt_port, county.credentials, duration_s=end_s,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=start_ms, scenario=sc, seed=5,
                   tls=county.tls)
    assert res.acked
    wait_for(lambda: sql_one(county.db_url, "SELECT count(*) FROM readings") == res.readings_sent, timeout=60)
    time.sleep(0.5)
    acts = activations(county.db_url)
    check_expected(county, sc, start_ms, res.fault_wall_ms, acts)
    # nothing else: the incident's alarms only (the clock-driven common rules have had no time to act)
    expected = {(e.rule_id, e.tag) for e in sc.expects}
    assert {(a[0], a[1]) for a in acts} == expected, acts


@pytest.mark.parametrize("name", WALL)
def test_wall_clock_scenario(name: str, county: Site, collector: CollectorProcess) -> None:
    sc = SCENARIOS[name]
    collector.start()
    history_s = 60.0
    run_s = history_s + max(e.at_s + e.latest_s for e in sc.expects) + 3
    # a minute of history first (sent at once), then live: faults inside the history take effect
    # on the collector's clock when the run reaches them (SimResult.fault_wall_ms)
    start_ms = int(time.time() * 1000) - int(history_s * 1000)
    res = simulate(county.spec, "127.0.0.1", county.broker.state.mqtt_port, county.credentials, duration_s=run_s,
                   rate_hz=1.0, batch=20, log_path=None, realtime=True, start_ms=start_ms, scenario=sc, seed=5,
                   tls=county.tls)
    assert res.acked
    time.sleep(1.5)
    acts = activations(county.db_url)
    check_expected(county, sc, start_ms, res.fault_wall_ms, acts)
    expected = {(e.rule_id, e.tag) for e in sc.expects}
    unexpected = {(a[0], a[1]) for a in acts} - expected
    # a gateway unplugged also silences its points: their stale alarms follow, and only theirs
    gone = {f.gateway for f in sc.faults if type(f).__name__ == "Unplug"}
    silenced = {p.tag for _, _, d, p in county.spec.points() if d.gateway in gone}
    allowed = {(a[0], a[1]) for a in acts if a[0].startswith("common.") and a[1] in silenced}
    assert unexpected - allowed == set(), acts


def test_normal_plants_raise_no_alarm_over_ten_minutes(county: Site, collector: CollectorProcess) -> None:
    collector.start()
    start_ms = int(time.time() * 1000) - 11 * 60 * 1000
    res = simulate(county.spec, "127.0.0.1", county.broker.state.mqtt_port, county.credentials, duration_s=630,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=start_ms, seed=9, tls=county.tls)
    assert res.acked and res.readings_sent >= 600 * 40
    wait_for(lambda: sql_one(county.db_url, "SELECT count(*) FROM readings") == res.readings_sent, timeout=60)
    time.sleep(0.5)
    assert activations(county.db_url) == []
    assert sql_one(county.db_url, "SELECT count(*) FROM hazard_candidates") == 0


# county_full.yaml (issue 14): a few bases end to end; tests/unit/test_supervision_fidelity.py plays every
# scenario through the pure evaluator. Three short ones on three plants, played one after another on one
# loaded site and collector: the gas/ventilation interlock (6(3)), flame failure (7(5)), deflagration (11(3)).
FULL_E2E = ("carbide_silo_gas_no_ventilation", "burner_flame_out_valve_open", "dust_collector_deflagration")


def test_county_full_scenarios_end_to_end(db_url: str, broker: LocalMosquitto, collector: CollectorProcess) -> None:
    scs = [SCENARIOS[n] for n in FULL_E2E]
    site = Site(db_url, broker, scs[0].site_path)
    assert all(sc.site_path == scs[0].site_path for sc in scs)
    collector.start()
    sent = 0
    for sc in scs:
        end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
        start_ms = int(time.time() * 1000) - int((end_s + 20) * 1000)
        res = simulate(site.spec, "127.0.0.1", broker.state.mqtt_port, site.credentials, duration_s=end_s,
                       rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=start_ms, scenario=sc, seed=5,
                       gateways=list(sc.gateways), tls=site.tls)
        assert res.acked
        sent += res.readings_sent
        try:
            wait_for(lambda n=sent: sql_one(db_url, "SELECT count(*) FROM readings") == n, timeout=60)
        except AssertionError:
            raise AssertionError(f"{sc.name}: {sql_one(db_url, 'SELECT count(*) FROM readings')} of {sent} stored; "
                                 f"dead letters {sql_one(db_url, 'SELECT count(*) FROM dead_letters')}, "
                                 f"unmapped {sql_one(db_url, 'SELECT count(*) FROM unmapped_points')}") from None
        time.sleep(0.5)
        acts = [a for a in activations(db_url) if (a[0], a[1]) in {(e.rule_id, e.tag) for e in sc.expects}]
        check_expected(site, sc, start_ms, res.fault_wall_ms, acts)
    # nothing but the incidents' alarms
    want = {(e.rule_id, e.tag) for sc in scs for e in sc.expects}
    assert {(a[0], a[1]) for a in activations(db_url)} == want
