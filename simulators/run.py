"""Run simulated gateways for a site against a broker, in real time or as a backfill.

Sampling: every simulated point is sampled at ``rate_hz``; sample ``i`` of
every point carries ``ts_ms = start_ms + round(i * 1000 / rate_hz)``, so
timestamps are unique per point up to 1000 Hz (the key of a reading is
(point, time) at millisecond resolution). ``start_ms`` defaults to now, which
makes real-time timestamps wall-clock aligned.

Real time (default): the loop generates every sample whose time has come,
sleeps until the next one is due, and publishes a message whenever a gateway
has ``batch`` readings buffered or its oldest buffered reading is ``flush_s``
old (as a real gateway does). If generation falls behind the wall clock the
run does not drop samples; it reports the lag and ``kept_up = False``. A
``start_ms`` in the past makes the samples already due "history", sent at
once as in a backfill, after which the run goes on live (a gateway coming
back with its buffer; also what staleness scenarios need: history for the
data rules, live traffic so only the faulted points fall silent). A future
``start_ms`` waits for its time.

Backfill (``realtime=False``): ``duration_s`` of data time from ``start_ms``
is generated in steps of a few thousand readings per gateway and published as
fast as the broker acknowledges, with at most a bounded number of messages
awaiting PUBACK per gateway, so memory does not grow with the length of the
run. Typical use: ``start_ms = now - 11 min`` and ``duration_s = 600`` put
ten minutes of history into the collector in a second or two, every
timestamp inside its accepted window [now - 7 d, now + 5 min]. In both modes
each gateway publishes its readings in sample-time order.

A scenario (``simulators.scenarios``) injects faults at data-time offsets
from ``start_ms``: value faults change models, a stopped point is left out
of the messages from its ``at_s``, an unplugged gateway sends what it sampled
before its ``at_s`` and then has its connection cut.

The optional log gets one CSV line per reading actually handed to MQTT,
``gateway_id,tag,ts_ms,value``, so a test can count distinct readings sent
and compare them with what was stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from core import yamlsrc
from core.errors import ConfigError, SourceError, SourceProblem
from core.registry import PointSpec, SiteSpec, parse_site
from simulators.gateway import GatewayPublisher, GatewayStats, PayloadTooLarge, Value, tls_context
from simulators.models import SignalModel, SimConfigError, build_models
from simulators.scenarios import Scenario, get_scenario

log = logging.getLogger("riskwatch.simulators.run")

MAX_RATE_HZ = 1000.0  # timestamps are whole milliseconds
MAX_LAG_S = 1.0  # behind the wall clock by more than this: did not keep up
BACKFILL_STEP_READINGS = 5000  # per gateway per generation step in a backfill
BACKFILL_PENDING_READINGS = 100_000  # per gateway awaiting PUBACK in a backfill (as messages of `batch`)
# The collector's default accepted timestamp window (IngestLimits); outside it readings are dead-lettered.
ACCEPT_PAST_MS = 7 * 86_400_000
ACCEPT_FUTURE_MS = 5 * 60_000


class Publisher(Protocol):
    """What the run loop needs from a gateway connection (GatewayPublisher in production runs)."""

    def start(self, timeout: float = ...) -> None: ...
    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value],
                          times_ms: Sequence[int]) -> int: ...
    def wait_acked(self, timeout: float) -> bool: ...
    def stats(self) -> GatewayStats: ...
    def close(self, timeout: float = ...) -> None: ...


@runtime_checkable
class Unpluggable(Protocol):
    """A publisher that can imitate a power cut (needed by scenarios with an Unplug fault)."""

    def unplug(self, timeout: float = ...) -> bool: ...


@runtime_checkable
class ClockShiftable(Protocol):
    """A publisher whose clock can run off (needed by scenarios with a ClockAhead fault): each message's own
    ``ts`` is its host's time plus ``clock_offset_ms``."""

    clock_offset_ms: int


@runtime_checkable
class Windowed(Protocol):
    """A publisher that can wait for its unacknowledged messages to drop (backfill back-pressure)."""

    def wait_window(self, max_pending: int, timeout: float) -> None: ...


PublisherFactory = Callable[[str, str, str, int], Publisher]  # (gateway, password, host, port)


def sample_times_ms(start_ms: int, i0: int, i1: int, rate_hz: float) -> npt.NDArray[np.int64]:
    """Timestamps of samples i0..i1-1: ``start_ms + round(i * 1000 / rate_hz)``.

    Whole milliseconds because the collector keys a reading on (point, time);
    distinct for every i as long as rate_hz <= 1000.
    """
    idx = np.arange(i0, i1, dtype=np.float64)
    return start_ms + np.rint(idx * 1000.0 / rate_hz).astype(np.int64)


def default_site_path() -> Path:
    """The bundled sample site (three county plants)."""
    return Path(__file__).resolve().parent / "sites" / "county.yaml"


def _gateway_points(site: SiteSpec) -> dict[str, list[PointSpec]]:
    out: dict[str, list[PointSpec]] = {gw.id: [] for _, gw in site.gateways()}
    for _, _, dev, pt in site.points():
        out[dev.gateway].append(pt)
    return out


def site_models(site: SiteSpec, seed: int = 0) -> dict[str, dict[str, SignalModel]]:
    """Signal models of every gateway of the site: {gateway_id: {tag: model}}."""
    return {gw: build_models([(p.tag, p.sim) for p in pts], seed=seed, scope=gw)
            for gw, pts in _gateway_points(site).items() if pts}


def load_site(path: str | Path) -> SiteSpec:
    """Parse a site file and check every point's ``sim:`` block, with file:line errors."""
    site = parse_site(path)
    try:
        site_models(site)
    except SimConfigError as exc:
        raise SourceError([SourceProblem(str(path), _sim_line(path, site, exc), str(exc))]) from exc
    return site


def _sim_line(path: str | Path, site: SiteSpec, exc: SimConfigError) -> int | None:
    _, lines = yamlsrc.load(path)
    for ei, e in enumerate(site.enterprises):
        for pi, p in enumerate(e.plants):
            for di, d in enumerate(p.devices):
                for ti, pt in enumerate(d.points):
                    if d.gateway == exc.scope and pt.tag == exc.tag:
                        loc = ("enterprises", ei, "plants", pi, "devices", di, "points", ti, "sim")
                        return yamlsrc.line_for(lines, (*loc, *exc.loc))
    return None


@dataclass(frozen=True)
class SimProgress:
    elapsed_s: float
    samples_done: int  # per point
    samples_total: int
    messages_sent: int
    readings_sent: int
    lag_s: float


@dataclass(frozen=True)
class GatewayResult:
    gateway_id: str
    points: int
    messages_sent: int
    readings_sent: int
    acked: bool
    connects: int
    disconnects: int
    unplugged_at_ms: int | None = None  # data time at which a scenario cut its connection


@dataclass(frozen=True)
class SimResult:
    messages_sent: int
    readings_sent: int
    acked: bool  # every message (telemetry and status) got its PUBACK
    duration: float  # wall seconds from first sample to last ack
    gateways: dict[str, GatewayResult]
    start_ms: int  # data time of sample 0
    rate_hz: float
    samples_per_point: int
    kept_up: bool  # never more than MAX_LAG_S behind the wall clock (always True in a backfill)
    max_lag_s: float
    stopped: bool  # ended early by the stop event
    realtime: bool = True
    data_end_ms: int = 0  # data time just after the last sample generated: data covers [start_ms, data_end_ms)
    scenario: str | None = None
    # Scenario fault offset at_s -> wall-clock epoch ms at which the run reached that data time
    # (the origin of Expected windows of kind "wall"); absent if the run ended first.
    fault_wall_ms: dict[float, int] = field(default_factory=dict)


@dataclass
class _Gateway:
    id: str
    tags: list[str]
    models: list[SignalModel]
    publisher: Publisher
    # Per point: offset from start_ms (ms) from which it is no longer sent (a dead sensor).
    stop_ms: list[float | None] = field(default_factory=list)
    unplug_s: float | None = None  # data-time offset at which the gateway loses power
    # (data-time offset ms, ms ahead) of a gateway clock running fast from that offset (ClockAhead)
    ahead: tuple[float, int] | None = None
    unplugged_at_ms: int | None = None
    unplug_acked: bool = True
    buf_tags: list[str] = field(default_factory=list)
    buf_values: list[Value] = field(default_factory=list)
    buf_times: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.stop_ms:
            self.stop_ms = [None] * len(self.tags)
        self._tag_row = np.array(self.tags, dtype=object)
        self._start_ms = 0

    def generate(self, ts_ms: npt.NDArray[np.int64], start_ms: int) -> None:
        """Buffer the readings of these sample times, all points of one sample together."""
        if self.unplugged_at_ms is not None:
            return
        self._start_ms = start_ms
        offset = ts_ms - start_ms
        t = offset / 1000.0
        n, n_pts = len(ts_ms), len(self.tags)
        values = np.empty((n, n_pts), dtype=object)  # Python ints and floats, as JSON needs them
        alive: npt.NDArray[np.bool_] | None = None
        for p, m in enumerate(self.models):
            v = m.value(t)
            values[:, p] = v.astype(np.int64).tolist() if m.integral else v.tolist()
            stop = self.stop_ms[p]
            if stop is not None:
                if alive is None:
                    alive = np.ones((n, n_pts), dtype=np.bool_)
                alive[:, p] = offset < stop
        tags = np.broadcast_to(self._tag_row, (n, n_pts))
        if self.ahead is not None:  # the gateway stamps what it samples with its own (fast) clock
            ts_ms = np.where(offset >= self.ahead[0], ts_ms + self.ahead[1], ts_ms)
        times = np.broadcast_to(ts_ms[:, None], (n, n_pts))
        if alive is None:  # row-major: sample by sample, points in site order
            self.buf_tags.extend(tags.ravel().tolist())
            self.buf_values.extend(values.ravel().tolist())
            self.buf_times.extend(times.ravel().tolist())
        else:
            self.buf_tags.extend(tags[alive].tolist())
            self.buf_values.extend(values[alive].tolist())
            self.buf_times.extend(times[alive].tolist())

    def send(self, batch: int, out: IO[str] | None, *, force: bool) -> None:
        """Publish full batches; with ``force`` also the remainder."""
        while len(self.buf_tags) >= batch or (force and self.buf_tags):
            n = min(batch, len(self.buf_tags))
            while True:
                tags = self.buf_tags[:n]
                values = self.buf_values[:n]
                times = self.buf_times[:n]
                if self.ahead is not None and isinstance(self.publisher, ClockShiftable):
                    # once it stamps readings with the fast clock, the message's own ts is fast too
                    self.publisher.clock_offset_ms = self.ahead[1] if self._clock_fast(times[-1]) else 0
                try:
                    self.publisher.publish_telemetry(tags, values, times)
                    break
                except PayloadTooLarge:
                    if n == 1:
                        raise
                    n //= 2  # long tags: fewer readings per message
            del self.buf_tags[:n], self.buf_values[:n], self.buf_times[:n]
            if out is not None:
                gid = self.id
                out.write("".join(f"{gid},{tg},{ts},{v}\n" for tg, v, ts in zip(tags, values, times,
                                                                                   strict=True)))

    def _clock_fast(self, sent_ms: int) -> bool:
        assert self.ahead is not None
        return sent_ms - self.ahead[1] >= self._start_ms + self.ahead[0]

    def unplug(self, batch: int, out: IO[str] | None, at_ms: int, ack_timeout_s: float) -> None:
        """Send what was sampled before the cut, then cut the connection."""
        self.send(batch, out, force=True)
        if out is not None:
            out.flush()
        assert isinstance(self.publisher, Unpluggable)  # checked in simulate()
        self.unplug_acked = self.publisher.unplug(ack_timeout_s)
        self.unplugged_at_ms = at_ms
        log.info("%s unplugged at data time %d", self.id, at_ms)


def simulate(site: SiteSpec, host: str, port: int, credentials: dict[str, str], duration_s: float,
             rate_hz: float, batch: int, log_path: Path | None, seed: int = 0,
             gateways: list[str] | None = None, stop: threading.Event | None = None,
             progress: Callable[[SimProgress], None] | None = None, *, flush_s: float = 0.25,
             ack_timeout_s: float = 30.0, connect_timeout_s: float = 10.0,
             publisher_factory: PublisherFactory | None = None, realtime: bool = True,
             start_ms: int | None = None, scenario: Scenario | None = None,
             tls: ssl.SSLContext | None = None) -> SimResult:
    """Publish ``duration_s`` of simulated readings for the site's gateways.

    ``credentials`` maps gateway id to its MQTT password. By default every
    enabled gateway that has points runs; ``gateways`` picks a subset (it
    must include the ``scenario``'s gateways). ``realtime=False`` backfills:
    the samples of ``duration_s`` of data time from ``start_ms`` (default:
    now) are published as fast as the broker acknowledges; in real time, the
    samples before the wall clock are (see the module docstring). Raises
    ConfigError for bad arguments and GatewayError (auth, unreachable
    broker, stalled acknowledgements) from the gateways.
    ``publisher_factory`` replaces the MQTT client (unit tests; other
    transports later). ``tls``: the gateways connect over TLS with this
    context (``simulators.gateway.tls_context(cafile)``: broker certificate
    and host name verified); None: plain MQTT. Each gateway is one
    connection under its own account: the broker binds client ids to
    usernames, so two connections of one gateway would take each other over.
    """
    if not 0 < rate_hz <= MAX_RATE_HZ:
        raise ConfigError(f"rate_hz must be in (0, {MAX_RATE_HZ:g}]: timestamps are whole ms")
    if duration_s <= 0:
        raise ConfigError("duration_s must be positive")
    if not 1 <= batch <= 5000:
        raise ConfigError("batch must be 1..5000 readings (the contract's per-message limit)")
    points = _gateway_points(site)
    enabled = {gw.id: gw.enabled for _, gw in site.gateways()}
    if gateways is None:
        chosen = [g for g, pts in points.items() if pts and enabled[g]]
    else:
        unknown = [g for g in gateways if g not in points]
        if unknown:
            raise ConfigError(f"unknown gateway(s) {', '.join(unknown)}; the site has "
                              f"{', '.join(points)}")
        chosen = [g for g in gateways if points[g]]
    if not chosen:
        raise ConfigError("no gateway with points to simulate")
    missing = [g for g in chosen if g not in credentials]
    if missing:
        raise ConfigError(f"no credential for gateway(s) {', '.join(missing)}")
    models = site_models(site, seed)
    stops: dict[tuple[str, str], float] = {}
    unplugs: dict[str, float] = {}
    clocks: dict[str, tuple[float, float]] = {}
    if scenario is not None:
        absent = [g for g in scenario.gateways if g not in chosen]
        if absent:
            raise ConfigError(f"scenario {scenario.name} needs gateway(s) {', '.join(absent)}, "
                              f"which this run does not include (enabled, with points)")
        models = scenario.apply(models)
        stops, unplugs = scenario.stops(), scenario.unplugs()
        clocks = scenario.clocks()
    _check_time_window(start_ms, duration_s, realtime)
    if publisher_factory is not None and tls is not None:
        raise ConfigError("tls applies to the MQTT publisher; a publisher_factory brings its own transport")
    factory: PublisherFactory = publisher_factory or partial(GatewayPublisher, tls=tls)

    n_total = max(1, round(duration_s * rate_hz))
    gws: list[_Gateway] = []
    out: IO[str] | None = None
    try:
        for g in chosen:
            pub = factory(g, credentials[g], host, port)
            tags = list(models[g])
            gw = _Gateway(g, tags, list(models[g].values()), pub,
                          stop_ms=[stops[(g, t)] * 1000.0 if (g, t) in stops else None for t in tags],
                          unplug_s=unplugs.get(g),
                          ahead=(clocks[g][0] * 1000.0, round(clocks[g][1] * 1000)) if g in clocks else None)
            gws.append(gw)
            if gw.ahead is not None and not isinstance(pub, ClockShiftable):
                raise ConfigError(f"scenario runs {g}'s clock fast, but its publisher {type(pub).__name__} "
                                  f"has no clock_offset_ms")
            if gw.unplug_s is not None and not isinstance(pub, Unpluggable):
                raise ConfigError(f"scenario unplugs {g}, but its publisher {type(pub).__name__} "
                                  f"has no unplug()")
            pub.start(connect_timeout_s)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = log_path.open("w", encoding="utf-8", buffering=1 << 20)
        marks = sorted({f.at_s for f in scenario.faults}) if scenario is not None else []
        res = _run(gws, n_total, rate_hz, batch, flush_s, ack_timeout_s, out, stop, progress,
                   start_ms=start_ms, realtime=realtime, marks_s=marks)
        return res if scenario is None else replace(res, scenario=scenario.name)
    finally:
        for gw in gws:
            try:
                gw.publisher.close()
            except Exception:  # closing must not mask the run's own error
                log.exception("closing %s", gw.id)
        if out is not None:
            out.close()


def _check_time_window(start_ms: int | None, duration_s: float, realtime: bool) -> None:
    """Warn when timestamps would fall outside the collector's default accepted window."""
    now = int(time.time() * 1000)
    start = now if start_ms is None else start_ms
    # Real time never sends a sample before its time; a backfill sends them all at once.
    last_offset = 0 if realtime else start - now + int(duration_s * 1000)
    if start - now < -ACCEPT_PAST_MS or last_offset > ACCEPT_FUTURE_MS:
        log.warning("sample times [%+.0f s, %+.0f s] from now leave the collector's default accepted "
                    "window [-7 d, +5 min]; those readings will be dead-lettered",
                    (start - now) / 1000, last_offset / 1000)


def _first_index_at(start_ms: int, offset_ms: float, rate_hz: float, n_total: int) -> int:
    """Index of the first sample at or after ``start_ms + offset_ms`` (n_total if none is)."""
    i = max(0, math.floor(offset_ms * rate_hz / 1000.0) - 1)
    while i < n_total and int(sample_times_ms(start_ms, i, i + 1, rate_hz)[0]) - start_ms < offset_ms:
        i += 1
    return min(i, n_total)


def _run(gws: Sequence[_Gateway], n_total: int, rate_hz: float, batch: int, flush_s: float,
         ack_timeout_s: float, out: IO[str] | None, stop: threading.Event | None,
         progress: Callable[[SimProgress], None] | None, *, start_ms: int | None,
         realtime: bool, marks_s: Sequence[float] = ()) -> SimResult:
    t_run = time.monotonic()
    if start_ms is None:
        start_ms = int(time.time() * 1000)
    t0 = time.monotonic() - (time.time() * 1000 - start_ms) / 1000.0  # monotonic at start_ms
    # History: samples already due when the run starts (all of them in a backfill) go out as
    # fast as the broker acknowledges; a real-time run with a past start_ms then goes live.
    i_hist = n_total if not realtime else min(n_total, max(0, math.floor((t_run - t0) * rate_hz) + 1))
    tick_s = 0.02  # at high rates, work in steps of >= 20 ms of samples: per-call cost dominates
    live_chunk = max(1, int(rate_hz))  # at most 1 s of samples per step: bounded memory
    hist_chunk = max(1, BACKFILL_STEP_READINGS // max(len(g.tags) for g in gws))
    window = max(10, BACKFILL_PENDING_READINGS // batch)
    flush_ms = flush_s * 1000.0
    # (sample index, gateway) of each unplug, in order: generation stops at each index
    # until that gateway has been cut.
    cuts = sorted(((_first_index_at(start_ms, g.unplug_s * 1000.0, rate_hz, n_total), k)
                   for k, g in enumerate(gws) if g.unplug_s is not None))
    marks = {at: _first_index_at(start_ms, at * 1000.0, rate_hz, n_total) for at in marks_s}
    fault_wall_ms: dict[float, int] = {}
    i_next = 0
    max_lag = 0.0
    stopped = False
    next_progress = 1.0

    def sent() -> tuple[int, int]:
        st = [g.publisher.stats() for g in gws]
        return sum(s.messages for s in st), sum(s.readings for s in st)

    while i_next < n_total:
        if stop is not None and stop.is_set():
            stopped = True
            break
        history = i_next < i_hist
        now = time.monotonic() - t0
        # samples whose time has come
        i_due = i_hist if history else min(n_total, math.floor(now * rate_hz) + 1)
        # Generation stops at a cut's sample; the cut happens once that sample is due
        # (in real time: when the wall clock reaches the fault's at_s, not at an earlier flush).
        while cuts and cuts[0][0] <= i_next < i_due:
            _, k = cuts.pop(0)
            at_ms = int(sample_times_ms(start_ms, i_next, i_next + 1, rate_hz)[0])
            gws[k].unplug(batch, out, at_ms, ack_timeout_s)
        if i_due > i_next:
            if not history:
                max_lag = max(max_lag, now - i_next / rate_hz)
            i_end = min(i_due, i_next + (hist_chunk if history else live_chunk))
            if cuts:
                i_end = min(i_end, cuts[0][0])
            ts_ms = sample_times_ms(start_ms, i_next, i_end, rate_hz)
            for g in gws:
                g.generate(ts_ms, start_ms)
            for at, k in marks.items():
                if at not in fault_wall_ms and k < i_end:
                    fault_wall_ms[at] = int(time.time() * 1000)
            i_next = i_end
        if history:
            for g in gws:
                g.send(batch, out, force=False)
                if isinstance(g.publisher, Windowed) and g.unplugged_at_ms is None:
                    g.publisher.wait_window(window, ack_timeout_s)
        else:
            now_ms = start_ms + (time.monotonic() - t0) * 1000.0
            for g in gws:
                g.send(batch, out, force=bool(g.buf_times) and now_ms - g.buf_times[0] >= flush_ms)
        elapsed = time.monotonic() - t_run
        if progress is not None and elapsed >= next_progress:
            next_progress = elapsed + 1.0
            m, r = sent()
            lag = 0.0 if history else max(0.0, time.monotonic() - t0 - i_next / rate_hz)
            progress(SimProgress(elapsed, i_next, n_total, m, r, lag))
        if not history and i_next < n_total:
            # Sleep until the next sample or forced flush is due, but no less than
            # one tick after this step began: a late loop then catches up in one
            # large step instead of spinning over one sample at a time.
            wake = i_next / rate_hz
            for g in gws:
                if g.buf_times:
                    wake = min(wake, (g.buf_times[0] - start_ms + flush_ms) / 1000.0)
            wake = max(wake, now + tick_s)
            delay = wake - (time.monotonic() - t0)
            if delay > 0:
                if stop is not None:
                    stop.wait(delay)
                else:
                    time.sleep(delay)

    for g in gws:
        g.send(batch, out, force=True)
    if out is not None:
        out.flush()
    deadline = time.monotonic() + ack_timeout_s
    acked = {g.id: g.unplug_acked if g.unplugged_at_ms is not None
             else g.publisher.wait_acked(max(0.0, deadline - time.monotonic())) for g in gws}
    duration = time.monotonic() - t_run
    stats: dict[str, GatewayStats] = {g.id: g.publisher.stats() for g in gws}
    results = {
        g.id: GatewayResult(g.id, len(g.tags), s.messages, s.readings, acked[g.id], s.connects,
                            s.disconnects, g.unplugged_at_ms)
        for g in gws
        for s in [stats[g.id]]
    }
    if progress is not None:
        m, r = sent()
        progress(SimProgress(duration, i_next, n_total, m, r, 0.0))
    kept_up = max_lag <= MAX_LAG_S
    if not kept_up:
        log.warning("simulation fell behind real time by up to %.2f s", max_lag)
    return SimResult(
        messages_sent=sum(r.messages_sent for r in results.values()),
        readings_sent=sum(r.readings_sent for r in results.values()),
        acked=all(acked.values()),
        duration=duration,
        gateways=results,
        start_ms=start_ms,
        rate_hz=rate_hz,
        samples_per_point=i_next,
        kept_up=kept_up,
        max_lag_s=max_lag,
        stopped=stopped,
        realtime=realtime,
        data_end_ms=int(sample_times_ms(start_ms, i_next, i_next + 1, rate_hz)[0]),
        fault_wall_ms=fault_wall_ms,
    )


def main(argv: list[str] | None = None) -> int:
    """Stand-alone runner for manual checks; ``riskwatch simulate`` is the user-facing command."""
    ap = argparse.ArgumentParser(prog="python -m simulators.run",
                                 description="Run simulated gateways against a broker.")
    ap.add_argument("--site", type=Path, default=default_site_path())
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cafile", help="mqtts: the CA that signed the broker's certificate (verified)")
    ap.add_argument("--tls", action="store_true", help="mqtts with the system's CAs (implied by --cafile)")
    ap.add_argument("--credentials", type=Path, required=True,
                    help="JSON file {gateway_id: password}")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of data time")
    ap.add_argument("--rate", type=float, default=1.0, help="samples per second per point")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--log", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gateway", action="append", dest="gateways")
    ap.add_argument("--scenario", help="inject a named incident (simulators.scenarios.SCENARIOS)")
    ap.add_argument("--backfill", action="store_true", help="publish as fast as acknowledged")
    ap.add_argument("--start-ago", type=float, default=None,
                    help="data starts this many seconds before now (default: now)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    creds = json.loads(args.credentials.read_text())
    scenario = get_scenario(args.scenario) if args.scenario else None
    start_ms = None if args.start_ago is None else int(time.time() * 1000 - args.start_ago * 1000)
    res = simulate(load_site(args.site), args.host, args.port, creds, args.duration, args.rate,
                   args.batch, args.log, args.seed, args.gateways,
                   progress=lambda p: log.info("%s", p), realtime=not args.backfill,
                   start_ms=start_ms, scenario=scenario,
                   tls=tls_context(args.cafile) if args.cafile or args.tls else None)
    print(json.dumps({k: v for k, v in res.__dict__.items() if k != "gateways"}
                     | {"gateways": {g: r.__dict__ for g, r in res.gateways.items()}}, indent=2))
    return 0 if res.acked else 1


if __name__ == "__main__":
    sys.exit(main())
