"""`riskwatch collect|serve|simulate|demo`: the commands that run parts of the system, composed by `api.run`.

`register(app)` adds them (and `bench`, listed between `simulate` and `demo`) to the riskwatch Typer app.
It is idempotent, so a test harness may register onto an app that already has them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from api.cli import bench, logfmt
from api.cli.context import console, ctx_of, err, progress, stop_on_signals
from core.db import migrate

__all__ = ["register"]

#: `collect --log-format json` / `serve --log-format json`: the global option, also accepted after the command
#: (where an operator writing a systemd unit puts it).
LogFormat = Annotated[str | None, typer.Option(
    "--log-format", help="text | json (as `riskwatch --log-format`, which it overrides).", show_default=False)]


def _log_format(fmt: str | None) -> None:
    if fmt is None:
        return
    if fmt not in logfmt.FORMATS:
        raise typer.BadParameter(f"{fmt!r}: text or json", param_hint="--log-format")
    logfmt.configure(logging.getLogger().level, fmt)


def register(root: typer.Typer) -> None:
    """Add `collect`, `serve`, `simulate`, `bench` and `demo` to the riskwatch CLI (once)."""
    if any(c.name == "serve" for c in root.registered_commands):
        return
    root.command("collect")(collect)
    root.command("serve")(serve)
    root.command("simulate")(simulate)
    bench.register(root)
    root.command("demo")(demo)


def collect(
    ctx: typer.Context,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="Rule catalog dir or file.")] = None,
    group: Annotated[bool, typer.Option(
        "--group", help="One of several collectors: gateways held by lease (its MQTT username is its id).")] = False,
    lease_ttl: Annotated[float, typer.Option("--lease-ttl", help="With --group: seconds a lease lasts.")] = 8.0,
    lease_renew: Annotated[float, typer.Option("--lease-renew", help="With --group: seconds between renewals.")]
    = 2.0,
    log_format: LogFormat = None,
) -> None:
    """Run the MQTT -> TimescaleDB collector with the rule engine until SIGTERM / Ctrl-C."""
    _log_format(log_format)
    from api.run.collect import collect as run_collect
    from ingest.leases import LeaseSettings

    c = ctx_of(ctx)
    migrate(c.db_url)
    try:
        lease = LeaseSettings(ttl_s=lease_ttl, renew_s=lease_renew) if group else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # RISKWATCH_PROFILE: a cProfile of the flush loop under load, for `riskwatch bench` and tuning
    run_collect(c.resolved(), catalog, say=err.print, profile=os.environ.get("RISKWATCH_PROFILE"), group=lease)


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port.")] = 8080,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="Rule catalog dir or file.")] = None,
    no_collector: Annotated[bool, typer.Option("--no-collector", help="API and hazards tick only.")] = False,
    hazard_tick: Annotated[float, typer.Option("--hazard-tick", help="Seconds between overdue checks.")] = 60.0,
    no_alerting: Annotated[bool, typer.Option("--no-alerting", help="Do not run the alerting dispatcher.")] = False,
    certfile: Annotated[Path | None, typer.Option("--certfile", help="Serve HTTPS: certificate chain (PEM).")]
    = None,
    keyfile: Annotated[Path | None, typer.Option("--keyfile", help="Serve HTTPS: private key (PEM).")] = None,
    proxy_headers: Annotated[bool, typer.Option(
        "--proxy-headers", help="Behind a reverse proxy: trust X-Forwarded-For/-Proto from --forwarded-allow-ips.")]
    = False,
    forwarded_allow_ips: Annotated[str, typer.Option(
        "--forwarded-allow-ips", help="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted.")]
    = "127.0.0.1",
    log_format: LogFormat = None,
) -> None:
    """Run the HTTP API, the collector (rules + hazard intake) and the hazards tick until SIGTERM.

    Outside loopback with alerting, RISKWATCH_PUBLIC_URL must be set (the address in e-mailed links).
    """
    _log_format(log_format)
    from api.run.serve import serve as run_serve
    from api.run.serve_config import ServeNetwork, check_network

    c = ctx_of(ctx)
    net = ServeNetwork(host, port, certfile, keyfile, proxy_headers, forwarded_allow_ips)
    check_network(net, alerting=not no_alerting, public_url=c.settings.public_url)  # before starting anything
    settings = c.resolved()
    assert settings.db_url is not None
    migrate(settings.db_url)
    sync = c.sync_broker if c.mqtt_private else None
    err.print(f"riskwatch serve: {net.own_url()}/docs  (API, "
              f"{'collector, ' if not no_collector else ''}hazards tick every {hazard_tick:g} s); SIGTERM stops")
    run_serve(settings, host=host, port=port, catalog=catalog, collector=not no_collector,
              hazard_tick_s=hazard_tick, alerting=not no_alerting, broker_sync=sync,
              broker=c.services.mqtt if c.mqtt_private else None,
              ready=lambda: err.print(f"[green]就绪 ready[/] {net.own_url()}"),
              certfile=certfile, keyfile=keyfile, proxy_headers=proxy_headers,
              forwarded_allow_ips=forwarded_allow_ips)
    err.print("riskwatch serve stopped")


def simulate(
    ctx: typer.Context,
    site: Annotated[Path | None, typer.Option("--site", help="Site YAML (default: the scenario's site, else the "
                                                           "sample county site).")] = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run.")] = 60.0,
    rate: Annotated[float, typer.Option("--rate", help="Samples per second per point (<= 1000).")] = 1.0,
    batch: Annotated[int, typer.Option("--batch", help="Readings per MQTT message.")] = 20,
    log_file: Annotated[Path | None, typer.Option("--log", help="CSV of every reading sent.")] = None,
    credentials: Annotated[Path | None, typer.Option("--credentials", help="JSON {gateway: password}.")] = None,
    gateway: Annotated[list[str] | None, typer.Option("--gateway", help="Only these gateways.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Play an incident (see --list-scenarios).")] = None,
    list_scenarios: Annotated[bool, typer.Option("--list-scenarios", help="List the scenarios and exit.")] = False,
    start_ago: Annotated[float, typer.Option("--start-ago", help="Start data this many seconds in the past.")] = 0.0,
    backfill: Annotated[bool, typer.Option("--backfill", help="Send as fast as possible, not in real time.")] = False,
    via: Annotated[str, typer.Option("--via", help="direct: publish JSON v1 (default); edge: write a simulated "
                                                   "Modbus PLC per gateway, read by a real edge agent "
                                                   "(real time only).")] = "direct",
) -> None:
    """Publish simulated plant data through one real MQTT client per gateway."""
    from api.run.simulate import NeedCredentials, SimOptions, scenario_lines
    from api.run.simulate import simulate as run_simulation

    if list_scenarios:
        for line in scenario_lines():
            console.print(line)
        return
    opts = SimOptions(site=site, duration=duration, rate=rate, batch=batch, log_file=log_file,
                      credentials=credentials, gateways=gateway, seed=seed, scenario=scenario, start_ago=start_ago,
                      backfill=backfill, via=via)
    try:
        with progress(f"模拟 simulating {duration:g} s", bar=True) as bar:
            res = run_simulation(ctx_of(ctx), opts, stop=stop_on_signals(), say=err.print,
                                 progress=lambda p: bar.update(p.samples_done, p.samples_total,
                                                               f"{p.readings_sent} readings sent"))
    except NeedCredentials as exc:
        raise typer.BadParameter(str(exc), param_hint="--credentials") from exc
    console.print(f"已发送 sent {res.readings_sent} readings in {res.messages_sent} messages "
                  f"({'all acknowledged' if res.acked else 'NOT all acknowledged'}; kept up: {res.kept_up})")
    if not res.acked:
        raise typer.Exit(1)


def demo(
    ctx: typer.Context,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of simulated operation.")] = 60.0,
    rate: Annotated[float, typer.Option("--rate", help="Samples per second per point.")] = 5.0,
    batch: Annotated[int, typer.Option("--batch", help="Readings per MQTT message.")] = 50,
    serve_after: Annotated[bool, typer.Option(
        "--serve", help="Then keep `riskwatch serve` running (API and console on :8080) until Ctrl-C.")] = False,
) -> None:
    """Start everything, play the sample county site, and show what was stored."""
    from api.run.demo import run_demo

    c = ctx_of(ctx)
    if not c.private:
        err.print("[yellow]demo uses the private services; unset RISKWATCH_DB_URL / RISKWATCH_MQTT_URL[/]")
        raise typer.Exit(2)
    run_demo(c, console, duration=duration, rate=rate, batch=batch, stop=stop_on_signals())
    if serve_after:
        serve(ctx)
