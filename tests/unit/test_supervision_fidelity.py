"""Supervision fidelity (issue 14): every basis of the catalog is bound, seen firing, and quiet on normal data.

A regulator cannot rely on a rule nobody has seen fire, and "no false alarm on
normal data" proves nothing for a rule that binds to no device. So, over the
two sample sites (county.yaml, the demo; county_full.yaml, the equipment of
every basis):

- every non-optional catalog rule binds to at least one device, and an
  optional rule says why it is off;
- each of the 16 monitorable bases has a scenario on county_full.yaml whose
  alarms the real pure evaluator (rules.compile + rules.evaluate, backfill
  mode, no database) raises exactly, inside their windows, with the expected
  candidate flag;
- a clean simulated day over all of county_full's devices raises nothing, and
  no limit of a bound rule can trip inside a point's documented normal band.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import SourceError
from core.readings import Readings
from core.registry import SiteSpec
from rules.compile import RegistryView, compile_rules
from rules.evaluate import Index, PointState, State, apply, evaluate_batch
from rules.model import (
    Catalog,
    Composite,
    CompositeRule,
    DeviationRule,
    DifferenceRule,
    ImpossibleRule,
    InterlockRule,
    RateRule,
    StateRule,
    ThresholdRule,
    load_catalog,
)
from simulators import simulate
from simulators.run import load_site, sample_times_ms, site_models
from simulators.scenarios import FULL_BANDS, FULL_BASELINES, SCENARIOS, SITES_DIR, Scenario
from tests.unit.test_catalog import (
    band,
    bindings,
    breaches,
    condition_trips,
    diff_band,
    limit,
    normal_states,
    registry_view,
    rules_of,
    state_trips,
)
from tests.unit.test_scenarios import _creds, recorders
from tests.unit.test_scenarios import _registry as _registry_ids

MIN = 60_000


def _registry(site: SiteSpec) -> tuple[RegistryView, dict[tuple[str, str], int]]:
    """The site as the registry holds it, units included (the data-trust rules bind by unit), and its ids."""
    _, ids = _registry_ids(site)
    reg = registry_view(site)
    assert {p.id: (p.gateway_id, p.tag) for p in reg.points} == {v: k for k, v in ids.items()}
    return reg, ids
SITES = ("county.yaml", "county_full.yaml")
FULL = {n: s for n, s in SCENARIOS.items() if s.site == "county_full.yaml"}

J = "《工贸企业重大事故隐患判定标准》"


def _item(article: str, item: str) -> re.Pattern[str]:
    """判定标准 article + item as cited, alone or in a list ("第十一条第（四）项、第（八）项")."""
    return re.compile(re.escape(J + article) + r"(?:第（[^）]+）项、)*第（" + item + "）项")


def _cites(basis: str, needle: str | re.Pattern[str]) -> bool:
    return bool(needle.search(basis)) if isinstance(needle, re.Pattern) else needle in basis

#: The 16 monitorable bases: (label, substring of a rule's basis, scenarios on county_full.yaml).
BASES: list[tuple[str, str | re.Pattern[str], tuple[str, ...]]] = [
    ("6(1)", _item("第六条", "一"), ("coal_mill_filter_smouldering",)),
    ("6(3)", _item("第六条", "三"), ("carbide_silo_gas_no_ventilation",)),
    ("6(5)", _item("第六条", "五"), ("kiln_gas_pressure_low_esv_open",)),
    ("6(6)", _item("第六条", "六"), ("hydrogen_station_leak",)),
    ("6(7)", _item("第六条", "七"), ("fused_furnace_cooling_loss_energised",)),
    ("7(2)", _item("第七条", "二"), ("foundry_emergency_storage_unavailable",)),
    ("7(4)", _item("第七条", "四"), ("induction_cooling_pressure_loss",)),
    ("7(5)", _item("第七条", "五"), ("burner_flame_out_valve_open", "burner_gas_overpressure_esv_stuck")),
    ("7(7)", _item("第七条", "七"), ("spray_booth_ventilation_trip",)),
    ("11(3)", _item("第十一条", "三"), ("dust_collector_deflagration", "explosion_protection_degraded")),
    ("11(4)", _item("第十一条", "四"), ("almg_conveying_sparks",)),
    ("11(6)", _item("第十一条", "六"), ("wood_collector_airlock_fault",)),
    ("11(8)", _item("第十一条", "八"), ("crusher_tramp_separator_fault", "sander_spark_detection_bypassed")),
    ("11(9)", _item("第十一条", "九"), ("magnesium_store_hydrogen_no_ventilation",)),
    ("AQ 4273 §5.1.4", "AQ 4273-2016 §5.1.4", ("bag_burst_foundry_collector", "bag_blinding_coal_mill_filter")),
    ("GB 26875.3", "GB 26875.3", ("fire_alarm_controller_fire", "fire_controller_faults",
                                  "fire_controller_power_and_isolation", "fire_transmission_device_faults")),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def full() -> SiteSpec:
    return load_site(SITES_DIR / "county_full.yaml")


# --- (a) every non-optional rule binds on a sample site -----------------------------------------


def test_every_non_optional_rule_binds_to_a_device_of_a_sample_site(catalog: Catalog) -> None:
    bound: set[str] = set()
    for name in SITES:
        compiled = compile_rules(catalog, registry_view(load_site(SITES_DIR / name)))
        bound |= {i.base_id for i in compiled.instances}
    unbound = sorted(rid for rid, (_, r) in catalog.rules.items() if not r.optional and rid not in bound)
    assert not unbound, f"rules binding to no sample-site device (bind them or mark optional: with a reason): {unbound}"
    # optional rules are really off, and each says why
    optional = {rid: r.optional for rid, (_, r) in catalog.rules.items() if r.optional}
    assert set(optional) == {"bm.glass.cooling_water", "bm.glass.cooling_air", "fire.controller.manual_bit"}
    assert not optional.keys() & bound
    assert all(isinstance(why, str) and len(why) >= 8 for why in optional.values())


def test_county_full_binds_every_alias_of_every_rule_on_its_devices(catalog: Catalog, full: SiteSpec) -> None:
    """No rule x device pair of county_full is skipped (the isolation-valve interlock binds here)."""
    compiled = compile_rules(catalog, registry_view(full))
    assert compiled.skipped == []
    assert "dust.inlet.isolation_interlock" in {i.base_id for i in compiled.instances}


def test_optional_needs_a_reason_not_a_flag(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("""\
catalog: xopt
title: {zh: 测试, en: Test}
version: "t"
industries: all
rules:
  - id: x.flag
    title: {zh: 标志, en: Flag}
    basis: test basis
    applies: {point: {quantity: co}}
    shape: threshold
    limits: {hi: 24}
    optional: true
""", encoding="utf-8")
    with pytest.raises(SourceError) as err:
        load_catalog(tmp_path)
    [problem] = err.value.problems
    assert problem.line == 12 and "the reason the rule is off" in problem.message


# --- the 16 bases: each has a scenario on county_full.yaml that fires a rule citing it -----------


def test_every_basis_has_a_scenario_that_fires_a_rule_citing_it(catalog: Catalog) -> None:
    assert len(BASES) == 16
    for label, needle, names in BASES:
        for name in names:
            sc = FULL[name]
            cited = [e.rule_id for e in sc.expects
                     if _cites(catalog.rules[e.rule_id.partition(":")[0]][1].basis, needle)]
            assert cited, f"{label}: scenario {name} fires no rule citing {needle}"
    covered = {n for _, _, names in BASES for n in names}
    # every county_full scenario belongs to a basis, except the fire-water one (GB 50440 / GB 35181) and the
    # data-trust ones (their own table: TRUST_SHAPES)
    assert set(FULL) - covered == {"fire_water_supply_loss"} | {n for _, names in TRUST_SHAPES for n in names}


#: The data-trust shapes (issue 14) and the county_full scenarios the simulator plays for each; the bag-change
#: one is in simulators.scenarios.TRUST_REGISTRY_SCENARIOS (tests/unit/test_trust_shapes.py).
TRUST_SHAPES: list[tuple[str, tuple[str, ...]]] = [
    ("stuck", ("stuck_co_analyser",)),
    ("copied", ("copied_filter_temperature",)),
    ("impossible", ("impossible_temperature",)),
    ("clock_skew", ("gateway_clock_fast",)),
]


def test_every_data_trust_shape_has_a_scenario_raising_its_candidate(catalog: Catalog) -> None:
    for shape, names in TRUST_SHAPES:
        for name in names:
            fired = [e for e in FULL[name].expects if catalog.rules[e.rule_id.partition(":")[0]][1].shape == shape]
            assert fired and all(e.candidate for e in fired), (shape, name)


def test_full_scenarios_assume_the_catalog_and_the_site(catalog: Catalog, full: SiteSpec) -> None:
    pts = {(d.gateway, p.tag): p for _, _, d, p in full.points()}
    for key, b in FULL_BANDS.items():
        sim = pts[key].sim or {}
        assert tuple(float(x) for x in sim["normal"]) == b, key
    for key, b in FULL_BASELINES.items():
        assert pts[key].baseline == b and (pts[key].sim or {}).get("baseline") == b, key
    models = site_models(full)
    for sc in FULL.values():
        sc.check(models)
        for e in sc.expects:
            base, _, lim = e.rule_id.partition(":")
            _, rule = catalog.rules[base]
            assert not rule.optional and e.candidate == rule.candidate, (sc.name, e.rule_id)
            for k, v in e.assumes.items():
                if k == "baseline":
                    assert pts[(e.gateway, e.tag)].baseline == v
                elif isinstance(rule, ThresholdRule | DifferenceRule) and k in rule.limits:
                    assert lim == k and rule.limits[k] == v, (sc.name, e.rule_id, k)
                else:
                    assert getattr(rule, k) == v, (sc.name, e.rule_id, k)
            if isinstance(rule, InterlockRule):
                assert "hold_s" in e.assumes
            else:
                assert "on_delay_s" in e.assumes, (sc.name, e.rule_id)


# --- (b) the real evaluator detects each scenario, and nothing else --------------------------------


def _activations(site: SiteSpec, sc: Scenario | None, gateways: list[str], duration_s: float,
                 seed: int) -> tuple[int, dict[tuple[str, str], tuple[float, bool]]]:
    """(rule id, tag) -> (data-time offset s of its first activation, candidate) in a backfill through
    rules.evaluate, messages in time order. Also returns the number of compiled instances."""
    reg, ids = _registry(site)
    compiled = compile_rules(load_catalog(), reg)
    size = len(reg.points) + 1
    index = Index(compiled, size)
    state = State(points=PointState.empty(size), seen=np.zeros(size, bool))
    made, factory = recorders()
    start = int(time.time() * 1000) - int(duration_s * 1000) - 2 * MIN
    res = simulate(site, "h", 1, _creds(site), duration_s, 1.0, 200, None, seed, gateways,
                   publisher_factory=factory, realtime=False, start_ms=start, scenario=sc)
    msgs = sorted(((m[2][0], gw, m) for gw, rec in made.items() for m in rec.messages), key=lambda x: x[0])
    out: dict[tuple[str, str], tuple[float, bool]] = {}
    for _, gw, (tags, values, times) in msgs:
        batch = Readings(np.array([ids[(gw, t)] for t in tags], np.int32), np.array(times, np.int64) * 1000,
                            np.array(values, np.float64), np.zeros(len(tags), np.int16))
        u, transitions = evaluate_batch(batch, state, index, time.time())
        apply(state, u)
        for tr in transitions:
            inst = compiled.instances[tr.index]
            if tr.kind == "activate" and inst.point_id is not None:
                out.setdefault((inst.rule_id, inst.tags[inst.point_id]),
                               ((tr.time_us / 1000 - res.start_ms) / 1000, inst.candidate))
    return len(compiled.instances), out


LONG = {n for n, s in FULL.items() if s.duration_s > 1000}
#: A gateway clock is judged from each message's own ts against its arrival (the engine's Batch.skew), which
#: this harness of readings does not model: tests/unit/test_trust_shapes.py plays the clock scenario through
#: the skew input, tests/integration/test_trust.py through simulate, Mosquitto and the collector.
CLOCK = {n for n, s in FULL.items() if s.clocks()}


@pytest.mark.parametrize(("name", "seed"), [(n, seed) for n in sorted(set(FULL) - CLOCK)
                                            for seed in ((0,) if n in LONG else (0, 7))])
def test_the_evaluator_detects_the_scenario_and_nothing_else(full: SiteSpec, name: str, seed: int) -> None:
    sc = FULL[name]
    n, got = _activations(full, sc, list(sc.gateways), sc.duration_s, seed)
    assert n > 250
    expected = {(e.rule_id, e.tag): e for e in sc.expects}
    assert set(got) == set(expected), got
    for key, e in expected.items():
        at, candidate = got[key]
        assert e.earliest_s <= at - e.at_s <= e.latest_s, (key, at - e.at_s, (e.earliest_s, e.latest_s))
        assert candidate == e.candidate, key


# --- (c) a clean day over county_full raises nothing ----------------------------------------------


def _day_batches(site: SiteSpec, seed: int, chunk_s: int = 1800) -> Iterator[Readings]:
    """A simulated day of every county_full point at 1 Hz, straight from the signal models, in chunks.

    These are the values a backfill sends (tests/unit/test_scenarios.py shows backfill and real time
    send the models' values); generating them here keeps a day (6 M readings) to arrays.
    """
    _, ids = _registry(site)
    models = site_models(site, seed)
    start_ms = 1_790_000_000_000
    for i0 in range(0, 86_400, chunk_s):
        t_ms = sample_times_ms(start_ms, i0, i0 + chunk_s, 1.0)
        t_s = (t_ms - start_ms) / 1000.0
        pid, tt, vv = [], [], []
        for gw, ms in models.items():
            for tag, m in ms.items():
                pid.append(np.full(t_ms.size, ids[(gw, tag)], np.int32))
                tt.append(t_ms * 1000)
                vv.append(m.value(t_s))
        p = np.concatenate(pid)
        yield Readings(p, np.concatenate(tt), np.concatenate(vv), np.zeros(p.size, np.int16))


def test_a_clean_simulated_day_over_county_full_raises_no_alarm(full: SiteSpec) -> None:
    reg, _ = _registry(full)
    compiled = compile_rules(load_catalog(), reg)
    size = len(reg.points) + 1
    index = Index(compiled, size)
    state = State(points=PointState.empty(size), seen=np.zeros(size, bool))
    activations: list[str] = []
    readings = 0
    for batch in _day_batches(full, seed=11):
        readings += batch.point_id.size
        u, transitions = evaluate_batch(batch, state, index, time.time())
        apply(state, u)
        activations += [compiled.instances[t.index].rule_id for t in transitions if t.kind == "activate"]
    assert readings == 86_400 * len(reg.points)
    assert activations == []
    # the day really went through the rules of every basis (they are compiled on these points)
    bases = {i.base_id for i in compiled.instances}
    catalog = load_catalog()
    for label, needle, _ in BASES:
        assert any(_cites(catalog.rules[b][1].basis, needle) for b in bases), label
    # and through the data-trust shapes (issue 14) on every analog point: nothing stuck, copied or impossible
    # on a normal day (the band-0 stuck rule and the copy hash see every reading)
    analog = {p.id for p in reg.points if p.unit}
    for shape in ("stuck", "copied", "impossible"):
        bound = {i.point_id for i in compiled.instances if i.shape == shape}
        assert bound and bound <= analog, shape
    assert {i.point_id for i in compiled.instances if i.shape == "stuck"} == analog


def test_no_bound_limit_can_trip_inside_county_full_normal_bands(catalog: Catalog, full: SiteSpec) -> None:
    """The guarantee of the clean day for every seed, not one: limits sit outside the documented bands."""
    problems: list[str] = []
    checked = 0
    for f, r in rules_of(catalog):
        if r.optional:
            continue
        for dev, pts in bindings(full, f, r):
            subject = pts["subject"]
            why: list[str] = []
            if isinstance(r, ThresholdRule):
                lims = {n: limit(r, subject, n, v) for n, v in r.limits.items()}
                why = breaches(*band(subject), lims, limit(r, subject, "deadband", r.deadband))
            elif isinstance(r, DeviationRule):
                b = subject.baseline or 0.0
                lo, hi = band(subject)
                dev_pct = max(abs(lo - b), abs(hi - b)) / abs(b) * 100.0
                if not dev_pct + r.deadband_pct < r.pct:
                    why = [f"normal band deviates up to {dev_pct:.1f} % from {b:g}"]
            elif isinstance(r, DifferenceRule):
                lims = {n: limit(r, subject, n, v) for n, v in r.limits.items()}
                why = breaches(*diff_band(pts[r.diff[0]], pts[r.diff[1]]), lims, r.deadband)
            elif isinstance(r, StateRule):
                hit = state_trips(normal_states(subject), r.equals, r.mask)
                why = [f"normal state(s) {sorted(hit)} match"] if hit else []
            elif isinstance(r, InterlockRule):
                why = condition_trips(r.when, pts)
            elif isinstance(r, CompositeRule):
                why = condition_trips(Composite(**{r.shape: r.conditions}), pts)
            elif isinstance(r, ImpossibleRule):
                b = r.bounds.get(subject.unit)
                if b is None:
                    continue
                lo, hi = band(subject)
                why = ([f"normal band reaches {lo:g} below the physical bound {b.lo:g}"] if b.lo is not None
                       and lo < b.lo else []) + ([f"normal band reaches {hi:g} above {b.hi:g}"] if b.hi is not None
                                                 and hi > b.hi else [])
            elif isinstance(r, RateRule):
                continue  # rates: the clean day above
            else:
                continue
            checked += 1
            problems += [f"{r.id} on {dev.code} ({subject.tag}): {w}" for w in why]
    assert not problems, "\n".join(problems)
    assert checked >= 60
