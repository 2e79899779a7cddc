"""Scenarios and backfill: faults hit exactly their points at exactly ``at_s``, windows hold.

No broker: runs go through a recording publisher (``publisher_factory``).
The expected windows are checked twice: against a small oracle over the
models for several seeds, and by playing the scenario through the real pure
rule evaluator (rules.compile + rules.evaluate, no database). The unplug's
real MQTT behaviour (the broker publishing the will) needs a real Mosquitto
and belongs to the integration tier.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from core.errors import ConfigError
from core.readings import Readings
from core.registry import SiteSpec
from rules.compile import DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules
from rules.evaluate import Index, PointState, State, apply, evaluate_batch
from rules.model import (
    DeviationRule,
    DifferenceRule,
    GatewayOfflineRule,
    InterlockRule,
    RateRule,
    StaleRule,
    ThresholdRule,
    load_catalog,
)
from simulators import GatewayStats, default_site_path, load_site, sample_times_ms, simulate, site_models
from simulators.gateway import Value
from simulators.models import FollowModel, SawtoothModel, SteadyModel, build_models
from simulators.run import PublisherFactory, SimResult
from simulators.scenarios import (
    CO_111_BAND,
    CO_111_DECIMALS,
    CO_111_NOISE,
    FT_601_602_DIFF_BAND,
    GW_CEM_02_POINTS,
    PDT_801_BAND,
    PDT_801_BASELINE,
    PT_501_BAND,
    SCENARIOS,
    ClockAhead,
    Expected,
    Ramp,
    Scenario,
    ScenarioError,
    SetBits,
    StepBy,
    StepScale,
    StepTo,
    StopPoint,
    Text,
    Unplug,
    apply_value_faults,
    fluctuation_bound,
    get_scenario,
)

MIN = 60_000
SEEDS = [0, 1, 2, 3, 4]
#: The scenarios of the demo site (county_full.yaml's: tests/unit/test_supervision_fidelity.py).
COUNTY = {n: s for n, s in SCENARIOS.items() if s.site == "county.yaml"}


@pytest.fixture(scope="module")
def site() -> SiteSpec:
    return load_site(default_site_path())


_SITES: dict[str, SiteSpec] = {}


def _site_of(scenario: Scenario) -> SiteSpec:
    """The sample site a scenario plays on (parsed once per file)."""
    if scenario.site not in _SITES:
        _SITES[scenario.site] = load_site(scenario.site_path)
    return _SITES[scenario.site]


# --- a publisher that records, acknowledges lazily and can be unplugged ----------------------


@dataclass
class Recorder:
    gateway_id: str
    messages: list[tuple[list[str], list[Value], list[int]]] = field(default_factory=list)
    sent_wall_ms: list[float] = field(default_factory=list)  # when each message was handed over
    unplugged_after: int | None = None  # messages published before the cut
    unplugged_wall_ms: float = 0.0
    closed: bool = False
    lazy_acks: bool = False  # PUBACKs arrive only when the run waits for its window
    acked: int = 0
    max_pending: int = 0
    windows: list[int] = field(default_factory=list)
    clock_offset_ms: int = 0  # simulators.run.ClockShiftable: a gateway clock running fast
    offsets: list[int] = field(default_factory=list)  # the clock offset each message was stamped with

    def start(self, timeout: float = 10.0) -> None:
        pass

    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value],
                          times_ms: Sequence[int]) -> int:
        assert self.unplugged_after is None, "published after the unplug"
        self.messages.append((list(tags), list(values), list(times_ms)))
        self.offsets.append(self.clock_offset_ms)
        self.sent_wall_ms.append(time.time() * 1000)
        if not self.lazy_acks:
            self.acked = len(self.messages)
        self.max_pending = max(self.max_pending, len(self.messages) - self.acked)
        return len(self.messages)

    def wait_acked(self, timeout: float) -> bool:
        self.acked = len(self.messages)
        return True

    def wait_window(self, max_pending: int, timeout: float) -> None:
        self.windows.append(max_pending)
        self.acked = max(self.acked, len(self.messages) - max_pending)

    def unplug(self, timeout: float = 5.0) -> bool:
        self.unplugged_after = len(self.messages)
        self.unplugged_wall_ms = time.time() * 1000
        return True

    def stats(self) -> GatewayStats:
        n = len(self.messages)
        return GatewayStats(self.gateway_id, n, sum(len(m[0]) for m in self.messages), n, self.acked, 1, 0)

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


def recorders(lazy_acks: bool = False) -> tuple[dict[str, Recorder], PublisherFactory]:
    made: dict[str, Recorder] = {}

    def factory(gateway_id: str, password: str, host: str, port: int) -> Recorder:
        made[gateway_id] = Recorder(gateway_id, lazy_acks=lazy_acks)
        return made[gateway_id]

    return made, factory


def _creds(site: SiteSpec) -> dict[str, str]:
    return {g.id: "pw" for _, g in site.gateways()}


Series = dict[tuple[str, str], list[tuple[int, Value]]]


def _series(made: dict[str, Recorder]) -> Series:
    out: Series = {}
    for gw, rec in made.items():
        for tags, values, times in rec.messages:
            for tag, v, ts in zip(tags, values, times, strict=True):
                out.setdefault((gw, tag), []).append((ts, v))
    return out


def _backfill(site: SiteSpec, start_ms: int, duration_s: float, scenario: Scenario | None,
              gateways: list[str] | None = None, seed: int = 3, batch: int = 50,
              lazy_acks: bool = False) -> tuple[SimResult, dict[str, Recorder]]:
    made, factory = recorders(lazy_acks)
    res = simulate(site, "h", 1, _creds(site), duration_s, 1.0, batch, None, seed, gateways,
                   publisher_factory=factory, realtime=False, start_ms=start_ms, scenario=scenario)
    return res, made


# --- the catalogue of scenarios ------------------------------------------------------------


def test_get_scenario_names_the_known_ones() -> None:
    assert get_scenario("burst_filter_bag") is SCENARIOS["burst_filter_bag"]
    with pytest.raises(ScenarioError, match="unknown scenario 'nope'.*coal_bin_self_heating.*gateway_unplugged"):
        get_scenario("nope")
    assert set(COUNTY) == {"coal_bin_self_heating", "burst_filter_bag", "cooling_water_leak",
                              "gas_overpressure_esv_stuck", "spark_detector_offline",
                              "fire_controller_manual", "gateway_unplugged"}
    assert all(s.site_path.is_file() for s in SCENARIOS.values())
    for s in SCENARIOS.values():
        assert s.title.zh and s.title.en and s.description.zh and s.description.en
        assert s.faults and s.expects
        assert all(e.earliest_s <= e.latest_s for e in s.expects)
        # The recommended run covers every window.
        assert all(e.at_s + e.latest_s < s.duration_s for e in s.expects)
    assert {n for n, s in COUNTY.items() if s.wall_clock} == {"spark_detector_offline", "gateway_unplugged"}


def test_scenarios_point_at_real_points_and_their_documented_bands(site: SiteSpec) -> None:
    models = site_models(site)
    for s in COUNTY.values():
        s.check(models)  # every gateway and tag exists
        for e in s.expects:
            assert e.gateway in models
            assert e.tag == e.gateway or e.tag in models[e.gateway]
    gw = {(d.gateway, p.tag): p for _, _, d, p in site.points()}
    assert tuple(gw[("gw-cem-01", "CO-111")].sim["normal"]) == CO_111_BAND  # type: ignore[index]
    co = models["gw-cem-01"]["CO-111"]
    assert isinstance(co, SteadyModel)
    assert (co.params.noise, co.params.drift, co.params.drift_period_s, co.params.decimals) == (
        CO_111_NOISE["noise"], CO_111_NOISE["drift"], CO_111_NOISE["drift_period_s"], CO_111_DECIMALS)
    dp = models["gw-fdy-02"]["PDT-801"]
    assert isinstance(dp, SawtoothModel)
    assert dp.normal == PDT_801_BAND and dp.params.baseline == PDT_801_BASELINE
    registered = gw[("gw-fdy-02", "PDT-801")].baseline
    assert registered is None or registered == PDT_801_BASELINE
    ft = models["gw-fdy-01"]["FT-602"]
    assert isinstance(ft, FollowModel) and ft.params.diff_normal == FT_601_602_DIFF_BAND
    assert models["gw-ref-01"]["PT-501"].normal == PT_501_BAND
    assert tuple(models["gw-cem-02"]) == GW_CEM_02_POINTS
    # The interlocks need the protective point in its unsafe state all along.
    t = np.arange(0.0, 86_400.0, 1.0)
    assert np.all(models["gw-ref-01"]["XV-501"].value(t) == 1)


def _assumption(rule: object, key: str) -> float:
    if isinstance(rule, ThresholdRule | DifferenceRule) and key in rule.limits:
        return rule.limits[key]
    if isinstance(rule, StaleRule) and key == "after_s":
        return max(rule.intervals * 1.0, rule.min_s)  # every sample-site point has interval_s 1
    if isinstance(rule, GatewayOfflineRule) and key == "after_s":
        return rule.silent_s
    if isinstance(rule, DeviationRule) and key == "baseline":
        return PDT_801_BASELINE  # the point's, not the rule's (checked above)
    value = getattr(rule, key)
    assert isinstance(value, int | float)
    return float(value)


def test_expected_alarms_assume_the_catalogs_parameters() -> None:
    catalog = load_catalog()
    for s in COUNTY.values():
        for e in s.expects:
            base, _, limit = e.rule_id.partition(":")
            assert base in catalog.rules, f"{s.name}: no rule {base}"
            _, rule = catalog.rules[base]
            if limit:
                assert isinstance(rule, ThresholdRule | DifferenceRule) and limit in rule.limits
            assert e.candidate == rule.candidate, (s.name, e.rule_id)
            assert not rule.optional, (s.name, e.rule_id)
            for key, value in e.assumes.items():
                assert _assumption(rule, key) == value, (s.name, e.rule_id, key)
            if isinstance(rule, InterlockRule):
                assert "hold_s" in e.assumes
            elif isinstance(rule, RateRule | ThresholdRule | DifferenceRule | DeviationRule):
                assert "on_delay_s" in e.assumes


# --- faults at the model level ---------------------------------------------------------------


def test_fault_values_are_the_normal_values_transformed_from_at_s(site: SiteSpec) -> None:
    t = np.arange(0.0, 1200.0, 1.0)
    for seed in SEEDS:
        normal = site_models(site, seed)
        faulty = {s.name: s.apply(normal) for s in COUNTY.values()}
        co = faulty["coal_bin_self_heating"]["gw-cem-01"]["CO-111"].value(t)
        co0 = normal["gw-cem-01"]["CO-111"].value(t)
        dt = np.maximum(t - 60.0, 0.0)
        assert np.array_equal(co[t < 60], co0[t < 60])
        # Faults act on the unrounded value: one rounding on each side (0.05 at 1 decimal).
        assert np.allclose(co, np.minimum(co0 + 20.0 * dt / 60.0, 300.0), atol=0.1001)
        assert co.max() == 300.0  # the cap holds once reached
        tt = faulty["coal_bin_self_heating"]["gw-cem-01"]["TT-111"].value(t)
        assert np.allclose(tt, normal["gw-cem-01"]["TT-111"].value(t) + dt / 60.0, atol=0.1001)
        dp = faulty["burst_filter_bag"]["gw-fdy-02"]["PDT-801"].value(t)
        dp0 = normal["gw-fdy-02"]["PDT-801"].value(t)
        assert np.array_equal(dp[t < 60], dp0[t < 60])
        assert np.allclose(dp[t >= 60], 0.4 * dp0[t >= 60], atol=0.5 + 0.4 * 0.5 + 1e-9)
        leak = faulty["cooling_water_leak"]["gw-fdy-01"]
        assert np.allclose(leak["FT-602"].value(t), normal["gw-fdy-01"]["FT-602"].value(t) - 6.0 * (t >= 60),
                           atol=0.0051)
        assert np.all(leak["JS-601"].value(t) == 1)
        pt = faulty["gas_overpressure_esv_stuck"]["gw-ref-01"]["PT-501"].value(t)
        assert np.all(pt[t >= 60] == 12.0) and pt[t < 60].max() < 8.6
        fire = faulty["fire_controller_manual"]["gw-cem-02"]
        assert fire["HS-301"].value(t).tolist() == [0.0] * 30 + [1.0] * 1170
        assert fire["FAC-301"].value(t).tolist() == [1.0] * 30 + [2049.0] * 1170
        assert fire["FAC-301"].integral  # still sent as a JSON integer


def test_a_faulted_source_takes_its_followers_with_it() -> None:
    ms = build_models([
        ("JS", {"model": "state", "value": 1, "normal": [1, 1]}),
        ("FI", {"model": "steady", "base": 30, "normal": [30, 30]}),
        ("FO", {"model": "follow", "of": "FI", "gain": 1.0, "normal": [30, 30]}),
        ("TO", {"model": "follow", "of": "FI", "offset": 10, "gate": "JS", "offset_off": 2, "normal": [32, 40]}),
    ], seed=0, scope="gw")
    out = apply_value_faults(ms, [StepBy("gw", "FI", 5.0, delta=-10.0), StepTo("gw", "JS", 7.0, value=0.0)])
    t = np.array([0.0, 6.0, 8.0])
    assert out["FI"].value(t).tolist() == [30.0, 20.0, 20.0]
    assert out["FO"].value(t).tolist() == [30.0, 20.0, 20.0]  # same water
    assert out["TO"].value(t).tolist() == [40.0, 30.0, 22.0]  # and the gate
    assert ms["FO"].value(t).tolist() == [30.0, 30.0, 30.0]  # the site's own models are untouched


# --- faults in a run: exactly the intended points, from exactly at_s ------------------------


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_scenario_changes_exactly_its_points_from_at_s(name: str) -> None:
    scenario = SCENARIOS[name]
    site = _site_of(scenario)
    gateways = list(scenario.gateways)
    run_s = max(300.0, max(f.at_s for f in scenario.faults) + 60.0)  # every fault inside the run
    start = int(time.time() * 1000) - int(run_s * 1000) - MIN
    _, normal_pubs = _backfill(site, start, run_s, None, gateways)
    res, pubs = _backfill(site, start, run_s, scenario, gateways)
    normal, faulty = _series(normal_pubs), _series(pubs)
    changed: dict[tuple[str, str], int] = {}  # point -> data time of its first change
    for key, ref in normal.items():
        got = faulty.get(key, [])
        first = next((i for i, (a, b) in enumerate(zip(ref, got, strict=False)) if a != b), min(len(ref), len(got)))
        if first < len(ref) or len(got) != len(ref):
            changed[key] = ref[first][0] if first < len(ref) else got[first][0]
        assert got[:first] == ref[:first]
    assert set(faulty) <= set(normal)

    expected: dict[tuple[str, str], float] = {}
    for f in scenario.faults:
        if isinstance(f, Unplug | ClockAhead):  # every point of the gateway: cut, or stamped fast
            expected.update({(f.gateway, tag): f.at_s for tag in site_models(site)[f.gateway]})
        elif not (isinstance(f, StepTo) and f.at_s == 0):  # a guard that holds a state: no change
            # several faults on one point: the first one changes it
            expected[(f.gateway, f.tag)] = min(f.at_s, expected.get((f.gateway, f.tag), math.inf))
    assert set(changed) == set(expected)
    ramps = {(f.gateway, f.tag): f for f in scenario.faults if isinstance(f, Ramp)}
    models = site_models(site)
    for key, at_s in expected.items():
        offset = changed[key] - start
        # A ramp starts from the normal value: it shows once it has moved a rounding step.
        slack_s = 1.0
        if key in ramps:
            slack_s += 10.0 ** -models[key[0]][key[1]].decimals * 60.0 / abs(ramps[key].per_min)
        assert at_s * 1000 <= offset <= (at_s + slack_s) * 1000, (key, offset)
    for f in scenario.faults:
        if isinstance(f, ClockAhead):  # same values, stamps ahead_s fast from at_s, and so is each message's ts
            ahead = round(f.ahead_s * 1000)
            cut = start + f.at_s * 1000
            for tag in models[f.gateway]:
                want = [(ts + ahead if ts >= cut else ts, v) for ts, v in normal[(f.gateway, tag)]]
                assert faulty[(f.gateway, tag)] == want, tag
            rec = pubs[f.gateway]
            assert {off for (_, _, times), off in zip(rec.messages, rec.offsets, strict=True)
                    if times[-1] - ahead >= cut} == {ahead}
            assert {off for (_, _, times), off in zip(rec.messages, rec.offsets, strict=True)
                    if times[-1] < cut} == {0}
            assert all(off == 0 for g, r in pubs.items() if g != f.gateway for off in r.offsets)
        if isinstance(f, StopPoint):
            stamps = [ts for ts, _ in faulty[(f.gateway, f.tag)]]
            assert stamps == sample_times_ms(start, 0, round(f.at_s), 1.0).tolist()
            others = [k for k in faulty if k[0] == f.gateway and k != (f.gateway, f.tag)]
            assert others and all(len(faulty[k]) == round(run_s) for k in others)  # the gateway carries on
        if isinstance(f, Unplug):
            rec = pubs[f.gateway]
            assert rec.unplugged_after == len(rec.messages) and not normal_pubs[f.gateway].unplugged_after
            sent = {ts for _, _, times in rec.messages for ts in times}
            assert max(sent) == start + round(f.at_s * 1000) - 1000 and len(sent) == round(f.at_s)
            assert res.gateways[f.gateway].unplugged_at_ms == start + round(f.at_s * 1000)
    assert set(res.fault_wall_ms) == {f.at_s for f in scenario.faults}
    assert res.scenario == name


def test_stopped_point_is_absent_from_the_messages_after_at_s(site: SiteSpec) -> None:
    start = int(time.time() * 1000) - 11 * MIN
    res, pubs = _backfill(site, start, 60.0, get_scenario("spark_detector_offline"), ["gw-fdy-02"], batch=7)
    cutoff = start + 20_000
    for tags, _, times in pubs["gw-fdy-02"].messages:
        assert all(tag != "YS-801" or ts < cutoff for tag, ts in zip(tags, times, strict=True))
        assert times == sorted(times)
    assert res.readings_sent == 60 * 8 - 40


# --- backfill ------------------------------------------------------------------------------


def test_backfill_sends_ten_minutes_of_data_time_in_seconds(site: SiteSpec) -> None:
    now = int(time.time() * 1000)
    start = now - 11 * MIN
    t0 = time.monotonic()
    res, pubs = _backfill(site, start, 600.0, None, batch=20)
    wall = time.monotonic() - t0
    assert wall < 5.0, wall
    assert not res.realtime and res.kept_up and res.acked and not res.stopped
    assert res.start_ms == start and res.data_end_ms == start + 600_000
    assert res.samples_per_point == 600 and res.readings_sent == 600 * len(site.points())
    expected = sample_times_ms(start, 0, 600, 1.0).tolist()
    assert expected[-1] == start + 599_000
    for gw, rec in pubs.items():
        sent = [ts for _, _, times in rec.messages for ts in times]
        assert sent == sorted(sent), gw  # published in sample-time order
        assert all(now - 7 * 86_400_000 <= ts <= now + 5 * MIN for ts in sent)
    for key, series in _series(pubs).items():
        assert [ts for ts, _ in series] == expected, key


def test_backfill_values_equal_a_realtime_runs_values(site: SiteSpec) -> None:
    """Backfill and real time differ in pacing only: same models, same timestamps rule."""
    start = int(time.time() * 1000)
    _, back = _backfill(site, start, 2.0, None, ["gw-cem-01"], seed=4)
    made, factory = recorders()
    res = simulate(site, "h", 1, _creds(site), 2.0, 1.0, 50, None, 4, ["gw-cem-01"], publisher_factory=factory,
                   start_ms=start)
    assert res.realtime and res.start_ms == start
    assert _series(made) == _series(back)


def test_backfill_keeps_the_unacknowledged_window_bounded(site: SiteSpec) -> None:
    start = int(time.time() * 1000) - 250 * MIN
    res, pubs = _backfill(site, start, 14_400.0, None, ["gw-fdy-01"], batch=5000, lazy_acks=True)
    rec = pubs["gw-fdy-01"]
    window = max(rec.windows)
    assert window == 20  # 100 000 readings awaiting PUBACK, as messages of 5000
    assert res.readings_sent == 14_400 * 13 > 30 * 5000  # more than the window holds
    # One generation step (5000 readings) adds at most one message beyond the window.
    assert window <= rec.max_pending <= window + 1


def test_backfill_warns_when_timestamps_leave_the_collectors_window(
        site: SiteSpec, caplog: pytest.LogCaptureFixture) -> None:
    _backfill(site, int(time.time() * 1000), 600.0, None, ["gw-ref-01"])
    assert "dead-lettered" in caplog.text


def test_realtime_with_a_past_start_sends_the_history_at_once_then_goes_live(site: SiteSpec) -> None:
    made, factory = recorders()
    start = int(time.time() * 1000) - 5000
    t0 = time.monotonic()
    res = simulate(site, "h", 1, _creds(site), 6.0, 10.0, 1000, None, gateways=["gw-cem-01"],
                   publisher_factory=factory, start_ms=start)
    wall = time.monotonic() - t0
    assert 0.8 <= wall <= 2.0 and res.kept_up and res.realtime and res.start_ms == start
    rec = made["gw-cem-01"]
    series = _series(made)
    assert all([ts for ts, _ in v] == sample_times_ms(start, 0, 60, 10.0).tolist() for v in series.values())
    for times, sent_at in zip((m[2] for m in rec.messages), rec.sent_wall_ms, strict=True):
        assert sent_at >= max(times) - 2  # never before the sample's time
        if max(times) < start + 4500:
            assert sent_at - start < 5000 + 500  # history goes out at once


# --- real time with faults -------------------------------------------------------------------


def test_faults_follow_data_time_in_a_realtime_run(site: SiteSpec) -> None:
    scenario = Scenario("quick", Text("测试", "test"), Text("测试", "test"),
                        (StopPoint("gw-fdy-02", "YS-801", 0.5), Unplug("gw-cem-02", 0.75),
                         StepTo("gw-ref-01", "PT-501", 0.5, value=12.0)), ())
    made, factory = recorders()
    t0 = time.time()
    res = simulate(site, "h", 1, _creds(site), 1.5, 20.0, 1000, None, publisher_factory=factory,
                   gateways=["gw-fdy-02", "gw-cem-02", "gw-ref-01"], scenario=scenario)
    series = _series(made)
    start = res.start_ms
    assert [ts for ts, _ in series[("gw-fdy-02", "YS-801")]] == sample_times_ms(start, 0, 10, 20.0).tolist()
    assert len(series[("gw-fdy-02", "TT-801")]) == 30
    assert max(ts for ts, _ in series[("gw-cem-02", "TT-201")]) == start + 700
    assert res.gateways["gw-cem-02"].unplugged_at_ms == start + 750
    assert all((v == 12.0) == (ts >= start + 500) for ts, v in series[("gw-ref-01", "PT-501")])
    # The cut happened when the wall clock reached +0.75 s, not before (nor much after).
    cut = made["gw-cem-02"].unplugged_wall_ms
    assert start + 750 - 2 <= cut < start + 750 + 100
    assert cut - 2 <= res.fault_wall_ms[0.75] < cut + 100 and start >= t0 * 1000 - 1
    assert made["gw-cem-02"].unplugged_after == len(made["gw-cem-02"].messages)


def test_scenario_needs_its_gateways_and_an_unpluggable_publisher(site: SiteSpec) -> None:
    made, factory = recorders()
    with pytest.raises(ConfigError, match="needs gateway.*gw-cem-02"):
        simulate(site, "h", 1, _creds(site), 1.0, 1.0, 10, None, gateways=["gw-cem-01"],
                 publisher_factory=factory, realtime=False, scenario=get_scenario("gateway_unplugged"))
    bad = Scenario("bad", Text("坏", "bad"), Text("坏", "bad"), (StepTo("gw-cem-01", "XX-1", 1.0, value=1.0),), ())
    with pytest.raises(ScenarioError, match="no point 'XX-1' on gw-cem-01"):
        simulate(site, "h", 1, _creds(site), 1.0, 1.0, 10, None, publisher_factory=factory, realtime=False,
                 scenario=bad)

    class NoUnplug:
        def __init__(self, gateway_id: str, password: str, host: str, port: int):
            self.rec = Recorder(gateway_id)

        def __getattr__(self, name: str) -> object:
            if name == "unplug":
                raise AttributeError(name)
            return getattr(self.rec, name)

    with pytest.raises(ConfigError, match="has no unplug"):
        simulate(site, "h", 1, _creds(site), 1.0, 1.0, 10, None, publisher_factory=NoUnplug,  # type: ignore[arg-type]
                 realtime=False, scenario=get_scenario("gateway_unplugged"))


# --- expected windows against the models ------------------------------------------------------
#
# A small oracle with rules.evaluate's semantics at 1 Hz: a condition confirmed by the first
# reading at least on_delay (hold) after it became true, restarting whenever it turns false;
# rate = (v(t) - v(t - window)) per minute.

Arr = npt.NDArray[np.float64]
Condition = Callable[[dict[str, Arr]], npt.NDArray[np.bool_]]


def _rate(v: Arr, window: int) -> Arr:
    r = np.full(v.size, np.nan)
    r[window:] = (v[window:] - v[:-window]) * 60.0 / window
    return r


def _conditions(e: Expected) -> tuple[str, Condition, float]:
    """(gateway, condition over that gateway's series, delay) of one expected alarm."""
    a = e.assumes
    conds: dict[str, Condition] = {
        "bm.coal.co:hi": lambda s: s["CO-111"] >= a.get("hi", math.inf),
        "bm.coal.co:hihi": lambda s: s["CO-111"] >= a.get("hihi", math.inf),
        "bm.coal.co_rate": lambda s: _rate(s["CO-111"], int(a.get("window_s", 1))) >= a.get("rise_per_min", 0),
        "dust.dp.deviation": lambda s: np.abs(s["PDT-801"] - a.get("baseline", 0)) >= a.get("baseline", 0)
        * a.get("pct", 0) / 100,
        "mach.cooling.diff:hi": lambda s: s["FT-601"] - s["FT-602"] >= a.get("hi", math.inf),
        "mach.cooling.interlock": lambda s: ((s["FT-601"] - s["FT-602"] >= 3.0) | (s["TT-602"] >= 55)
                                             | (s["PT-601"] <= 0.2)) & (s["JS-601"] != 0),
        "bm.gas.pressure:hi": lambda s: s["PT-501"] >= a.get("hi", math.inf),
        "bm.gas.esv_interlock": lambda s: ((s["PT-501"] >= 10) | (s["PT-501"] <= 6)) & (s["XV-501"] != 0),
        "fire.controller.manual": lambda s: s["HS-301"] == 1,
    }
    return e.gateway, conds[e.rule_id], a.get("hold_s", a.get("on_delay_s", 0.0))


def _confirmed(t: Arr, cond: npt.NDArray[np.bool_], delay: float) -> float | None:
    since: float | None = None
    for ti, c in zip(t.tolist(), cond.tolist(), strict=True):
        if not c:
            since = None
            continue
        since = ti if since is None else since
        if ti - since >= delay:
            return float(ti)
    return None


@pytest.mark.parametrize("seed", SEEDS)
def test_expected_windows_hold_for_the_models(site: SiteSpec, seed: int) -> None:
    t = np.arange(0.0, 600.0, 1.0)
    normal = site_models(site, seed)
    for s in COUNTY.values():
        faulty = s.apply(normal)
        for e in s.expects:
            if e.kind != "data":
                continue
            gw, cond, delay = _conditions(e)
            series = {tag: m.value(t) for tag, m in faulty[gw].items()}
            at = _confirmed(t, cond(series), delay)
            assert at is not None, (s.name, e.rule_id, seed)
            assert e.earliest_s <= at - e.at_s <= e.latest_s, (s.name, e.rule_id, seed, at - e.at_s)
            calm = {tag: m.value(t) for tag, m in normal[gw].items()}
            assert _confirmed(t, cond(calm), delay) is None, (s.name, e.rule_id, "fires on normal data")


def test_co_ramp_crosses_24_ppm_where_the_window_says() -> None:
    e = next(x for x in SCENARIOS["coal_bin_self_heating"].expects if x.rule_id == "bm.coal.co:hi")
    # Top of the normal band: 13 + tau/3 = 24 at tau = 33; bottom: 0 + tau/3 = 24 at 72.
    assert (e.earliest_s, e.latest_s) == (33 + 5, 72 + 5 + 1)
    assert e.window_ms(1_000_000) == (1_000_000 + (60 + 38) * 1000, 1_000_000 + (60 + 78) * 1000)


def test_co_fluctuation_bound_covers_a_day_of_normal_data(site: SiteSpec) -> None:
    bound = fluctuation_bound(CO_111_NOISE["noise"], CO_111_NOISE["drift"], CO_111_NOISE["drift_period_s"],
                              CO_111_DECIMALS, 60.0)
    assert 8.0 < bound < 8.5
    t = np.arange(0.0, 86_400.0, 1.0)
    for seed in range(10):
        v = site_models(site, seed)["gw-cem-01"]["CO-111"].value(t)
        assert np.abs(v[60:] - v[:-60]).max() <= bound


def test_fault_descriptions_read_like_the_incident() -> None:
    assert Ramp("g", "CO-111", 60.0, per_min=20.0, limit=300.0).describe() == "CO-111 +20/min from +60 s, limit 300"
    assert StepScale("g", "PDT-801", 60.0, factor=0.4).describe() == "PDT-801 x0.4 from +60 s"
    assert SetBits("g", "FAC-301", 30.0, mask=2048).describe() == "FAC-301 |= 2048 from +30 s"
    assert Unplug("gw-cem-02", 20.0).describe() == "gw-cem-02 unplugged at +20 s"


# --- the real rule evaluator on scenario data ---------------------------------------------------


def _registry(site: SiteSpec) -> tuple[RegistryView, dict[tuple[str, str], int]]:
    points: list[PointRow] = []
    devices: dict[int, DeviceRow] = {}
    plants: dict[str, PlantRow] = {}
    gateways: list[GatewayRow] = []
    ids: dict[tuple[str, str], int] = {}
    for e in site.enterprises:
        for pl in e.plants:
            plants[pl.id] = PlantRow(pl.id, pl.industry, e.id)
            gateways.extend(GatewayRow(g.id, pl.id, g.enabled) for g in pl.gateways)
            for d in pl.devices:
                devices[len(devices) + 1] = DeviceRow(len(devices) + 1, pl.id, d.kind, d.code)
                for p in d.points:
                    ids[(d.gateway, p.tag)] = len(points) + 1
                    points.append(PointRow(len(points) + 1, d.gateway, p.tag, len(devices), p.quantity, p.role,
                                           p.required, p.interval_s, p.setpoints or {}, p.baseline))
    return RegistryView(points, devices, plants, gateways), ids


def _data_alarms(site: SiteSpec, scenario: Scenario | None, seed: int) -> tuple[int, dict[tuple[str, str], float]]:
    """Activations (rule id, tag) -> data-time offset s of a 10-minute backfill, messages in time order."""
    reg, ids = _registry(site)
    compiled = compile_rules(load_catalog(), reg)
    size = len(reg.points) + 1
    index = Index(compiled, size)
    state = State(points=PointState.empty(size), seen=np.zeros(size, bool))
    res, pubs = _backfill(site, int(time.time() * 1000) - 11 * MIN, 600.0, scenario, seed=seed, batch=200)
    msgs = sorted(((m[2][0], gw, m) for gw, rec in pubs.items() for m in rec.messages), key=lambda x: x[0])
    out: dict[tuple[str, str], float] = {}
    for _, gw, (tags, values, times) in msgs:
        batch = Readings(np.array([ids[(gw, t)] for t in tags], np.int32), np.array(times, np.int64) * 1000,
                            np.array(values, np.float64), np.zeros(len(tags), np.int16))
        u, transitions = evaluate_batch(batch, state, index, time.time())
        apply(state, u)
        for tr in transitions:
            inst = compiled.instances[tr.index]
            if tr.kind == "activate" and inst.point_id is not None:
                out.setdefault((inst.rule_id, inst.tags[inst.point_id]), (tr.time_us / 1000 - res.start_ms) / 1000)
    return len(compiled.instances), out


@pytest.mark.parametrize("name", [n for n, s in COUNTY.items() if any(e.kind == "data" for e in s.expects)])
def test_the_rule_evaluator_raises_exactly_the_expected_data_alarms(site: SiteSpec, name: str) -> None:
    """The contract with rules.evaluate: each data alarm inside its window, no other alarm."""
    scenario = SCENARIOS[name]
    n, got = _data_alarms(site, scenario, seed=0)
    assert n > 100
    expected = {(e.rule_id, e.tag): e for e in scenario.expects if e.kind == "data"}
    assert set(got) == set(expected)
    for key, e in expected.items():
        assert e.earliest_s <= got[key] - e.at_s <= e.latest_s, (key, got[key] - e.at_s)


def test_the_rule_evaluator_raises_nothing_on_normal_data(site: SiteSpec) -> None:
    assert _data_alarms(site, None, seed=1)[1] == {}
