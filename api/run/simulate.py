"""`riskwatch simulate` and `riskwatch bench`, composed: the simulators and the bench are reached from
the composition root only (no other production module imports `simulators`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from api.run import simcreds
from api.run.context import RunContext
from core.errors import ConfigError
from simulators.bench import Figures
from simulators.bench import run as bench_run
from simulators.bench.run import PARTS as BENCH_PARTS
from simulators.gateway import tls_context
from simulators.run import SimProgress, SimResult, default_site_path, load_site
from simulators.run import simulate as run_simulation
from simulators.scenarios import SCENARIOS, Scenario, get_scenario
from simulators.via_edge import VIAS, check_realtime, edge_publisher_factory

__all__ = ["BENCH_PARTS", "NeedCredentials", "SimOptions", "bench", "scenario_lines", "simulate", "site_for"]


class NeedCredentials(ConfigError):
    """With an external broker the simulator cannot issue its own gateway credentials."""


@dataclass(frozen=True)
class SimOptions:
    site: Path | None = None  # default: the scenario's site, else the sample county site
    duration: float = 60.0
    rate: float = 1.0
    batch: int = 20
    log_file: Path | None = None
    credentials: Path | None = None
    gateways: list[str] | None = None
    seed: int = 0
    scenario: str | None = None
    start_ago: float = 0.0
    backfill: bool = False
    via: str = "direct"  # "edge": PLC registers -> edge agent -> broker (simulators/via_edge.py)


def scenario_lines() -> list[str]:
    """`--list-scenarios`: each scenario and what it should raise, when (rich markup)."""
    out = []
    for name, sc in SCENARIOS.items():
        out.append(f"[bold]{name}[/]  {sc.title.zh} — {sc.title.en}")
        for e in sc.expects:
            out.append(f"    → {e.rule_id} on {e.tag} at +{e.at_s + e.earliest_s:g}…{e.at_s + e.latest_s:g} s"
                       f"{' ★ candidate' if e.candidate else ''}")
    return out


def site_for(site: Path | None, scenario: Scenario | None) -> Path:
    """The site file to simulate: the one asked for, else the scenario's own sample site (its gateways and
    tags are those the scenario names), else the sample county site."""
    if site is not None:
        return site
    return scenario.site_path if scenario is not None else default_site_path()


def simulate(c: RunContext, o: SimOptions, *, stop: threading.Event, say: Callable[[str], None],
             progress: Callable[[SimProgress], None] | None = None) -> SimResult:
    """Publish simulated plant data through one real MQTT client per gateway, until done or `stop`;
    `progress` hears how far the samples are (a progress bar). `o.via == "edge"`: each gateway's samples go
    into a simulated Modbus PLC read by a real edge agent instead (real time only)."""
    if o.via not in VIAS:
        raise ConfigError(f"--via must be one of {', '.join(VIAS)}, not {o.via!r}")
    if o.via == "edge":
        check_realtime(backfill=o.backfill, start_ago=o.start_ago)
    sc = get_scenario(o.scenario) if o.scenario else None
    path = site_for(o.site, sc)
    spec = load_site(path)
    gw_ids = [g.id for _, g in spec.gateways()]
    if o.credentials is not None:
        creds = simcreds.load_file(o.credentials)
    elif c.private:
        with psycopg.connect(c.db_url) as conn:
            creds, issued = simcreds.ensure(conn, c.settings.data_dir, gw_ids)
            if issued:
                c.sync_broker(conn)
    else:
        raise NeedCredentials("with RISKWATCH_MQTT_URL set, give --credentials FILE")
    log_path = o.log_file or c.settings.data_dir / "simulator-sent.csv"
    mq = c.mqtt
    say(f"simulating {path.name}: {len(o.gateways or gw_ids)} gateways, {o.duration:g} s at {o.rate:g} Hz, "
        f"batch {o.batch}; log {log_path}")
    start_ms = int((time.time() - o.start_ago) * 1000) if o.start_ago else None
    if sc is not None:
        say(f"scenario {sc.name}: {sc.title.zh} — {sc.description.en}")
    if o.via == "edge":
        work = c.settings.data_dir / "via-edge"
        say(f"via edge: one simulated Modbus PLC + edge agent per gateway; configs and buffers in {work}")
        factory = edge_publisher_factory(spec, work, rate_hz=o.rate, cafile=mq.cafile, tls=mq.tls, seed=o.seed)
        # flush_s 0: each sample reaches the registers when it is due; the agent batches its own messages
        return run_simulation(spec, mq.host, mq.port, creds, duration_s=o.duration, rate_hz=o.rate, batch=5000,
                              log_path=log_path, seed=o.seed, gateways=o.gateways or None, stop=stop,
                              realtime=True, start_ms=None, scenario=sc, progress=progress,
                              publisher_factory=factory, flush_s=0.0)
    return run_simulation(spec, mq.host, mq.port, creds, duration_s=o.duration, rate_hz=o.rate, batch=o.batch,
                          log_path=log_path, seed=o.seed, gateways=o.gateways or None, stop=stop,
                          realtime=not o.backfill, start_ms=start_ms, scenario=sc, progress=progress,
                          # the gateways trust the broker's CA that the collector's URL names (mqtts); no client cert
                          tls=tls_context(mq.cafile) if mq.tls else None)


def bench(parts: list[str], quick: bool, progress: Callable[[str], None], *, duration: float | None,
          points: int | None, batch: int, procs: int, on_part: Callable[[int, str], None] | None = None) -> Figures:
    """Every bench part on fresh private services (simulators.bench); `on_part(done, name)` as each starts."""
    return bench_run(parts, quick, progress, duration=duration, points=points, batch=batch, procs=procs,
                     on_part=on_part)
