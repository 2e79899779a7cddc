"""Data-trust rule shapes (issue 14): stuck, copied, impossible, clock skew, baseline age.

The shipped catalog (rules/catalog/data_trust.yaml) compiled against small
registries, stepped by the real pure evaluator with data time and a fake
collector clock (no sleeping). Boundaries are attacked: another enterprise's
identical series, flat series, values at and past a physical bound, huge
values, a gateway behind (a backlog) rather than ahead, a restart.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import orjson
import pytest

from core.settings import IngestLimits
from ingest.decode import decode_json_v1
from rules.compile import Compiled, DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules
from rules.evaluate import (
    BatchArrays,
    Index,
    InstState,
    PointState,
    State,
    TickInputs,
    apply,
    evaluate_batch,
    evaluate_tick,
)
from rules.model import Catalog, load_catalog
from rules.shapes_trust import TrustUpdates, note_skew
from simulators.scenarios import SCENARIOS, TRUST_REGISTRY_SCENARIOS, copied_window, stuck_window

US = 1_000_000
T0 = 1_790_000_000.0  # data time origin (s); aligned to the copied rule's 300 s windows
H = 3600.0


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@dataclass
class Pt:
    tag: str
    unit: str = "°C"
    quantity: str = "temperature"
    enterprise: str = "ent-a"
    gateway: str = "gw-a"
    kind: str = "test_unit"  # a device kind no process rule names: only the generic rules bind
    setpoints: dict[str, float] = field(default_factory=dict)
    baseline: float | None = None
    baseline_at: float | None = None
    serviced_at: float | None = None
    created_at: float = 0.0


def registry(points: list[Pt]) -> RegistryView:
    plants = {f"pl-{p.enterprise}": PlantRow(f"pl-{p.enterprise}", "foundry", p.enterprise) for p in points}
    devices = {i + 1: DeviceRow(i + 1, f"pl-{p.enterprise}", p.kind, f"D{i + 1}") for i, p in enumerate(points)}
    rows = [PointRow(i + 1, p.gateway, p.tag, i + 1, p.quantity, None, False, 1.0, dict(p.setpoints), p.baseline,
                     p.unit, p.created_at, p.baseline_at, p.serviced_at) for i, p in enumerate(points)]
    gws = sorted({(p.gateway, f"pl-{p.enterprise}") for p in points})
    return RegistryView(rows, devices, plants, [GatewayRow(g, pl, True) for g, pl in gws])


class Run:
    """The evaluator over a registry, with data fed batch by batch and a fake collector clock for ticks."""

    def __init__(self, catalog: Catalog, points: list[Pt]):
        self.compiled: Compiled = compile_rules(catalog, registry(points))
        self.size = len(points) + 1
        self.index = Index(self.compiled, self.size)
        self.state = State(points=PointState.empty(self.size), seen=np.zeros(self.size, bool))
        self.tags = {i + 1: p.tag for i, p in enumerate(points)}
        self.ids = {p.tag: i + 1 for i, p in enumerate(points)}
        self.events: list[tuple[str, str, str, float, bool]] = []  # (kind, rule, subject tag/gateway, time s, cand.)

    def _note(self, transitions: Iterable[object]) -> None:
        for tr in transitions:
            inst = self.compiled.instances[tr.index]  # type: ignore[attr-defined]
            subj = self.tags[inst.point_id] if inst.point_id is not None else inst.gateway_id
            self.events.append((tr.kind, inst.rule_id, subj, tr.time_us / US, inst.candidate))  # type: ignore[attr-defined]

    def feed(self, series: dict[str, tuple[np.ndarray, np.ndarray]], now: float = T0) -> None:
        pid = np.concatenate([np.full(t.size, self.ids[tag], np.int32) for tag, (t, _) in series.items()])
        t_us = np.concatenate([np.round(t * US).astype(np.int64) for t, _ in series.values()])
        v = np.concatenate([np.asarray(v, np.float64) for _, v in series.values()])
        u, tr = evaluate_batch(BatchArrays(pid, t_us, v, np.zeros(pid.size, np.int16)), self.state, self.index, now)
        apply(self.state, u)
        self._note(tr)

    def play(self, fn: dict[str, object], t_from: float, t_to: float, batch_s: float = 60.0) -> None:
        """1 Hz samples of fn[tag](t) (t in s since T0), in batches of batch_s."""
        for a in np.arange(t_from, t_to, batch_s):
            t = np.arange(a, min(a + batch_s, t_to), 1.0)
            self.feed({tag: (T0 + t, f(t)) for tag, f in fn.items()})  # type: ignore[operator]

    def skew(self, gw: str, skew_s: float, now: float) -> None:
        u, _ = evaluate_batch(BatchArrays(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0),
                                          np.empty(0, np.int16)), self.state, self.index, now)
        u.trust = u.trust or TrustUpdates()
        note_skew(u.trust, {gw: skew_s}, now)
        apply(self.state, u)

    def tick(self, now: float) -> None:
        u, tr = evaluate_tick(self.state, self.index, TickInputs(now, np.zeros(self.size), {}))
        apply(self.state, u)
        self._note(tr)

    def acts(self, rule: str) -> list[tuple[str, float, bool]]:
        return [(s, t, c) for k, r, s, t, c in self.events if k == "activate" and r == rule]

    def clears(self, rule: str) -> list[tuple[str, float]]:
        return [(s, t) for k, r, s, t, _ in self.events if k == "clear" and r == rule]


def noisy(base: float, amp: float, seed: int) -> object:
    def f(t: np.ndarray) -> np.ndarray:
        return np.round(base + amp * np.sin(t / 37.0 + seed) + amp * 0.5 * np.cos(t * (1.3 + seed)), 1)
    return f


def const(x: float) -> object:
    return lambda t: np.full(t.size, x)


def then(a: object, b: object, at: float) -> object:
    return lambda t: np.where(t < at, a(t), b(t))  # type: ignore[operator]


# --- binding --------------------------------------------------------------------------------------


def test_trust_rules_bind_by_unit_and_never_to_unitless_state_points(catalog: Catalog) -> None:
    run = Run(catalog, [Pt("TT-1"), Pt("XA-1", unit="", quantity="airlock_fault"), Pt("FT-1", unit="m3/h"),
                        Pt("II-1", unit="mA", quantity="current")])
    by = {(i.base_id, run.tags[i.point_id]) for i in run.compiled.instances if i.point_id is not None}
    assert ("trust.stuck", "TT-1") in by and ("trust.copied", "TT-1") in by and ("trust.impossible", "TT-1") in by
    assert not {b for b, tag in by if tag == "XA-1" and b.startswith("trust.")}
    assert ("trust.impossible", "FT-1") not in by  # no physical bound for a flow: not bound rather than guessed
    assert ("trust.impossible", "II-1") in by
    assert {i.gateway_id for i in run.compiled.instances if i.base_id == "trust.clock_skew"} == {"gw-a"}


# --- stuck ----------------------------------------------------------------------------------------


def test_a_frozen_sensor_opens_its_candidate_after_window_and_on_delay(catalog: Catalog) -> None:
    run = Run(catalog, [Pt("TT-1"), Pt("TT-2")])
    freeze = 1800.0
    run.play({"TT-1": then(noisy(50, 2, 0), const(48.3), freeze), "TT-2": noisy(50, 2, 1)}, 0, freeze + 2 * H)
    [(tag, t, cand)] = run.acts("trust.stuck")
    lo, hi = stuck_window(1800.0, 1800.0)
    assert tag == "TT-1" and cand and lo <= t - T0 - freeze <= hi
    # it moves again: cleared after the off-delay (60 s), not before
    run.play({"TT-1": noisy(50, 2, 0), "TT-2": noisy(50, 2, 1)}, freeze + 2 * H, freeze + 2 * H + 180)
    [(tag, t_clear)] = run.clears("trust.stuck")
    assert tag == "TT-1" and 60 <= t_clear - (T0 + freeze + 2 * H) <= 2 * 60 + 1


def test_stuck_is_judged_against_the_noise_band(catalog: Catalog) -> None:
    """A value that dithers inside its band (per-point setpoint) is stuck; one that moves beyond it is not."""
    band = {"trust.stuck.band": 0.5}
    run = Run(catalog, [Pt("TT-1", setpoints=band), Pt("TT-2", setpoints=band)])
    dither = lambda t: 48.0 + 0.2 * np.sign(np.sin(t))  # noqa: E731  within 0.4
    run.play({"TT-1": then(noisy(50, 2, 0), dither, 600), "TT-2": noisy(50, 2, 1)}, 0, 600 + 2 * H)
    assert [tag for tag, _, _ in run.acts("trust.stuck")] == ["TT-1"]


def test_after_a_restart_not_stuck_is_unknown_until_the_value_moves(catalog: Catalog) -> None:
    """The segment is not persisted: a restored active alarm neither clears on a fresh state nor stays once
    the value moves."""
    run = Run(catalog, [Pt("TT-1")])
    i = next(k for k, x in enumerate(run.compiled.instances) if x.base_id == "trust.stuck")
    run.state.inst[i] = InstState(cond=True, since_us=int(T0 * US), active=True)  # as rules.store restores it
    run.play({"TT-1": const(48.3)}, 0, 600)
    assert run.clears("trust.stuck") == [] and run.state.inst[i].active
    run.play({"TT-1": noisy(50, 2, 0)}, 600, 900)
    assert len(run.clears("trust.stuck")) == 1


# --- copied ---------------------------------------------------------------------------------------


def test_a_copied_series_is_flagged_on_both_points_and_only_inside_one_enterprise(catalog: Catalog) -> None:
    src = noisy(50, 2, 0)
    pts = [Pt("TT-1"), Pt("TT-2"), Pt("TT-3"), Pt("TT-9", enterprise="ent-b", gateway="gw-b")]
    run = Run(catalog, pts)
    at = 120.0
    # TT-2 copies TT-1 from `at`; TT-9, another enterprise's point, carries the same series all along
    run.play({"TT-1": src, "TT-2": then(noisy(50, 2, 1), src, at), "TT-3": noisy(50, 2, 2), "TT-9": src},
             0, at + 3000)
    got = {tag: t for tag, t, cand in run.acts("trust.copied") if cand}
    assert set(got) == {"TT-1", "TT-2"}, run.acts("trust.copied")
    lo, hi = copied_window(300.0, 1500.0)
    for t in got.values():
        assert lo <= t - T0 - at <= hi


def test_flat_or_short_windows_prove_nothing(catalog: Catalog) -> None:
    """Two idle identical points (a flat line) and two identical series of a few samples are not copies."""
    run = Run(catalog, [Pt("TT-1"), Pt("TT-2"), Pt("TT-3"), Pt("TT-4")])
    run.play({"TT-1": const(20.0), "TT-2": const(20.0)}, 0, 4000)
    sparse = lambda t: np.where(t % 30 == 0, np.round(np.sin(t), 1), np.nan)  # noqa: E731
    for a in np.arange(0, 4000, 60.0):
        t = np.arange(a, a + 60, 30.0)  # 2 samples a minute: 10 per window < min_samples 60
        run.feed({"TT-3": (T0 + t, sparse(t)), "TT-4": (T0 + t, sparse(t))})
    assert run.acts("trust.copied") == []


def test_huge_values_hash_without_overflow_or_warnings(catalog: Catalog) -> None:
    run = Run(catalog, [Pt("TT-1", unit="ppm", quantity="co"), Pt("TT-2", unit="ppm", quantity="co")])
    huge = lambda t: 1e300 * (1 + (t % 7))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run.play({"TT-1": huge, "TT-2": huge}, 0, 1200)


# --- impossible -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "value", "fires"), [
    ("°C", -273.15, False),  # at absolute zero: the bound itself is possible
    ("°C", -273.2, True),
    ("°C", -3276.8, True),  # a 16-bit register's 0x8000 "no value" read as tenths
    ("°C", 2999.0, False),
    ("%LEL", 100.0, False),
    ("%LEL", 100.5, True),
    ("mA", 3.5, True),  # NAMUR NE 43: below 3.6 mA the loop signals a failure
    ("mA", 12.0, False),
    ("Pa", -101400.0, True),  # below perfect vacuum
])
def test_impossible_values_per_unit(catalog: Catalog, unit: str, value: float, fires: bool) -> None:
    run = Run(catalog, [Pt("X-1", unit=unit, quantity="q")])
    run.play({"X-1": const(value)}, 0, 90)
    got = run.acts("trust.impossible")
    assert bool(got) == fires
    if fires:
        assert got[0][2] and 60 <= got[0][1] - T0 <= 61  # on-delay 60 s from the first reading


# --- clock skew -----------------------------------------------------------------------------------


def test_a_gateway_five_minutes_fast_is_dead_lettered_and_raises_its_candidate(catalog: Catalog) -> None:
    """Today's silent failure: every reading is 'from the future'. The decoder still yields the message's own ts,
    which the collector records as the skew (Batch.skew); the rule judges it on the collector's clock."""
    now = T0 + 10_000
    ahead = 330.0
    payload = orjson.dumps({"ts": int((now + ahead) * 1000), "seq": 1,
                            "readings": [{"tag": "TT-1", "v": 50.0, "ts": int((now + ahead) * 1000)}]})
    d = decode_json_v1(payload, now, IngestLimits())
    assert d.tags == [] and [r.reason for r in d.rejected] == ["timestamp_out_of_range"]
    assert d.ts_us is not None
    skew = d.ts_us / 1e6 - now
    run = Run(catalog, [Pt("TT-1")])
    for k in range(0, 400, 1):
        run.skew("gw-a", skew, now + k)
        run.tick(now + k)
    [(gw, t, cand)] = run.acts("trust.clock_skew")
    assert gw == "gw-a" and cand and 300 <= t - now <= 301
    # the clock is corrected: cleared after the off-delay (60 s)
    for k in range(400, 500):
        run.skew("gw-a", 0.2, now + k)
        run.tick(now + k)
    [(_, t_clear)] = run.clears("trust.clock_skew")
    assert 60 <= t_clear - (now + 400) <= 61


@pytest.mark.parametrize("skew", [30.0, -3600.0])
def test_a_small_skew_or_a_backlog_is_not_a_fast_clock(catalog: Catalog, skew: float) -> None:
    """Within the limit, or behind: a store-and-forward backlog's messages carry their old ts."""
    run = Run(catalog, [Pt("TT-1")])
    for k in range(0, 900, 5):
        run.skew("gw-a", skew, T0 + k)
        run.tick(T0 + k)
    assert run.acts("trust.clock_skew") == []


def test_the_clock_scenario_declares_what_the_rule_does(catalog: Catalog) -> None:
    sc = SCENARIOS["gateway_clock_fast"]
    [e] = sc.expects
    _, rule = catalog.rules[e.rule_id]
    assert e.candidate == rule.candidate and rule.limit_s == e.assumes["limit_s"] < sc.faults[0].ahead_s  # type: ignore[attr-defined]
    run = Run(catalog, [Pt("TT-1", gateway=e.gateway)])
    start = T0
    for k in range(0, int(e.latest_s + 120)):
        now = start + sc.faults[0].at_s + k
        run.skew(e.gateway, sc.faults[0].ahead_s, now)  # type: ignore[attr-defined]
        run.tick(now)
    [(_, t, _)] = run.acts(e.rule_id)
    assert e.earliest_s <= t - start - e.at_s <= e.latest_s


# --- baseline age (AQ 4273-2016 §5.1.4) -----------------------------------------------------------


def dp(**kw: object) -> Pt:
    return Pt("PDT-1", unit="Pa", quantity="pressure_difference", kind="dry_dust_collector", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("point", "fires_after"), [
    (dp(baseline=990.0, baseline_at=T0, created_at=T0), None),  # recorded at installation
    (dp(created_at=T0), 8 * H),  # never recorded: due 8 h after installation
    (dp(baseline=990.0, baseline_at=T0, created_at=T0, serviced_at=T0 + H), 9 * H),  # bags changed, old baseline
    (dp(baseline=990.0, baseline_at=T0 + 2 * H, created_at=T0, serviced_at=T0 + H), None),  # re-recorded after
])
def test_baseline_age(catalog: Catalog, point: Pt, fires_after: float | None) -> None:
    run = Run(catalog, [point])
    for k in np.arange(0, 12 * H, 60.0):
        run.tick(T0 + float(k))
    got = run.acts("trust.dp.baseline_age")
    if fires_after is None:
        assert got == []
    else:
        [(tag, t, cand)] = got
        assert tag == "PDT-1" and cand and fires_after < t - T0 <= fires_after + 60


def test_the_bag_change_scenario_declares_what_the_rule_does(catalog: Catalog) -> None:
    sc = TRUST_REGISTRY_SCENARIOS["dust_baseline_not_recorded_after_bag_change"]
    [e] = sc.expects
    start = T0
    run = Run(catalog, [dp(baseline=990.0, baseline_at=start - 30 * 86400, created_at=start - 365 * 86400,
                           serviced_at=start + sc.faults[0].at_s)])
    for k in np.arange(0, e.at_s + e.latest_s + 60, 1.0):
        run.tick(start + float(k))
    [(_, t, cand)] = run.acts(e.rule_id)
    assert cand == e.candidate and e.earliest_s <= t - start - e.at_s <= e.latest_s
    assert not math.isnan(t)
