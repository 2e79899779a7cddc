"""Data-trust rule shapes (issue 14): data that arrives but cannot be believed.

Platforms that grade dust-explosion monitoring know how monitoring fails in
practice: a sensor that reports the same value for hours, a series copied from
another point so that the alarms stop, a value no instrument of that unit can
show, a gateway whose clock runs fast (its readings are dead-lettered as "from
the future" and the plant goes quietly dark). Each is an ordinary catalog rule
(rules/catalog/data_trust.yaml) with a basis and parameters; this module is
the part of the evaluator's shape dispatch that steps them. ``impossible``
needs no code here: rules.compile turns its per-unit bounds into ordinary
``ge`` / ``le`` leaves.

Pure: functions of (readings, state, now) returning updates that the engine
folds in only after the batch's transaction committed (``apply``).

- ``stuck`` (data time): per instance the current *segment*: the newest run of
  valid readings within +-band of the newest value, (start time, min, max).
  Inside a batch the segment is found exactly (the last reading off the band,
  per point, by one vectorised pass and a reduceat); a recorded segment still
  within the band of the newest value extends it. O(readings), three numbers
  per point. The condition holds once the segment spans ``window_s``. Until a
  break has been seen (after a restart) "not stuck" is unknown and the state
  is kept, so a restored alarm neither clears nor stays by accident.
- ``copied`` (data time): per point and aligned window of ``window_s``, an
  order-dependent 64-bit hash of the values quantised to ``eps`` (a sum of
  splitmix64 mixes of (quantum, position), so a batch adds to it with one
  vectorised pass and a reduceat); a finished window is posted under
  (enterprise, window, hash, count) and judged one window later, when the
  other points of the enterprise have posted the same window: identical means
  another point has the same key. Cost: O(readings) numpy work per batch, one
  dict insert per point and window (100k points, 5-minute windows: ~330/s),
  memory of three windows of keys. Flat windows (fewer than ``min_steps``
  quanta apart) and short ones (< ``min_samples``) prove nothing and keep the
  state. A copy with noise added beyond ``eps`` is not caught.
- ``clock_skew`` (collector clock): each telemetry message's own ``ts`` minus
  its arrival, per gateway (the collector records it in ``Batch.skew`` even
  when every reading of the message is dead-lettered as out of range).
- ``baseline_age`` (collector clock): AQ 4273-2016 §5.1.4 wants the pressure-
  difference baseline recorded within 8 h of installation or a bag change; a
  point with no baseline, or one older than its last installation / bag
  change (``serviced_at``, else registration), ``max_age_s`` after that event.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from rules.compile import Instance

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
US = 1_000_000

__all__ = ["Step", "TrustIndex", "TrustState", "TrustUpdates", "apply", "evaluate_batch", "evaluate_tick",
           "note_skew"]


class InstState(Protocol):
    """What this module reads of rules.evaluate.InstState (it returns plain values; evaluate builds its types,
    so the evaluator imports this module and not the other way round)."""

    @property
    def cond(self) -> bool: ...
    @property
    def since_us(self) -> int: ...
    @property
    def active(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Step:
    """An instance's new (cond, since, active), and the transitions it made: (kind, time us, value, reason)."""

    cond: bool
    since_us: int
    active: bool
    transitions: tuple[tuple[Literal["activate", "clear"], int, float | None, str], ...] = ()


@dataclass(frozen=True, slots=True)
class _Rest:
    cond: bool = False
    since_us: int = 0
    active: bool = False


_REST = _Rest()


# --- index -------------------------------------------------------------------------------------


class TrustIndex:
    """The trust instances of one compile, as arrays (position k of a shape -> instance index)."""

    def __init__(self, instances: list[Instance], size: int):
        self.instances = instances
        by: dict[str, list[int]] = {"stuck": [], "copied": [], "clock_skew": [], "baseline_age": []}
        for i, inst in enumerate(instances):
            if inst.shape in by:
                by[inst.shape].append(i)
        self.stuck = np.array(by["stuck"], np.int64)
        self.stuck_pos = {i: k for k, i in enumerate(by["stuck"])}  # instance -> position
        self.stuck_point = np.array([instances[i].point_id for i in by["stuck"]], np.int64)
        self.stuck_window_us = np.array([instances[i].params[0] for i in by["stuck"]], np.int64)
        self.stuck_band = np.array([instances[i].params[1] for i in by["stuck"]], np.float64)
        # point -> position, one layer per stuck instance of the point (almost always one layer)
        self.stuck_layers: list[I64] = []
        for k, p in enumerate(self.stuck_point.tolist()):
            for layer in self.stuck_layers:
                if layer[p] < 0:
                    layer[p] = k
                    break
            else:
                layer = np.full(size, -1, np.int64)
                layer[p] = k
                self.stuck_layers.append(layer)
        self.copied = np.array(by["copied"], np.int64)
        self.copied_pos = np.full(size, -1, np.int64)  # point -> position (the first copied instance)
        for c, i in enumerate(by["copied"]):
            p = instances[i].point_id
            assert p is not None
            if self.copied_pos[p] < 0:
                self.copied_pos[p] = c
        self.copied_window_us = np.array([instances[i].params[0] for i in by["copied"]], np.int64)
        self.copied_eps = np.array([instances[i].params[1] for i in by["copied"]], np.float64)
        self.copied_min_n = np.array([instances[i].params[2] for i in by["copied"]], np.int64)
        self.copied_min_steps = np.array([instances[i].params[3] for i in by["copied"]], np.int64)
        self.skew = by["clock_skew"]
        self.baseline = by["baseline_age"]

    @property
    def empty(self) -> bool:
        return not (self.stuck.size or self.copied.size or self.skew or self.baseline)


# --- state ---------------------------------------------------------------------------------------

# (enterprise, window number) -> (hash, count) -> positions that posted it
Posted = dict[tuple[str, int], dict[tuple[int, int], set[int]]]


@dataclass
class TrustState:
    seg_t0: I64  # per stuck position: segment start (us), -1 none
    seg_min: F64
    seg_max: F64
    seg_known: npt.NDArray[np.bool_]  # a break has been seen: "not stuck" is known
    win: I64  # per copied position: open window number, -1 none
    h: U64
    n: I64
    qmin: I64
    qmax: I64
    posted: Posted = field(default_factory=dict)
    pending: dict[int, tuple[int, tuple[int, int] | None]] = field(default_factory=dict)
    gw_skew: dict[str, tuple[float, float]] = field(default_factory=dict)  # gateway -> (skew s, measured at)

    @classmethod
    def empty(cls, ix: TrustIndex) -> TrustState:
        ns, nc = ix.stuck.size, ix.copied.size
        return cls(np.full(ns, -1, np.int64), np.zeros(ns), np.zeros(ns), np.zeros(ns, bool),
                   np.full(nc, -1, np.int64), np.zeros(nc, np.uint64), np.zeros(nc, np.int64),
                   np.zeros(nc, np.int64), np.zeros(nc, np.int64))


@dataclass
class TrustUpdates:
    stuck_k: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    seg: tuple[I64, F64, F64, npt.NDArray[np.bool_]] | None = None
    copied_c: I64 = field(default_factory=lambda: np.empty(0, np.int64))
    win: tuple[I64, U64, I64, I64, I64] | None = None
    posted: list[tuple[tuple[str, int], tuple[int, int], int]] = field(default_factory=list)
    pending: dict[int, tuple[int, tuple[int, int] | None]] = field(default_factory=dict)
    gw_skew: dict[str, tuple[float, float]] = field(default_factory=dict)
    fresh: TrustState | None = None  # the state these updates start from, when there was none for this index


def _state_for(ix: TrustIndex, ts: TrustState | None) -> tuple[TrustState, TrustState | None]:
    """The state to evaluate against, and a fresh one when the index changed (a recompile) or there was none."""
    if ts is not None and ts.seg_t0.size == ix.stuck.size and ts.win.size == ix.copied.size:
        return ts, None
    fresh = TrustState.empty(ix)
    if ts is not None:
        fresh.gw_skew = dict(ts.gw_skew)
    return fresh, fresh


def apply(ts: TrustState | None, u: TrustUpdates) -> TrustState:
    """Fold committed trust updates into the state (the only mutation of TrustState); returns the state."""
    if u.fresh is not None:
        ts = u.fresh
    elif ts is None:
        ts = TrustState.empty(TrustIndex([], 0))
    if u.seg is not None:
        ts.seg_t0[u.stuck_k], ts.seg_min[u.stuck_k], ts.seg_max[u.stuck_k], ts.seg_known[u.stuck_k] = u.seg
    if u.win is not None:
        cc = u.copied_c
        ts.win[cc], ts.h[cc], ts.n[cc], ts.qmin[cc], ts.qmax[cc] = u.win
    newest = -1
    for key, hk, c in u.posted:
        ts.posted.setdefault(key, {}).setdefault(hk, set()).add(c)
        newest = max(newest, key[1])
    if newest >= 0:  # keep three windows back (a window is judged one window after it closed)
        for key in [k for k in ts.posted if k[1] < newest - 3]:
            del ts.posted[key]
    ts.pending.update(u.pending)
    ts.gw_skew.update(u.gw_skew)
    return ts


def note_skew(u: TrustUpdates, skew: Mapping[str, float], now: float) -> None:
    """Record each gateway's clock skew measured in a batch (s, + = gateway clock ahead)."""
    for gw, s in skew.items():
        u.gw_skew[gw] = (float(s), now)


# --- transitions ---------------------------------------------------------------------------------


def _advance(inst: Instance, st: InstState, cond: bool, times: I64 | int, onset_us: int,
             reason: str, value: float | None) -> Step | None:
    """One step of the on/off-delay machine for a condition decided as of the last of ``times`` (the readings,
    in order, since the condition is known to hold); a transition is dated by the first of them that confirms
    it, as the other shapes' are. None: nothing changed."""
    tt = np.atleast_1d(np.asarray(times, np.int64))
    t_us = int(tt[-1])
    since = st.since_us
    if cond != st.cond:
        since = onset_us if cond else t_us
    active = st.active
    tr: tuple[Literal["activate", "clear"], int, float | None, str] | None = None
    if cond and not active and t_us - since >= inst.on_delay_us:
        active = True
        tr = ("activate", int(tt[np.searchsorted(tt, since + inst.on_delay_us)]), value, reason)
    elif not cond and active and t_us - since >= inst.off_delay_us:
        active = False
        tr = ("clear", t_us, value, reason)
    if (cond, since, active) == (st.cond, st.since_us, st.active):
        return None
    return Step(cond, since, active, () if tr is None else (tr,))


# --- batch: stuck and copied ---------------------------------------------------------------------


def evaluate_batch(ix: TrustIndex, ts: TrustState | None, inst_states: Mapping[int, InstState],
                   vp: I64, vt: I64, vv: F64) -> tuple[TrustUpdates, dict[int, Step]]:
    """Stuck and copied instances over a batch's valid readings, sorted by (point, time)."""
    u = TrustUpdates()
    new: dict[int, Step] = {}
    ts, u.fresh = _state_for(ix, ts)
    if ix.stuck.size and vp.size:
        _stuck(ix, ts, inst_states, vp, vt, vv, u, new)
    if ix.copied.size and vp.size:
        _copied(ix, ts, inst_states, vp, vt, vv, u, new)
    return u, new


def _groups(p: I64) -> tuple[I64, I64]:
    start = np.r_[0, np.flatnonzero(p[1:] != p[:-1]) + 1].astype(np.int64)
    end = np.r_[start[1:], p.size].astype(np.int64) - 1
    return start, end


def _stuck(ix: TrustIndex, ts: TrustState, inst_states: Mapping[int, InstState], vp: I64, vt: I64, vv: F64,
           u: TrustUpdates, new: dict[int, Step]) -> None:
    ks: list[I64] = []
    cols: list[tuple[I64, F64, F64, npt.NDArray[np.bool_]]] = []
    # positions whose alarm is not at rest: the few non-default states, not one lookup per point
    busy = np.zeros(ix.stuck.size, bool)
    for i, s in inst_states.items():
        k_ = ix.stuck_pos.get(i)
        if k_ is not None and (s.cond or s.active):
            busy[k_] = True
    for layer in ix.stuck_layers:
        kk = layer[vp]
        m = kk >= 0
        if not m.any():
            continue
        k_r, t_r, v_r = kk[m], vt[m], vv[m]
        gs, ge = _groups(k_r)
        k = k_r[gs]
        t_last, v_last = t_r[ge], v_r[ge]
        band = ix.stuck_band[k]
        # The segment is the newest run of readings within +-band of the newest value: found exactly inside
        # the batch (the last reading off the band, per group), then extended by the recorded segment.
        gid = np.repeat(np.arange(gs.size), ge - gs + 1)
        off = np.abs(v_r - v_last[gid]) > band[gid]
        idx = np.arange(v_r.size, dtype=np.int64)
        last_off = np.maximum.reduceat(np.where(off, idx, -1), gs)
        broke_here = last_off >= 0
        in_seg = idx > last_off[gid]
        smin = np.minimum.reduceat(np.where(in_seg, v_r, np.inf), gs)
        smax = np.maximum.reduceat(np.where(in_seg, v_r, -np.inf), gs)
        t_seg = t_r[np.where(broke_here, last_off + 1, gs)]
        has = ts.seg_t0[k] >= 0
        old_fits = has & (np.maximum(np.abs(ts.seg_min[k] - v_last), np.abs(ts.seg_max[k] - v_last)) <= band)
        extend = ~broke_here & old_fits
        t0 = np.where(extend, ts.seg_t0[k], t_seg)
        nmin = np.where(extend, np.minimum(ts.seg_min[k], smin), smin)
        nmax = np.where(extend, np.maximum(ts.seg_max[k], smax), smax)
        broke = broke_here | (has & ~old_fits)
        known = ts.seg_known[k] | broke
        stuck = (t_last - t0) >= ix.stuck_window_us[k]
        decided = stuck | known
        ks.append(k)
        cols.append((t0, nmin, nmax, known))
        inst_i = ix.stuck[k]
        for g in np.flatnonzero(decided & (stuck | busy[k])).tolist():
            i = int(inst_i[g])
            inst = ix.instances[i]
            st = inst_states.get(i, _REST)
            on = bool(stuck[g])
            tag = inst.tags.get(inst.point_id, str(inst.point_id)) if inst.point_id is not None else "?"
            kk_ = int(k[g])
            span = (int(t_last[g]) - int(t0[g])) / US
            why = (f"{tag}: within {float(nmax[g] - nmin[g]):g} (band {ix.stuck_band[kk_]:g}) for {span:.0f} s"
                   f" (limit {ix.stuck_window_us[kk_] / US:g} s)" if on else f"{tag}: moves again")
            seg_t = t_r[gs[g]:ge[g] + 1]
            step = _advance(inst, st, on, seg_t[seg_t >= t0[g]] if on else int(t_last[g]),
                            int(t0[g]) + int(ix.stuck_window_us[kk_]), why, float(v_last[g]))
            if step is not None:
                new[i] = step
    if ks:
        u.stuck_k = np.concatenate(ks)
        u.seg = (np.concatenate([c[0] for c in cols]), np.concatenate([c[1] for c in cols]),
                 np.concatenate([c[2] for c in cols]), np.concatenate([c[3] for c in cols]))


_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(q: I64, pos: I64) -> U64:
    """splitmix64 of (quantum, position): summed, an order-dependent hash that a batch extends."""
    with np.errstate(over="ignore"):
        x = q.astype(np.uint64) * _G ^ (pos.astype(np.uint64) + np.uint64(1)) * _M1
        x ^= x >> np.uint64(30)
        x *= _M1
        x ^= x >> np.uint64(27)
        x *= _M2
        x ^= x >> np.uint64(31)
    return x


def _copied(ix: TrustIndex, ts: TrustState, inst_states: Mapping[int, InstState], vp: I64, vt: I64, vv: F64,
            u: TrustUpdates, new: dict[int, Step]) -> None:
    cc = ix.copied_pos[vp]
    m = cc >= 0
    if not m.any():
        return
    c_r, t_r, v_r = cc[m], vt[m], vv[m]
    w_r = t_r // ix.copied_window_us[c_r]
    # clipped: a huge value over a tiny eps must not overflow the cast (it is still one quantum, hashed)
    q_r = np.rint(np.clip(v_r / ix.copied_eps[c_r], -9.0e18, 9.0e18)).astype(np.int64)
    # groups of (position, window), in time order within a position
    brk = np.r_[True, (c_r[1:] != c_r[:-1]) | (w_r[1:] != w_r[:-1])]
    gs = np.flatnonzero(brk).astype(np.int64)
    gid = np.cumsum(brk) - 1
    rank = np.arange(c_r.size, dtype=np.int64) - gs[gid]
    gc, gw = c_r[gs], w_r[gs]
    first_of_c = np.r_[True, gc[1:] != gc[:-1]]
    cont = first_of_c & (ts.win[gc] == gw) & (ts.win[gc] >= 0)  # continues the open window
    offset = np.where(cont, ts.n[gc], 0)
    pos = rank + offset[gid]
    hsum = np.add.reduceat(_mix(q_r, pos), gs)
    gn = np.diff(np.r_[gs, c_r.size]).astype(np.int64)
    gqmin, gqmax = np.minimum.reduceat(q_r, gs), np.maximum.reduceat(q_r, gs)
    with np.errstate(over="ignore"):
        hsum = np.where(cont, hsum + ts.h[gc], hsum)
    gn = np.where(cont, gn + ts.n[gc], gn)
    gqmin = np.where(cont, np.minimum(gqmin, ts.qmin[gc]), gqmin)
    gqmax = np.where(cont, np.maximum(gqmax, ts.qmax[gc]), gqmax)
    last_of_c = np.r_[gc[1:] != gc[:-1], True]
    t_open = t_r[gs]  # first reading of each group: the moment the previous window is known complete

    # Finished windows, in order: the open window of the state when a position moves on, and every
    # group but a position's last.
    closed: list[tuple[int, int, int, int, bool, int]] = []  # (c, window, hash, n, valid, judged at us)
    for g in np.flatnonzero(first_of_c & ~cont & (ts.win[gc] >= 0)).tolist():
        c = int(gc[g])
        closed.append((c, int(ts.win[c]), int(ts.h[c]), int(ts.n[c]),
                       _valid(ix, c, int(ts.n[c]), int(ts.qmax[c] - ts.qmin[c])), int(t_open[g])))
    for g in np.flatnonzero(~last_of_c).tolist():
        c = int(gc[g])
        closed.append((c, int(gw[g]), int(hsum[g]), int(gn[g]), _valid(ix, c, int(gn[g]), int(gqmax[g] - gqmin[g])),
                       int(t_open[g + 1])))
    closed.sort(key=lambda x: (x[5], x[0]))
    posted_here: Posted = {}
    pending = dict(ts.pending)
    for c, w, h, n, valid, t_us in closed:
        i = int(ix.copied[c])
        inst = ix.instances[i]
        ent = inst.enterprise_id
        key: tuple[int, int] | None = (h, n) if valid else None
        if key is not None:
            posted_here.setdefault((ent, w), {}).setdefault(key, set()).add(c)
            u.posted.append(((ent, w), key, c))
        prev = pending.get(c)
        pending[c] = (w, key)
        u.pending[c] = (w, key)
        if prev is None:
            continue  # nothing to judge: no earlier window
        pw, pkey = prev
        if pkey is None:
            continue  # it proved nothing (flat or short)
        others = (ts.posted.get((ent, pw), {}).get(pkey, set()) | posted_here.get((ent, pw), {}).get(pkey, set())) - {c}
        st: InstState = new.get(i) or inst_states.get(i, _REST)
        on = bool(others)
        tag = inst.tags.get(inst.point_id, "?") if inst.point_id is not None else "?"
        if on:
            partner = ix.instances[int(ix.copied[min(others)])]
            ptag = partner.tags.get(partner.point_id, "?") if partner.point_id is not None else "?"
            why = (f"{tag}: series identical to {ptag} over {pkey[1]} samples "
                   f"(window {ix.copied_window_us[c] / US:g} s, eps {ix.copied_eps[c]:g})")
        else:
            why = f"{tag}: series no longer identical to another point's"
        if not on and not st.cond and not st.active:
            continue
        step = _advance(inst, st, on, t_us, t_us, why, None)
        if step is not None:
            if i in new:  # several windows judged in one batch: keep every transition, in order
                step = Step(step.cond, step.since_us, step.active, new[i].transitions + step.transitions)
            new[i] = step
    # open windows left by the batch
    lg = np.flatnonzero(last_of_c)
    u.copied_c = gc[lg]
    u.win = (gw[lg], hsum[lg].astype(np.uint64), gn[lg], gqmin[lg], gqmax[lg])


def _valid(ix: TrustIndex, c: int, n: int, steps: int) -> bool:
    return n >= int(ix.copied_min_n[c]) and steps >= int(ix.copied_min_steps[c])


# --- tick: clock skew and baseline age -----------------------------------------------------------


def evaluate_tick(ix: TrustIndex, ts: TrustState | None, inst_states: Mapping[int, InstState],
                  now: float) -> dict[int, Step]:
    """Clock-skew and baseline-age instances against the collector's clock."""
    new: dict[int, Step] = {}
    now_us = int(now * US)
    skew = ts.gw_skew if ts is not None else {}
    for i in ix.skew:
        inst = ix.instances[i]
        st = inst_states.get(i, _REST)
        got = skew.get(inst.gateway_id or "")
        if got is None:
            continue  # not measured (yet, or since a restart): keep the state
        s, _at = got
        limit = inst.params[0]
        on = s > limit  # ahead only: behind is what a store-and-forward backlog looks like too
        if not on and not st.cond and not st.active:
            continue
        why = (f"gateway {inst.gateway_id}: clock {s:.0f} s ahead of the collector's (limit {limit:g} s)"
               if on else f"gateway {inst.gateway_id}: clock within {limit:g} s again ({s:+.0f} s)")
        step = _advance(inst, st, on, now_us, now_us, why, s)
        if step is not None:
            new[i] = step
    for i in ix.baseline:
        inst = ix.instances[i]
        st = inst_states.get(i, _REST)
        max_age, ref, at = inst.params[0], inst.params[1], inst.params[2]
        outdated = math.isnan(at) or at < ref
        on = outdated and now - ref > max_age
        if not on and not st.cond and not st.active:
            continue
        tag = inst.tags.get(inst.point_id, "?") if inst.point_id is not None else "?"
        if on:
            what = "no baseline recorded" if math.isnan(at) else "baseline predates the last installation/bag change"
            why = f"{tag}: {what} {(now - ref) / 3600:.1f} h after it (limit {max_age / 3600:g} h)"
        else:
            why = f"{tag}: baseline recorded"
        step = _advance(inst, st, on, now_us, int((ref + max_age) * US) if on else now_us, why, None)
        if step is not None:
            new[i] = step
    return new
