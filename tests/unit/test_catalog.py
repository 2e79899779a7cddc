"""The shipped rule catalog (一行业一清单): it loads, cites every monitorable clause of
REGULATIONS.md, names points that exist on the sample site, cannot trip on the
sample site's normal data, and reports broken files with their lines.

"Cannot trip" is checked against each point's documented ``sim.normal`` band
(the simulator guarantees its worst case stays inside it), so the guarantee of
zero alarms on normal data does not depend on a lucky random seed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import SourceError
from core.registry import DeviceSpec, PlantSpec, PointSpec, SiteSpec
from rules.compile import Compiled, DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules
from rules.model import (
    Catalog,
    CatalogFile,
    Cmp,
    Composite,
    CompositeRule,
    DeviationRule,
    Diff,
    DifferenceRule,
    InterlockRule,
    PointSelector,
    RateRule,
    StateIs,
    StateRule,
    ThresholdRule,
    load_catalog,
)
from simulators.run import default_site_path, load_site, site_models

VERSION = "2026.11-1"
FILES = {  # file stem -> (catalog name, rule id prefix)
    "building_materials": ("building_materials", "bm."),
    "machinery": ("machinery", "mach."),
    "dust_explosion": ("dust_explosion", "dust."),
    "gas_detection": ("gas_detection", "gas."),
    "fire": ("fire", "fire."),
    "common": ("common", "common."),
    "data_trust": ("data_trust", "trust."),
}
CJK = re.compile(r"[\u4e00-\u9fff]")
MULTI = (DifferenceRule, InterlockRule, CompositeRule)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def site() -> SiteSpec:
    return load_site(default_site_path())


# --- helpers: which sample-site points a rule applies to ---------------------------------


def rules_of(catalog: Catalog) -> Iterator[tuple[CatalogFile, Any]]:
    for _, f in catalog.files:
        yield from ((f, r) for r in f.rules)


def selectors(rule: Any) -> dict[str, PointSelector]:
    """Alias -> selector; a single-point rule's subject is its applies.point."""
    if isinstance(rule, MULTI):
        return dict(rule.points)
    return {"subject": rule.applies.point} if rule.applies.point is not None else {}


def matches(sel: PointSelector, pt: PointSpec) -> bool:
    return ((sel.quantity == "*" or sel.quantity == pt.quantity)
            and (sel.role is None or sel.role == pt.role)
            and (pt.required or not sel.required_only))


def in_scope(f: CatalogFile, rule: Any, plant: PlantSpec, dev: DeviceSpec) -> bool:
    if f.industries != "all" and plant.industry not in f.industries:
        return False
    if rule.applies.industries is not None and plant.industry not in rule.applies.industries:
        return False
    return rule.applies.equipment is None or dev.kind in rule.applies.equipment


def devices(site: SiteSpec) -> Iterator[tuple[PlantSpec, DeviceSpec]]:
    for e in site.enterprises:
        for p in e.plants:
            for d in p.devices:
                yield p, d


def bindings(site: SiteSpec, f: CatalogFile, rule: Any) -> Iterator[tuple[DeviceSpec, dict[str, PointSpec]]]:
    """Each instance of the rule on the sample site: (device, alias -> point), as rules.compile binds them.

    A single-point rule has one instance per matching point. A multi-point rule
    binds where every alias but ``subject`` matches exactly one point of the
    device, with one instance per matching subject point.
    """
    sels = selectors(rule)
    for plant, dev in devices(site):
        if not sels or not in_scope(f, rule, plant, dev):
            continue
        found = {a: [pt for pt in dev.points if matches(s, pt)] for a, s in sels.items()}
        others = {a: v for a, v in found.items() if a != "subject"}
        if any(len(v) != 1 for v in others.values()):
            continue
        bound = {a: v[0] for a, v in others.items()}
        for pt in found["subject"]:
            if all(pt is not b for b in bound.values()):
                yield dev, {**bound, "subject": pt}


def band(pt: PointSpec) -> tuple[float, float]:
    assert pt.sim is not None, pt.tag
    lo, hi = pt.sim["normal"]
    return float(lo), float(hi)


def diff_band(a: PointSpec, b: PointSpec) -> tuple[float, float]:
    """Normal band of a - b: the follower's documented diff_normal, else the worst case of the bands."""
    sa, sb = a.sim or {}, b.sim or {}
    if sb.get("model") == "follow" and sb.get("of") == a.tag and sb.get("diff_normal"):
        lo, hi = sb["diff_normal"]  # diff_normal is (source - follower)
        return float(lo), float(hi)
    if sa.get("model") == "follow" and sa.get("of") == b.tag and sa.get("diff_normal"):
        lo, hi = sa["diff_normal"]
        return -float(hi), -float(lo)
    (alo, ahi), (blo, bhi) = band(a), band(b)
    return alo - bhi, ahi - blo


def normal_states(pt: PointSpec) -> set[int]:
    sim = pt.sim or {}
    if sim.get("model") == "state":
        if sim.get("schedule"):
            return {int(v) for _, v in sim["schedule"]}
        return {int(sim.get("value", 0))}
    lo, hi = band(pt)
    assert hi - lo <= 64, f"{pt.tag}: a state rule on a point with a wide normal band"
    return set(range(int(np.ceil(lo)), int(np.floor(hi)) + 1))


def limit(rule: Any, pt: PointSpec, name: str, default: float) -> float:
    """A limit after the point's setpoint override (``setpoints: {"<rule id>.<name>": v}``)."""
    return (pt.setpoints or {}).get(f"{rule.id}.{name}", default)


def breaches(lo: float, hi: float, limits: dict[str, float], deadband: float) -> list[str]:
    """Limits that a value in [lo, hi] could trip, or that sit inside the deadband margin."""
    out = []
    for name, lim in limits.items():
        if name.startswith("hi") and not hi + deadband < lim:
            out.append(f"{name} {lim:g} vs normal max {hi:g} (+deadband {deadband:g})")
        if name.startswith("lo") and not lo - deadband > lim:
            out.append(f"{name} {lim:g} vs normal min {lo:g} (-deadband {deadband:g})")
    return out


def state_trips(values: set[int], equals: list[int] | None, mask: int | None, negate: bool = False) -> set[int]:
    hit = {v for v in values if (v in equals if equals is not None else bool(v & (mask or 0)))}
    return values - hit if negate else hit


def condition_trips(cond: Any, pts: dict[str, PointSpec]) -> list[str]:
    """Why a condition (or composite) could be true on normal data; empty when it cannot."""
    if isinstance(cond, Composite):
        parts = [condition_trips(c, pts) for c in (cond.any or cond.all or [])]
        if cond.any is not None:
            return [p for ps in parts for p in ps]
        return [p for ps in parts for p in ps] if all(parts) else []
    if isinstance(cond, Cmp):
        lo, hi = band(pts[cond.point])
        lims = {"hi": cond.hi} if cond.hi is not None else {"lo": cond.lo}
        return [f"{cond.point}: {b}" for b in breaches(lo, hi, lims, cond.deadband)]  # type: ignore[arg-type]
    if isinstance(cond, Diff):
        lo, hi = diff_band(pts[cond.diff[0]], pts[cond.diff[1]])
        lims = {"hi": cond.hi} if cond.hi is not None else {"lo": cond.lo}
        return [f"{cond.diff}: {b}" for b in breaches(lo, hi, lims, cond.deadband)]  # type: ignore[arg-type]
    assert isinstance(cond, StateIs)
    hit = state_trips(normal_states(pts[cond.point]), cond.equals, cond.mask, cond.negate)
    return [f"{cond.point}: normal state(s) {sorted(hit)} match"] if hit else []


# --- the catalog loads, and its files are what the bureau expects -----------------------


def test_shipped_catalog_loads_with_the_expected_lists(catalog: Catalog) -> None:
    stems = {p.stem: f for p, f in catalog.files}
    assert set(stems) == set(FILES)
    for stem, f in stems.items():
        name, prefix = FILES[stem]
        assert f.catalog == name and f.version == VERSION
        assert CJK.search(f.title.zh)
        for r in f.rules:
            assert r.id.startswith(prefix), r.id
            assert CJK.search(r.title.zh) and r.title.en, r.id
            assert CJK.search(r.basis) or re.search(r"\b(AQ|GB)\b", r.basis), r.id
    assert len(catalog) == sum(len(f.rules) for _, f in catalog.files)  # ids unique across files
    assert stems["building_materials"].industries == ["cement", "lime", "refractory"]
    assert stems["machinery"].industries == ["foundry", "machinery"]
    assert all(stems[s].industries == "all" for s in ("dust_explosion", "gas_detection", "fire", "common"))


# The scenario tests depend on these ids, their subjects and behaviour.
FIXED: list[tuple[str, str, dict[str, Any], set[str]]] = [
    # id, shape, attributes, subject tags on the sample site
    ("bm.coal.co", "threshold", {"limits": {"hi": 24, "hihi": 160}, "deadband": 2, "on_delay_s": 5, "off_delay_s": 10},
     {"CO-101", "CO-111"}),
    ("bm.coal.co_rate", "rate", {"window_s": 60, "rise_per_min": 10}, {"CO-101", "CO-111"}),
    ("bm.coal.temp", "threshold", {}, {"TT-101", "TT-102", "TT-111", "TT-112"}),
    ("dust.dp.deviation", "deviation", {"pct": 20, "deadband_pct": 2, "on_delay_s": 10}, {"PDT-101", "PDT-801"}),
    ("mach.cooling.diff", "difference", {"diff": ("subject", "out"), "limits": {"hi": 3.0}, "on_delay_s": 5},
     {"FT-601", "FT-701"}),
    ("mach.cooling.interlock", "interlock", {"candidate": True, "hold_s": 10}, {"FT-601", "FT-701"}),
    ("bm.gas.pressure", "threshold", {"limits": {"lo": 6, "hi": 10}}, {"PT-501"}),
    ("bm.gas.esv_interlock", "interlock", {"candidate": True, "hold_s": 5}, {"PT-501"}),
    ("fire.controller.manual", "state", {"equals": [1], "candidate": True, "on_delay_s": 30}, {"HS-301"}),
    ("fire.controller.alarm", "state", {"mask": 2, "severity": "urgent", "candidate": False}, {"FAC-301"}),
    ("common.point.stale", "stale", {"intervals": 10, "min_s": 10, "candidate": False}, set()),
    ("common.required.stale", "stale", {"intervals": 30, "min_s": 30, "candidate": True}, set()),
    ("common.required.never", "never_reported", {"grace_s": 600, "candidate": True}, set()),
    ("common.gateway.offline", "gateway_offline", {"silent_s": 30, "severity": "high", "candidate": False}, set()),
    ("common.gateway.offline_long", "gateway_offline", {"silent_s": 1800, "candidate": True}, set()),
]


@pytest.mark.parametrize(("rule_id", "shape", "attrs", "tags"), FIXED, ids=[r[0] for r in FIXED])
def test_fixed_rules_keep_their_contract(catalog: Catalog, site: SiteSpec, rule_id: str, shape: str,
                                         attrs: dict[str, Any], tags: set[str]) -> None:
    f, rule = catalog.rules[rule_id]
    assert rule.shape == shape and not rule.optional
    for k, v in attrs.items():
        assert getattr(rule, k) == v, k
    if tags:
        assert {pts["subject"].tag for _, pts in bindings(site, f, rule)} == tags


def test_cooling_and_gas_interlocks_watch_the_points_the_scenarios_drive(catalog: Catalog, site: SiteSpec) -> None:
    f, rule = catalog.rules["mach.cooling.interlock"]
    assert rule.protective.point == "power" and rule.protective.safe == 0
    got = {dev.code: {a: p.tag for a, p in pts.items()} for dev, pts in bindings(site, f, rule)}
    assert got == {
        "IF-01": {"subject": "FT-601", "out": "FT-602", "temp_out": "TT-602", "p_in": "PT-601", "power": "JS-601"},
        "IF-02": {"subject": "FT-701", "out": "FT-702", "temp_out": "TT-702", "p_in": "PT-701", "power": "JS-701"},
    }
    assert rule.when.any[0] == Diff(diff=("subject", "out"), hi=catalog.rules["mach.cooling.diff"][1].limits["hi"])
    f, rule = catalog.rules["bm.gas.esv_interlock"]
    assert [(d.code, {a: p.tag for a, p in pts.items()}) for d, pts in bindings(site, f, rule)] == [
        ("GK-01", {"subject": "PT-501", "esv": "XV-501"})]
    assert rule.when.any == [Cmp(point="subject", hi=10), Cmp(point="subject", lo=6)]
    assert rule.protective.point == "esv" and rule.protective.safe == 0


# --- every monitorable clause of REGULATIONS.md is cited --------------------------------


def facts(rule: Any) -> dict[str, Any]:
    sel = selectors(rule).get("subject")
    out: dict[str, Any] = {"shape": rule.shape, "candidate": rule.candidate, "optional": bool(rule.optional),
                           "quantity": sel.quantity if sel else None, "role": sel.role if sel else None,
                           "required_only": sel.required_only if sel else None,
                           "equipment": set(rule.applies.equipment or ())}
    if isinstance(rule, ThresholdRule | DifferenceRule):
        out.update(rule.limits)
    if isinstance(rule, StateRule):
        out.update(mask=rule.mask, equals=rule.equals)
    return out


def satisfies(rule: Any, want: dict[str, Any]) -> bool:
    have = facts(rule)
    return all(v in have["equipment"] if k == "equipment" else have.get(k) == v for k, v in want.items())


J = "《工贸企业重大事故隐患判定标准》"
DUST_SPEC = "粉尘涉爆企业安全生产风险监测预警系统数据接入规范"
CITED: list[tuple[str, str, dict[str, Any]]] = [
    # item, substring of basis, what the citing rule must be about
    ("6(1) temperature", J + "第六条第（一）项", {"quantity": "temperature", "shape": "threshold"}),
    ("6(1) temperature rate", J + "第六条第（一）项", {"quantity": "temperature", "shape": "rate"}),
    ("6(1) CO", J + "第六条第（一）项", {"quantity": "co", "shape": "threshold"}),
    ("6(1) CO rate", J + "第六条第（一）项", {"quantity": "co", "shape": "rate"}),
    ("6(1) gas suppression", J + "第六条第（一）项", {"quantity": "pressure", "role": "suppression"}),
    ("6(3) carbide silo LEL", J + "第六条第（三）项", {"quantity": "combustible_gas", "shape": "threshold"}),
    ("6(3) emergency ventilation interlock", J + "第六条第（三）项", {"shape": "interlock", "candidate": True}),
    ("6(5) gas-main pressure", J + "第六条第（五）项", {"role": "gas_main", "shape": "threshold"}),
    ("6(5) ESV interlock", J + "第六条第（五）项", {"shape": "interlock", "candidate": True}),
    ("6(6) mixing-room LEL", J + "第六条第（六）项", {"quantity": "combustible_gas"}),
    ("6(7) fused furnace cooling", J + "第六条第（七）项", {"shape": "interlock", "candidate": True}),
    ("6(8) glass furnace cooling (optional)", J + "第六条第（八）项", {"optional": True}),
    ("7(2) emergency water tank", J + "第七条第（二）项", {"quantity": "level", "shape": "threshold"}),
    ("7(2) emergency storage availability", J + "第七条第（二）项", {"shape": "state", "candidate": True}),
    ("7(4) outlet temperature", J + "第七条第（四）项", {"quantity": "temperature", "role": "outlet"}),
    ("7(4) flow difference", J + "第七条第（四）项", {"shape": "difference"}),
    ("7(4) inlet pressure", J + "第七条第（四）项", {"quantity": "pressure", "role": "cooling_water"}),
    ("7(4) heating interlock", J + "第七条第（四）项", {"shape": "interlock", "candidate": True}),
    ("7(5) burner gas-main pressure", J + "第七条第（五）项", {"role": "gas_main", "shape": "threshold"}),
    ("7(5) burner ESV interlock", J + "第七条第（五）项", {"role": "gas_main", "shape": "interlock"}),
    ("7(5) flame failure", J + "第七条第（五）项", {"quantity": "flame", "shape": "interlock"}),
    ("7(7) paint room LEL", J + "第七条第（七）项", {"quantity": "combustible_gas", "shape": "threshold"}),
    ("7(7) paint room ventilation", J + "第七条第（七）项", {"shape": "interlock", "candidate": True}),
    ("11(3) explosion venting", J + "第十一条第（三）项", {"quantity": "vent_burst"}),
    ("11(3) suppression", J + "第十一条第（三）项", {"equipment": "explosion_suppressor"}),
    ("11(3) inerting O2", J + "第十一条第（三）项", {"quantity": "o2"}),
    ("11(4) spark detection", J + "第十一条第（四）项", {"quantity": "spark_state", "equals": [1]}),
    ("11(4) spark detector fault/bypass", J + "第十一条第（四）项", {"quantity": "spark_state", "candidate": True}),
    ("11(6) airlock", J + "第十一条第（六）项", {"quantity": "airlock_fault"}),
    ("11(8) tramp removal / sander sparks", J + "第十一条第（八）项", {"candidate": True}),
    ("11(9) hydrogen", J + "第十一条第（九）项", {"quantity": "h2"}),
    ("11(9) hydrogen ventilation", J + "第十一条第（九）项", {"shape": "interlock"}),
    ("AQ 4273 §5.1.4 baseline deviation", "AQ 4273-2016 §5.1.4",
     {"shape": "deviation", "quantity": "pressure_difference"}),
    ("AQ 4273 inlet temperature 70 °C", "AQ 4273-2016", {"quantity": "temperature", "role": "inlet", "hi": 70}),
    ("GB 17919-2025 spark detection", "GB 17919-2025", {"quantity": "spark_state"}),
    ("data-access: hopper temperature", DUST_SPEC, {"quantity": "temperature", "role": "hopper"}),
    ("data-access: pressure difference", DUST_SPEC, {"quantity": "pressure_difference"}),
    ("data-access: airlock fault", DUST_SPEC, {"quantity": "airlock_fault"}),
    ("data-access: wet tank level", DUST_SPEC, {"quantity": "level", "equipment": "wet_dust_collector"}),
    ("data-access: wet circulation flow", DUST_SPEC, {"quantity": "flow", "role": "circulation"}),
    ("GB/T 50493 LEL 25/50", "GB/T 50493-2019 §5.5.2", {"quantity": "combustible_gas", "hi": 25, "hihi": 50}),
    ("GB/T 50493 CO", "GB/T 50493-2019 §5.5.2", {"quantity": "co"}),
    ("GB/T 50493 O2 19.5/23.5", "GB/T 50493-2019 §5.5.2", {"quantity": "o2", "lo": 19.5, "hi": 23.5}),
    ("fire alarm bit", "GB 26875.3", {"quantity": "fire_status", "mask": 2}),
    ("fire fault bit", "GB 26875.3", {"quantity": "fire_status", "mask": 4}),
    ("fire isolated bit", "GB 26875.3", {"quantity": "fire_status", "mask": 8, "candidate": True}),
    ("fire main power fault", "GB 26875.3", {"quantity": "fire_status", "mask": 256, "candidate": True}),
    ("fire backup power fault", "GB 26875.3", {"quantity": "fire_status", "mask": 512, "candidate": True}),
    ("fire bus fault", "GB 26875.3", {"quantity": "fire_status", "mask": 1024, "candidate": True}),
    ("fire controller manual", "GB 35181-2025", {"quantity": "manual_mode", "equals": [1], "candidate": True}),
    ("fire pipe-network pressure lo", "GB 50440", {"quantity": "pressure", "role": "pipe_network"}),
    ("fire water tank level lo", "GB 50440", {"quantity": "level", "shape": "threshold"}),
    ("fire device offline", "GB 50440", {"quantity": "fire_status", "shape": "stale", "candidate": True}),
    ("required point stale", J, {"shape": "stale", "required_only": True, "candidate": True}),
    ("required point never reported", J, {"shape": "never_reported", "candidate": True}),
    ("gateway offline", "", {"shape": "gateway_offline", "candidate": False}),
    ("gateway offline beyond its limit", J, {"shape": "gateway_offline", "candidate": True}),
]


@pytest.mark.parametrize(("item", "needle", "want"), CITED, ids=[c[0] for c in CITED])
def test_every_regulation_item_is_cited(catalog: Catalog, item: str, needle: str, want: dict[str, Any]) -> None:
    citing = [r.id for _, r in rules_of(catalog) if needle in r.basis and satisfies(r, want)]
    assert citing, f"no rule cites {item!r} ({needle} with {want})"


def test_candidates_only_for_failure_patterns(catalog: Catalog) -> None:
    """A limit breach is an ordinary alarm; candidates need a failure pattern of 判定标准."""
    for _, r in rules_of(catalog):
        if r.candidate:
            assert isinstance(r, InterlockRule | StateRule) or r.shape in {
                "stale", "never_reported", "gateway_offline",
                "stuck", "copied", "impossible", "clock_skew", "baseline_age"}, r.id  # data trust: issue 14


# --- selectors name points that exist on the sample site -------------------------------

# (rule, alias) whose point the sample devices of that kind do not have.
ABSENT_ON_SAMPLE = {
    ("dust.inlet.isolation_interlock", "valve"): "the sample collector reports no isolation-valve position",
}


def test_selectors_match_points_of_sample_equipment(catalog: Catalog, site: SiteSpec) -> None:
    kinds: dict[str, list[DeviceSpec]] = {}
    for _, d in devices(site):
        kinds.setdefault(d.kind, []).append(d)
    problems = []
    for _, r in rules_of(catalog):
        for kind in r.applies.equipment or ():
            for alias, sel in selectors(r).items():
                if kind not in kinds or sel.quantity == "*" or (r.id, alias) in ABSENT_ON_SAMPLE:
                    continue
                if not any(matches(sel, pt) for d in kinds[kind] for pt in d.points):
                    problems.append(f"{r.id}: {alias} {sel.model_dump(exclude_defaults=True)} on {kind}")
    assert not problems, "\n".join(problems)
    unused = {a for a in ABSENT_ON_SAMPLE if a[0] not in catalog.rules}
    assert not unused


def test_multi_point_selectors_bind_on_sample_equipment(catalog: Catalog, site: SiteSpec) -> None:
    """Where a multi-point rule's subject exists, each other alias picks exactly one point
    (rules.compile skips the device otherwise)."""
    problems = []
    for f, r in rules_of(catalog):
        if not isinstance(r, MULTI):
            continue
        for plant, dev in devices(site):
            if not in_scope(f, r, plant, dev) or not any(matches(r.points["subject"], pt) for pt in dev.points):
                continue
            for alias, sel in r.points.items():
                found = [pt.tag for pt in dev.points if matches(sel, pt)]
                if alias != "subject" and len(found) != 1 and (r.id, alias) not in ABSENT_ON_SAMPLE:
                    problems.append(f"{r.id} on {dev.code}: {alias} matches {found}")
    assert not problems, "\n".join(problems)


def test_every_sample_point_with_a_baseline_rule_has_a_baseline(catalog: Catalog, site: SiteSpec) -> None:
    for f, r in rules_of(catalog):
        if isinstance(r, DeviationRule):
            for _, pts in bindings(site, f, r):
                pt = pts["subject"]
                assert pt.baseline is not None, f"{r.id}: {pt.tag} has no baseline"
                assert pt.sim is not None and pt.baseline == pt.sim.get("baseline", pt.baseline), pt.tag


# --- the rule compiler binds the sample site the same way --------------------------------


def registry_view(site: SiteSpec) -> RegistryView:
    """The sample site as the registry tables would hold it (ids in file order)."""
    points, devs, plants, gws = [], {}, {}, []
    for e in site.enterprises:
        for p in e.plants:
            plants[p.id] = PlantRow(p.id, p.industry, e.id)
            gws += [GatewayRow(g.id, p.id, g.enabled) for g in p.gateways]
            for d in p.devices:
                devs[len(devs) + 1] = DeviceRow(len(devs) + 1, p.id, d.kind, d.code)
                points += [PointRow(len(points) + i + 1, d.gateway, pt.tag, len(devs), pt.quantity, pt.role,
                                    pt.required, pt.interval_s, dict(pt.setpoints or {}), pt.baseline, pt.unit)
                           for i, pt in enumerate(d.points)]
    return RegistryView(points, devs, plants, gws)


@pytest.fixture(scope="module")
def compiled(catalog: Catalog, site: SiteSpec) -> Compiled:
    return compile_rules(catalog, registry_view(site))


def compiled_tags(compiled: Compiled, site: SiteSpec) -> set[tuple[str, str]]:
    """(instance rule id, subject tag or gateway id) of every compiled instance."""
    tag_of = {f"p:{p.id}": p.tag for p in registry_view(site).points}
    return {(i.rule_id, tag_of.get(i.subject, i.subject.removeprefix("g:"))) for i in compiled.instances}


def test_the_rule_compiler_binds_the_sample_site_as_these_tests_assume(
        catalog: Catalog, site: SiteSpec, compiled: Compiled) -> None:
    got = compiled_tags(compiled, site)
    want = set()
    for f, r in rules_of(catalog):
        if r.optional or any(sel.quantity == "*" for sel in selectors(r).values()) or r.shape in (
                "gateway_offline", "clock_skew"):
            continue
        names = [f"{r.id}:{n}" for n in r.limits] if isinstance(r, ThresholdRule | DifferenceRule) else [r.id]
        want |= {(n, pts["subject"].tag) for _, pts in bindings(site, f, r) for n in names}
    # common.* and the data-trust rules binding by unit (quantity "*") have their own tests (test_trust_shapes)
    by_unit = {rid for rid, (_, r) in catalog.rules.items()
               if r.shape in ("stuck", "copied", "impossible", "clock_skew")}
    assert {x for x in got if not x[0].startswith("common.") and x[0].partition(":")[0] not in by_unit} == want
    assert {x for x in got if x[0].startswith("common.gateway.")} == {
        (r, gw.id) for r in ("common.gateway.offline", "common.gateway.offline_long") for _, gw in site.gateways()}
    for rid, tag in [("bm.coal.co:hi", "CO-111"), ("bm.coal.co:hihi", "CO-101"), ("bm.coal.co_rate", "CO-111"),
                     ("dust.dp.deviation", "PDT-801"), ("mach.cooling.diff:hi", "FT-601"),
                     ("mach.cooling.interlock", "FT-601"), ("bm.gas.pressure:hi", "PT-501"),
                     ("bm.gas.esv_interlock", "PT-501"), ("fire.controller.manual", "HS-301"),
                     ("fire.controller.alarm", "FAC-301")]:
        assert (rid, tag) in got
    # the only rule x device pair that does not bind is the documented absence
    assert [s.split(" on ")[0] for s in compiled.skipped] == [r for r, _ in ABSENT_ON_SAMPLE], compiled.skipped


def test_common_stale_rules_bind_every_point(site: SiteSpec, compiled: Compiled) -> None:
    got = compiled_tags(compiled, site)
    all_tags = {pt.tag for *_, pt in site.points()}
    required = {pt.tag for *_, pt in site.points() if pt.required}
    assert {t for r, t in got if r == "common.point.stale"} == all_tags
    assert {t for r, t in got if r == "common.required.stale"} == required
    assert {t for r, t in got if r == "common.required.never"} == required
    assert ("common.point.stale", "YS-801") in got and ("common.required.stale", "YS-801") in got


# --- zero alarms on normal data ----------------------------------------------------------


def test_no_limit_can_trip_on_normal_bands(catalog: Catalog, site: SiteSpec) -> None:
    problems: list[str] = []
    checked = 0
    for f, r in rules_of(catalog):
        if r.optional:
            continue
        for dev, pts in bindings(site, f, r):
            where = f"{r.id} on {dev.code}"
            subject = pts["subject"]
            why: list[str] = []
            if isinstance(r, ThresholdRule):
                lims = {n: limit(r, subject, n, v) for n, v in r.limits.items()}
                why = breaches(*band(subject), lims, limit(r, subject, "deadband", r.deadband))
            elif isinstance(r, DeviationRule):
                b = limit(r, subject, "baseline", subject.baseline or 0.0)
                lo, hi = band(subject)
                dev_pct = max(abs(lo - b), abs(hi - b)) / abs(b) * 100.0
                pct = limit(r, subject, "pct", r.pct)
                if not dev_pct + limit(r, subject, "deadband_pct", r.deadband_pct) < pct:
                    why = [f"normal band deviates up to {dev_pct:.1f} % from {b:g} (limit {pct:g} %)"]
            elif isinstance(r, DifferenceRule):
                lims = {n: limit(r, subject, n, v) for n, v in r.limits.items()}
                why = breaches(*diff_band(pts[r.diff[0]], pts[r.diff[1]]), lims,
                               limit(r, subject, "deadband", r.deadband))
            elif isinstance(r, StateRule):
                hit = state_trips(normal_states(subject), r.equals, r.mask)
                why = [f"normal state(s) {sorted(hit)} match"] if hit else []
            elif isinstance(r, InterlockRule):
                why = condition_trips(r.when, pts)
            elif isinstance(r, CompositeRule):
                why = condition_trips(Composite(**{r.shape: r.conditions}), pts)
            else:
                continue
            checked += 1
            problems += [f"{where} ({subject.tag}): {w}" for w in why]
    assert not problems, "\n".join(problems)
    assert checked >= 30  # the sample site really exercises the catalog


def test_rate_rules_stay_quiet_on_simulated_normal_data(catalog: Catalog, site: SiteSpec) -> None:
    """Rates have no band to check against: run 6 h of the sample signals instead.

    Rate is taken as (v(t) - v(t - window)) / window, the noisiest common
    definition, sample by sample and without the rule's on-delay.
    """
    gateway_of = {pt.tag: dev.gateway for _, dev in devices(site) for pt in dev.points}
    t = np.arange(0.0, 6 * 3600.0, 1.0)
    problems = []
    for seed in (0, 1):
        models = site_models(site, seed=seed)
        for f, r in rules_of(catalog):
            if not isinstance(r, RateRule) or r.optional:
                continue
            w = int(r.window_s)
            for _, pts in bindings(site, f, r):
                tag = pts["subject"].tag
                v = models[gateway_of[tag]][tag].value(t)
                per_min = (v[w:] - v[:-w]) * 60.0 / w
                if r.rise_per_min is not None and per_min.max() >= r.rise_per_min - r.deadband:
                    problems.append(f"{r.id} on {tag} (seed {seed}): rises {per_min.max():.2f}/min")
                if r.fall_per_min is not None and -per_min.min() >= r.fall_per_min - r.deadband:
                    problems.append(f"{r.id} on {tag} (seed {seed}): falls {-per_min.min():.2f}/min")
    assert not problems, "\n".join(problems)


# --- broken files are reported with their lines ------------------------------------------

BAD_SEMANTICS = """\
catalog: bad
title: {zh: 错误示例, en: Broken}
version: "t"
industries: all
rules:
  - id: t.no_point
    title: {zh: 缺测点, en: No point}
    basis: test basis
    applies: {equipment: [bag_filter]}
    shape: threshold
    limits: {hi: 1}
  - id: t.unknown_alias
    title: {zh: 未知别名, en: Unknown alias}
    basis: test basis
    applies: {equipment: [gas_kiln]}
    shape: interlock
    points: {subject: {quantity: pressure}, esv: {quantity: valve_open}}
    when: {point: subject, hi: 10}
    protective: {point: valve, safe: 0}
    hold_s: 5
  - id: t.no_subject
    title: {zh: 无主测点, en: No subject}
    basis: test basis
    applies: {equipment: [induction_furnace]}
    shape: difference
    points: {a: {quantity: flow, role: inlet}, b: {quantity: flow, role: outlet}}
    diff: [a, b]
    limits: {hi: 3}
"""

BAD_FIELDS = """\
catalog: Bad Catalog
title: {zh: 错误示例, en: Broken, fr: Cassé}
version: "t"
industries: all
rules:
  - id: t.severity
    title: {zh: 级别, en: Severity}
    basis: test basis
    applies: {point: {quantity: co}}
    shape: threshold
    limits: {hi: 24}
    severity: critical
"""


def problems_of(tmp_path: Path, text: str) -> list[tuple[int | None, str]]:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError) as err:
        load_catalog(tmp_path)
    assert all(p.path == str(path) for p in err.value.problems)
    return sorted((p.line, p.message) for p in err.value.problems)


def test_semantic_errors_are_reported_on_their_lines(tmp_path: Path) -> None:
    got = problems_of(tmp_path, BAD_SEMANTICS)
    assert [line for line, _ in got] == [9, 12, 26]
    assert "applies.point is required" in got[0][1]
    assert "unknown point alias(es) ['valve']" in got[1][1]
    assert "must include the alias 'subject'" in got[2][1]


RULE_LINE, FIELD_LINE = 6, 12  # BAD_FIELDS: the rule starts on line 6, its bad severity is on line 12


def test_field_errors_are_reported_on_their_lines(tmp_path: Path) -> None:
    got = problems_of(tmp_path, BAD_FIELDS)
    assert [line for line, _ in got] == [1, 2, FIELD_LINE]


def test_field_errors_are_all_reported_with_a_line(tmp_path: Path) -> None:
    got = problems_of(tmp_path, BAD_FIELDS)
    assert [line for line, _ in got][:2] == [1, 2] and len(got) == 3
    assert "catalog" in got[0][1] and "title.fr" in got[1][1] and "severity" in got[2][1]
    assert got[2][0] in (RULE_LINE, FIELD_LINE)
