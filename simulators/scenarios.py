"""Named incidents injected into the sample site's signal models.

A scenario is the reproducible form of "what should riskwatch do when this
happens in a plant": a list of *faults*, each taking effect at data-time
offset ``at_s`` from the run's ``start_ms``, and the alarms riskwatch is
expected to raise (``expects``), with the time window in which each must
appear. ``riskwatch simulate --scenario NAME`` plays one for a demo;
integration tests play one and compare the alarms stored with ``expects``.

Faults:

- value faults replace a point's model from ``at_s`` on and keep the original
  before it: :class:`Ramp` (normal value + slope, capped), :class:`StepTo`
  (a constant), :class:`StepBy` (normal value + delta), :class:`StepScale`
  (normal value x factor), :class:`SetBits` (status-word bits forced on).
  They are pure functions of time like the models, so they behave the same
  in real-time and backfill runs, in chunks of any size; ``follow`` points of
  the same gateway follow a faulted source or gate (same water, same power);
- :class:`StopPoint`: a dead sensor; the gateway stops sending that point and
  keeps sending the others;
- :class:`Unplug`: a gateway losing power; it stops sending and its TCP
  connection is cut without an MQTT DISCONNECT, so the broker publishes its
  retained will ``{"online": false}``.

Expected windows are computed from the fault's shape, the point's documented
``sim.normal`` band and noise (worst case over every seed) and the rule's
parameters, for samples at 1 Hz or faster. The parameters a window assumes
are kept in ``Expected.assumes``; a unit test checks them against
``rules/catalog`` and the bands against the sample site, so either changing
under a scenario fails fast.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from core.errors import ConfigError
from simulators.models import NOISE_CLIP, Band, FloatArray, FollowModel, SignalModel, _Drift

__all__ = [
    "SCENARIOS",
    "Expected",
    "Fault",
    "FaultedModel",
    "Ramp",
    "Scenario",
    "ScenarioError",
    "SetBits",
    "StepBy",
    "StepScale",
    "StepTo",
    "StopPoint",
    "Text",
    "Unplug",
    "apply_value_faults",
    "get_scenario",
]

#: The reading that confirms an alarm is the first sample at or after the
#: moment its condition is met: up to one sample period later (1 s at 1 Hz).
SAMPLE_SLACK_S = 1.0
#: Wall-clock rules run on the collector's timer tick; allow for the tick,
#: the simulator's flush interval and delivery.
WALL_SLACK_S = 5.0


class ScenarioError(ConfigError):
    """A scenario names something the site does not have, or an unknown scenario was asked for."""


# --------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _PointFault:
    gateway: str
    tag: str
    at_s: float  # data-time offset from the run's start_ms


class _ValueFault(_PointFault, ABC):
    """Changes a point's reported value from ``at_s`` on."""

    @abstractmethod
    def apply(self, v: FloatArray, dt: FloatArray) -> FloatArray:
        """Faulted values from normal values ``v`` at ``dt`` seconds after ``at_s`` (dt >= 0)."""

    @abstractmethod
    def describe(self) -> str: ...


@dataclass(frozen=True)
class Ramp(_ValueFault):
    """Normal value + ``per_min`` x minutes since ``at_s``, held at ``limit`` once it gets there."""

    per_min: float
    limit: float | None = None

    def apply(self, v: FloatArray, dt: FloatArray) -> FloatArray:
        out: FloatArray = v + self.per_min * dt / 60.0
        if self.limit is not None:
            out = np.minimum(out, self.limit) if self.per_min >= 0 else np.maximum(out, self.limit)
        return out

    def describe(self) -> str:
        cap = "" if self.limit is None else f", limit {self.limit:g}"
        return f"{self.tag} {self.per_min:+g}/min from +{self.at_s:g} s{cap}"


@dataclass(frozen=True)
class StepTo(_ValueFault):
    """A constant from ``at_s``: a stuck valve, a forced state, a pressure regulator failed open."""

    value: float

    def apply(self, v: FloatArray, dt: FloatArray) -> FloatArray:
        return np.full_like(v, self.value, dtype=np.float64)

    def describe(self) -> str:
        return f"{self.tag} = {self.value:g} from +{self.at_s:g} s"


@dataclass(frozen=True)
class StepBy(_ValueFault):
    """Normal value + ``delta`` from ``at_s`` (a leak takes a fixed flow away)."""

    delta: float

    def apply(self, v: FloatArray, dt: FloatArray) -> FloatArray:
        out: FloatArray = v + self.delta
        return out

    def describe(self) -> str:
        return f"{self.tag} {self.delta:+g} from +{self.at_s:g} s"


@dataclass(frozen=True)
class StepScale(_ValueFault):
    """Normal value x ``factor`` from ``at_s`` (a burst bag collapses the pressure difference)."""

    factor: float

    def apply(self, v: FloatArray, dt: FloatArray) -> FloatArray:
        out: FloatArray = v * self.factor
        return out

    def describe(self) -> str:
        return f"{self.tag} x{self.factor:g} from +{self.at_s:g} s"


@dataclass(frozen=True)
class SetBits(_ValueFault):
    """Status-word bits forced on from ``at_s`` (GB 26875.3 controller status is a bitmask)."""

    mask: int

    def apply(self, v: FloatArray, dt: FloatArray) -> FloatArray:
        out: FloatArray = (np.rint(v).astype(np.int64) | self.mask).astype(np.float64)
        return out

    def describe(self) -> str:
        return f"{self.tag} |= {self.mask} from +{self.at_s:g} s"


@dataclass(frozen=True)
class StopPoint(_PointFault):
    """The sensor dies at ``at_s``: no reading of this point with a sample time >= at_s."""

    def describe(self) -> str:
        return f"{self.tag} stops reporting at +{self.at_s:g} s"


@dataclass(frozen=True)
class Unplug:
    """The gateway loses power at ``at_s``: nothing more is sent, the connection is cut.

    In a real-time run the cut happens when the wall clock reaches ``at_s``;
    in a backfill run, when generation reaches that data time. Readings
    sampled before ``at_s`` are sent and acknowledged first, so what the log
    says was sent is what the broker has.
    """

    gateway: str
    at_s: float

    def describe(self) -> str:
        return f"{self.gateway} unplugged at +{self.at_s:g} s"


ValueFault = Ramp | StepTo | StepBy | StepScale | SetBits
Fault = ValueFault | StopPoint | Unplug


class FaultedModel(SignalModel):
    """``base`` until the fault's ``at_s``, the fault's transform of it afterwards.

    Applied to both ``smooth`` (which ``follow`` points track) and ``raw``
    (what is reported, with the base model's noise), so a ramp keeps the
    instrument's noise on top and a follower sees the faulted process value.
    """

    def __init__(self, base: SignalModel, fault: _ValueFault):
        self.base = base
        self.fault = fault
        self.params = base.params
        self.key = base.key

    def _faulted(self, v: FloatArray, t: FloatArray) -> FloatArray:
        after = t >= self.fault.at_s
        if not np.any(after):
            return v
        out = v.astype(np.float64, copy=True)
        out[after] = self.fault.apply(v[after], t[after] - self.fault.at_s)
        return out

    def smooth(self, t: FloatArray) -> FloatArray:
        return self._faulted(self.base.smooth(t), t)

    def raw(self, t: FloatArray) -> FloatArray:
        return self._faulted(self.base.raw(t), t)

    def smooth_envelope(self) -> Band:
        # A fault leaves the normal band on purpose; nothing bounds it.
        return -math.inf, math.inf


def apply_value_faults(models: Mapping[str, SignalModel],
                       faults: Sequence[_ValueFault]) -> dict[str, SignalModel]:
    """One gateway's models with these faults applied (all faults must be on this gateway).

    Faults on one point stack in ``at_s`` order. A ``follow`` point whose
    source or gate is faulted is re-pointed at the faulted model: an inlet
    flow that drops takes the outlet with it.
    """
    by_tag: dict[str, list[_ValueFault]] = {}
    for f in sorted(faults, key=lambda f: f.at_s):
        by_tag.setdefault(f.tag, []).append(f)
    tag_of = {id(m): tag for tag, m in models.items()}
    out: dict[str, SignalModel] = {}

    def resolve(tag: str) -> SignalModel:
        if tag in out:
            return out[tag]
        m = models[tag]
        if isinstance(m, FollowModel):
            src = resolve(tag_of[id(m.source)])
            gate = resolve(tag_of[id(m.gate)]) if m.gate is not None else None
            if src is not m.source or gate is not m.gate:
                m = copy.copy(m)
                m.source, m.gate = src, gate
        for f in by_tag.get(tag, []):
            m = FaultedModel(m, f)
        out[tag] = m
        return m

    for tag in models:
        resolve(tag)
    return out


# --------------------------------------------------------------------------
# Expected alarms and their windows
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    zh: str
    en: str


@dataclass(frozen=True)
class Expected:
    """An alarm the scenario must raise.

    ``kind='data'``: the alarm's time is the data time of the reading that
    confirmed it; it must lie in ``start_ms + (at_s + [earliest_s, latest_s])
    * 1000``, in real-time and backfill runs alike.
    ``kind='wall'``: a staleness / offline rule evaluated on the collector's
    clock against arrival times; the window counts from the wall-clock moment
    the run reached ``at_s`` (``SimResult.fault_wall_ms[at_s]``: about
    ``start_ms + at_s`` in real time, within the first second of a backfill).
    Play such a scenario in real time, with a past ``start_ms`` if history is
    wanted: after a pure backfill the whole site falls silent and every point
    goes stale, not only the faulted ones (see :attr:`Scenario.wall_clock`).
    ``tag`` is the point's tag, or the gateway id for gateway rules.
    """

    rule_id: str
    gateway: str
    tag: str
    kind: Literal["data", "wall"]
    at_s: float  # the fault's at_s the window is counted from
    earliest_s: float
    latest_s: float
    candidate: bool = False  # opens a candidate major-hazard ticket
    # Rule parameters the window was computed with (as in rules/catalog).
    assumes: Mapping[str, float] = field(default_factory=dict, hash=False)

    def window_ms(self, start_ms: int, fault_wall_ms: Mapping[float, int] | None = None) -> tuple[int, int]:
        """The window in epoch ms: data time for ``data``, collector wall time for ``wall``.

        Pass a run's ``start_ms`` and, for ``wall`` kinds, its
        ``fault_wall_ms`` (without it, a real-time run is assumed: the
        fault took effect at ``start_ms + at_s``).
        """
        if self.kind == "wall" and fault_wall_ms is not None:
            origin = fault_wall_ms[self.at_s]
        else:
            origin = start_ms + round(self.at_s * 1000)
        return origin + round(self.earliest_s * 1000), origin + round(self.latest_s * 1000)


def ramp_crossing(band: Band, per_min: float, limit: float) -> tuple[float, float]:
    """Seconds after the ramp starts at which normal + ramp may first exceed ``limit``
    (when the normal value sits at the top of its band) and after which it surely
    does (when it sits at the bottom)."""
    lo, hi = band
    s = per_min / 60.0
    if s <= 0:
        raise ValueError("ramp_crossing needs a rising ramp")
    return max(0.0, (limit - hi) / s), max(0.0, (limit - lo) / s)


def threshold_window_ramp(band: Band, per_min: float, limit: float,
                          on_delay_s: float) -> tuple[float, float]:
    """A hi limit under a rising ramp: crossing window + on-delay (+ one sample).

    The condition may flicker while noise straddles the limit, restarting the
    on-delay; after the late crossing it holds for good, so the alarm is due
    at most ``on_delay_s`` (and one sample) after it.
    """
    e, late = ramp_crossing(band, per_min, limit)
    return e + on_delay_s, late + on_delay_s + SAMPLE_SLACK_S


def fluctuation_bound(noise: float, drift: float, drift_period_s: float, decimals: int,
                      window_s: float) -> float:
    """Worst-case change of a ``steady`` point's normal value over ``window_s``.

    Two noise draws (each within NOISE_CLIP sigma), the drift's change and
    two roundings. The drift is a sum of COMPONENTS sinusoids with periods
    P_k = longest / 2^k x u_k, u_k in [0.8, 1.25], and amplitudes
    a_k = drift x P_k / sum(P): its slope is at most
    sum(a_k x 2 pi / P_k) = COMPONENTS x 2 pi x drift / sum(P), and
    sum(P) >= 0.8 x longest x sum(2^-k).
    """
    n = _Drift.COMPONENTS
    min_sum_periods = 0.8 * drift_period_s * sum(2.0 ** -k for k in range(n))
    slope = n * 2.0 * math.pi * drift / min_sum_periods
    return 2.0 * NOISE_CLIP * noise + min(2.0 * drift, slope * window_s) + 10.0 ** -decimals


def rate_window_ramp(fluctuation: float, per_min: float, rise_per_min: float, window_s: float,
                     on_delay_s: float) -> tuple[float, float]:
    """A rise-rate rule under a ramp, rate = (v(t) - v(t - window_s)) / window_s as rules.evaluate has it.

    ``tau`` s into the ramp (tau <= window_s) the rise over the window is
    slope x tau plus the normal value's own change over the window, at most
    ``fluctuation`` (E) either way. The rule trips at a rise of R x W:
    possibly from tau = (R x W - E) / slope, surely from (R x W + E) / slope,
    which must come before tau = W; after that the rise is slope x W - E or
    more, which must still reach R x W for the condition to hold on.
    """
    slope = per_min / 60.0
    need = rise_per_min / 60.0 * window_s
    late = (need + fluctuation) / slope
    if late > window_s or slope * window_s - fluctuation < need:
        raise ValueError("ramp too slow for this rate rule to trip for sure")
    return max(0.0, (need - fluctuation) / slope) + on_delay_s, late + on_delay_s + SAMPLE_SLACK_S


def step_window(after: Band, limit: float, above: bool, on_delay_s: float) -> tuple[float, float]:
    """A step that takes every possible value past ``limit`` at once: on-delay (+ one sample)."""
    lo, hi = after
    if (lo <= limit) if above else (hi >= limit):
        raise ValueError(f"step range [{lo:g}, {hi:g}] does not clear limit {limit:g}")
    return on_delay_s, on_delay_s + SAMPLE_SLACK_S


def held_window(hold_s: float, on_delay_s: float = 0.0) -> tuple[float, float]:
    """An interlock whose condition is met from ``at_s`` and held: hold + on-delay (+ one sample)."""
    return hold_s + on_delay_s, hold_s + on_delay_s + SAMPLE_SLACK_S


def wall_window(after_s: float) -> tuple[float, float]:
    """A stale / offline rule ``after_s`` after the last reading (one sample before at_s)."""
    return after_s - SAMPLE_SLACK_S, after_s + WALL_SLACK_S


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    title: Text
    description: Text
    faults: tuple[Fault, ...]
    expects: tuple[Expected, ...]

    @property
    def gateways(self) -> tuple[str, ...]:
        """Gateways the scenario needs running."""
        return tuple(sorted({f.gateway for f in self.faults} | {e.gateway for e in self.expects}))

    @property
    def wall_clock(self) -> bool:
        """Some expected alarm runs on the collector's clock: play the scenario in real time.

        A real-time run with ``start_ms`` in the past sends that history at once
        and then stays live, so only the faulted points fall silent; the run
        must last until ``at_s + latest_s`` of wall time after the fault.
        """
        return any(e.kind == "wall" for e in self.expects)

    @property
    def duration_s(self) -> float:
        """A run length (rounded up to 30 s) that covers every expected alarm's window."""
        ends = [e.at_s + e.latest_s for e in self.expects] + [f.at_s for f in self.faults]
        return 30.0 * math.ceil((max(ends) + 10.0) / 30.0)

    def shifted(self, delta_s: float) -> Scenario:
        """The same incident ``delta_s`` seconds earlier (negative) or later; faults at 0 stay at 0.

        The demo uses it to play an incident inside a short run.
        """
        def at(x: float) -> float:
            return x if x == 0 else max(0.0, x + delta_s)

        return replace(self, faults=tuple(replace(f, at_s=at(f.at_s)) for f in self.faults),
                       expects=tuple(replace(e, at_s=at(e.at_s)) for e in self.expects))

    def value_faults(self) -> list[ValueFault]:
        """The faults that change values (the others change what is sent)."""
        return [f for f in self.faults if isinstance(f, Ramp | StepTo | StepBy | StepScale | SetBits)]

    def stops(self) -> dict[tuple[str, str], float]:
        """(gateway, tag) -> at_s of dead sensors."""
        return {(f.gateway, f.tag): f.at_s for f in self.faults if isinstance(f, StopPoint)}

    def unplugs(self) -> dict[str, float]:
        """gateway -> at_s of gateways losing power."""
        return {f.gateway: f.at_s for f in self.faults if isinstance(f, Unplug)}

    def check(self, models: Mapping[str, Mapping[str, SignalModel]]) -> None:
        """Raise ScenarioError naming every fault that points at no gateway/point of the site."""
        problems = []
        for f in self.faults:
            if f.at_s < 0:
                problems.append(f"{f.describe()}: at_s must not be negative")
            if f.gateway not in models:
                problems.append(f"{f.describe()}: no gateway {f.gateway!r} with points")
            elif not isinstance(f, Unplug) and f.tag not in models[f.gateway]:
                problems.append(f"{f.describe()}: no point {f.tag!r} on {f.gateway}")
        for e in self.expects:
            if e.gateway not in models or (e.tag != e.gateway and e.tag not in models[e.gateway]):
                problems.append(f"expected {e.rule_id} on {e.gateway}/{e.tag}: no such point")
        if problems:
            raise ScenarioError(f"scenario {self.name}: " + "; ".join(problems))

    def apply(self, models: Mapping[str, Mapping[str, SignalModel]]
              ) -> dict[str, dict[str, SignalModel]]:
        """The site's models {gateway: {tag: model}} with the value faults applied."""
        self.check(models)
        vf = self.value_faults()
        return {gw: apply_value_faults(ms, [f for f in vf if f.gateway == gw])
                for gw, ms in models.items()}


# What the windows are computed from: the points' normal bands and noise
# (sim: blocks of sites/county.yaml) and the rule parameters of
# rules/catalog/*.yaml (catalog 2026.11-1), repeated in each Expected.assumes.
# tests/unit/test_scenarios.py checks both still hold, so a change to the site
# or the catalog that moves a window fails a unit test instead of an
# integration run.
CO_111_BAND: Band = (0.0, 13.0)  # ppm
CO_111_NOISE = {"noise": 0.8, "drift": 3.0, "drift_period_s": 2400.0}  # ppm, ppm, s
CO_111_DECIMALS = 1
PDT_801_BAND: Band = (860.0, 1120.0)  # Pa
PDT_801_BASELINE = 990.0  # Pa, recorded baseline (AQ 4273-2016 §5.1.4)
FT_601_602_DIFF_BAND: Band = (-1.0, 1.5)  # m3/h, in - out (sim diff_normal of FT-602)
PT_501_BAND: Band = (7.4, 8.6)  # kPa
GW_CEM_02_POINTS = ("TT-201", "TT-202", "IT-201", "FAC-301", "HS-301")

# -- coal_bin_self_heating ----------------------------------------------------------------
# CO-111 = normal + 20 ppm/min (1/3 ppm/s) from +60 s, capped at 300 ppm (not before
# (300-13)*3 = 861 s: beyond a 10-minute run). Normal CO-111 is within [0, 13] ppm.
#  bm.coal.co:hi 24 ppm, on-delay 5 s: normal + tau/3 >= 24 possibly from
#    tau = (24-13)*3 = 33 s, surely from 24*3 = 72 s -> [33+5, 72+5+1] = [38, 78] s.
#  bm.coal.co:hihi 160 ppm, on-delay 5 s: [(160-13)*3+5, 160*3+5+1] = [446, 486] s (inside a
#    600 s run from +60 s).
#  bm.coal.co_rate, 10 ppm/min over 60 s, on-delay 5 s: the rise over 60 s is tau/3 +- E,
#    E = 2*4*0.8 (noise) + 1.8 (drift over 60 s) + 0.1 (rounding) = 8.3 ppm, tripping at
#    10 ppm: possibly from tau = (10-8.3)*3 = 5.1 s, surely from (10+8.3)*3 = 54.9 s (< 60 s;
#    later the rise stays >= 20-8.3 = 11.7 ppm) -> [10.1, 60.9] s.
# TT-111 + 1 °C/min raises nothing in a 10-minute run: bm.coal.temp_rate needs 3 °C/min
# (normal wander adds < 1.5) and bm.coal.temp:hi 70 °C is >= 18 minutes away.
_CO = {"hi": 24.0, "on_delay_s": 5.0}
_CO_HIHI = {"hihi": 160.0, "on_delay_s": 5.0}
_CO_RATE = {"rise_per_min": 10.0, "window_s": 60.0, "on_delay_s": 5.0}
_CO_E = fluctuation_bound(CO_111_NOISE["noise"], CO_111_NOISE["drift"], CO_111_NOISE["drift_period_s"],
                          CO_111_DECIMALS, _CO_RATE["window_s"])

# -- burst_filter_bag ---------------------------------------------------------------------
# PDT-801 x 0.4 from +60 s: [860, 1120] Pa -> [344, 448] Pa, at least 54 % below the 990 Pa
# baseline, past the 20 % limit (792 Pa) at the first faulted sample -> on-delay 10 s:
# [10, 11] s.
_DP = {"pct": 20.0, "on_delay_s": 10.0, "baseline": PDT_801_BASELINE}

# -- cooling_water_leak -------------------------------------------------------------------
# FT-602 - 6 m3/h from +60 s: FT-601 - FT-602 goes from [-1, 1.5] to [5, 7.5] m3/h, past the
# 3 m3/h limit at the first faulted sample -> on-delay 5 s: [5, 6] s. The interlock
# (difference >= 3 while JS-601 = 1; protective action: power off) holds from the same
# sample -> hold 10 s: [10, 11] s. JS-601 is forced to 1 for the whole run (a no-op in
# today's site, where it is constant 1) so a melt schedule added later cannot break it.
_DIFF = {"hi": 3.0, "on_delay_s": 5.0}
_COOL_IL = {"hold_s": 10.0}

# -- gas_overpressure_esv_stuck -----------------------------------------------------------
# PT-501 = 12 kPa from +60 s (normal [7.4, 8.6]): past the 10 kPa limit at the first faulted
# sample -> on-delay 3 s: [3, 4] s. XV-501 stays 1 (open; constant in its model) -> ESV
# interlock hold 5 s: [5, 6] s.
_GAS = {"hi": 10.0, "on_delay_s": 3.0}
_ESV_IL = {"hold_s": 5.0}

# -- fire_controller_manual ---------------------------------------------------------------
# HS-301 = 1 from +30 s; the state rule's on-delay is 30 s: [30, 31] s. FAC-301's status
# word gains bit 2048 "manual" at the same time; fire.controller.manual_bit would see it too
# but is optional (off unless enabled for a plant without a manual_mode point).
_MANUAL = {"on_delay_s": 30.0}

# -- wall-clock rules (common.yaml) -------------------------------------------------------
# common.point.stale: 10 intervals of 1 s, at least 10 s; common.required.stale 30 s;
# common.gateway.offline 30 s silent or reported offline. Counted from the last reading
# (one sample before at_s) or the will (at at_s): [after - 1, after + 5] s.
_STALE_S = 10.0
_REQUIRED_STALE_S = 30.0
_OFFLINE_S = 30.0


def _data(rule_id: str, gateway: str, tag: str, at_s: float, window: tuple[float, float],
          assumes: Mapping[str, float], candidate: bool = False) -> Expected:
    return Expected(rule_id, gateway, tag, "data", at_s, window[0], window[1], candidate, dict(assumes))


def _wall(rule_id: str, gateway: str, tag: str, at_s: float, after_s: float,
          candidate: bool = False) -> Expected:
    e, late = wall_window(after_s)
    return Expected(rule_id, gateway, tag, "wall", at_s, e, late, candidate, {"after_s": after_s})


def _scenarios() -> dict[str, Scenario]:
    out = [
        Scenario(
            "coal_bin_self_heating",
            Text("煤粉仓自燃", "pulverised-coal bin self-heating"),
            Text("煤粉仓 CO-111 自 +60 s 起以 20 ppm/min 上升（上限 300 ppm），上部温度 TT-111 以 1 °C/min 上升。",
                 "Coal bin CO-111 rises 20 ppm/min from +60 s (up to 300 ppm); upper temperature TT-111 "
                 "rises 1 °C/min."),
            (Ramp("gw-cem-01", "CO-111", 60.0, per_min=20.0, limit=300.0),
             Ramp("gw-cem-01", "TT-111", 60.0, per_min=1.0)),
            (_data("bm.coal.co:hi", "gw-cem-01", "CO-111", 60.0,
                   threshold_window_ramp(CO_111_BAND, 20.0, _CO["hi"], _CO["on_delay_s"]), _CO),
             _data("bm.coal.co_rate", "gw-cem-01", "CO-111", 60.0,
                   rate_window_ramp(_CO_E, 20.0, _CO_RATE["rise_per_min"], _CO_RATE["window_s"],
                                    _CO_RATE["on_delay_s"]), _CO_RATE),
             _data("bm.coal.co:hihi", "gw-cem-01", "CO-111", 60.0,
                   threshold_window_ramp(CO_111_BAND, 20.0, _CO_HIHI["hihi"], _CO_HIHI["on_delay_s"]),
                   _CO_HIHI)),
        ),
        Scenario(
            "burst_filter_bag",
            Text("滤袋破损", "burst filter bag"),
            Text("铸造除尘器进出口压差 PDT-801 自 +60 s 起降至正常值的 40 %。",
                 "Foundry dust collector pressure difference PDT-801 drops to 40 % of normal from +60 s."),
            (StepScale("gw-fdy-02", "PDT-801", 60.0, factor=0.4),),
            (_data("dust.dp.deviation", "gw-fdy-02", "PDT-801", 60.0,
                   step_window((PDT_801_BAND[0] * 0.4, PDT_801_BAND[1] * 0.4),
                               PDT_801_BASELINE * (1 - _DP["pct"] / 100), False, _DP["on_delay_s"]), _DP),),
        ),
        Scenario(
            "cooling_water_leak",
            Text("冷却水泄漏", "cooling-water leak"),
            Text("1#中频炉回水流量 FT-602 自 +60 s 起减少 6 m³/h，进水流量 FT-601 正常，炉子保持送电（JS-601=1）。",
                 "IF-01 return flow FT-602 drops 6 m³/h from +60 s while inlet flow FT-601 stays normal "
                 "and the furnace stays energised (JS-601 = 1)."),
            (StepTo("gw-fdy-01", "JS-601", 0.0, value=1.0),
             StepBy("gw-fdy-01", "FT-602", 60.0, delta=-6.0)),
            (_data("mach.cooling.diff:hi", "gw-fdy-01", "FT-601", 60.0,
                   step_window((FT_601_602_DIFF_BAND[0] + 6, FT_601_602_DIFF_BAND[1] + 6), _DIFF["hi"], True,
                               _DIFF["on_delay_s"]), _DIFF),
             _data("mach.cooling.interlock", "gw-fdy-01", "FT-601", 60.0,
                   held_window(_COOL_IL["hold_s"]), _COOL_IL, candidate=True)),
        ),
        Scenario(
            "gas_overpressure_esv_stuck",
            Text("燃气总管超压且切断阀未动作", "gas-main overpressure, shut-off valve did not act"),
            Text("隧道窑燃气总管压力 PT-501 自 +60 s 起升至 12 kPa，紧急切断阀 XV-501 保持开启。",
                 "Tunnel kiln gas-main pressure PT-501 steps to 12 kPa from +60 s; emergency shut-off valve "
                 "XV-501 stays open."),
            (StepTo("gw-ref-01", "PT-501", 60.0, value=12.0),),
            (_data("bm.gas.pressure:hi", "gw-ref-01", "PT-501", 60.0,
                   step_window((12.0, 12.0), _GAS["hi"], True, _GAS["on_delay_s"]), _GAS),
             _data("bm.gas.esv_interlock", "gw-ref-01", "PT-501", 60.0,
                   held_window(_ESV_IL["hold_s"]), _ESV_IL, candidate=True)),
        ),
        Scenario(
            "spark_detector_offline",
            Text("火花探测器离线", "spark detector offline"),
            Text("除尘系统火花探测器 YS-801 自 +20 s 起不再上报，网关其余测点照常上报。",
                 "Spark detector YS-801 stops reporting from +20 s; the gateway's other points carry on."),
            (StopPoint("gw-fdy-02", "YS-801", 20.0),),
            (_wall("common.point.stale", "gw-fdy-02", "YS-801", 20.0, _STALE_S),
             _wall("common.required.stale", "gw-fdy-02", "YS-801", 20.0, _REQUIRED_STALE_S, candidate=True)),
        ),
        Scenario(
            "fire_controller_manual",
            Text("消防控制器处于手动", "fire alarm controller left in manual"),
            Text("水泥厂火灾报警控制器自 +30 s 起处于手动状态（HS-301=1，FAC-301 状态字置位 2048）。",
                 "Cement plant fire alarm controller switched to manual from +30 s (HS-301 = 1, FAC-301 "
                 "status word bit 2048 set)."),
            (StepTo("gw-cem-02", "HS-301", 30.0, value=1.0),
             SetBits("gw-cem-02", "FAC-301", 30.0, mask=2048)),
            (_data("fire.controller.manual", "gw-cem-02", "HS-301", 30.0,
                   held_window(0.0, _MANUAL["on_delay_s"]), _MANUAL, candidate=True),),
        ),
        Scenario(
            "gateway_unplugged",
            Text("网关断电", "gateway lost power"),
            Text("水泥厂窑系统及消防网关 gw-cem-02 于 +20 s 断电：连接中断且不再上报，"
                 "代理发布遗嘱 {\"online\": false}。",
                 "Cement kiln and fire gateway gw-cem-02 loses power at +20 s: its connection drops without "
                 "an MQTT DISCONNECT and the broker publishes its will {\"online\": false}."),
            (Unplug("gw-cem-02", 20.0),),
            (_wall("common.gateway.offline", "gw-cem-02", "gw-cem-02", 20.0, _OFFLINE_S),
             # Every point of the gateway goes stale too (none of them is required).
             *(_wall("common.point.stale", "gw-cem-02", tag, 20.0, _STALE_S) for tag in GW_CEM_02_POINTS)),
        ),
    ]
    return {s.name: s for s in out}


#: Every named scenario, by name.
SCENARIOS: dict[str, Scenario] = _scenarios()


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ScenarioError lists the known names otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}") from None
