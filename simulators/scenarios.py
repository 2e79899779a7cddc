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
from pathlib import Path
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
    "BagsChanged",
    "ClockAhead",
    "CopyOf",
    "TRUST_REGISTRY_SCENARIOS",
    "apply_value_faults",
    "get_scenario",
]

#: The reading that confirms an alarm is the first sample at or after the
#: moment its condition is met: up to one sample period later (1 s at 1 Hz).
SAMPLE_SLACK_S = 1.0
#: Wall-clock rules run on the collector's timer tick; allow for the tick,
#: the simulator's flush interval and delivery.
WALL_SLACK_S = 5.0
#: Where the sample sites live.
SITES_DIR = Path(__file__).resolve().parent / "sites"


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


@dataclass(frozen=True)
class CopyOf(_PointFault):
    """From ``at_s`` the point reports ``source``'s values (same gateway): a series copied to silence alarms."""

    source: str

    def describe(self) -> str:
        return f"{self.tag} reports {self.source}'s values from +{self.at_s:g} s"


@dataclass(frozen=True)
class ClockAhead:
    """From ``at_s`` the gateway's clock runs ``ahead_s`` fast: every timestamp it sends (readings and the
    message's own ``ts``) is ``ahead_s`` in the future. Past ingest's ``max_future_s`` every reading is
    dead-lettered. ``simulate`` plays it: the readings sampled from ``at_s`` and the messages carrying them
    are stamped ``ahead_s`` fast (a publisher with ``clock_offset_ms``, simulators.run.ClockShiftable)."""

    gateway: str
    at_s: float
    ahead_s: float

    def describe(self) -> str:
        return f"{self.gateway} clock {self.ahead_s:+g} s from +{self.at_s:g} s"


@dataclass(frozen=True)
class BagsChanged(_PointFault):
    """The collector's bags are changed at ``at_s`` (recorded in the registry as the point's ``serviced_at``)
    and nobody records a new pressure-difference baseline. A registry event: nothing the gateway sends changes."""

    def describe(self) -> str:
        return f"bags of {self.tag}'s collector changed at +{self.at_s:g} s, no new baseline"


ValueFault = Ramp | StepTo | StepBy | StepScale | SetBits | CopyOf
Fault = ValueFault | StopPoint | Unplug | ClockAhead | BagsChanged


class CopiedModel(SignalModel):
    """``base`` until ``at_s``, then exactly what ``source`` reports (same decimals: the same numbers)."""

    def __init__(self, base: SignalModel, source: SignalModel, at_s: float):
        self.base, self.source, self.at_s = base, source, at_s
        self.params = base.params
        self.key = base.key

    def _pick(self, a: FloatArray, b: FloatArray, t: FloatArray) -> FloatArray:
        out: FloatArray = np.where(t >= self.at_s, b, a)
        return out

    def smooth(self, t: FloatArray) -> FloatArray:
        return self._pick(self.base.smooth(t), self.source.smooth(t), t)

    def raw(self, t: FloatArray) -> FloatArray:
        return self._pick(self.base.raw(t), self.source.raw(t), t)

    def smooth_envelope(self) -> Band:
        return -math.inf, math.inf


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
                       faults: Sequence[_ValueFault | CopyOf]) -> dict[str, SignalModel]:
    """One gateway's models with these faults applied (all faults must be on this gateway).

    Faults on one point stack in ``at_s`` order. A ``follow`` point whose
    source or gate is faulted is re-pointed at the faulted model: an inlet
    flow that drops takes the outlet with it.
    """
    by_tag: dict[str, list[_ValueFault | CopyOf]] = {}
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
            m = CopiedModel(m, resolve(f.source), f.at_s) if isinstance(f, CopyOf) else FaultedModel(m, f)
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


def threshold_window_fall(band: Band, per_min: float, limit: float,
                          on_delay_s: float) -> tuple[float, float]:
    """A lo limit under a falling ramp (``per_min`` < 0): the mirror image of :func:`threshold_window_ramp`.

    Falling from the bottom of the band it may cross first; from the top, surely by the late crossing.
    """
    if per_min >= 0:
        raise ValueError("threshold_window_fall needs a falling ramp")
    lo, hi = band
    return threshold_window_ramp((-hi, -lo), -per_min, -limit, on_delay_s)


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
    # The sample site (file under simulators/sites/) whose gateways and tags the scenario names:
    # county.yaml is the demo site; county_full.yaml has the equipment of every catalog basis.
    site: str = "county.yaml"

    @property
    def site_path(self) -> Path:
        """The sample site file this scenario plays on."""
        return SITES_DIR / self.site

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
        return [f for f in self.faults if isinstance(f, Ramp | StepTo | StepBy | StepScale | SetBits | CopyOf)]

    def stops(self) -> dict[tuple[str, str], float]:
        """(gateway, tag) -> at_s of dead sensors."""
        return {(f.gateway, f.tag): f.at_s for f in self.faults if isinstance(f, StopPoint)}

    def unplugs(self) -> dict[str, float]:
        """gateway -> at_s of gateways losing power."""
        return {f.gateway: f.at_s for f in self.faults if isinstance(f, Unplug)}

    def clocks(self) -> dict[str, tuple[float, float]]:
        """gateway -> (at_s, ahead_s) of gateway clocks running fast."""
        return {f.gateway: (f.at_s, f.ahead_s) for f in self.faults if isinstance(f, ClockAhead)}

    def check(self, models: Mapping[str, Mapping[str, SignalModel]]) -> None:
        """Raise ScenarioError naming every fault that points at no gateway/point of the site."""
        problems = []
        for f in self.faults:
            if f.at_s < 0:
                problems.append(f"{f.describe()}: at_s must not be negative")
            if f.gateway not in models:
                problems.append(f"{f.describe()}: no gateway {f.gateway!r} with points")
            elif not isinstance(f, Unplug | ClockAhead) and f.tag not in models[f.gateway]:
                problems.append(f"{f.describe()}: no point {f.tag!r} on {f.gateway}")
            elif isinstance(f, CopyOf) and f.source not in models[f.gateway]:
                problems.append(f"{f.describe()}: no point {f.source!r} on {f.gateway}")
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
    return {s.name: s for s in [*out, *_full_scenarios(), *_trust_scenarios()]}


# --------------------------------------------------------------------------
# county_full.yaml: one incident (at least) per basis of the catalog
# --------------------------------------------------------------------------
#
# Same method as above. Normal bands, noise and rule parameters are those of
# sites/county_full.yaml and rules/catalog (2026.11-1); each Expected.assumes
# repeats the rule parameters, and FULL_BANDS the bands a window is computed
# from, and tests/unit/test_supervision_fidelity.py checks both.
FULL = "county_full.yaml"
FULL_BANDS: dict[tuple[str, str], Band] = {
    ("gwf-cem-01", "AT-1201"): (0.0, 2.5),      # %LEL carbide silo
    ("gwf-cem-01", "CO-1101"): (0.0, 17.0),     # ppm coal-mill filter outlet CO
    ("gwf-cem-01", "PDT-1101"): (1020.0, 1280.0),  # Pa, baseline 1150
    ("gwf-ref-01", "FT-2101"): (55.0, 65.0),     # m3/h fused furnace cooling
    ("gwf-ref-02", "AT-2301"): (0.0, 2.0),       # %LEL hydrogen station
    ("gwf-fdy-01", "LT-3201"): (2.5, 2.7),       # m emergency water tank
    ("gwf-fdy-02", "AT-3401"): (0.0, 5.5),       # %LEL spray booth
    ("gwf-fdy-03", "PDT-3501"): (860.0, 1120.0),  # Pa, baseline 990
    ("gwf-fdy-03", "AT-3603"): (4.5, 5.5),       # %vol O2 under inerting
    ("gwf-cem-02", "LT-1502"): (3.1, 3.3),       # m fire water tank
    ("gwf-alm-02", "AT-4302"): (0.0, 2.5),      # %LEL magnesium sludge store
}
FULL_BASELINES: dict[tuple[str, str], float] = {("gwf-cem-01", "PDT-1101"): 1150.0,
                                                ("gwf-fdy-03", "PDT-3501"): 990.0}
#: A spark counter's normal count may gain an event per slot: two in one window at worst
#: (end of one slot, start of the next), plus a rounding step at each end.
SPARK_COUNT_E = 3.0


def _fb(gw: str, tag: str) -> Band:
    return FULL_BANDS[(gw, tag)]


def _full_scenarios() -> list[Scenario]:
    lel = {"hi": 25.0, "on_delay_s": 3.0}
    lel_hihi = {"hihi": 50.0, "on_delay_s": 3.0}
    band_cs = _fb("gwf-cem-01", "AT-1201")
    band_h2 = _fb("gwf-ref-02", "AT-2301")
    band_sb = _fb("gwf-fdy-02", "AT-3401")
    band_ft = _fb("gwf-ref-01", "FT-2101")
    band_lt = _fb("gwf-fdy-01", "LT-3201")
    band_o2 = _fb("gwf-fdy-03", "AT-3603")
    band_fwt = _fb("gwf-cem-02", "LT-1502")
    band_mg = _fb("gwf-alm-02", "AT-4302")
    dp_drop = _fb("gwf-fdy-03", "PDT-3501")
    dp_rise = _fb("gwf-cem-01", "PDT-1101")
    b_drop = FULL_BASELINES[("gwf-fdy-03", "PDT-3501")]
    b_rise = FULL_BASELINES[("gwf-cem-01", "PDT-1101")]
    spark_rate = {"rise_per_min": 1.0, "window_s": 300.0, "on_delay_s": 0.0}

    def d(rule_id: str, gw: str, tag: str, at_s: float, window: tuple[float, float],
          assumes: Mapping[str, float], candidate: bool = False) -> Expected:
        return _data(rule_id, gw, tag, at_s, window, assumes, candidate)

    def sc(name: str, title: Text, desc: Text, faults: tuple[Fault, ...], expects: tuple[Expected, ...]) -> Scenario:
        return Scenario(name, title, desc, faults, expects, site=FULL)

    return [
        # 6(1): smouldering coal in the coal-mill bag filter while its CO2 bank has leaked.
        # CO-1101 + 30 ppm/min (to 100, below hihi 160), band [0, 17]: hi 24 in [14, 48] s + 5 s on-delay;
        # rate 10 ppm/min over 60 s trips by (10 + E) / 0.5 s (E = fluctuation_bound of CO-1101).
        # PT-1101 = 4.2 MPa: past lo 5.0 and lolo 4.5 at once, on-delay 60 s.
        sc("coal_mill_filter_smouldering",
           Text("煤磨收尘器阴燃且灭火钢瓶失压", "coal-mill filter smouldering, suppression cylinders leaked"),
           Text("煤磨收尘器出口 CO-1101 自 +60 s 起以 30 ppm/min 上升（至 100 ppm）；气体灭火装置钢瓶压力 PT-1101 "
                "自 +60 s 起为 4.2 MPa。",
                "Coal-mill filter outlet CO-1101 rises 30 ppm/min from +60 s (up to 100 ppm); the gas "
                "fire-suppression cylinder pressure PT-1101 is 4.2 MPa from +60 s."),
           (Ramp("gwf-cem-01", "CO-1101", 60.0, per_min=30.0, limit=100.0),
            StepTo("gwf-cem-01", "PT-1101", 60.0, value=4.2)),
           (d("bm.coal.co:hi", "gwf-cem-01", "CO-1101", 60.0,
              threshold_window_ramp(_fb("gwf-cem-01", "CO-1101"), 30.0, 24.0, 5.0), {"hi": 24.0, "on_delay_s": 5.0}),
            d("bm.coal.co_rate", "gwf-cem-01", "CO-1101", 60.0,
              rate_window_ramp(fluctuation_bound(1.0, 4.0, 1800.0, 1, 60.0), 30.0, 10.0, 60.0, 5.0), _CO_RATE),
            d("bm.coal.suppression_pressure:lo", "gwf-cem-01", "PT-1101", 60.0,
              step_window((4.2, 4.2), 5.0, False, 60.0), {"lo": 5.0, "on_delay_s": 60.0}),
            d("bm.coal.suppression_pressure:lolo", "gwf-cem-01", "PT-1101", 60.0,
              step_window((4.2, 4.2), 4.5, False, 60.0), {"lolo": 4.5, "on_delay_s": 60.0}))),
        # 6(3): carbide-slag silo, acetylene building up with the emergency fan left off.
        # AT-1201 + 10 %LEL/min from +60 s (capped at 40, below hihi 50); band [0, 2.5]:
        # hi 25 crossed in [135, 150] s (+3 s on-delay, +1 sample); interlock hold 30 s.
        sc("carbide_silo_gas_no_ventilation",
           Text("电石渣库乙炔积聚且事故排风未启动", "carbide-slag silo gas build-up, emergency fan not started"),
           Text("电石渣库可燃气体 AT-1201 自 +60 s 起以 10 %LEL/min 上升（至 40 %LEL），事故排风机 FS-1201 未启动。",
                "Carbide-slag silo gas AT-1201 rises 10 %LEL/min from +60 s (up to 40 %LEL); the emergency fan "
                "FS-1201 does not start."),
           (Ramp("gwf-cem-01", "AT-1201", 60.0, per_min=10.0, limit=40.0),),
           (d("bm.carbide.lel:hi", "gwf-cem-01", "AT-1201", 60.0,
              threshold_window_ramp(band_cs, 10.0, 25.0, 3.0), lel),
            d("bm.carbide.vent_interlock", "gwf-cem-01", "AT-1201", 60.0,
              threshold_window_ramp(band_cs, 10.0, 25.0, 30.0), {"hold_s": 30.0}, candidate=True))),
        # 6(5): gas kiln supply pressure lost, ESV stays open. 4.5 kPa <= lo 6 at once.
        sc("kiln_gas_pressure_low_esv_open",
           Text("燃气窑总管失压且切断阀未关闭", "gas kiln supply pressure lost, shut-off valve stays open"),
           Text("梭式窑燃气总管压力 PT-2201 自 +60 s 起降至 4.5 kPa，紧急切断阀 XV-2201 保持开启。",
                "Shuttle kiln gas-main pressure PT-2201 drops to 4.5 kPa from +60 s; ESV XV-2201 stays open."),
           (StepTo("gwf-ref-01", "PT-2201", 60.0, value=4.5),),
           (d("bm.gas.pressure:lo", "gwf-ref-01", "PT-2201", 60.0, step_window((4.5, 4.5), 6.0, False, 3.0),
              {"lo": 6.0, "on_delay_s": 3.0}),
            d("bm.gas.esv_interlock", "gwf-ref-01", "PT-2201", 60.0, held_window(5.0), {"hold_s": 5.0},
              candidate=True))),
        # 6(6): hydrogen leak in the N2/H2 protective-gas station. AT-2301 + 15 %LEL/min, band [0, 2].
        sc("hydrogen_station_leak",
           Text("制氢站氢气泄漏", "hydrogen station leak"),
           Text("制氢间氢气浓度 AT-2301 自 +60 s 起以 15 %LEL/min 上升（至 60 %LEL）。",
                "Hydrogen station gas AT-2301 rises 15 %LEL/min from +60 s (up to 60 %LEL)."),
           (Ramp("gwf-ref-02", "AT-2301", 60.0, per_min=15.0, limit=60.0),),
           (d("bm.gasroom.lel:hi", "gwf-ref-02", "AT-2301", 60.0, threshold_window_ramp(band_h2, 15.0, 25.0, 3.0),
              lel),
            d("bm.gasroom.lel:hihi", "gwf-ref-02", "AT-2301", 60.0,
              threshold_window_ramp(band_h2, 15.0, 50.0, 3.0), lel_hihi))),
        # 6(7): cooling pump of the fused furnace stops, the furnace stays energised.
        # FT-2101 - 35 m3/h: [55, 65] -> [20, 30], past lo 45 and lolo 35 at once.
        sc("fused_furnace_cooling_loss_energised",
           Text("电熔炉冷却水流量骤降且未停电", "fused-product furnace cooling flow lost while energised"),
           Text("电熔炉冷却水流量 FT-2101 自 +60 s 起减少 35 m³/h（冷却泵故障），炉子保持送电（JS-2101=1）。",
                "Fused furnace cooling flow FT-2101 drops 35 m³/h from +60 s (pump failure) while the furnace "
                "stays energised (JS-2101 = 1)."),
           (StepTo("gwf-ref-01", "JS-2101", 0.0, value=1.0),
            StepBy("gwf-ref-01", "FT-2101", 60.0, delta=-35.0)),
           (d("bm.fused.cooling_flow:lo", "gwf-ref-01", "FT-2101", 60.0,
              step_window((band_ft[0] - 35, band_ft[1] - 35), 45.0, False, 5.0), {"lo": 45.0, "on_delay_s": 5.0}),
            d("bm.fused.cooling_flow:lolo", "gwf-ref-01", "FT-2101", 60.0,
              step_window((band_ft[0] - 35, band_ft[1] - 35), 35.0, False, 5.0), {"lolo": 35.0, "on_delay_s": 5.0}),
            d("bm.fused.cooling_interlock", "gwf-ref-01", "FT-2101", 60.0, held_window(10.0), {"hold_s": 10.0},
              candidate=True))),
        # 7(2): emergency storage pit occupied and the emergency water tank draining.
        # LT-3201 - 0.2 m/min (to 1.0 m), band [2.5, 2.7]: lo 2.0 in [150, 210] s, lolo 1.5 in [300, 360] s.
        sc("foundry_emergency_storage_unavailable",
           Text("熔炼炉应急储存不可用且应急水箱失水", "furnace emergency storage unavailable, emergency tank draining"),
           Text("事故坑被占用（ZS-3202=0）自 +60 s 起未恢复；应急冷却水箱液位 LT-3201 自 +60 s 起以 0.2 m/min 下降。",
                "The emergency pit is occupied (ZS-3202 = 0) from +60 s; the emergency cooling-water tank "
                "LT-3201 drains 0.2 m/min from +60 s."),
           (StepTo("gwf-fdy-01", "ZS-3202", 60.0, value=0.0),
            Ramp("gwf-fdy-01", "LT-3201", 60.0, per_min=-0.2, limit=1.0)),
           (d("mach.emergency.tank_level:lo", "gwf-fdy-01", "LT-3201", 60.0,
              threshold_window_fall(band_lt, -0.2, 2.0, 10.0), {"lo": 2.0, "on_delay_s": 10.0}),
            d("mach.emergency.tank_level:lolo", "gwf-fdy-01", "LT-3201", 60.0,
              threshold_window_fall(band_lt, -0.2, 1.5, 10.0), {"lolo": 1.5, "on_delay_s": 10.0}),
            d("mach.emergency.unavailable", "gwf-fdy-01", "ZS-3202", 60.0, held_window(0.0, 300.0),
              {"on_delay_s": 300.0}, candidate=True))),
        # 7(4): cooling-water inlet pressure lost, the induction furnace stays energised.
        sc("induction_cooling_pressure_loss",
           Text("感应电炉冷却水失压且未断电", "induction furnace cooling-water pressure lost while energised"),
           Text("感应电炉冷却水进水压力 PT-3101 自 +60 s 起降至 0.12 MPa，炉子保持送电。",
                "Induction furnace cooling-water inlet pressure PT-3101 drops to 0.12 MPa from +60 s while the "
                "furnace stays energised."),
           (StepTo("gwf-fdy-01", "PT-3101", 60.0, value=0.12),),
           (d("mach.cooling.pressure:lo", "gwf-fdy-01", "PT-3101", 60.0, step_window((0.12, 0.12), 0.2, False, 3.0),
              {"lo": 0.2, "on_delay_s": 3.0}),
            d("mach.cooling.pressure:lolo", "gwf-fdy-01", "PT-3101", 60.0,
              step_window((0.12, 0.12), 0.15, False, 3.0), {"lolo": 0.15, "on_delay_s": 3.0}),
            d("mach.cooling.interlock", "gwf-fdy-01", "FT-3101", 60.0, held_window(10.0), {"hold_s": 10.0},
              candidate=True))),
        # 7(5): flame lost, the flame-failure device faulty, the gas valve stays open.
        sc("burner_flame_out_valve_open",
           Text("燃烧器熄火且切断阀未关闭", "burner flame out, gas valve stays open"),
           Text("热处理炉燃烧器自 +60 s 起熄火（BS-3301=0），熄火保护装置故障（XA-3301=1），"
                "燃气切断阀 XV-3301 保持开启。",
                "The heat-treatment burner loses its flame from +60 s (BS-3301 = 0) with its flame-failure device "
                "faulty (XA-3301 = 1); gas valve XV-3301 stays open."),
           (StepTo("gwf-fdy-02", "BS-3301", 60.0, value=0.0),
            StepTo("gwf-fdy-02", "XA-3301", 60.0, value=1.0)),
           (d("mach.burner.flame_failure", "gwf-fdy-02", "BS-3301", 60.0, held_window(5.0), {"hold_s": 5.0},
              candidate=True),
            d("mach.burner.flame_guard_fault", "gwf-fdy-02", "XA-3301", 60.0, held_window(0.0, 60.0),
              {"on_delay_s": 60.0}, candidate=True))),
        sc("burner_gas_overpressure_esv_stuck",
           Text("燃烧器燃气超压且切断阀未动作", "burner gas-main overpressure, shut-off valve did not act"),
           Text("热处理炉燃气总管压力 PT-3301 自 +60 s 起升至 12 kPa，切断阀 XV-3301 保持开启。",
                "Heat-treatment burner gas-main pressure PT-3301 steps to 12 kPa from +60 s; XV-3301 stays open."),
           (StepTo("gwf-fdy-02", "PT-3301", 60.0, value=12.0),),
           (d("mach.gas.pressure:hi", "gwf-fdy-02", "PT-3301", 60.0, step_window((12.0, 12.0), 10.0, True, 3.0),
              {"hi": 10.0, "on_delay_s": 3.0}),
            d("mach.gas.esv_interlock", "gwf-fdy-02", "PT-3301", 60.0, held_window(5.0), {"hold_s": 5.0},
              candidate=True))),
        # 7(7): spray-booth extraction trips, solvent vapour builds up. AT-3401 + 8 %LEL/min (to 40), band [0, 5.5].
        sc("spray_booth_ventilation_trip",
           Text("喷漆室排风停止溶剂蒸气积聚", "spray booth extraction stopped, solvent vapour building up"),
           Text("喷漆室排风机 FS-3401 自 +60 s 起停止，可燃气体 AT-3401 以 8 %LEL/min 上升（至 40 %LEL）。",
                "Spray booth extraction fan FS-3401 stops from +60 s; combustible gas AT-3401 rises 8 %LEL/min "
                "(up to 40 %LEL)."),
           (StepTo("gwf-fdy-02", "FS-3401", 60.0, value=0.0),
            Ramp("gwf-fdy-02", "AT-3401", 60.0, per_min=8.0, limit=40.0)),
           (d("mach.paint.lel:hi", "gwf-fdy-02", "AT-3401", 60.0, threshold_window_ramp(band_sb, 8.0, 25.0, 3.0), lel),
            d("mach.paint.vent_interlock", "gwf-fdy-02", "AT-3401", 60.0,
              threshold_window_ramp(band_sb, 8.0, 25.0, 30.0), {"hold_s": 30.0}, candidate=True))),
        # 11(3) venting; AQ 4273 inlet temperature: a deflagration in the shot-blast collector.
        sc("dust_collector_deflagration",
           Text("除尘器爆燃泄爆且隔离阀未关闭", "dust collector deflagration, vent burst, isolation valve stays open"),
           Text("抛丸除尘器入口温度 TT-3502 自 +60 s 起升至 85 °C，泄爆片 ZS-3501 破裂，入口隔离阀 XV-3503 保持开启。",
                "Shot-blast collector inlet temperature TT-3502 steps to 85 °C from +60 s, explosion vent ZS-3501 "
                "bursts, inlet isolation valve XV-3503 stays open."),
           (StepTo("gwf-fdy-03", "TT-3502", 60.0, value=85.0),
            StepTo("gwf-fdy-03", "ZS-3501", 60.0, value=1.0)),
           (d("dust.inlet.temp:hi", "gwf-fdy-03", "TT-3502", 60.0, step_window((85.0, 85.0), 70.0, True, 5.0),
              {"hi": 70.0, "on_delay_s": 5.0}),
            d("dust.inlet.isolation_interlock", "gwf-fdy-03", "TT-3502", 60.0, held_window(10.0), {"hold_s": 10.0}),
            d("dust.vent.burst", "gwf-fdy-03", "ZS-3501", 60.0, held_window(0.0), {"on_delay_s": 0.0}))),
        # 11(3) suppression, isolation, inerting: the protection degrades while the plant runs.
        # AT-3603 + 1 %vol/min (to 9, below hihi 10), band [4.5, 5.5]: hi 8 in [150, 210] s + 10 s on-delay.
        sc("explosion_protection_degraded",
           Text("抑爆、隔爆、惰化保护失效", "explosion suppression, isolation and inerting degraded"),
           Text("自 +60 s 起抑爆器储压 PT-3601 降至 4.0 MPa 并报故障（XA-3601=1），隔爆阀报故障（XA-3602=1），"
                "惰化氮气中断，氧含量 AT-3603 以 1 %vol/min 上升（至 9 %vol）。",
                "From +60 s the suppressor's container pressure PT-3601 is 4.0 MPa and it reports a fault "
                "(XA-3601 = 1), the isolation valve reports a fault (XA-3602 = 1), and the nitrogen supply fails: "
                "oxygen AT-3603 rises 1 %vol/min (up to 9 %vol)."),
           (StepTo("gwf-fdy-03", "PT-3601", 60.0, value=4.0),
            StepTo("gwf-fdy-03", "XA-3601", 60.0, value=1.0),
            StepTo("gwf-fdy-03", "XA-3602", 60.0, value=1.0),
            Ramp("gwf-fdy-03", "AT-3603", 60.0, per_min=1.0, limit=9.0)),
           (d("dust.suppressor.pressure:lo", "gwf-fdy-03", "PT-3601", 60.0,
              step_window((4.0, 4.0), 4.5, False, 60.0), {"lo": 4.5, "on_delay_s": 60.0}),
            d("dust.suppressor.fault", "gwf-fdy-03", "XA-3601", 60.0, held_window(0.0, 300.0),
              {"on_delay_s": 300.0}, candidate=True),
            d("dust.isolation.fault", "gwf-fdy-03", "XA-3602", 60.0, held_window(0.0, 300.0),
              {"on_delay_s": 300.0}, candidate=True),
            d("dust.inerting.o2:hi", "gwf-fdy-03", "AT-3603", 60.0, threshold_window_ramp(band_o2, 1.0, 8.0, 10.0),
              {"hi": 8.0, "on_delay_s": 10.0}))),
        # 11(4): Al/Mg positive-pressure conveying: sparks, then the detector fails; the collector fan trips.
        # QI-4102 + 3 counts/min: rate over 300 s reaches 1/min in [40, 160] s (E = SPARK_COUNT_E). The
        # faults start at +360 s: the evaluator computes a rate only once a full window of history exists.
        sc("almg_conveying_sparks",
           Text("铝粉输送火花频发且探测器故障", "aluminium-powder conveying sparks, then the detector fails"),
           Text("铝粉正压输送管道自 +360 s 起火花报警（YS-4102=1），火花计数 QI-4102 每分钟增加 3 次；"
                "+480 s 起探测器故障（YS-4102=2）；除尘器风机跳闸，静压 PT-4101 自 +360 s 起升至 +150 Pa（正压）。",
                "Aluminium-powder conveying line: spark alarm from +360 s (YS-4102 = 1), spark count QI-4102 "
                "+3/min; the detector fails from +480 s (YS-4102 = 2); the collector fan trips and static pressure "
                "PT-4101 goes to +150 Pa (positive) from +360 s."),
           (StepTo("gwf-alm-01", "YS-4102", 360.0, value=1.0),
            StepTo("gwf-alm-01", "YS-4102", 480.0, value=2.0),
            Ramp("gwf-alm-01", "QI-4102", 360.0, per_min=3.0),
            StepTo("gwf-alm-01", "PT-4101", 360.0, value=150.0)),
           (d("dust.spark.alarm", "gwf-alm-01", "YS-4102", 360.0, held_window(0.0), {"on_delay_s": 0.0}),
            d("dust.spark.fault", "gwf-alm-01", "YS-4102", 480.0, held_window(0.0, 300.0), {"on_delay_s": 300.0},
              candidate=True),
            d("dust.spark.rate", "gwf-alm-01", "QI-4102", 360.0,
              rate_window_ramp(SPARK_COUNT_E, 3.0, 1.0, 300.0, 0.0), spark_rate),
            d("dust.almg.positive_pressure:hi", "gwf-alm-01", "PT-4101", 360.0,
              step_window((150.0, 150.0), 0.0, True, 60.0), {"hi": 0.0, "on_delay_s": 60.0}))),
        # 11(6): wood-dust collector airlock jammed.
        sc("wood_collector_airlock_fault",
           Text("木粉尘除尘器锁气卸灰阀故障", "wood-dust collector airlock fault"),
           Text("木模车间除尘器锁气卸灰阀 XA-4201 自 +60 s 起故障且未恢复。",
                "Wood-pattern shop collector airlock XA-4201 faults from +60 s and is not cleared."),
           (StepTo("gwf-alm-02", "XA-4201", 60.0, value=1.0),),
           (d("dust.airlock.fault_metal", "gwf-alm-02", "XA-4201", 60.0, held_window(0.0, 300.0),
              {"on_delay_s": 300.0}, candidate=True),)),
        # 11(8): tramp-iron separator before the raw-material crusher fails.
        sc("crusher_tramp_separator_fault",
           Text("破碎机前除铁器故障", "tramp-iron separator before the crusher failed"),
           Text("原料破碎机前除铁器 XA-1301 自 +60 s 起故障。", "Tramp-iron separator XA-1301 faults from +60 s."),
           (StepTo("gwf-cem-02", "XA-1301", 60.0, value=1.0),),
           (d("dust.tramp.fault", "gwf-cem-02", "XA-1301", 60.0, held_window(0.0, 300.0), {"on_delay_s": 300.0},
              candidate=True),)),
        # 11(8): sander duct's spark detection left bypassed beyond the half-hour allowance.
        sc("sander_spark_detection_bypassed",
           Text("砂光管道火花探测被旁路", "sander duct spark detection left bypassed"),
           Text("砂光机吸尘管道火花探测器 YS-4202 自 +60 s 起处于旁路状态。",
                "Sander duct spark detector YS-4202 is bypassed from +60 s."),
           (StepTo("gwf-alm-02", "YS-4202", 60.0, value=3.0),),
           (d("dust.spark.bypass", "gwf-alm-02", "YS-4202", 60.0, held_window(0.0, 1800.0), {"on_delay_s": 1800.0},
              candidate=True),)),
        # 11(9): Mg sludge store ventilation stops, hydrogen builds up. AT-4302 + 10 %LEL/min (to 40), band [0, 2.5].
        sc("magnesium_store_hydrogen_no_ventilation",
           Text("镁粉泥暂存间通风停止氢气积聚", "magnesium sludge store ventilation stopped, hydrogen building up"),
           Text("镁粉泥暂存间通风机 FS-4302 自 +60 s 起停止，氢气浓度 AT-4302 以 10 %LEL/min 上升（至 40 %LEL）。",
                "Magnesium sludge store fan FS-4302 stops from +60 s; hydrogen AT-4302 rises 10 %LEL/min "
                "(up to 40 %LEL)."),
           (StepTo("gwf-alm-02", "FS-4302", 60.0, value=0.0),
            Ramp("gwf-alm-02", "AT-4302", 60.0, per_min=10.0, limit=40.0)),
           (d("dust.h2.lel:hi", "gwf-alm-02", "AT-4302", 60.0, threshold_window_ramp(band_mg, 10.0, 25.0, 3.0), lel),
            d("dust.h2.vent_interlock", "gwf-alm-02", "AT-4302", 60.0,
              threshold_window_ramp(band_mg, 10.0, 25.0, 60.0), {"hold_s": 60.0}, candidate=True))),
        # AQ 4273 §5.1.4, both directions: a burst bag (drop) and blinded bags (rise).
        # PDT-3501 x 0.4: [344, 448] Pa <= 792 Pa at once. PDT-1101 x 1.5: [1530, 1920] Pa >= 1380 Pa at once.
        sc("bag_burst_foundry_collector",
           Text("抛丸除尘器滤袋破损", "shot-blast collector bag burst"),
           Text("抛丸除尘器进出口压差 PDT-3501 自 +60 s 起降至正常值的 40 %。",
                "Shot-blast collector pressure difference PDT-3501 drops to 40 % of normal from +60 s."),
           (StepScale("gwf-fdy-03", "PDT-3501", 60.0, factor=0.4),),
           (d("dust.dp.deviation", "gwf-fdy-03", "PDT-3501", 60.0,
              step_window((dp_drop[0] * 0.4, dp_drop[1] * 0.4), b_drop * 0.8, False, 10.0),
              {"pct": 20.0, "on_delay_s": 10.0, "baseline": b_drop}),)),
        sc("bag_blinding_coal_mill_filter",
           Text("煤磨收尘器滤袋糊袋", "coal-mill filter bags blinded"),
           Text("煤磨收尘器进出口压差 PDT-1101 自 +60 s 起升至正常值的 1.5 倍（结露糊袋、清灰失效）。",
                "Coal-mill filter pressure difference PDT-1101 rises to 1.5 x normal from +60 s (bags blinded by "
                "condensation, cleaning ineffective)."),
           (StepScale("gwf-cem-01", "PDT-1101", 60.0, factor=1.5),),
           (d("dust.dp.deviation", "gwf-cem-01", "PDT-1101", 60.0,
              step_window((dp_rise[0] * 1.5, dp_rise[1] * 1.5), b_rise * 1.2, True, 10.0),
              {"pct": 20.0, "on_delay_s": 10.0, "baseline": b_rise}),)),
        # GB 26875.3: every controller status bit the catalog reads, and the transmission device.
        sc("fire_alarm_controller_fire",
           Text("火灾报警控制器火警", "fire alarm controller reports a fire"),
           Text("水泥厂火灾报警控制器状态字 FAC-1401 自 +60 s 起置位 火警(2)、启动(32)、反馈(64)。",
                "Cement plant fire alarm controller status word FAC-1401 sets fire (2), start (32) and feedback (64) "
                "from +60 s."),
           (SetBits("gwf-cem-02", "FAC-1401", 60.0, mask=2 | 32 | 64),),
           (d("fire.controller.alarm", "gwf-cem-02", "FAC-1401", 60.0, held_window(0.0), {"on_delay_s": 0.0}),)),
        sc("fire_controller_faults",
           Text("火灾报警控制器故障、监管及总线故障", "fire alarm controller fault, supervisory and bus fault"),
           Text("控制器状态字 FAC-1401 自 +60 s 起置位 故障(4)、监管(16)、总线故障(1024)。",
                "Controller status word FAC-1401 sets fault (4), supervisory (16) and bus fault (1024) from +60 s."),
           (SetBits("gwf-cem-02", "FAC-1401", 60.0, mask=4 | 16 | 1024),),
           (d("fire.controller.fault", "gwf-cem-02", "FAC-1401", 60.0, held_window(0.0, 10.0), {"on_delay_s": 10.0}),
            d("fire.controller.supervisory", "gwf-cem-02", "FAC-1401", 60.0, held_window(0.0, 10.0),
              {"on_delay_s": 10.0}),
            d("fire.controller.bus_fault", "gwf-cem-02", "FAC-1401", 60.0, held_window(0.0, 600.0),
              {"on_delay_s": 600.0}, candidate=True))),
        sc("fire_controller_power_and_isolation",
           Text("火灾报警控制器主备电故障及长时间屏蔽", "fire alarm controller power faults and devices isolated"),
           Text("控制器状态字 FAC-1401 自 +60 s 起置位 屏蔽(8)、主电故障(256)、备电故障(512)，一小时未恢复。",
                "Controller status word FAC-1401 sets isolated (8), mains fault (256) and backup power fault (512) "
                "from +60 s, not cleared within an hour."),
           (SetBits("gwf-cem-02", "FAC-1401", 60.0, mask=8 | 256 | 512),),
           tuple(d(r, "gwf-cem-02", "FAC-1401", 60.0, held_window(0.0, 3600.0), {"on_delay_s": 3600.0},
                   candidate=True)
                 for r in ("fire.controller.isolated", "fire.controller.main_power", "fire.controller.backup_power"))),
        sc("fire_transmission_device_faults",
           Text("用户信息传输装置通信及线路故障", "transmission device channel and line faults"),
           Text("用户信息传输装置状态字 US-1402 自 +60 s 起置位 与监控中心通信信道故障(32)、监测连接线路故障(64)。",
                "Transmission device status word US-1402 sets channel-to-centre fault (32) and line fault (64) "
                "from +60 s."),
           (SetBits("gwf-cem-02", "US-1402", 60.0, mask=32 | 64),),
           tuple(d(r, "gwf-cem-02", "US-1402", 60.0, held_window(0.0, 1800.0), {"on_delay_s": 1800.0},
                   candidate=True)
                 for r in ("fire.uitd.channel_fault", "fire.uitd.line_fault"))),
        # Fire water supply (GB 50440 / GB 35181): pipe pressure lost, pump faulty, tank draining.
        # LT-1502 - 0.5 m/min (to 0.2), band [3.1, 3.3]: lo 1.0 in [252, 276] s + 300 s on-delay.
        sc("fire_water_supply_loss",
           Text("消防给水失压、消防泵故障、水池失水", "fire water pressure lost, fire pump faulty, tank draining"),
           Text("自 +60 s 起消防管网压力 PT-1501 降至 0.05 MPa，消防泵 XA-1503 故障，"
                "消防水池液位 LT-1502 以 0.5 m/min 下降。",
                "From +60 s fire-main pressure PT-1501 is 0.05 MPa, fire pump XA-1503 is faulty and the fire water "
                "tank LT-1502 drains 0.5 m/min."),
           (StepTo("gwf-cem-02", "PT-1501", 60.0, value=0.05),
            StepTo("gwf-cem-02", "XA-1503", 60.0, value=1.0),
            Ramp("gwf-cem-02", "LT-1502", 60.0, per_min=-0.5, limit=0.2)),
           (d("fire.water.pipe_pressure:lo", "gwf-cem-02", "PT-1501", 60.0, step_window((0.05, 0.05), 0.1, False, 60.0),
              {"lo": 0.1, "on_delay_s": 60.0}),
            d("fire.pump.fault", "gwf-cem-02", "XA-1503", 60.0, held_window(0.0, 600.0), {"on_delay_s": 600.0},
              candidate=True),
            d("fire.water.tank_level:lo", "gwf-cem-02", "LT-1502", 60.0,
              threshold_window_fall(band_fwt, -0.5, 1.0, 300.0), {"lo": 1.0, "on_delay_s": 300.0}))),
    ]


# --------------------------------------------------------------------------
# Data trust (issue 14, rules/catalog/data_trust.yaml), on county_full.yaml
# --------------------------------------------------------------------------
#
#: A frozen value may equal the last normal readings by chance (one decimal, noise of a few tenths):
#: the frozen segment may start this many samples before the fault.
STUCK_CHANCE_SAMPLES = 3
_STUCK = {"window_s": 1800.0, "band": 0.0, "on_delay_s": 1800.0}
_COPIED = {"window_s": 300.0, "on_delay_s": 1500.0}
_IMPOSSIBLE = {"on_delay_s": 60.0}
_SKEW = {"limit_s": 60.0, "on_delay_s": 300.0}
_BASELINE_AGE_S = 28800.0


def stuck_window(window_s: float, on_delay_s: float) -> tuple[float, float]:
    """A point frozen from ``at_s``: the segment starts at the first frozen reading (or a few normal readings
    earlier that happen to equal it), holds for the window, then the on-delay (+ one sample)."""
    return (window_s + on_delay_s - STUCK_CHANCE_SAMPLES * SAMPLE_SLACK_S,
            window_s + on_delay_s + 2 * SAMPLE_SLACK_S)


def copied_window(window_s: float, on_delay_s: float) -> tuple[float, float]:
    """A series copied from ``at_s``: the first aligned window wholly copied starts within one window,
    is judged when the window after it closes (two windows), then the on-delay, counted in whole windows
    (judgements come once a window, at its first reading)."""
    return 2 * window_s + on_delay_s, 3 * window_s + on_delay_s + SAMPLE_SLACK_S


def _trust_scenarios() -> list[Scenario]:
    def sc(name: str, title: Text, desc: Text, faults: tuple[Fault, ...], expects: tuple[Expected, ...]) -> Scenario:
        return Scenario(name, title, desc, faults, expects, site=FULL)

    return [
        # CO-1111 frozen at 6.0 ppm (inside its [0, 13] band: no threshold moves; the step is < 10 ppm/min).
        sc("stuck_co_analyser",
           Text("煤粉仓CO分析仪数值冻结", "coal-bin CO analyser frozen"),
           Text("煤粉仓CO浓度 CO-1111 自 +60 s 起恒为 6.0 ppm（分析仪冻结或被人为写死）。",
                "Coal-bin CO-1111 reads a constant 6.0 ppm from +60 s (analyser frozen, or the value hard-coded)."),
           (StepTo("gwf-cem-01", "CO-1111", 60.0, value=6.0),),
           (_data("trust.stuck", "gwf-cem-01", "CO-1111", 60.0, stuck_window(_STUCK["window_s"], _STUCK["on_delay_s"]),
                  _STUCK, candidate=True),)),
        # TT-1102 (filter outlet) reports TT-1101's (inlet) values: both series are identical from then on.
        sc("copied_filter_temperature",
           Text("收尘器出口温度复制入口温度数据", "filter outlet temperature copied from the inlet's"),
           Text("煤磨收尘器出口温度 TT-1102 自 +60 s 起上报入口温度 TT-1101 的数值（复制数据）。",
                "Coal-mill filter outlet temperature TT-1102 reports the inlet TT-1101's values from +60 s "
                "(copied data)."),
           (CopyOf("gwf-cem-01", "TT-1102", 60.0, source="TT-1101"),),
           tuple(_data("trust.copied", "gwf-cem-01", tag, 60.0,
                       copied_window(_COPIED["window_s"], _COPIED["on_delay_s"]), _COPIED, candidate=True)
                 for tag in ("TT-1101", "TT-1102"))),
        # TT-1112 reads -3276.8 °C: a 16-bit register's 0x8000 "no value" read as tenths of a degree.
        sc("impossible_temperature",
           Text("煤粉仓锥部温度出现物理上不可能的数值", "coal-bin cone temperature physically impossible"),
           Text("煤粉仓锥部温度 TT-1112 自 +60 s 起为 -3276.8 °C（寄存器无效值 0x8000 被当作温度上报）。",
                "Coal-bin cone temperature TT-1112 reads -3276.8 °C from +60 s (a register's 0x8000 'no value' "
                "reported as a temperature)."),
           (StepTo("gwf-cem-01", "TT-1112", 60.0, value=-3276.8),),
           (_data("trust.impossible", "gwf-cem-01", "TT-1112", 60.0, step_window((-3276.8, -3276.8), -273.15, False,
                                                                                 _IMPOSSIBLE["on_delay_s"]),
                  _IMPOSSIBLE, candidate=True),)),
        Scenario("gateway_clock_fast",
                 Text("网关时钟快5分半钟", "gateway clock 5.5 minutes fast"),
                 Text("铸造厂熔炼网关 gwf-fdy-01 的时钟自 +60 s 起快 330 s：所有读数被判为未来时间进入死信，"
                      "测点随之中断。", "Foundry melt-shop gateway gwf-fdy-01's clock runs 330 s fast from +60 s: "
                      "every reading is dead-lettered as from the future and its points fall silent."),
                 (ClockAhead("gwf-fdy-01", 60.0, ahead_s=330.0),),
                 (Expected("trust.clock_skew", "gwf-fdy-01", "gwf-fdy-01", "wall", 60.0,
                           *wall_window(_SKEW["on_delay_s"]), True, dict(_SKEW)),),
                 site=FULL),
    ]


def _trust_registry_scenarios() -> dict[str, Scenario]:
    """Trust incidents the simulator cannot play: a registry event (a bag change; nothing the gateway sends
    changes). The pure-evaluator tests play them (tests/unit/test_trust_shapes.py)."""
    out = [
        Scenario("dust_baseline_not_recorded_after_bag_change",
                 Text("换袋后未重新记录压差基准值", "no new pressure-difference baseline after a bag change"),
                 Text("抛丸除尘器自 +60 s 起更换滤袋，8 小时内未重新记录进出口压差基准值 PDT-3501。",
                      "The shot-blast collector's bags are changed at +60 s and no new baseline is recorded for "
                      "PDT-3501 within 8 h."),
                 (BagsChanged("gwf-fdy-03", "PDT-3501", 60.0),),
                 (Expected("trust.dp.baseline_age", "gwf-fdy-03", "PDT-3501", "wall", 60.0,
                           *wall_window(_BASELINE_AGE_S), True, {"max_age_s": _BASELINE_AGE_S, "on_delay_s": 0.0}),),
                 site=FULL),
    ]
    return {s.name: s for s in out}


#: Every named scenario, by name.
SCENARIOS: dict[str, Scenario] = _scenarios()
#: Trust scenarios that ``simulate`` cannot play (a registry event): see _trust_registry_scenarios.
TRUST_REGISTRY_SCENARIOS: dict[str, Scenario] = _trust_registry_scenarios()


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; ScenarioError lists the known names otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}") from None
