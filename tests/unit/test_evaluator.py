"""The pure evaluator, table-driven per shape, with a fake clock (data time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.readings import Readings
from rules.compile import DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules
from rules.evaluate import (
    Index,
    InstState,
    PointState,
    State,
    TickInputs,
    Transition,
    apply,
    evaluate_batch,
    evaluate_tick,
    note_gateways,
)
from rules.model import Catalog, load_file

T0 = 1_764_460_800.0
US = 1_000_000

CATALOG = """\
catalog: test
title: {zh: 测试, en: Test}
version: "1"
industries: all
rules:
  - id: t.temp
    title: {zh: 温度高, en: Temperature high}
    basis: test §1
    applies: {equipment: [filter], point: {quantity: temperature}}
    shape: threshold
    limits: {hi: 70, hihi: 80}
    deadband: 2
    on_delay_s: 5
    off_delay_s: 10
  - id: t.lo
    title: {zh: 压力低, en: Pressure low}
    basis: test §2
    applies: {equipment: [filter], point: {quantity: pressure}}
    shape: threshold
    limits: {lo: 0.2}
    deadband: 0.05
  - id: t.rate
    title: {zh: CO上升快, en: CO rising fast}
    basis: test §3
    applies: {equipment: [filter], point: {quantity: co}}
    shape: rate
    window_s: 60
    rise_per_min: 10
  - id: t.dev
    title: {zh: 压差偏离基线, en: Pressure difference off baseline}
    basis: test §4
    applies: {equipment: [filter], point: {quantity: pressure_difference}}
    shape: deviation
    pct: 20
    deadband_pct: 2
  - id: t.diff
    title: {zh: 进出水流量差大, en: Flow difference high}
    basis: test §5
    applies: {equipment: [furnace]}
    shape: difference
    points: {subject: {quantity: flow, role: inlet}, out: {quantity: flow, role: outlet}}
    diff: [subject, out]
    limits: {hi: 3}
    deadband: 0.5
  - id: t.lock
    title: {zh: 冷却异常未断电, en: Cooling fault while powered}
    basis: test §6
    applies: {equipment: [furnace]}
    shape: interlock
    candidate: true
    points: {subject: {quantity: flow, role: inlet}, out: {quantity: flow, role: outlet},
             power: {quantity: power_on}}
    when: {diff: [subject, out], hi: 3}
    protective: {point: power, safe: 0}
    hold_s: 10
  - id: t.fire
    title: {zh: 火警, en: Fire alarm}
    basis: test §7
    applies: {equipment: [fire_panel], point: {quantity: fire_status}}
    shape: state
    mask: 2
    severity: urgent
  - id: t.stale
    title: {zh: 数据中断, en: Point stale}
    basis: test §8
    applies: {point: {quantity: temperature}}
    shape: stale
    intervals: 10
  - id: t.never
    title: {zh: 从未上报, en: Never reported}
    basis: test §9
    applies: {point: {quantity: pressure, required_only: true}}
    shape: never_reported
    grace_s: 60
  - id: t.gw
    title: {zh: 网关离线, en: Gateway offline}
    basis: test §10
    applies: {}
    shape: gateway_offline
    silent_s: 30
"""

# point ids: 1 temperature, 2 pressure (required), 3 co, 4 dp (baseline 1000), 5 flow in, 6 flow out,
# 7 power, 8 fire status
POINTS = [
    PointRow(1, "gw", "TT-1", 10, "temperature", None, False, 1.0, {}, None),
    PointRow(2, "gw", "PT-1", 10, "pressure", None, True, 1.0, {}, None),
    PointRow(3, "gw", "CO-1", 10, "co", None, False, 1.0, {}, None),
    PointRow(4, "gw", "PDT-1", 10, "pressure_difference", None, False, 1.0, {}, 1000.0),
    PointRow(5, "gw", "FT-in", 20, "flow", "inlet", False, 1.0, {}, None),
    PointRow(6, "gw", "FT-out", 20, "flow", "outlet", False, 1.0, {}, None),
    PointRow(7, "gw", "JS-1", 20, "power_on", None, False, 1.0, {}, None),
    PointRow(8, "gw", "FAC-1", 30, "fire_status", None, False, 1.0, {}, None),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    p = tmp_path_factory.mktemp("cat") / "test.yaml"
    p.write_text(CATALOG)
    return Catalog([(p, load_file(p))])


class Harness:
    def __init__(self, catalog: Catalog, points: list[PointRow] = POINTS):
        view = RegistryView(points, {10: DeviceRow(10, "pl", "filter", "F"), 20: DeviceRow(20, "pl", "furnace", "IF"),
                                     30: DeviceRow(30, "pl", "fire_panel", "FP")},
                            {"pl": PlantRow("pl", "foundry", "ent")}, [GatewayRow("gw", "pl", True)])
        self.compiled = compile_rules(catalog, view)
        self.index = Index(self.compiled, 9)
        self.state = State(PointState.empty(9), seen=np.zeros(9, bool))

    def key(self, i: int) -> str:
        return self.compiled.instances[i].rule_id

    def feed(self, rows: list[tuple[float, int, float] | tuple[float, int, float, int]],
             now: float | None = None) -> list[tuple[str, str, float]]:
        """rows: (seconds after T0, point id, value[, quality]) -> [(kind, rule id, seconds)]."""
        pid = np.array([r[1] for r in rows], np.int32)
        t = np.array([int(round((T0 + r[0]) * US)) for r in rows], np.int64)
        v = np.array([r[2] for r in rows], float)
        q = np.array([r[3] if len(r) > 3 else 0 for r in rows], np.int16)  # type: ignore[misc]
        now_s = now if now is not None else T0 + max(r[0] for r in rows)
        u, trs = evaluate_batch(Readings(pid, t, v, q), self.state, self.index, now_s)
        note_gateways(u, {"gw": now_s}, {})
        apply(self.state, u)
        return self._fmt(trs)

    def tick(self, at: float, created: float = T0) -> list[tuple[str, str, float]]:
        u, trs = evaluate_tick(self.state, self.index, TickInputs(T0 + at, np.full(9, created), {"gw": created}))
        apply(self.state, u)
        return self._fmt(trs)

    def _fmt(self, trs: list[Transition]) -> list[tuple[str, str, float]]:
        return [(tr.kind, self.key(tr.index), round(tr.time_us / US - T0, 3)) for tr in trs]


def series(pid: int, values: list[float], start: float = 0.0, step: float = 1.0) -> list[tuple[float, int, float]]:
    return [(start + k * step, pid, v) for k, v in enumerate(values)]


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("on-delay not yet elapsed", [60, 71, 71, 71, 71, 69], []),
        ("on-delay elapsed", [60, 71, 71, 71, 71, 71, 71], [("activate", "t.temp:hi", 6.0)]),
        ("deadband prevents chatter at the boundary",
         [71, 71, 71, 71, 71, 71, 69, 70.5, 69, 70.5, 69, 70.5, 69, 70.5, 69, 70.5, 69, 70.5, 69],
         [("activate", "t.temp:hi", 5.0)]),
        ("off-delay: clears only after 10 s below hi - deadband",
         [71] * 6 + [67] * 5 + [71] + [67] * 12,
         [("activate", "t.temp:hi", 5.0), ("clear", "t.temp:hi", 22.0)]),
        ("hihi is its own alarm", [81] * 7, [("activate", "t.temp:hi", 5.0), ("activate", "t.temp:hihi", 5.0)]),
    ],
)
def test_threshold(catalog: Catalog, name: str, values: list[float], expected: list[tuple[str, str, float]]) -> None:
    h = Harness(catalog)
    got = h.feed(series(1, values))
    assert [g for g in got if g[1].startswith("t.temp")] == expected, name


def test_threshold_split_across_batches_is_the_same(catalog: Catalog) -> None:
    values = [60, 71, 71, 71, 71, 71, 71, 71, 67] + [67] * 12
    whole = Harness(catalog).feed(series(1, values))
    h = Harness(catalog)
    parts = []
    for k in range(len(values)):
        parts += h.feed([(float(k), 1, values[k])])
    assert parts == whole and whole == [("activate", "t.temp:hi", 6.0), ("clear", "t.temp:hi", 18.0)]


def test_out_of_order_reading_is_not_evaluated(catalog: Catalog) -> None:
    h = Harness(catalog)
    h.feed(series(1, [60, 61, 62]))
    # an old reading that would trip arrives late: ignored by the rules (it is still stored)
    assert h.feed([(1.5, 1, 99.0)] * 1) == []
    # the same in one batch: sorted by time, the late one is evaluated in order, not after
    assert h.feed([(10, 1, 60), (9, 1, 99)]) == []


def test_bad_quality_neither_sets_nor_clears(catalog: Catalog) -> None:
    h = Harness(catalog)
    assert h.feed([(k, 1, 99, 2) for k in range(10)]) == []  # bad: ignored
    assert h.feed(series(1, [71] * 6, start=10)) == [("activate", "t.temp:hi", 15.0)]
    assert h.feed([(16 + k, 1, 20, 2) for k in range(20)]) == []  # bad low values do not clear
    assert h.feed([(40 + k, 1, 71, 1) for k in range(2)]) == []  # uncertain counts as good


def test_low_limit_with_deadband(catalog: Catalog) -> None:
    h = Harness(catalog)
    got = h.feed(series(2, [0.3, 0.19, 0.22, 0.19, 0.26, 0.19]))
    assert got == [("activate", "t.lo:lo", 1.0), ("clear", "t.lo:lo", 4.0), ("activate", "t.lo:lo", 5.0)]


def test_rate_of_change(catalog: Catalog) -> None:
    h = Harness(catalog)
    flat = series(3, [8.0] * 60)
    assert h.feed(flat) == []
    # +15 ppm/min from t=60
    ramp = [(60 + k, 3, 8.0 + 0.25 * k) for k in range(60)]
    got = h.feed(ramp)
    assert got and got[0][:2] == ("activate", "t.rate")
    assert 60 + 40 - 1 <= got[0][2] <= 60 + 45  # 10/min over a 60 s window needs ~40 s of a 15/min ramp


def test_deviation_from_baseline(catalog: Catalog) -> None:
    h = Harness(catalog)
    assert h.feed(series(4, [1000, 1150, 850, 1190, 810])) == []
    assert h.feed([(5, 4, 400)]) == [("activate", "t.dev", 5.0)]
    assert h.feed([(6, 4, 790)]) == []  # within 2 % deadband of the 800 limit: still active
    assert h.feed([(7, 4, 900)]) == [("clear", "t.dev", 7.0)]


def test_deviation_without_baseline_is_not_bound(catalog: Catalog) -> None:
    pts = [p if p.id != 4 else PointRow(4, "gw", "PDT-1", 10, "pressure_difference", None, False, 1.0, {}, None)
           for p in POINTS]
    h = Harness(catalog, pts)
    assert not [i for i in h.compiled.instances if i.base_id == "t.dev"]
    assert any("no baseline" in s for s in h.compiled.skipped)


def test_difference_uses_held_values_and_same_time_readings_together(catalog: Catalog) -> None:
    h = Harness(catalog)
    rows = []
    for k in range(5):
        rows += [(k, 5, 30.0), (k, 6, 29.5)]
    assert h.feed(rows) == []
    # both change at t=5 (out drops, in rises a little): evaluated together
    assert h.feed([(5, 6, 26.0), (5, 5, 30.2)]) == [("activate", "t.diff:hi", 5.0)]


@pytest.mark.parametrize(
    ("branch", "power_off_at", "expected"),
    [
        ("protective action taken within hold time: no candidate", 8.0, []),
        ("protective action not taken: candidate after hold time", None, [("activate", "t.lock", 12.0)]),
    ],
)
def test_interlock_both_branches(catalog: Catalog, branch: str, power_off_at: float | None,
                                 expected: list[tuple[str, str, float]]) -> None:
    h = Harness(catalog)
    rows: list[tuple[float, int, float]] = []
    for k in range(30):
        leak = k >= 2
        rows += [(k, 5, 30.0), (k, 6, 25.0 if leak else 29.8)]
        rows.append((k, 7, 0.0 if power_off_at is not None and k >= power_off_at else 1.0))
    got = [g for g in h.feed(rows) if g[1] == "t.lock"]
    assert got == expected, branch
    assert h.compiled.by_key()[("t.lock", "p:5")].candidate


def test_state_bitmask(catalog: Catalog) -> None:
    h = Harness(catalog)
    assert h.feed(series(8, [1, 1, 1 | 4, 1])) == []  # fault bit is not the fire bit
    assert h.feed([(4, 8, 1 | 2 | 4)]) == [("activate", "t.fire", 4.0)]
    assert h.feed([(5, 8, 1)]) == [("clear", "t.fire", 5.0)]


def test_stale_after_k_intervals_on_the_collector_clock(catalog: Catalog) -> None:
    h = Harness(catalog)
    h.feed(series(1, [60.0] * 3), now=T0 + 2)
    assert [x for x in h.tick(11.5) if x[1] == "t.stale"] == []  # 9.5 s silent: not yet (k=10 x 1 s)
    assert [x for x in h.tick(12.5) if x[1] == "t.stale"] == [("activate", "t.stale", 12.5)]
    assert [x for x in h.tick(13.5) if x[1] == "t.stale"] == []  # no duplicate activation
    h.feed([(20, 1, 60.0)], now=T0 + 20)
    assert [x for x in h.tick(20.5) if x[1] == "t.stale"] == [("clear", "t.stale", 20.5)]


def test_bad_quality_data_goes_stale(catalog: Catalog) -> None:
    h = Harness(catalog)
    h.feed([(0, 1, 60.0)], now=T0)
    h.feed([(k, 1, 60.0, 2) for k in range(1, 15)], now=T0 + 14)
    assert ("activate", "t.stale", 14.5) in h.tick(14.5)


def test_never_reported_required_point(catalog: Catalog) -> None:
    h = Harness(catalog)
    assert [x for x in h.tick(59) if x[1] == "t.never"] == []
    assert [x for x in h.tick(61) if x[1] == "t.never"] == [("activate", "t.never", 61.0)]
    h.feed([(62, 2, 0.5)], now=T0 + 62)
    assert [x for x in h.tick(63) if x[1] == "t.never"] == [("clear", "t.never", 63.0)]


def test_gateway_offline_by_silence_and_by_status(catalog: Catalog) -> None:
    h = Harness(catalog)
    h.feed([(0, 1, 60.0)], now=T0)
    assert [x for x in h.tick(29) if x[1] == "t.gw"] == []
    assert [x for x in h.tick(31) if x[1] == "t.gw"] == [("activate", "t.gw", 31.0)]
    h.feed([(40, 1, 60.0)], now=T0 + 40)
    assert [x for x in h.tick(41) if x[1] == "t.gw"] == [("clear", "t.gw", 41.0)]


def test_evaluator_is_deterministic(catalog: Catalog) -> None:
    rng = np.random.default_rng(3)
    rows = [(float(k), 1, float(65 + 10 * rng.random())) for k in range(300)]
    assert Harness(catalog).feed(rows) == Harness(catalog).feed(rows)


def test_normal_data_trips_nothing_and_takes_the_fast_path(catalog: Catalog) -> None:
    h = Harness(catalog)
    h.feed([(0, p, v) for p, v in [(1, 60), (2, 0.5), (3, 8), (4, 1000), (5, 30), (6, 29.8), (7, 1), (8, 1)]])
    rng = np.random.default_rng(0)
    rows = []
    for k in range(1, 600):
        rows += [(k, 1, 60 + rng.normal()), (k, 2, 0.5), (k, 3, 8 + rng.normal() * 0.2),
                 (k, 4, 1000 + rng.normal() * 20)]
    assert h.feed(rows[:40]) == []
    # after the first look at each instance, normal readings step no single-point instance at all
    arr = Readings(np.array([r[1] for r in rows[40:]], np.int32),
                      np.array([int((T0 + r[0]) * US) for r in rows[40:]], np.int64),
                      np.array([r[2] for r in rows[40:]]), np.zeros(len(rows) - 40, np.int16))
    u, trs = evaluate_batch(arr, h.state, h.index, T0 + 600)
    assert trs == [] and u.evaluated == set()
    assert not any(s.cond or s.active for s in h.state.inst.values())


def test_catalog_path_is_the_test_file(catalog: Catalog) -> None:
    assert isinstance(catalog.files[0][0], Path)


def _reference_tick(state: State, index: Index, inputs: TickInputs) -> set[tuple[int, str]]:
    """The stale / never-reported rules one instance at a time, as the specification reads."""
    out = set()
    for i in index.stale:
        inst = index.instances[i]
        a = state.points.arrival[inst.point_id]
        if a <= 0:
            continue
        stale = (inputs.now - a) * US > inst.stale_us
        if state.inst.get(i, InstState()).active != stale:
            out.add((i, "activate" if stale else "clear"))
    for i in index.never:
        inst = index.instances[i]
        a = state.points.arrival[inst.point_id]
        never = a <= 0 and (inputs.now - inputs.point_created[inst.point_id]) * US > inst.grace_us
        if (a > 0 or never) and state.inst.get(i, InstState()).active != never:
            out.add((i, "activate" if never else "clear"))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_tick_matches_the_one_at_a_time_reading(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    cat = Catalog([(Path("common.yaml"), load_file(Path(__file__).parents[2] / "rules/catalog/common.yaml"))])
    pts = [PointRow(i, "gw", f"T{i}", 1, "temperature", None, bool(i % 3 == 0), 1.0, {}, None, "C")
           for i in range(1, n + 1)]
    view = RegistryView(pts, {1: DeviceRow(1, "p1", "filter", "F1")}, {"p1": PlantRow("p1", "cement", "e1")},
                        [GatewayRow("gw", "p1", True)])
    index = Index(compile_rules(cat, view), n + 1)
    ps = PointState.empty(n + 1)
    ps.arrival[1:] = np.where(rng.random(n) < 0.2, 0.0, T0 - rng.uniform(0, 120, n))
    tick_insts = index.stale + index.never
    active = {int(i): InstState(True, 1, True) for i in rng.choice(tick_insts, size=len(tick_insts) // 3)}
    state = State(points=ps, inst=active, history={}, seen=np.zeros(n + 1, bool), gw_last_seen={"gw": T0},
                  gw_offline_at={})
    inputs = TickInputs(T0, np.full(n + 1, T0 - rng.uniform(0, 7200)), {"gw": T0})
    _, got = evaluate_tick(state, index, inputs)
    want = _reference_tick(state, index, inputs)
    assert {(t.index, t.kind) for t in got if index.instances[t.index].point_id is not None} == want
    assert want, "the random state should make something flip"


# --- retained status replays (issue 14) ---------------------------------------------------


def _gw_state(seen: dict[str, float], offline: dict[str, float]) -> State:
    return State(PointState.empty(1), gw_last_seen=dict(seen), gw_offline_at=dict(offline))


@pytest.mark.parametrize(
    ("seen", "offline", "replay", "live", "want"),
    [
        # an offline state already held keeps its time: the replay does not restart (or clear) the alarm
        ({"g": 100.0}, {"g": 150.0}, (False, None), {}, {}),
        # online:true replayed changes nothing: only the gateway's own traffic clears the alarm
        ({"g": 100.0}, {"g": 150.0}, (True, None), {}, {}),
        ({"g": 100.0}, {}, (True, 500.0), {}, {}),
        # offline we had not seen: since its last live traffic, or its own ts if later, never after now
        ({"g": 100.0}, {}, (False, None), {}, {"g": 100.0}),
        ({"g": 100.0}, {}, (False, 300.0), {}, {"g": 300.0}),
        ({"g": 100.0}, {}, (False, 9e9), {}, {"g": 1000.0}),
        # no traffic ever: since the gateway was registered
        ({}, {}, (False, None), {}, {"g": 10.0}),
        # a live status in the same batch wins
        ({"g": 100.0}, {}, (False, None), {"g": (True, 1000.0)}, {"g": None}),
    ],
)
def test_replayed_status_is_old_news(seen: dict[str, float], offline: dict[str, float],
                                     replay: tuple[bool, float | None], live: dict[str, tuple[bool, float]],
                                     want: dict[str, float | None]) -> None:
    from rules.evaluate import Updates, note_gateways

    u = Updates(arrival_now=1000.0)
    note_gateways(u, {}, live, {"g": replay}, _gw_state(seen, offline), {"g": 10.0})
    assert u.gw_offline_at == want
    assert u.gw_last_seen == {}  # a replay is not traffic
