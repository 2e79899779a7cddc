"""Run simulated gateways for a site against a broker, in real time.

Sampling: every simulated point is sampled at ``rate_hz``; sample ``i`` of
every point carries ``ts_ms = start_ms + round(i * 1000 / rate_hz)``, so
timestamps are wall-clock aligned and unique per point up to 1000 Hz (the
key of a reading is (point, time) at millisecond resolution).

Pacing: the loop generates every sample whose time has come, sleeps until the
next one is due, and publishes a message whenever a gateway has ``batch``
readings buffered or its oldest buffered reading is ``flush_s`` old (as a
real gateway does). If generation falls behind the wall clock the run does
not drop samples; it reports the lag and ``kept_up = False``.

The optional log gets one CSV line per reading actually handed to MQTT,
``gateway_id,tag,ts_ms,value``, so a test can count distinct readings sent
and compare them with what was stored.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import numpy as np
import numpy.typing as npt

from core import yamlsrc
from core.errors import ConfigError, SourceError, SourceProblem
from core.registry import PointSpec, SiteSpec, parse_site
from simulators.gateway import GatewayPublisher, GatewayStats, PayloadTooLarge, Value
from simulators.models import SignalModel, SimConfigError, build_models

log = logging.getLogger("riskwatch.simulators.run")

MAX_RATE_HZ = 1000.0  # timestamps are whole milliseconds
MAX_LAG_S = 1.0  # behind the wall clock by more than this: did not keep up


class Publisher(Protocol):
    """What the run loop needs from a gateway connection (GatewayPublisher in production runs)."""

    def start(self, timeout: float = ...) -> None: ...
    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value],
                          times_ms: Sequence[int]) -> int: ...
    def wait_acked(self, timeout: float) -> bool: ...
    def stats(self) -> GatewayStats: ...
    def close(self, timeout: float = ...) -> None: ...


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


@dataclass(frozen=True)
class SimResult:
    messages_sent: int
    readings_sent: int
    acked: bool  # every message (telemetry and status) got its PUBACK
    duration: float  # wall seconds from first sample to last ack
    gateways: dict[str, GatewayResult]
    start_ms: int
    rate_hz: float
    samples_per_point: int
    kept_up: bool  # never more than MAX_LAG_S behind the wall clock
    max_lag_s: float
    stopped: bool  # ended early by the stop event


@dataclass
class _Gateway:
    id: str
    tags: list[str]
    models: list[SignalModel]
    publisher: Publisher
    buf_tags: list[str] = field(default_factory=list)
    buf_values: list[Value] = field(default_factory=list)
    buf_times: list[int] = field(default_factory=list)

    def generate(self, ts_ms: npt.NDArray[np.int64], start_ms: int) -> None:
        """Buffer the readings of these sample times, all points of one sample together."""
        t = (ts_ms - start_ms) / 1000.0
        cols: list[list[Value]] = []
        for m in self.models:
            v = m.value(t)
            cols.append(v.astype(np.int64).tolist() if m.integral else v.tolist())
        times = ts_ms.tolist()
        n_pts = len(self.tags)
        self.buf_tags.extend(self.tags * len(times))
        self.buf_values.extend(col[j] for j in range(len(times)) for col in cols)
        self.buf_times.extend(ts for ts in times for _ in range(n_pts))

    def send(self, batch: int, out: IO[str] | None, *, force: bool) -> None:
        """Publish full batches; with ``force`` also the remainder."""
        while len(self.buf_tags) >= batch or (force and self.buf_tags):
            n = min(batch, len(self.buf_tags))
            while True:
                tags = self.buf_tags[:n]
                values = self.buf_values[:n]
                times = self.buf_times[:n]
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


def simulate(site: SiteSpec, host: str, port: int, credentials: dict[str, str], duration_s: float,
             rate_hz: float, batch: int, log_path: Path | None, seed: int = 0,
             gateways: list[str] | None = None, stop: threading.Event | None = None,
             progress: Callable[[SimProgress], None] | None = None, *, flush_s: float = 0.25,
             ack_timeout_s: float = 30.0, connect_timeout_s: float = 10.0,
             publisher_factory: PublisherFactory | None = None) -> SimResult:
    """Publish ``duration_s`` of simulated readings for the site's gateways, paced in real time.

    ``credentials`` maps gateway id to its MQTT password. By default every
    enabled gateway that has points runs; ``gateways`` picks a subset. Raises
    ConfigError for bad arguments and GatewayError (auth, unreachable broker,
    stalled acknowledgements) from the gateways. ``publisher_factory``
    replaces the MQTT client (unit tests; other transports later).
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
    factory: PublisherFactory = publisher_factory or GatewayPublisher

    n_total = max(1, round(duration_s * rate_hz))
    gws: list[_Gateway] = []
    out: IO[str] | None = None
    try:
        for g in chosen:
            pub = factory(g, credentials[g], host, port)
            gws.append(_Gateway(g, list(models[g]), list(models[g].values()), pub))
            pub.start(connect_timeout_s)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = log_path.open("w", encoding="utf-8", buffering=1 << 20)
        return _run(gws, n_total, rate_hz, batch, flush_s, ack_timeout_s, out, stop, progress)
    finally:
        for gw in gws:
            try:
                gw.publisher.close()
            except Exception:  # closing must not mask the run's own error
                log.exception("closing %s", gw.id)
        if out is not None:
            out.close()


def _run(gws: Sequence[_Gateway], n_total: int, rate_hz: float, batch: int, flush_s: float,
         ack_timeout_s: float, out: IO[str] | None, stop: threading.Event | None,
         progress: Callable[[SimProgress], None] | None) -> SimResult:
    start_ms = int(time.time() * 1000)
    t0 = time.monotonic() - (time.time() * 1000 - start_ms) / 1000.0  # monotonic at start_ms
    tick_s = 0.02  # at high rates, work in steps of >= 20 ms of samples: per-call cost dominates
    max_chunk = max(1, int(rate_hz))  # at most 1 s of samples per step: bounded memory
    flush_ms = flush_s * 1000.0
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
        now = time.monotonic() - t0
        i_due = min(n_total, math.floor(now * rate_hz) + 1)  # samples whose time has come
        if i_due > i_next:
            max_lag = max(max_lag, now - i_next / rate_hz)
            i_end = min(i_due, i_next + max_chunk)
            ts_ms = sample_times_ms(start_ms, i_next, i_end, rate_hz)
            for g in gws:
                g.generate(ts_ms, start_ms)
            i_next = i_end
        now_ms = start_ms + (time.monotonic() - t0) * 1000.0
        for g in gws:
            g.send(batch, out, force=bool(g.buf_times) and now_ms - g.buf_times[0] >= flush_ms)
        elapsed = time.monotonic() - t0
        if progress is not None and elapsed >= next_progress:
            next_progress = elapsed + 1.0
            m, r = sent()
            lag = max(0.0, elapsed - i_next / rate_hz)
            progress(SimProgress(elapsed, i_next, n_total, m, r, lag))
        if i_next < n_total:
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
    acked = {g.id: g.publisher.wait_acked(max(0.0, deadline - time.monotonic())) for g in gws}
    duration = time.monotonic() - t0
    stats: dict[str, GatewayStats] = {g.id: g.publisher.stats() for g in gws}
    results = {
        g.id: GatewayResult(g.id, len(g.tags), s.messages, s.readings, acked[g.id], s.connects,
                            s.disconnects)
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
    )


def main(argv: list[str] | None = None) -> int:
    """Stand-alone runner for manual checks; ``riskwatch simulate`` is the user-facing command."""
    ap = argparse.ArgumentParser(prog="python -m simulators.run",
                                 description="Run simulated gateways against a broker.")
    ap.add_argument("--site", type=Path, default=default_site_path())
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--credentials", type=Path, required=True,
                    help="JSON file {gateway_id: password}")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1.0, help="samples per second per point")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--log", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gateway", action="append", dest="gateways")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    creds = json.loads(args.credentials.read_text())
    res = simulate(load_site(args.site), args.host, args.port, creds, args.duration, args.rate,
                   args.batch, args.log, args.seed, args.gateways,
                   progress=lambda p: log.info("%s", p))
    print(json.dumps({k: v for k, v in res.__dict__.items() if k != "gateways"}
                     | {"gateways": {g: r.__dict__ for g, r in res.gateways.items()}}, indent=2))
    return 0 if res.acked else 1


if __name__ == "__main__":
    sys.exit(main())
