"""The pure rule evaluator: (batch arrays, state, now) -> (state updates, transitions).

No I/O. The engine adapter (rules.engine) applies the updates only after the
batch's transaction has committed, so a failed commit leaves the state as it
was and the retried batch is evaluated afresh.

Policy (documented for operators):
- Time is the reading's own timestamp ("data time"). On-delay, off-delay and
  interlock hold times are confirmed by later readings, so the result does not
  depend on when a batch happens to arrive.
- Out of order: a reading older than or equal to the newest reading already
  seen for its point is stored but not evaluated; history is not rewritten.
  (This also makes QoS1 redelivery after a crash harmless.)
- Quality: ``bad`` readings are stored but neither set nor clear a condition
  and do not count as data for staleness; ``uncertain`` is evaluated as good.
- Readings of several points with the same timestamp are applied together
  before a multi-point condition is evaluated.
- Staleness, never-reported, gateway-offline and device-offline rules run on
  the timer tick against the collector's clock (arrival time), so a gateway
  with a wrong clock or a backlog being replayed is not mistaken for a dead one.

Fast path: in normal operation almost no reading comes near a limit. A
vectorised pre-filter over the whole batch finds the few points whose
readings could change some condition; only instances on those points (plus
instances already away from normal, and multi-point instances whose points
reported) are stepped through their readings one by one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.readings import Readings
from core.timeconst import US_PER_S
from rules import shapes_trust
from rules.compile import Compiled, Expr, Instance, Leaf, leaves_of

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BAD = 2


@dataclass(frozen=True, slots=True)
class InstState:
    cond: bool = False
    since_us: int = 0
    active: bool = False
    leaves: tuple[bool, ...] = ()

    @property
    def default(self) -> bool:
        return not self.cond and not self.active and not any(self.leaves)


DEFAULT = InstState()


TransitionKind = Literal["activate", "clear"]


@dataclass(frozen=True, slots=True)
class Transition:
    index: int  # instance index
    kind: TransitionKind
    time_us: int
    value: float | None
    reason: str


@dataclass
class PointState:
    """Per point id (dense arrays): newest data time, held value, last valid arrival (wall s)."""

    last_t: I64
    last_v: F64
    arrival: F64

    @classmethod
    def empty(cls, size: int) -> PointState:
        return cls(np.full(size, -1, np.int64), np.full(size, np.nan), np.zeros(size))

    def grow(self, size: int) -> PointState:
        if size <= self.last_t.shape[0]:
            return self
        n = self.last_t.shape[0]
        return PointState(
            np.concatenate([self.last_t, np.full(size - n, -1, np.int64)]),
            np.concatenate([self.last_v, np.full(size - n, np.nan)]),
            np.concatenate([self.arrival, np.zeros(size - n)]),
        )


@dataclass
class State:
    points: PointState
    inst: dict[int, InstState] = field(default_factory=dict)
    history: dict[int, tuple[I64, F64]] = field(default_factory=dict)  # rate points
    seen: npt.NDArray[np.bool_] | None = None  # per point: evaluated since the rules were (re)compiled
    gw_last_seen: dict[str, float] = field(default_factory=dict)
    gw_offline_at: dict[str, float] = field(default_factory=dict)  # status {"online": false} time
    dev_offline_at: dict[tuple[str, str], float] = field(default_factory=dict)  # (gateway, device): DDEATH arrival
    trust: shapes_trust.TrustState | None = None  # data-trust shapes (issue 14)


@dataclass
class Updates:
    """What a batch or tick changes; applied by the engine after commit."""

    pid: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    last_t: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    last_v: F64 = field(default_factory=lambda: np.empty(0))
    arrival_pid: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    inst: dict[int, InstState] = field(default_factory=dict)
    history: dict[int, tuple[I64, F64]] = field(default_factory=dict)
    evaluated: set[int] = field(default_factory=set)
    seen_pid: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    gw_last_seen: dict[str, float] = field(default_factory=dict)
    gw_offline_at: dict[str, float | None] = field(default_factory=dict)
    dev_offline_at: dict[tuple[str, str], float | None] = field(default_factory=dict)  # None: alive again
    arrival_now: float = 0.0
    trust: shapes_trust.TrustUpdates | None = None


def apply(state: State, u: Updates) -> None:
    """Fold committed updates into the state (the only mutation of State)."""
    if u.pid.size:
        state.points.last_t[u.pid] = u.last_t
        ok = ~np.isnan(u.last_v)
        state.points.last_v[u.pid[ok]] = u.last_v[ok]
    if u.arrival_pid.size:
        state.points.arrival[u.arrival_pid] = u.arrival_now
    for i, s in u.inst.items():
        if s.default:
            state.inst.pop(i, None)
        else:
            state.inst[i] = s
    state.history.update(u.history)
    if state.seen is not None and u.seen_pid.size:
        state.seen[u.seen_pid] = True
    state.gw_last_seen.update(u.gw_last_seen)
    if u.trust is not None:
        state.trust = shapes_trust.apply(state.trust, u.trust)
    for gw, at in u.gw_offline_at.items():
        if at is None:
            state.gw_offline_at.pop(gw, None)
        else:
            state.gw_offline_at[gw] = at
    for dev, at in u.dev_offline_at.items():
        if at is None:
            state.dev_offline_at.pop(dev, None)
        else:
            state.dev_offline_at[dev] = at


class Index:
    """Lookup structures over the compiled instances, built once per (re)compile."""

    def __init__(self, compiled: Compiled, size: int):
        self.instances = compiled.instances
        self.size = size
        self.min_ge = np.full(size, np.inf)
        self.max_le = np.full(size, -np.inf)
        self.state_point = np.zeros(size, bool)
        self.rate_point = np.zeros(size, bool)
        self.rate_ge = np.full(size, np.inf)
        self.rate_le = np.full(size, -np.inf)
        self.rate_window: dict[int, int] = {}
        self.by_point: dict[int, list[int]] = defaultdict(list)  # point -> instances reading it
        self.multi: set[int] = set()
        self.multi_point = np.zeros(size, bool)  # points read by a multi-point instance
        # Leaves of composite conditions only: a single comparison is its own leaf (a list per instance
        # costs ~35 MB at 100k points).
        self._node_leaves: dict[int, tuple[Leaf, ...]] = {}
        self.stale: list[int] = []
        self.never: list[int] = []
        self.gateway: list[int] = []
        self.device: list[int] = []
        for i, inst in enumerate(self.instances):
            if inst.expr is None:
                if inst.stale_us:
                    self.stale.append(i)
                elif inst.grace_us:
                    self.never.append(i)
                elif inst.device_id is not None:
                    self.device.append(i)
                elif inst.silent_us:
                    self.gateway.append(i)
                continue
            lv = self.leaves(i)
            for p in inst.points:
                self.by_point[p].append(i)
            if len(inst.points) > 1:
                self.multi.add(i)
                self.multi_point[list(inst.points)] = True
                continue
            for leaf in lv:
                if leaf.kind == "ge":
                    self.min_ge[leaf.a] = min(self.min_ge[leaf.a], leaf.limit)
                elif leaf.kind == "le":
                    self.max_le[leaf.a] = max(self.max_le[leaf.a], leaf.limit)
                elif leaf.kind in ("eq", "mask", "ne"):
                    self.state_point[leaf.a] = True
                elif leaf.kind == "rate_ge":
                    self.rate_point[leaf.a] = True
                    self.rate_ge[leaf.a] = min(self.rate_ge[leaf.a], leaf.limit)
                elif leaf.kind == "rate_le":
                    self.rate_point[leaf.a] = True
                    self.rate_le[leaf.a] = max(self.rate_le[leaf.a], leaf.limit)
        # The clock-driven rules as arrays: a tick compares every point at once (a stale rule on each of
        # 100k points would otherwise be 100k Python steps per second).
        self.stale_idx = np.array(self.stale, np.int64)
        self.stale_point = np.array([self.instances[i].point_id for i in self.stale], np.int64)
        self.stale_limit_us = np.array([self.instances[i].stale_us for i in self.stale], np.float64)
        self.never_idx = np.array(self.never, np.int64)
        self.never_point = np.array([self.instances[i].point_id for i in self.never], np.int64)
        self.never_grace_us = np.array([self.instances[i].grace_us for i in self.never], np.float64)
        self.tick_pos = np.full(len(self.instances), -1, np.int64)  # instance -> position in its tick array
        self.tick_pos[self.stale_idx] = np.arange(len(self.stale))
        self.tick_pos[self.never_idx] = np.arange(len(self.never))
        self.trust = shapes_trust.TrustIndex(self.instances, size)
        for i, inst in enumerate(self.instances):
            if inst.expr is None:
                continue
            for leaf in self.leaves(i):
                if leaf.kind.startswith("rate"):
                    self.rate_window[leaf.a] = max(self.rate_window.get(leaf.a, 0), leaf.window_us)

    def leaves(self, i: int) -> tuple[Leaf, ...]:
        """The comparisons of instance i's condition, in order."""
        e = self.instances[i].expr
        if isinstance(e, Leaf):
            return (e,)
        got = self._node_leaves.get(i)
        if got is None:
            assert e is not None
            got = self._node_leaves[i] = tuple(leaves_of(e))
        return got


# --- leaves --------------------------------------------------------------------------------


def _leaf_value(leaf: Leaf, held: dict[int, float], rate: dict[int, float]) -> float:
    if leaf.kind in ("diff_ge", "diff_le"):
        return held.get(leaf.a, math.nan) - held.get(leaf.b, math.nan)
    if leaf.kind in ("rate_ge", "rate_le"):
        return rate.get(leaf.a, math.nan)
    return held.get(leaf.a, math.nan)


def step_leaf(leaf: Leaf, x: float, prev: bool) -> bool:
    """Hysteresis: trip at the limit, clear once past the deadband; NaN (no data) keeps the state."""
    if math.isnan(x):
        return prev
    k = leaf.kind
    if k in ("ge", "diff_ge", "rate_ge"):
        if x >= leaf.limit:
            return True
        return False if x < leaf.limit - leaf.deadband else prev
    if k in ("le", "diff_le", "rate_le"):
        if x <= leaf.limit:
            return True
        return False if x > leaf.limit + leaf.deadband else prev
    if k == "eq":
        return (int(round(x)) in leaf.codes) != leaf.negate
    if k == "mask":
        return ((int(round(x)) & leaf.codes[0]) != 0) != leaf.negate
    return abs(x - leaf.limit) > 1e-9  # "ne": protective point not in its safe state


def _eval(expr: Expr, vals: dict[int, bool]) -> bool:
    if isinstance(expr, Leaf):
        return vals[id(expr)]
    kids = (_eval(c, vals) for c in expr.children)
    return any(kids) if expr.op == "any" else all(kids)


_SYM = {"ge": "≥", "le": "≤", "diff_ge": "≥", "diff_le": "≤", "rate_ge": "≥", "rate_le": "≤"}


def describe(inst: Instance, leaf: Leaf, held: dict[int, float], rate: dict[int, float]) -> str:
    tag = inst.tags.get(leaf.a, str(leaf.a))
    x = _leaf_value(leaf, held, rate)
    if leaf.kind in ("ge", "le"):
        return f"{tag}={x:g} {_SYM[leaf.kind]} {leaf.limit:g}"
    if leaf.kind in ("diff_ge", "diff_le"):
        return f"{tag}-{inst.tags.get(leaf.b, leaf.b)}={x:g} {_SYM[leaf.kind]} {leaf.limit:g}"
    if leaf.kind in ("rate_ge", "rate_le"):
        return f"d{tag}/dt={x:g}/min {_SYM[leaf.kind]} {leaf.limit:g}/min"
    if leaf.kind == "mask":
        return f"{tag}={int(x)} bit {leaf.codes[0]} {'clear' if leaf.negate else 'set'}"
    if leaf.kind == "eq":
        return f"{tag}={int(x)} {'not in' if leaf.negate else 'in'} {list(leaf.codes)}"
    return f"{tag}={x:g}, safe state {leaf.limit:g} not reached"


# --- batch ---------------------------------------------------------------------------------


#: Transitional name of `Readings` (the integration tests still import it); the lead removes it at integration.
BatchArrays = Readings


def evaluate_batch(batch: Readings, state: State, index: Index, now: float) -> tuple[Updates, list[Transition]]:
    u = Updates(arrival_now=now)
    if batch.point_id.size == 0:
        return u, []
    pid_all = batch.point_id.astype(np.int64)
    inside = pid_all < index.size
    order = np.lexsort((batch.time_us, pid_all))
    order = order[inside[order]]
    pid, t, v, q = pid_all[order], batch.time_us[order], batch.value[order], batch.quality[order]
    fresh = t > state.points.last_t[pid]
    pid, t, v, q = pid[fresh], t[fresh], v[fresh], q[fresh]
    if pid.size == 0:
        return u, []

    # per point: newest time, newest valid value, arrival of valid data
    last = np.r_[pid[1:] != pid[:-1], True]
    u.pid, u.last_t = pid[last], t[last]
    valid = q < BAD
    vp, vt, vv = pid[valid], t[valid], v[valid]
    u.last_v = np.full(u.pid.size, np.nan)
    if vp.size:
        vlast = np.r_[vp[1:] != vp[:-1], True]
        pos = np.searchsorted(u.pid, vp[vlast])
        u.last_v[pos] = vv[vlast]
        u.arrival_pid = vp[vlast]
    if vp.size == 0:
        return u, []

    # rates for points with rate rules (few): vectorised per point
    rates: dict[int, F64] = {}
    starts = np.r_[0, np.flatnonzero(vp[1:] != vp[:-1]) + 1]
    u.seen_pid = vp[starts]
    seg = _Segments(vp)
    for p in np.unique(vp[index.rate_point[vp]]).tolist():
        s, e = seg[p]
        rates[p], u.history[p] = _rates(state.history.get(p), vt[s:e], vv[s:e], index.rate_window[p])

    # The pre-filter, over the whole batch at once: which points could change some condition?
    # Limits trip at their value; a state point changes only when its value does (or on its first
    # reading since the rules were compiled). Instances already away from normal and multi-point
    # instances are always stepped. Everything else keeps its state without being looked at.
    prev = np.r_[np.nan, vv[:-1]]
    prev[starts] = state.points.last_v[vp[starts]]
    first = ~state.seen[vp] if state.seen is not None else np.zeros(vp.size, bool)
    trip = (vv >= index.min_ge[vp]) | (vv <= index.max_le[vp]) | (index.state_point[vp] & ((vv != prev) | first))
    trip_points = set(np.unique(vp[trip | index.multi_point[vp]]).tolist())
    for p, r in rates.items():
        if np.any(r >= index.rate_ge[p]) or np.any(r <= index.rate_le[p]):
            trip_points.add(p)
    todo: set[int] = set()
    for p in trip_points:
        todo.update(index.by_point.get(p, ()))
    for i in state.inst:
        inst = index.instances[i]
        if inst.expr is not None and any(p in seg for p in inst.points):
            todo.add(i)

    transitions: list[Transition] = []
    for i in sorted(todo):
        inst = index.instances[i]
        st = state.inst.get(i, DEFAULT)
        new, tr = _step(i, inst, index.leaves(i), st, seg, vt, vv, rates, state.points.last_v)
        u.evaluated.add(i)
        if new != st:
            u.inst[i] = new
        transitions.extend(tr)
    if not index.trust.empty:  # stuck and copied series (rules.shapes_trust)
        u.trust, steps = shapes_trust.evaluate_batch(index.trust, state.trust, state.inst, vp, vt, vv)
        _fold_trust(state, u, steps, transitions)
    transitions.sort(key=lambda x: (x.time_us, x.index))
    return u, transitions


class _Segments:
    """Where each point's readings sit in the sorted batch, found on demand (binary search)."""

    def __init__(self, vp: I64):
        self.vp = vp
        self.cache: dict[int, tuple[int, int] | None] = {}

    def get(self, p: int) -> tuple[int, int] | None:
        if p not in self.cache:
            s = int(np.searchsorted(self.vp, p, "left"))
            e = int(np.searchsorted(self.vp, p, "right"))
            self.cache[p] = (s, e) if e > s else None
        return self.cache[p]

    def __contains__(self, p: int) -> bool:
        return self.get(p) is not None

    def __getitem__(self, p: int) -> tuple[int, int]:
        got = self.get(p)
        if got is None:
            raise KeyError(p)
        return got


def _rates(hist: tuple[I64, F64] | None, t: I64, v: F64, window_us: int) -> tuple[F64, tuple[I64, F64]]:
    """Per-minute rate of each reading against the value one window earlier (or older)."""
    if hist is not None:
        ht, hv = np.concatenate([hist[0], t]), np.concatenate([hist[1], v])
    else:
        ht, hv = t, v
    idx = np.searchsorted(ht, t - window_us, side="right") - 1
    ok = idx >= 0
    r = np.full(t.size, np.nan)
    j = idx[ok]
    dt = (t[ok] - ht[j]) / 60e6
    with np.errstate(divide="ignore", invalid="ignore"):
        r[ok] = np.where(dt > 0, (v[ok] - hv[j]) / dt, np.nan)
    keep = ht >= ht[-1] - 2 * window_us
    return r, (ht[keep], hv[keep])


def _step(i: int, inst: Instance, leaves: tuple[Leaf, ...], st: InstState, seg: _Segments,
          vt: I64, vv: F64, rates: dict[int, F64], last_v: F64) -> tuple[InstState, list[Transition]]:
    """Step one instance through its points' readings in time order."""
    assert inst.expr is not None
    held = {p: float(last_v[p]) for p in inst.points}
    # events: (time, point, value, rate) of the involved points, grouped by time
    ev_t: list[I64] = []
    ev_p: list[I64] = []
    ev_i: list[I64] = []
    for p in inst.points:
        if p in seg:
            s, e = seg[p]
            ev_t.append(vt[s:e])
            ev_p.append(np.full(e - s, p, np.int64))
            ev_i.append(np.arange(s, e, dtype=np.int64))
    if not ev_t:
        return st, []
    et, ep, ei = np.concatenate(ev_t), np.concatenate(ev_p), np.concatenate(ev_i)
    if len(ev_t) > 1:
        o = np.argsort(et, kind="stable")
        et, ep, ei = et[o], ep[o], ei[o]
    vals = list(st.leaves) if len(st.leaves) == len(leaves) else [False] * len(leaves)
    leaf_ids = [id(x) for x in leaves]
    cond, since, active = st.cond, st.since_us, st.active
    out: list[Transition] = []
    rate_now: dict[int, float] = {}
    rate_base = {p: seg[p][0] for p in rates if p in seg}
    n = et.size
    k = 0
    while k < n:
        tk = int(et[k])
        while k < n and int(et[k]) == tk:
            p, j = int(ep[k]), int(ei[k])
            held[p] = float(vv[j])
            if p in rates:
                rate_now[p] = float(rates[p][j - rate_base[p]])
            k += 1
        for li, leaf in enumerate(leaves):
            vals[li] = step_leaf(leaf, _leaf_value(leaf, held, rate_now), vals[li])
        root = _eval(inst.expr, dict(zip(leaf_ids, vals, strict=True)))
        if root != cond:
            cond, since = root, tk
        if not active and cond and tk - since >= inst.on_delay_us:
            active = True
            why = "; ".join(describe(inst, lf, held, rate_now) for lf, on in zip(leaves, vals, strict=True) if on)
            held_for = (tk - since) / US_PER_S
            out.append(Transition(i, "activate", tk, _subject_value(inst, held),
                                  why + (f" for {held_for:g} s" if inst.on_delay_us else "")))
        elif active and not cond and tk - since >= inst.off_delay_us:
            active = False
            out.append(Transition(i, "clear", tk, _subject_value(inst, held),
                                  "; ".join(describe(inst, lf, held, rate_now) for lf in leaves[:1])))
    return InstState(cond, since, active, tuple(vals)), out


def _subject_value(inst: Instance, held: dict[int, float]) -> float | None:
    x = held.get(inst.point_id) if inst.point_id is not None else None
    return None if x is None or math.isnan(x) else x


# --- tick ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickInputs:
    now: float
    point_created: F64  # wall seconds the point was registered, per point id
    gateway_created: dict[str, float]


def evaluate_tick(state: State, index: Index, inputs: TickInputs) -> tuple[Updates, list[Transition]]:
    """Staleness, never-reported, gateway-offline and device-offline rules against the collector's clock."""
    u = Updates(arrival_now=inputs.now)
    now = inputs.now
    out: list[Transition] = []
    now_us = int(now * US_PER_S)

    def flip(i: int, on: bool, reason: str, value: float | None = None) -> None:
        st = state.inst.get(i, DEFAULT)
        if st.active == on:
            return
        u.inst[i] = replace(st, cond=on, since_us=now_us, active=on)
        out.append(Transition(i, "activate" if on else "clear", now_us, value, reason))

    arrival = state.points.arrival
    # Which stale / never-reported instances are active now (the few non-default states), as arrays.
    stale_on = np.zeros(len(index.stale_idx), bool)
    never_on = np.zeros(len(index.never_idx), bool)
    for i, st in state.inst.items():
        if st.active and (k := index.tick_pos[i]) >= 0:
            if index.instances[i].stale_us:
                stale_on[k] = True
            else:
                never_on[k] = True

    a = arrival[index.stale_point]
    silent = now - a
    stale = (silent * US_PER_S) > index.stale_limit_us
    # never reported: not stale (see never reported)
    for k in np.flatnonzero((stale != stale_on) & (a > 0)).tolist():
        i = int(index.stale_idx[k])
        inst = index.instances[i]
        tag = inst.tags[inst.point_id]  # type: ignore[index]
        flip(i, bool(stale[k]), f"{tag}: no valid data for {silent[k]:.0f} s (limit {inst.stale_us / US_PER_S:g} s)"
             if stale[k] else f"{tag}: data again")

    a = arrival[index.never_point]
    never = (a <= 0) & ((now - inputs.point_created[index.never_point]) * US_PER_S > index.never_grace_us)
    for k in np.flatnonzero((never != never_on) & ((a > 0) | never)).tolist():
        i = int(index.never_idx[k])
        inst = index.instances[i]
        tag = inst.tags[inst.point_id]  # type: ignore[index]
        flip(i, bool(never[k]), f"{tag}: required point has never reported" if never[k]
             else f"{tag}: first data received")
    for i in index.gateway:
        inst = index.instances[i]
        gw = inst.gateway_id
        assert gw is not None
        seen = state.gw_last_seen.get(gw, inputs.gateway_created.get(gw, now))
        off_at = state.gw_offline_at.get(gw)
        quiet_s = now - seen
        if off_at is not None and seen > off_at + 1e-3:
            off_at = None  # traffic after the offline status: it is back
        offline = (quiet_s * US_PER_S > inst.silent_us
                   or (off_at is not None and (now - off_at) * US_PER_S > inst.silent_us))
        why = (f"gateway {gw} reported offline {now - off_at:.0f} s ago" if off_at is not None
               else f"gateway {gw}: no traffic for {quiet_s:.0f} s")
        flip(i, offline, why if offline else f"gateway {gw} back online")
    for i in index.device:
        inst = index.instances[i]
        gw, dev = inst.gateway_id, inst.device_id
        assert gw is not None and dev is not None
        dead_at = state.dev_offline_at.get((gw, dev))
        if dead_at is None:
            flip(i, False, f"device {dev} of gateway {gw} reborn")
        elif (now - dead_at) * US_PER_S > inst.silent_us and not _gateway_down(state, gw):
            flip(i, True, f"device {dev} of gateway {gw} reported dead (DDEATH) {now - dead_at:.0f} s ago")
    if not index.trust.empty:  # clock skew and baseline age (rules.shapes_trust)
        _fold_trust(state, u, shapes_trust.evaluate_tick(index.trust, state.trust, state.inst, now), out)
    return u, out


def _gateway_down(state: State, gw: str) -> bool:
    """Whether the gateway reported itself offline (an NDEATH) and has not been heard from since: its devices'
    deaths then raise nothing on top of the gateway's own alarm. An alarm already active stays: the device is no
    less dead, and clearing would say it is back. Silence alone is not the gateway down here: an edge node whose
    one device died may have nothing more to say, and an MQTT connection that drops ends in the broker's NDEATH."""
    off_at = state.gw_offline_at.get(gw)
    if off_at is None:
        return False
    seen = state.gw_last_seen.get(gw)
    return seen is None or seen <= off_at + 1e-3


def _fold_trust(state: State, u: Updates, steps: Mapping[int, shapes_trust.Step], out: list[Transition]) -> None:
    """The data-trust shapes' steps as instance states and transitions."""
    for i, s in steps.items():
        u.inst[i] = replace(state.inst.get(i, DEFAULT), cond=s.cond, since_us=s.since_us, active=s.active)
        out.extend(Transition(i, *t) for t in s.transitions)


def note_gateways(u: Updates, last_seen: Mapping[str, float], status: Mapping[str, tuple[bool, float]],
                  replayed: Mapping[str, tuple[bool, float | None]] | None = None, state: State | None = None,
                  gateway_created: dict[str, float] | None = None) -> None:
    """Record gateway traffic and status messages of a batch into its updates.

    A live status takes effect when it arrives. A retained status the broker replays at subscribe time (after
    every collector restart) is old news, and its arrival time says nothing about the gateway (issue 14):
    - ``online: true`` replayed changes nothing: a gateway-offline alarm clears only when the gateway's own
      traffic arrives after the offline status (the tick's rule), not because the broker repeats a flag;
    - ``online: false`` replayed keeps an offline state already held (and its time). Otherwise the gateway
      went offline while we were not looking: no earlier than its last live traffic and the message's own
      ``ts``, never later than now, so the alarm neither clears at once nor fires before its limit.
    """
    u.gw_last_seen.update(last_seen)
    for gw, (online, ts_s) in (replayed or {}).items():
        if online or state is None or gw in state.gw_offline_at or gw in status:
            continue
        # Traffic recorded before this batch: live traffic in the batch itself then shows the gateway is back.
        seen = state.gw_last_seen.get(gw, (gateway_created or {}).get(gw, 0.0))
        u.gw_offline_at[gw] = min(u.arrival_now, max(seen, ts_s if ts_s is not None else 0.0))
    for gw, (online, at) in status.items():
        u.gw_offline_at[gw] = None if online else at


def note_devices(u: Updates, devices: Mapping[tuple[str, str], tuple[bool, float]], state: State) -> None:
    """Record what a batch's Sparkplug messages say of their devices, as changes of the offline state held.

    A DDEATH starts an offline state, or keeps one already held (and its time: a device dead since 10:00 is not
    dead since 10:05 because the edge said so again); a DBIRTH or DDATA ends it. Only changes are recorded, so
    a batch of ordinary DDATA writes nothing."""
    for dev, (alive, at) in devices.items():
        held = dev in state.dev_offline_at
        if alive and held:
            u.dev_offline_at[dev] = None
        elif not alive and not held:
            u.dev_offline_at[dev] = at


