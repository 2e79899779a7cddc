"""Simulator unit tests: sample site, signal models, payloads, timestamps, the run loop.

No broker here: the run loop is driven through a recording publisher (the
MQTT client itself is tested against a scripted broker in
test_simulators_gateway.py and against Mosquitto in the integration tier).
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest

from core.errors import ConfigError, SourceError
from core.registry import SiteSpec
from core.settings import IngestLimits
from ingest.decode import decode_json_v1
from simulators import (
    GatewayStats,
    default_site_path,
    encode_telemetry,
    load_site,
    sample_times_ms,
    simulate,
    site_models,
)
from simulators.gateway import Value
from simulators.models import CounterModel, FollowModel, SawtoothModel, build_models

TEN_MINUTES = np.arange(0.0, 600.0, 1.0)


@pytest.fixture(scope="module")
def site() -> SiteSpec:
    return load_site(default_site_path())


# --- the sample site -------------------------------------------------------


def test_sample_site_validates_and_has_the_expected_shape(site: SiteSpec) -> None:
    assert {p.industry for e in site.enterprises for p in e.plants} == {
        "cement", "refractory", "foundry"}
    assert len(site.enterprises) == 3
    for e in site.enterprises:
        for who in (e.principal, e.controller):
            assert who.phone and who.email and who.email.endswith("@example.com")
    assert 40 <= len(site.points()) <= 60
    for _, gw in site.gateways():
        assert re.fullmatch(r"gw-(cem|ref|fdy)-\d\d", gw.id)
    for _, _, _, pt in site.points():
        assert pt.sim is not None and pt.interval_s == 1
        assert pt.name and re.search(r"[\u4e00-\u9fff]", pt.name), pt.tag


# Points that REGULATIONS.md makes mandatory (判定标准 and the dust-explosion
# data-access spec), by (gateway, tag).
MANDATORY = [
    ("gw-cem-01", t) for t in ("TT-101", "TT-102", "CO-101", "PDT-101", "PT-101",
                               "TT-111", "TT-112", "CO-111")
] + [
    ("gw-ref-01", t) for t in ("JS-401", "FT-401", "TT-401", "PT-501", "XV-501", "AT-501")
] + [
    ("gw-fdy-01", t) for t in ("JS-601", "FT-601", "FT-602", "TT-602", "PT-601",
                               "JS-701", "FT-701", "FT-702", "TT-702", "PT-701")
] + [
    ("gw-fdy-02", t) for t in ("PDT-801", "TT-801", "XA-801", "YS-801")
]


@pytest.mark.parametrize(("gateway", "tag"), MANDATORY)
def test_mandatory_points_are_required(site: SiteSpec, gateway: str, tag: str) -> None:
    found = [pt for _, _, d, pt in site.points() if d.gateway == gateway and pt.tag == tag]
    assert len(found) == 1 and found[0].required


def test_bad_sim_block_points_at_its_line(tmp_path: Path) -> None:
    text = default_site_path().read_text(encoding="utf-8")
    bad = text.replace("sim: {model: steady, base: 8, noise: 1.0,",
                       "sim: {model: steady, base: 8, noise: 5.0,")
    assert bad != text
    path = tmp_path / "site.yaml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(SourceError) as err:
        load_site(path)
    (problem,) = err.value.problems
    # The band the envelope leaves is where the error points.
    expected = next(i for i, line in enumerate(bad.splitlines(), 1) if "normal: [0, 17]" in line)
    assert problem.line == expected
    assert "CO-101" in problem.message and "normal band" in problem.message


def test_unknown_sim_parameter_is_rejected() -> None:
    with pytest.raises(ConfigError, match="gw-x/TT-1: sim: .*nosie"):
        build_models([("TT-1", {"model": "steady", "base": 1, "nosie": 1, "normal": [0, 2]})],
                     seed=0, scope="gw-x")


# --- signal models ---------------------------------------------------------


def _values(site: SiteSpec, seed: int, t: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    return {(gw, tag): m.value(t) for gw, ms in site_models(site, seed).items()
            for tag, m in ms.items()}


def test_models_are_deterministic_for_a_seed(site: SiteSpec) -> None:
    a = _values(site, 7, TEN_MINUTES)
    b = _values(site, 7, TEN_MINUTES)
    c = _values(site, 8, TEN_MINUTES)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    noisy = [k for k in a if np.ptp(a[k]) > 0]
    assert len(noisy) > 25
    assert sum(not np.array_equal(a[k], c[k]) for k in noisy) == len(noisy)


def test_values_do_not_depend_on_how_time_is_chunked(site: SiteSpec) -> None:
    t = np.arange(0.0, 30.0, 0.001)
    for ms in site_models(site, 3).values():
        for m in ms.values():
            whole = m.value(t)
            parts = np.concatenate([m.value(c) for c in np.array_split(t, 7)])
            assert np.array_equal(whole, parts)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_normal_data_stays_in_documented_bands_for_ten_minutes(site: SiteSpec, seed: int) -> None:
    _check_bands(site, seed, TEN_MINUTES)


def test_normal_data_stays_in_bands_at_1khz_and_over_a_day(site: SiteSpec) -> None:
    _check_bands(site, 0, np.arange(0.0, 20.0, 0.001))  # 20k noise draws per point
    _check_bands(site, 0, np.arange(0.0, 86_400.0, 1.0))  # daily cycle, melt schedules


def _check_bands(site: SiteSpec, seed: int, t: np.ndarray) -> None:
    for gw, ms in site_models(site, seed).items():
        for tag, m in ms.items():
            v = m.value(t)
            lo, hi = m.normal
            assert lo <= v.min() and v.max() <= hi, (gw, tag, v.min(), v.max(), (lo, hi))
            if isinstance(m, FollowModel) and m.params.diff_normal is not None:
                d = m.source.value(t) - v
                dlo, dhi = m.params.diff_normal
                assert dlo <= d.min() and d.max() <= dhi, (gw, tag, d.min(), d.max())
            if isinstance(m, SawtoothModel) and m.params.baseline is not None:
                b = m.params.baseline
                assert 0.8 * b <= v.min() and v.max() <= 1.2 * b, (gw, tag)


def test_pressure_difference_sawtooth_drops_at_each_cleaning(site: SiteSpec) -> None:
    models = site_models(site, 0)
    saws = [(gw, tag, m) for gw, ms in models.items() for tag, m in ms.items()
            if isinstance(m, SawtoothModel)]
    assert {tag for _, tag, _ in saws} == {"PDT-101", "PDT-801"}
    for _, _, m in saws:
        p = m.params
        starts = m.cleaning_starts(0.0, 600.0)
        assert abs(len(starts) - 600.0 / p.cycle_s) <= 1
        assert np.allclose(np.diff(starts), p.cycle_s)
        before = m.value(starts - 0.5)
        after = m.value(starts + p.clean_s + 0.5)
        assert np.all(before - after > 0.6 * (p.high - p.peak_jitter - p.low))
        # Between cleanings the cake builds up: the noise-free drop rises.
        s0 = starts[0]
        rising = m.smooth(np.linspace(s0 + p.clean_s + 1, s0 + p.cycle_s - 1, 50))
        assert np.all(np.diff(rising) > 0)


def test_cleaning_counter_counts_the_sawtooth_cycles(site: SiteSpec) -> None:
    ms = site_models(site, 0)["gw-fdy-02"]
    saw, counter = ms["PDT-801"], ms["QI-802"]
    assert isinstance(saw, SawtoothModel) and isinstance(counter, CounterModel)
    starts = saw.cleaning_starts(0.0, 600.0)
    v = counter.value(TEN_MINUTES)
    assert v[0] == counter.params.base
    assert v[-1] - v[0] == len(starts)
    assert np.all(counter.value(starts + 0.001) - counter.value(starts - 0.001) == 1)


def test_furnace_outlet_temperature_follows_power() -> None:
    ms = build_models([
        ("JS", {"model": "state", "schedule": [[0, 1], [60, 0]], "period_s": 100,
                "normal": [0, 1]}),
        ("TI", {"model": "steady", "base": 30, "normal": [30, 30]}),
        ("TO", {"model": "follow", "of": "TI", "offset": 10, "gate": "JS", "offset_off": 2,
                "normal": [32, 40]}),
    ], seed=0, scope="gw")
    assert ms["TO"].value(np.array([10.0, 70.0, 110.0])).tolist() == [40.0, 32.0, 40.0]


# --- payload and timestamps ------------------------------------------------


def test_payload_matches_the_json_v1_contract() -> None:
    now_ms = int(time.time() * 1000)
    tags = ["TT-101", "PDT-101", "JS-401"]
    values: list[Value] = [71.2, 1180.0, 1]
    times = [now_ms - 2000, now_ms - 1000, now_ms]
    payload = encode_telemetry(42, now_ms, tags, values, times)
    doc = orjson.loads(payload)
    assert set(doc) == {"ts", "seq", "readings"}
    assert doc["ts"] == now_ms and doc["seq"] == 42
    assert doc["readings"][0] == {"tag": "TT-101", "v": 71.2, "ts": now_ms - 2000}
    assert isinstance(doc["readings"][2]["v"], int)
    # The collector's own decoder accepts every reading unchanged.
    dec = decode_json_v1(payload, now_ms / 1000, IngestLimits())
    assert not dec.rejected
    assert dec.tags == tags and dec.values == [71.2, 1180.0, 1.0]
    assert dec.times_us == [t * 1000 for t in times]


@pytest.mark.parametrize("rate", [1000.0, 999.0, 500.0, 333.3, 7.0, 1.0, 0.5])
def test_sample_timestamps_are_unique_and_chunk_independent(rate: float) -> None:
    start = 1_764_460_800_123
    n = 5000
    whole = sample_times_ms(start, 0, n, rate)
    assert whole[0] == start and np.all(np.diff(whole) > 0)
    assert whole[-1] == start + round((n - 1) * 1000 / rate)
    parts = np.concatenate([sample_times_ms(start, a, min(a + 377, n), rate)
                            for a in range(0, n, 377)])
    assert np.array_equal(whole, parts)


# --- the run loop, through a recording publisher ----------------------------


class RecordingPublisher:
    """Stands in for the MQTT client: records what the loop hands over."""

    instances: dict[str, RecordingPublisher] = {}

    def __init__(self, gateway_id: str, password: str, host: str, port: int):
        self.gateway_id = gateway_id
        self.messages: list[tuple[list[str], list[Value], list[int]]] = []
        self.closed = False
        RecordingPublisher.instances[gateway_id] = self

    def start(self, timeout: float = 10.0) -> None:
        pass

    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value],
                          times_ms: Sequence[int]) -> int:
        self.messages.append((list(tags), list(values), list(times_ms)))
        return len(self.messages)

    def wait_acked(self, timeout: float) -> bool:
        return True

    def stats(self) -> GatewayStats:
        n = len(self.messages)
        return GatewayStats(self.gateway_id, n, sum(len(m[0]) for m in self.messages), n, n, 1, 0)

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


def _creds(site: SiteSpec) -> dict[str, str]:
    return {g.id: "pw" for _, g in site.gateways()}


def test_simulate_paces_batches_logs_and_timestamps(site: SiteSpec, tmp_path: Path) -> None:
    RecordingPublisher.instances.clear()
    log = tmp_path / "sent.csv"
    rate, duration, batch = 200.0, 1.5, 100
    t0 = time.monotonic()
    res = simulate(site, "h", 1, _creds(site), duration, rate, batch, log, seed=5,
                   publisher_factory=RecordingPublisher)
    wall = time.monotonic() - t0
    n = round(duration * rate)
    assert duration - 0.1 <= wall <= duration + 1.5  # paced in real time
    assert res.acked and res.kept_up and not res.stopped
    assert res.samples_per_point == n
    assert res.readings_sent == len(site.points()) * n
    assert sum(g.readings_sent for g in res.gateways.values()) == res.readings_sent
    lines = log.read_text().splitlines()
    assert len(lines) == res.readings_sent == len(set(lines))
    expected = sample_times_ms(res.start_ms, 0, n, rate).tolist()
    for gw, pub in RecordingPublisher.instances.items():
        assert pub.closed
        assert all(1 <= len(m[0]) <= batch for m in pub.messages)
        per_tag: dict[str, list[int]] = {}
        for tags, _, times in pub.messages:
            for tag, ts in zip(tags, times, strict=True):
                per_tag.setdefault(tag, []).append(ts)
        assert set(per_tag) == {pt.tag for _, _, d, pt in site.points() if d.gateway == gw}
        for tag, stamps in per_tag.items():
            assert stamps == expected, (gw, tag)  # every sample once, in order, unique
    # The log holds exactly the readings handed over, values as sent.
    sent = {f"{gw},{tg},{ts},{v}" for gw, pub in RecordingPublisher.instances.items()
            for tags, vals, times in pub.messages
            for tg, v, ts in zip(tags, vals, times, strict=True)}
    assert sent == set(lines)


def test_simulate_values_are_the_models_values(site: SiteSpec) -> None:
    RecordingPublisher.instances.clear()
    res = simulate(site, "h", 1, _creds(site), 0.5, 20.0, 1000, None, seed=9,
                   gateways=["gw-cem-01"], publisher_factory=RecordingPublisher)
    assert list(res.gateways) == ["gw-cem-01"]
    models = site_models(site, 9)["gw-cem-01"]
    for tags, vals, times in RecordingPublisher.instances["gw-cem-01"].messages:
        for tag, v, ts in zip(tags, vals, times, strict=True):
            assert v == models[tag].value(np.array([(ts - res.start_ms) / 1000]))[0]


def test_simulate_stops_on_the_stop_event(site: SiteSpec) -> None:
    RecordingPublisher.instances.clear()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    res = simulate(site, "h", 1, _creds(site), 60.0, 10.0, 500, None, stop=stop,
                   publisher_factory=RecordingPublisher)
    assert time.monotonic() - t0 < 2
    assert res.stopped and 0 < res.samples_per_point < 600
    counts = Counter(ts for pub in RecordingPublisher.instances.values()
                     for _, _, times in pub.messages for ts in times)
    assert len(counts) == res.samples_per_point  # what was generated was sent


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rate_hz": 2000.0}, "rate_hz"),
    ({"batch": 6000}, "batch"),
    ({"gateways": ["gw-nope"]}, "unknown gateway"),
    ({"credentials": {}}, "no credential"),
])
def test_simulate_rejects_bad_arguments(site: SiteSpec, kwargs: dict[str, object],
                                        match: str) -> None:
    args: dict[str, object] = {"site": site, "host": "h", "port": 1, "credentials": _creds(site),
                               "duration_s": 1.0, "rate_hz": 1.0, "batch": 10, "log_path": None,
                               "publisher_factory": RecordingPublisher}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        simulate(**args)  # type: ignore[arg-type]
