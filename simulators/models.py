"""Physics-flavoured signal models for simulated plant points.

Every model is a pure function of time: ``value(t)`` takes seconds since the
start of a run (a numpy array) and returns what the instrument would report.
Nothing is carried from one call to the next, so a run that generates data
in chunks of any size gives exactly the values of a run that generates it in
one go, and two runs with the same seed agree sample for sample.

Randomness is therefore counter-based rather than stream-based:

- white noise comes from a SplitMix64 hash of (point key, millisecond,
  stream) turned into a Gaussian (Box-Muller) and truncated at
  ``NOISE_CLIP`` standard deviations;
- "random-walk" drift is synthesised as a sum of sinusoids with a 1/f
  amplitude spectrum (the spectrum of Brownian motion) and seeded phases.
  It looks like a slow wander but is bounded by its ``drift`` amplitude.

Both choices serve one requirement: under normal operation no value may
cross a realistic alarm limit, because the rule engine must raise zero alarms
on normal data. Each point's ``sim:`` block declares its ``normal: [lo, hi]``
band, every model can compute its worst-case ``envelope()``, and
``build_models`` refuses parameters whose envelope leaves the band.

Models (``sim: {model: ...}``):

``steady``    base + drift + noise (process values held by a controller)
``cyclic``    steady plus a slow sinusoid (kiln temperatures, daily cycles)
``sawtooth``  bag-filter pressure difference: rises as the cake builds up,
              falls during each pulse-cleaning cycle
``state``     boolean / enumerated state, constant or on a repeating schedule
``follow``    a point tied to another on the same gateway: cooling-water
              outlet flow ~= inlet flow, outlet temperature = inlet + heat
              pick-up that depends on whether the furnace is energised
``counter``   cumulative event count: jittered events at a rate, or the
              cleaning cycles of a ``sawtooth`` point
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ConfigError

FloatArray = npt.NDArray[np.float64]

#: Gaussian noise is truncated here (in standard deviations) so that the
#: envelope of a model is finite and checkable.
NOISE_CLIP = 4.0

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


class SimConfigError(ConfigError):
    """A point's ``sim:`` block is invalid or its envelope leaves its normal band."""

    def __init__(self, scope: str, tag: str, message: str, loc: tuple[Any, ...] = ()):
        super().__init__(f"{scope}/{tag}: sim: {message}")
        self.scope = scope
        self.tag = tag
        self.message = message
        self.loc = loc


# --------------------------------------------------------------------------
# Parameters (the schema of a point's `sim:` block)
# --------------------------------------------------------------------------

Band = tuple[float, float]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    normal: Band  # the value stays in this band under normal operation
    decimals: int = Field(default=2, ge=0, le=6)  # instrument resolution

    @model_validator(mode="after")
    def _band_ordered(self) -> _Params:
        if self.normal[0] > self.normal[1]:
            raise ValueError(f"normal band {list(self.normal)} has lo > hi")
        return self


class _Noisy(_Params):
    noise: float = Field(default=0.0, ge=0)  # gaussian sigma (truncated at NOISE_CLIP)
    drift: float = Field(default=0.0, ge=0)  # hard bound of the slow wander
    drift_period_s: float = Field(default=3600.0, gt=0)  # longest wander period


class _Level(_Noisy):
    base: float
    # Physical range of the instrument, e.g. a gas detector floors at 0.
    clip: tuple[float | None, float | None] | None = None


class SteadyParams(_Level):
    model: Literal["steady"]


class CyclicParams(_Level):
    model: Literal["cyclic"]
    amp: float = Field(ge=0)
    period_s: float = Field(gt=0)


class SawtoothParams(_Noisy):
    model: Literal["sawtooth"]
    low: float  # pressure difference right after cleaning
    high: float  # pressure difference when cleaning starts
    cycle_s: float = Field(gt=0)  # timed pulse-cleaning interval
    clean_s: float = Field(default=3.0, gt=0)  # one row-by-row cleaning pass
    peak_jitter: float = Field(default=0.0, ge=0)  # peaks vary by up to this below high
    # Recorded baseline (AQ 4273-2016 §5.1.4): the envelope must stay within ±20 % of it.
    baseline: float | None = None

    @model_validator(mode="after")
    def _shape(self) -> SawtoothParams:
        if not self.low < self.high:
            raise ValueError("sawtooth needs low < high")
        if self.clean_s >= self.cycle_s:
            raise ValueError("sawtooth needs clean_s < cycle_s")
        if self.peak_jitter > self.high - self.low:
            raise ValueError("peak_jitter larger than high - low")
        return self


class StateParams(_Params):
    model: Literal["state"]
    decimals: int = 0
    value: int = 0
    schedule: list[tuple[float, int]] | None = None  # [[offset_s, value], ...] from offset 0
    period_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _schedule(self) -> StateParams:
        if self.schedule is None:
            return self
        if self.period_s is None:
            raise ValueError("a schedule needs period_s")
        offsets = [o for o, _ in self.schedule]
        if not offsets or offsets[0] != 0:
            raise ValueError("schedule must start at offset 0")
        if any(b <= a for a, b in zip(offsets, offsets[1:], strict=False)):
            raise ValueError("schedule offsets must increase")
        if offsets[-1] >= self.period_s:
            raise ValueError("schedule offsets must be < period_s")
        return self


class FollowParams(_Noisy):
    model: Literal["follow"]
    of: str = Field(min_length=1)  # tag of the source point on the same gateway
    gain: float = 1.0
    offset: float = 0.0
    gate: str | None = None  # tag of a 0/1 state point, e.g. furnace power
    offset_off: float | None = None  # offset used while the gate is 0
    diff_normal: Band | None = None  # normal band of (source - this), e.g. in-out flow

    @model_validator(mode="after")
    def _gate(self) -> FollowParams:
        if (self.gate is None) != (self.offset_off is None):
            raise ValueError("gate and offset_off go together")
        return self


class CounterParams(_Params):
    model: Literal["counter"]
    decimals: int = 0
    base: int = Field(default=0, ge=0)  # count at the start of the run
    per_hour: float = Field(default=0.0, ge=0)  # mean event rate, jittered, one per slot
    of: str | None = None  # or: count the cleaning passes of this sawtooth point

    @model_validator(mode="after")
    def _source(self) -> CounterParams:
        if self.of is not None and self.per_hour:
            raise ValueError("give either of or per_hour, not both")
        return self


AnyParams = (
    SteadyParams | CyclicParams | SawtoothParams | StateParams | FollowParams | CounterParams
)
SimParams = Annotated[AnyParams, Field(discriminator="model")]


class _SimDoc(BaseModel):
    sim: SimParams


def parse_params(raw: Mapping[str, Any]) -> AnyParams:
    """Validate one ``sim:`` dict (raises pydantic.ValidationError)."""
    return _SimDoc.model_validate({"sim": dict(raw)}).sim


# --------------------------------------------------------------------------
# Counter-based randomness
# --------------------------------------------------------------------------


def point_key(seed: int, scope: str, tag: str) -> int:
    """A 64-bit key per point, independent of the order points are listed in."""
    digest = hashlib.blake2b(f"{seed}\x1f{scope}\x1f{tag}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def hash_uniform(key: int, index: npt.NDArray[np.int64], stream: int = 0) -> FloatArray:
    """Uniform [0, 1) as a pure function of (key, index, stream)."""
    base = np.array([(key + stream * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    x = _mix(index.astype(np.uint64) * _GOLDEN + base)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_normal(key: int, index: npt.NDArray[np.int64]) -> FloatArray:
    """Standard normal truncated at ±NOISE_CLIP, a pure function of (key, index)."""
    u1 = 1.0 - hash_uniform(key, index, 1)  # (0, 1]: log is finite
    u2 = hash_uniform(key, index, 2)
    z: FloatArray = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    out: FloatArray = np.clip(z, -NOISE_CLIP, NOISE_CLIP)
    return out


def _ms_index(t: FloatArray) -> npt.NDArray[np.int64]:
    # Noise is keyed on the millisecond: sample timestamps are whole ms.
    return np.rint(np.asarray(t, dtype=np.float64) * 1000.0).astype(np.int64)


class _Drift:
    """Bounded Brownian-looking wander: sum of sinusoids with a 1/f amplitude spectrum."""

    COMPONENTS = 6

    def __init__(self, key: int, amplitude: float, longest_s: float):
        rng = np.random.default_rng(key ^ 0x5DEECE66D)
        n = self.COMPONENTS
        periods = longest_s / 2.0 ** np.arange(n) * rng.uniform(0.8, 1.25, n)
        amps = periods / periods.sum() * amplitude  # sum(|amps|) == amplitude: a hard bound
        self.omega = 2.0 * np.pi / periods
        self.amps = amps
        self.phases = rng.uniform(0.0, 2.0 * np.pi, n)
        self.amplitude = amplitude

    def __call__(self, t: FloatArray) -> FloatArray:
        if self.amplitude == 0:
            return np.zeros_like(t, dtype=np.float64)
        arg = np.multiply.outer(self.omega, t) + self.phases[:, None]
        out: FloatArray = self.amps @ np.sin(arg)
        return out


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


class SignalModel(ABC):
    """One point's signal. ``value`` is what the instrument reports (rounded)."""

    params: Any
    key: int

    @property
    def decimals(self) -> int:
        return int(self.params.decimals)

    @property
    def integral(self) -> bool:
        """True when values are whole numbers (states, counters): sent as JSON integers."""
        return self.decimals == 0

    @property
    def normal(self) -> Band:
        return self.params.normal  # type: ignore[no-any-return]

    @abstractmethod
    def smooth(self, t: FloatArray) -> FloatArray:
        """The underlying process value, without instrument noise."""

    def noise(self, t: FloatArray) -> FloatArray:
        return np.zeros_like(t, dtype=np.float64)

    def raw(self, t: FloatArray) -> FloatArray:
        return self.smooth(t) + self.noise(t)

    def value(self, t: npt.ArrayLike) -> FloatArray:
        """Reported values at ``t`` (seconds since the run started)."""
        tt = np.asarray(t, dtype=np.float64)
        return np.round(self.raw(tt), self.decimals)

    @abstractmethod
    def smooth_envelope(self) -> Band:
        """Worst-case range of ``smooth``."""

    def noise_bound(self) -> float:
        return 0.0

    def envelope(self) -> Band:
        """Worst-case range of reported values (noise truncated, rounding included)."""
        lo, hi = self.smooth_envelope()
        nb = self.noise_bound()
        # Rounding is monotonic: the rounded bounds bound the rounded values.
        return _round(lo - nb, self.decimals), _round(hi + nb, self.decimals)


def _round(x: float, decimals: int) -> float:
    return x if not math.isfinite(x) else float(np.round(x, decimals))


class _NoisyModel(SignalModel):
    def __init__(self, params: _Noisy, key: int):
        self.params = params
        self.key = key
        self._drift = _Drift(key, params.drift, params.drift_period_s)

    def noise(self, t: FloatArray) -> FloatArray:
        if self.params.noise == 0:
            return np.zeros_like(t, dtype=np.float64)
        out: FloatArray = self.params.noise * hash_normal(self.key, _ms_index(t))
        return out

    def noise_bound(self) -> float:
        return float(self.params.noise) * NOISE_CLIP


class SteadyModel(_NoisyModel):
    """A controlled process value: setpoint, slow wander, measurement noise."""

    params: _Level

    def smooth(self, t: FloatArray) -> FloatArray:
        return self.params.base + self._drift(t)

    def raw(self, t: FloatArray) -> FloatArray:
        v = self.smooth(t) + self.noise(t)
        if self.params.clip is not None:
            lo, hi = self.params.clip
            v = np.clip(v, -np.inf if lo is None else lo, np.inf if hi is None else hi)
        return v

    def smooth_envelope(self) -> Band:
        p = self.params
        return p.base - p.drift, p.base + p.drift

    def envelope(self) -> Band:
        lo, hi = super().envelope()
        if self.params.clip is not None:
            clo, chi = self.params.clip
            lo = lo if clo is None else max(lo, _round(clo, self.decimals))
            hi = hi if chi is None else min(hi, _round(chi, self.decimals))
        return lo, hi


class CyclicModel(SteadyModel):
    """Steady plus a slow sinusoid: kiln feed/fuel oscillation, day-night ambient cycles."""

    params: CyclicParams

    def __init__(self, params: CyclicParams, key: int):
        super().__init__(params, key)
        self._phase = float(np.random.default_rng(key ^ 0xC1C1E).uniform(0.0, 2.0 * np.pi))

    def smooth(self, t: FloatArray) -> FloatArray:
        p = self.params
        return super().smooth(t) + p.amp * np.sin(2.0 * np.pi * t / p.period_s + self._phase)

    def smooth_envelope(self) -> Band:
        lo, hi = super().smooth_envelope()
        return lo - self.params.amp, hi + self.params.amp


class SawtoothModel(_NoisyModel):
    """Pulse-jet bag filter pressure difference under timed cleaning.

    At constant gas flow the dust cake grows linearly with time, and so does
    the pressure drop across it (Darcy): a linear rise from ``low`` to this
    cycle's peak, then a ``clean_s`` pass of row-by-row pulses brings it back
    to the residual drop of the cleaned bags.
    """

    params: SawtoothParams

    def __init__(self, params: SawtoothParams, key: int):
        super().__init__(params, key)
        # Each filter starts at a random point of its cleaning cycle.
        self._phase0 = float(np.random.default_rng(key ^ 0x5A77).uniform(0.0, params.cycle_s))

    def _cycle(self, t: FloatArray) -> tuple[npt.NDArray[np.int64], FloatArray]:
        tt = t + self._phase0
        k = np.floor(tt / self.params.cycle_s).astype(np.int64)
        return k, tt - k * self.params.cycle_s

    def smooth(self, t: FloatArray) -> FloatArray:
        p = self.params
        k, s = self._cycle(t)
        peak = p.high - p.peak_jitter * hash_uniform(self.key, k, 3)
        rise_s = p.cycle_s - p.clean_s
        rising = p.low + (peak - p.low) * (s / rise_s)
        cleaning = peak - (peak - p.low) * ((s - rise_s) / p.clean_s)
        return np.where(s < rise_s, rising, cleaning) + self._drift(t)

    def smooth_envelope(self) -> Band:
        p = self.params
        return p.low - p.drift, p.high + p.drift

    def cleaning_starts(self, t0: float, t1: float) -> FloatArray:
        """Run times in [t0, t1) at which a cleaning pass starts (for tests and counters)."""
        p = self.params
        rise_s = p.cycle_s - p.clean_s
        k0 = math.floor((t0 + self._phase0 - rise_s) / p.cycle_s)
        ks = np.arange(k0, k0 + int((t1 - t0) / p.cycle_s) + 3)
        starts = ks * p.cycle_s + rise_s - self._phase0
        return starts[(starts >= t0) & (starts < t1)].astype(np.float64)

    def cleanings_before(self, t: FloatArray) -> FloatArray:
        """Number of cleaning passes started in [0, t]."""
        p = self.params
        rise_s = p.cycle_s - p.clean_s
        started = np.floor((t + self._phase0 - rise_s) / p.cycle_s)
        before_start = math.floor((self._phase0 - rise_s) / p.cycle_s)
        # A pass starting exactly at t=0 counts.
        return started - before_start + (1.0 if (self._phase0 - rise_s) % p.cycle_s == 0 else 0.0)


class StateModel(SignalModel):
    """A boolean or enumerated state: constant, or a repeating schedule (melt cycles)."""

    params: StateParams

    def __init__(self, params: StateParams, key: int):
        self.params = params
        self.key = key

    def smooth(self, t: FloatArray) -> FloatArray:
        p = self.params
        if p.schedule is None or p.period_s is None:
            return np.full_like(t, float(p.value), dtype=np.float64)
        offsets = np.array([o for o, _ in p.schedule], dtype=np.float64)
        values = np.array([v for _, v in p.schedule], dtype=np.float64)
        idx = np.searchsorted(offsets, np.mod(t, p.period_s), side="right") - 1
        out: FloatArray = values[idx]
        return out

    def smooth_envelope(self) -> Band:
        p = self.params
        vals = [p.value] if p.schedule is None else [v for _, v in p.schedule]
        return float(min(vals)), float(max(vals))


class FollowModel(_NoisyModel):
    """``gain * source + offset`` with its own instrument noise and wander.

    Tied to the source's noise-free value: two meters on one pipe measure the
    same water, each with its own error. With a ``gate`` (0/1 state point),
    ``offset_off`` replaces ``offset`` while the gate is 0, e.g. the cooling
    water barely warms up while the furnace is not energised.
    """

    params: FollowParams

    def __init__(self, params: FollowParams, key: int, source: SignalModel,
                 gate: SignalModel | None):
        super().__init__(params, key)
        self.source = source
        self.gate = gate

    def _offset(self, t: FloatArray) -> FloatArray | float:
        p = self.params
        if self.gate is None or p.offset_off is None:
            return p.offset
        return np.where(self.gate.smooth(t) >= 0.5, p.offset, p.offset_off)

    def smooth(self, t: FloatArray) -> FloatArray:
        return self.params.gain * self.source.smooth(t) + self._offset(t) + self._drift(t)

    def _offsets(self) -> list[float]:
        p = self.params
        return [p.offset] if p.offset_off is None else [p.offset, p.offset_off]

    def smooth_envelope(self) -> Band:
        p = self.params
        slo, shi = self.source.smooth_envelope()
        ends = [p.gain * slo, p.gain * shi]
        offs = self._offsets()
        return min(ends) + min(offs) - p.drift, max(ends) + max(offs) + p.drift

    def diff_envelope(self) -> Band:
        """Worst-case range of reported (source - this)."""
        p = self.params
        slo, shi = self.source.smooth_envelope()
        ends = [(1.0 - p.gain) * slo, (1.0 - p.gain) * shi]
        offs = self._offsets()
        spread = self.source.noise_bound() + self.noise_bound() + p.drift
        rounding = 0.5 * 10.0 ** -self.source.decimals + 0.5 * 10.0 ** -self.decimals
        return (min(ends) - max(offs) - spread - rounding,
                max(ends) - min(offs) + spread + rounding)


class CounterModel(SignalModel):
    """A cumulative event count (spark detections, cleaning cycles).

    Events come one per slot of ``3600 / per_hour`` seconds at a hashed
    position in the slot, so the count at any ``t`` is O(1) to compute; or,
    with ``of``, they are the cleaning passes of a sawtooth point.
    """

    params: CounterParams

    def __init__(self, params: CounterParams, key: int, source: SawtoothModel | None):
        self.params = params
        self.key = key
        self.source = source

    def smooth(self, t: FloatArray) -> FloatArray:
        p = self.params
        if self.source is not None:
            return p.base + self.source.cleanings_before(t)
        if p.per_hour == 0:
            return np.full_like(t, float(p.base), dtype=np.float64)
        slot = 3600.0 / p.per_hour
        m = np.floor(t / slot).astype(np.int64)
        fired = hash_uniform(self.key, m, 4) * slot <= t - m * slot
        return p.base + m.astype(np.float64) + fired

    def smooth_envelope(self) -> Band:
        p = self.params
        grows = self.source is not None or p.per_hour > 0
        return float(p.base), math.inf if grows else float(p.base)


# --------------------------------------------------------------------------
# Building the models of one gateway
# --------------------------------------------------------------------------


_MODEL_NAMES = {"steady", "cyclic", "sawtooth", "state", "follow", "counter"}


def _clean_loc(loc: Sequence[Any]) -> tuple[Any, ...]:
    """A pydantic error location within the sim block: no wrapper key, no union tag."""
    return tuple(x for x in loc[1:] if x not in _MODEL_NAMES)


def _loc_of(exc: ValidationError) -> tuple[Any, ...]:
    errs = exc.errors()
    return _clean_loc(errs[0]["loc"]) if errs else ()


def _message_of(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(x) for x in _clean_loc(e["loc"]))
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts)


def build_models(points: Sequence[tuple[str, Mapping[str, Any] | None]], *, seed: int,
                 scope: str) -> dict[str, SignalModel]:
    """Models for the points of one gateway (``scope``), keyed by tag.

    ``follow`` and ``counter`` references resolve within the gateway; every
    model's envelope is checked against its declared normal band, so a
    parameter change that would make normal data alarm is caught at load time.
    """
    params: dict[str, AnyParams] = {}
    for tag, raw in points:
        if raw is None:
            raise SimConfigError(scope, tag, "missing (every simulated point needs a sim: block)")
        try:
            params[tag] = parse_params(raw)
        except ValidationError as exc:
            raise SimConfigError(scope, tag, _message_of(exc), _loc_of(exc)) from exc

    models: dict[str, SignalModel] = {}
    resolving: set[str] = set()

    def build(tag: str) -> SignalModel:
        if tag in models:
            return models[tag]
        if tag in resolving:
            raise SimConfigError(scope, tag, "circular follow/counter reference")
        resolving.add(tag)
        p = params[tag]
        key = point_key(seed, scope, tag)
        model: SignalModel
        if isinstance(p, CyclicParams):
            model = CyclicModel(p, key)
        elif isinstance(p, SteadyParams):
            model = SteadyModel(p, key)
        elif isinstance(p, SawtoothParams):
            model = SawtoothModel(p, key)
        elif isinstance(p, StateParams):
            model = StateModel(p, key)
        elif isinstance(p, FollowParams):
            source = build(_ref(tag, p.of, "of"))
            gate = build(_ref(tag, p.gate, "gate")) if p.gate else None
            if gate is not None and not isinstance(gate, StateModel):
                raise SimConfigError(scope, tag, f"gate {p.gate!r} is not a state point", ("gate",))
            model = FollowModel(p, key, source, gate)
        elif isinstance(p, CounterParams):
            src = build(_ref(tag, p.of, "of")) if p.of else None
            if src is not None and not isinstance(src, SawtoothModel):
                raise SimConfigError(scope, tag, f"of {p.of!r} is not a sawtooth point", ("of",))
            model = CounterModel(p, key, src)
        else:  # pragma: no cover - the union is exhaustive
            raise SimConfigError(scope, tag, f"unknown model {p!r}")
        resolving.discard(tag)
        _check_envelope(scope, tag, model)
        models[tag] = model
        return model

    def _ref(tag: str, ref: str | None, field: str) -> str:
        if ref not in params:
            raise SimConfigError(scope, tag, f"{field}: no point {ref!r} on this gateway", (field,))
        return ref

    for tag in params:
        build(tag)
    return models


def _check_envelope(scope: str, tag: str, model: SignalModel) -> None:
    lo, hi = model.envelope()
    nlo, nhi = model.normal
    # Counters grow without bound; only their start is checkable here.
    if lo < nlo or (math.isfinite(hi) and hi > nhi):
        raise SimConfigError(scope, tag, f"envelope [{lo:g}, {hi:g}] leaves normal band "
                                         f"[{nlo:g}, {nhi:g}]: reduce noise/drift/amp", ("normal",))
    if isinstance(model, FollowModel) and model.params.diff_normal is not None:
        dlo, dhi = model.diff_envelope()
        blo, bhi = model.params.diff_normal
        if dlo < blo or dhi > bhi:
            raise SimConfigError(scope, tag, f"(source - this) envelope [{dlo:g}, {dhi:g}] leaves "
                                             f"diff_normal [{blo:g}, {bhi:g}]", ("diff_normal",))
    if isinstance(model, SawtoothModel) and model.params.baseline is not None:
        b = model.params.baseline
        if lo < 0.8 * b or hi > 1.2 * b:
            raise SimConfigError(scope, tag, f"envelope [{lo:g}, {hi:g}] deviates more than 20 % "
                                             f"from baseline {b:g} (AQ 4273-2016 §5.1.4)",
                                 ("baseline",))
