"""What the console's readings charts draw of a rule: its limits, sorted by what they limit, the rule's point
aliases bound to the registry, and the difference of two points as a series of its own. Pure (no SQL, no app).

Two pages draw a rule's readings: the board's trend of an alarm (`api.web.disposal`, read from `readings`
in time buckets) and the ledger's evidence window of a candidate (`api.web.ledger`, read from the readings
snapshot kept with the evidence). Both must draw what the rule judges — a limit on a difference of two points
(the cooling-water Δ: `difference` rules, `diff:` conditions) is drawn on that difference, never as a line on
the raw readings of the two meters — so the sorting, the binding and the series shapes live here, once, for
both (`static/charts.js` draws them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rules.evaluate import BAD
from rules.model import Cmp, Composite, CompositeRule, Diff, DifferenceRule, InterlockRule, PointSelector, ThresholdRule

LIMIT_NAMES = ("hihi", "hi", "lo", "lolo")


def cst_ms(t: float) -> int:
    """Epoch ms shifted to CST: the chart draws them as UTC (`useUTC`), so its axis shows the bureau's clock."""
    return int((t + 8 * 3600) * 1000)


def limits_of(rule: Any) -> list[dict[str, Any]]:
    """The numeric limits a catalog rule names (threshold limits, or hi/lo in its conditions), each named after
    what it limits: nothing for the rule's own point ("hi"), a point alias ("temp_out hi"), or the difference
    of two ("Δ subject-out hi", a `difference` rule's own limits as well as a `diff:` condition's)."""
    out: list[dict[str, Any]] = []

    def walk(v: Any, on: str) -> None:
        if isinstance(v, dict):
            # a dict that names a point or a difference limits that; its nested dicts (a rule's `limits:`) too
            here = str(v["point"]) if isinstance(v.get("point"), str) else \
                ("Δ " + "-".join(map(str, v["diff"])) if isinstance(v.get("diff"), list) else on)
            for k, x in v.items():
                if k in LIMIT_NAMES and isinstance(x, (int, float)) and not isinstance(x, bool):
                    out.append({"name": f"{here} {k}".strip(), "kind": k, "value": float(x)})
                else:
                    walk(x, here)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x, on)

    walk(rule.model_dump(mode="json", exclude={"title", "description", "basis", "applies"}), "")
    unique: dict[tuple[str, float], dict[str, Any]] = {}
    for d in out:
        unique.setdefault((d["name"], d["value"]), d)
    return list(unique.values())


def subject_limits(rule: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rule's limits split into those on the alarm's own point (drawn as lines on its trend) and those on
    something else — a difference, another point of the rule — which `trend_limits` sorts further."""
    own: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for lim in limits_of(rule):
        name = str(lim["name"])
        (own if name == lim["kind"] or name.startswith("subject ") else other).append(lim)
    return own, other


@dataclass(frozen=True)
class Delta:
    """One difference `a − b` of two of the rule's point aliases, and the limits the rule puts on it."""

    a: str
    b: str
    limits: list[dict[str, Any]]


@dataclass(frozen=True)
class TrendLimits:
    """What a trend can draw of a rule: limits on the subject point, limits on differences of two points, and
    the rest (limits on another single point), which the chart names above itself."""

    own: list[dict[str, Any]] = field(default_factory=list)
    deltas: list[Delta] = field(default_factory=list)
    other: list[dict[str, Any]] = field(default_factory=list)
    #: a `difference` rule: the Δ is what the alarm is about, so the chart is the Δ alone
    delta_only: bool = False


def _limit(kind: str, value: float, name: str | None = None) -> dict[str, Any]:
    return {"name": name or kind, "kind": kind, "value": float(value)}


def _conditions(rule: InterlockRule | CompositeRule) -> list[Any]:
    if isinstance(rule, CompositeRule):
        return list(rule.conditions)
    when = rule.when
    return list(when.any or when.all or []) if isinstance(when, Composite) else [when]


def trend_limits(rule: Any, setpoints: Mapping[str, Any] | None = None) -> TrendLimits:
    """The limits of a catalog rule as a trend draws them, with the subject point's own setpoints where the
    compiler applies them (`rules.compile`: a threshold's and a difference rule's limits,
    `setpoints["<rule id>.<limit>"]`; conditions of an interlock or composite use the catalog's values). Pure.
    """
    sp = setpoints or {}

    def value(name: str, default: float) -> float:
        got = sp.get(f"{rule.id}.{name}", default)
        return float(got) if isinstance(got, (int, float)) and not isinstance(got, bool) else float(default)

    if isinstance(rule, ThresholdRule):
        return TrendLimits(own=[_limit(k, value(k, v)) for k, v in rule.limits.items()])
    if isinstance(rule, DifferenceRule):
        return TrendLimits(deltas=[Delta(rule.diff[0], rule.diff[1],
                                         [_limit(k, value(k, v)) for k, v in rule.limits.items()])],
                           delta_only=True)
    if isinstance(rule, InterlockRule | CompositeRule):
        own: list[dict[str, Any]] = []
        other: list[dict[str, Any]] = []
        deltas: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for c in _conditions(rule):
            if not isinstance(c, Cmp | Diff) or (c.hi is None and c.lo is None):
                continue  # a state condition: nothing to draw
            kind, v = ("hi", c.hi) if c.hi is not None else ("lo", c.lo)
            assert v is not None
            if isinstance(c, Diff):
                deltas.setdefault((c.diff[0], c.diff[1]), []).append(_limit(kind, v))
            elif c.point == "subject":
                own.append(_limit(kind, v, f"subject {kind}"))
            else:
                other.append(_limit(kind, v, f"{c.point} {kind}"))
        return TrendLimits(own=own, deltas=[Delta(a, b, lims) for (a, b), lims in deltas.items()], other=other)
    own, other = subject_limits(rule)
    return TrendLimits(own=own, other=other)


def _selects(sel: PointSelector, p: Mapping[str, Any]) -> bool:
    """The compiler's point selector (`rules.compile._matches`) on a point row."""
    return (sel.quantity in ("*", p["quantity"]) and (sel.role is None or sel.role == p["role"])
            and (not sel.required_only or bool(p["required"])))


def bind_aliases(rule: Any, subject_id: int, device_points: Sequence[Mapping[str, Any]]
                 ) -> dict[str, Mapping[str, Any]]:
    """The rule's point aliases bound to the points of the subject's device, as the compiler binds them
    (`rules.compile._multi`): `subject` is the alarm's point; every other alias is the one point of the device
    its selector matches — an alias matching none or several is left out (the registry changed since the
    alarm; its Δ is then named, not drawn). Pure."""
    pts = {int(p["id"]): p for p in device_points}
    out: dict[str, Mapping[str, Any]] = {}
    if subject_id in pts:
        out["subject"] = pts[subject_id]
    for alias, sel in (getattr(rule, "points", None) or {}).items():
        if alias == "subject":
            continue
        found = [p for p in device_points if _selects(sel, p)]
        if len(found) == 1:
            out[alias] = found[0]
    return out


def delta_name(tag_a: str, tag_b: str) -> str:
    return f"Δ {tag_a} − {tag_b}"


def delta_series(tag_a: str, tag_b: str, rows: Sequence[tuple[datetime, float, float]],
                 limits: list[dict[str, Any]], axis: int) -> dict[str, Any]:
    """One chart series of a difference: each bucket as [time (CST ms), a − b, a, b] (the tooltip shows the two
    meters beside their difference), the rule's limits on it drawn on its own axis. Pure."""
    return {"name": delta_name(tag_a, tag_b), "parts": [tag_a, tag_b], "axis": axis,
            "data": [[cst_ms(t.timestamp()), round(va - vb, 6), va, vb] for t, va, vb in rows],
            "limits": [{"name": f"Δ {lim['kind']}", "kind": lim["kind"], "value": lim["value"]} for lim in limits]}


#: Aligned rows (time, a, b) of a difference of two bound points, from wherever a chart reads them.
RowsOf = Callable[[Mapping[str, Any], Mapping[str, Any]], Sequence[tuple[datetime, float, float]]]


def bound_deltas(lim: TrendLimits, bound: Mapping[str, Mapping[str, Any]], rows_of: RowsOf
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rule's differences a chart draws, and the limits it names instead: each Δ whose two aliases are bound
    (`bind_aliases`) and for which `rows_of(point a, point b)` gives aligned rows becomes a series on the
    right-hand axis (`delta_series`); any other Δ's limits are named ("Δ subject-out hi 3"), after the rule's
    limits on other single points (`lim.other`). Returns (Δ series, limits to name). Pure but for `rows_of`."""
    deltas: list[dict[str, Any]] = []
    named = list(lim.other)
    for d in lim.deltas:
        pa, pb = bound.get(d.a), bound.get(d.b)
        rows = rows_of(pa, pb) if pa is not None and pb is not None else []
        if pa is None or pb is None or not rows:  # not bound, or no aligned readings: named, not drawn
            named.extend({**x, "name": f"Δ {d.a}-{d.b} {x['kind']}"} for x in d.limits)
            continue
        deltas.append(delta_series(str(pa["tag"]), str(pb["tag"]), rows, d.limits, 1))
    return deltas, named


def held_difference(a: Iterable[tuple[float, float]], b: Iterable[tuple[float, float]]
                    ) -> list[tuple[datetime, float, float]]:
    """The difference a − b as the rule engine judges it on a stream of readings (`rules.evaluate`: each point's
    newest valid value is held, and every leaf is stepped once per distinct reading time): one row (time, held
    a, held b) per time at which either point reported, from the first time both have. `a` and `b` are
    (epoch s, value) pairs of valid readings, in any order. Pure."""
    events = sorted([(t, 0, v) for t, v in a] + [(t, 1, v) for t, v in b])
    held: list[float | None] = [None, None]
    out: list[tuple[datetime, float, float]] = []
    k = 0
    while k < len(events):
        t = events[k][0]
        while k < len(events) and events[k][0] == t:
            held[events[k][1]] = events[k][2]
            k += 1
        ha, hb = held
        if ha is not None and hb is not None:
            out.append((datetime.fromtimestamp(t, UTC), ha, hb))
    return out


def reading_at(r: Mapping[str, Any]) -> tuple[float, float] | None:
    """A reading of an evidence snapshot as (epoch s, value), or None without a time or a number. A boolean
    counts as 1/0, as the engine stores it."""
    v = r.get("value")
    if isinstance(v, bool):
        v = 1.0 if v else 0.0
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    try:
        return datetime.fromisoformat(str(r.get("time"))).timestamp(), float(v)
    except ValueError:
        return None


def valid_reading(r: Mapping[str, Any]) -> tuple[float, float] | None:
    """`reading_at`, and None too when the engine would not have held the value: bad quality
    (`rules.evaluate.BAD`; a textual quality such as "good" counts as valid)."""
    q = r.get("quality")
    if isinstance(q, (int, float)) and not isinstance(q, bool) and q >= BAD:
        return None
    return reading_at(r)


def trend_chart(tag: str, points: list[tuple[datetime, float]], activated_at: float | None,
                cleared_at: float | None, limits: list[dict[str, Any]], other: list[dict[str, Any]],
                labels: dict[str, str], deltas: Sequence[dict[str, Any]] = (), delta_only: bool = False,
                compact: bool = True) -> dict[str, Any]:
    """The chart data of one rule's readings (drawn by static/charts.js): the point's line with its limits and
    the activation marks; with `deltas` (from `delta_series`) also each difference on a right-hand axis with
    its own limits, or — `delta_only`, a difference rule — the difference alone on the main axis. `compact`:
    the board's small chart (no legend unless two axes); the ledger's evidence chart is not. Pure."""
    marks = []
    if activated_at is not None:
        marks.append({"name": labels["activated"], "x": cst_ms(activated_at)})
    if cleared_at is not None and activated_at is not None and cleared_at >= activated_at:
        marks.append({"name": labels["cleared"], "x": cst_ms(cleared_at)})
    notes = [f"{lim['name']} {lim['value']:g}" for lim in other]
    if delta_only and deltas:
        first = dict(deltas[0])
        first["axis"] = 0
        main_limits = first.pop("limits")
        series = [first, *[{**d, "axis": 1} for d in deltas[1:]]]
    else:
        main_limits = [{"name": lim["kind"], "kind": lim["kind"], "value": lim["value"]} for lim in limits]
        series = [{"name": tag, "data": [[cst_ms(t.timestamp()), v] for t, v in points]},
                  *[{**d, "axis": 1} for d in deltas]]
    return {"kind": "readings", "series": series, "limits": main_limits, "marks": marks, "notes": notes,
            "compact": compact}
