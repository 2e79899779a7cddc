"""The `riskwatch` command line.

Settings are built once here (from the environment) and passed down. When
RISKWATCH_DB_URL / RISKWATCH_MQTT_URL are unset, commands use (and start) the
private local services under RISKWATCH_DATA_DIR.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console

from core import registry
from core.db import migrate as run_migrations
from core.errors import RiskwatchError, SourceError
from core.services import LocalServices
from core.settings import MqttUrl, Settings

app = typer.Typer(help="riskwatch 风险监测预警 — IoT risk monitoring and early warning.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
services_app = typer.Typer(help="私有本地服务 Private PostgreSQL+TimescaleDB and Mosquitto.", no_args_is_help=True)
registry_app = typer.Typer(help="登记信息 Registry: enterprises, plants, gateways, devices, points.",
                           no_args_is_help=True)
gateway_app = typer.Typer(help="网关 Gateways: credentials and enable/disable.", no_args_is_help=True)
app.add_typer(services_app, name="services")
app.add_typer(registry_app, name="registry")
app.add_typer(gateway_app, name="gateway")

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class Context:
    """Settings plus the resolved service URLs for one command."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._services: LocalServices | None = None

    @property
    def private(self) -> bool:
        return self.settings.db_url is None or self.settings.mqtt_url is None

    @property
    def services(self) -> LocalServices:
        if self._services is None:
            self._services = LocalServices(self.settings.data_dir)
        return self._services

    def resolved(self) -> Settings:
        if not self.private:
            return self.settings
        self.services.up()
        return self.settings.with_services(self.services.db_url, self.services.mqtt_url)

    @property
    def db_url(self) -> str:
        url = self.resolved().db_url
        assert url is not None
        return url

    @property
    def mqtt(self) -> MqttUrl:
        url = self.resolved().mqtt_url
        assert url is not None
        return MqttUrl.parse(url)

    def sync_broker(self, conn: psycopg.Connection) -> bool:
        """Regenerate the private broker's password file and ACL from the registry."""
        if self.settings.mqtt_url is not None:
            return False
        self.services.mqtt.write_auth(registry.broker_credentials(conn))
        self.services.mqtt.reload()
        return True


def _ctx(ctx: typer.Context) -> Context:
    obj = ctx.obj
    assert isinstance(obj, Context)
    return obj


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Context(Settings.from_env())


# --- services -------------------------------------------------------------------------------


@services_app.command("up")
def services_up(
    ctx: typer.Context,
    env: Annotated[bool, typer.Option("--env", help="Print export lines.")] = False,
) -> None:
    """Start the private PostgreSQL+TimescaleDB and Mosquitto (harmless if already up)."""
    c = _ctx(ctx)
    s = c.services
    s.up()
    if env:
        print(f"export RISKWATCH_DATA_DIR={c.settings.data_dir}")
        print(f"export RISKWATCH_DB_URL='{s.db_url}'")
        print(f"export RISKWATCH_MQTT_URL='{s.mqtt_url}'")
        return
    console.print("[green]服务已启动 services up[/]")
    console.print(f"  PostgreSQL  {s.db_url}")
    console.print(f"  Mosquitto   {s.mqtt_url}")


@services_app.command("down")
def services_down(ctx: typer.Context) -> None:
    """Stop the private services of this data dir (and nothing else)."""
    _ctx(ctx).services.down()
    console.print("服务已停止 services down")


@services_app.command("status")
def services_status(ctx: typer.Context) -> None:
    """Show whether each private service runs."""
    s = _ctx(ctx).services
    st = s.status()
    for name, up in st.items():
        mark = "[green]运行 running[/]" if up else "[red]停止 stopped[/]"
        console.print(f"  {name:10} {mark}")
    if all(st.values()):
        console.print(f"  PostgreSQL  {s.db_url}")
        console.print(f"  Mosquitto   {s.mqtt_url}")
    raise typer.Exit(0 if all(st.values()) else 3)


# --- database and registry ------------------------------------------------------------------


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Apply pending SQL migrations."""
    applied = run_migrations(_ctx(ctx).db_url)
    if applied:
        for m in applied:
            console.print(f"  applied {m.version:04d}_{m.name}")
    else:
        console.print("数据库已是最新 database is up to date")


@registry_app.command("load")
def registry_load(ctx: typer.Context, file: Path) -> None:
    """Validate a site YAML file and upsert it (idempotent)."""
    c = _ctx(ctx)
    site = registry.parse_site(file)
    run_migrations(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        res = registry.upsert_site(conn, site)
        synced = c.sync_broker(conn)
    console.print(
        f"已载入 loaded {file}: {res.enterprises} enterprises, {res.plants} plants, "
        f"{res.gateways} gateways, {res.devices} devices, {res.points} points"
    )
    if not synced:
        console.print("[yellow]external broker: update its password file/ACL yourself[/]")


@registry_app.command("check")
def registry_check(file: Path) -> None:
    """Validate a site YAML file without loading it."""
    site = registry.parse_site(file)
    console.print(f"[green]OK[/] {file}: {len(site.points())} points")


@gateway_app.command("add")
def gateway_add(
    ctx: typer.Context,
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    plant: Annotated[str | None, typer.Option("--plant", help="Plant the gateway belongs to.")] = None,
) -> None:
    """Create a gateway (or rotate its secret) and issue credentials, shown once."""
    c = _ctx(ctx)
    run_migrations(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        secret = registry.issue_credentials(conn, gateway_id, plant)
        c.sync_broker(conn)
    mq = c.mqtt
    console.print(f"网关凭据 gateway credentials for [bold]{gateway_id}[/] (shown once, stored hashed):")
    console.print(f"  username  {gateway_id}")
    console.print(f"  password  {secret}")
    console.print(f"  broker    mqtt://{mq.host}:{mq.port}   topic rw/v1/{gateway_id}/telemetry")


def _set_enabled(ctx: typer.Context, gateway_id: str, enabled: bool) -> None:
    c = _ctx(ctx)
    with psycopg.connect(c.db_url) as conn:
        registry.set_gateway_enabled(conn, gateway_id, enabled)
        c.sync_broker(conn)


@gateway_app.command("disable")
def gateway_disable(ctx: typer.Context, gateway_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Disable a gateway: the broker refuses it and the collector dead-letters its traffic."""
    _set_enabled(ctx, gateway_id, False)
    console.print(f"已停用 disabled {gateway_id}")


@gateway_app.command("enable")
def gateway_enable(ctx: typer.Context, gateway_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Enable a gateway again."""
    _set_enabled(ctx, gateway_id, True)
    console.print(f"已启用 enabled {gateway_id}")


# --- collector ------------------------------------------------------------------------------


@app.command()
def collect(ctx: typer.Context) -> None:
    """Run the MQTT -> TimescaleDB collector until SIGTERM / Ctrl-C."""
    from ingest.collector import Collector

    c = _ctx(ctx)
    run_migrations(c.db_url)
    s = c.resolved()
    col = Collector(c.db_url, c.mqtt, s.collector, s.limits)

    def _term(_sig: int, _frame: object) -> None:
        col.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    err.print(f"collector: {c.mqtt.redacted()} -> database; SIGTERM flushes and exits")
    col.run()
    st = col.stats
    err.print(f"collector stopped: {st.messages} messages, {st.readings_stored} readings stored, "
              f"{st.readings_duplicate} duplicates absorbed, {st.dead_letters} dead letters")


def main() -> None:
    try:
        app()
    except SourceError as exc:
        for p in exc.problems:
            err.print(f"[red]error[/] {p}")
        sys.exit(2)
    except RiskwatchError as exc:
        err.print(f"[red]error[/] {exc}")
        sys.exit(2)
    except psycopg.OperationalError as exc:
        err.print(f"[red]database error[/] {exc}")
        sys.exit(2)


# --- simulator and demo ---------------------------------------------------------------------


@app.command()
def simulate(
    ctx: typer.Context,
    site: Annotated[Path | None, typer.Option("--site", help="Site YAML (default: the sample county site).")] = None,
    duration: Annotated[float, typer.Option("--duration", help="Seconds to run.")] = 60.0,
    rate: Annotated[float, typer.Option("--rate", help="Samples per second per point (<= 1000).")] = 1.0,
    batch: Annotated[int, typer.Option("--batch", help="Readings per MQTT message.")] = 20,
    log_file: Annotated[Path | None, typer.Option("--log", help="CSV of every reading sent.")] = None,
    credentials: Annotated[Path | None, typer.Option("--credentials", help="JSON {gateway: password}.")] = None,
    gateway: Annotated[list[str] | None, typer.Option("--gateway", help="Only these gateways.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Publish simulated plant data through one real MQTT client per gateway."""
    from api import simcreds
    from simulators.run import default_site_path, load_site
    from simulators.run import simulate as run_simulation

    c = _ctx(ctx)
    path = site or default_site_path()
    spec = load_site(path)
    gw_ids = [g.id for _, g in spec.gateways()]
    if credentials is not None:
        creds = simcreds.load_file(credentials)
    elif c.private:
        with psycopg.connect(c.db_url) as conn:
            creds, issued = simcreds.ensure(conn, c.settings.data_dir, gw_ids)
            if issued:
                c.sync_broker(conn)
    else:
        raise typer.BadParameter("with RISKWATCH_MQTT_URL set, give --credentials FILE", param_hint="--credentials")
    log_path = log_file or c.settings.data_dir / "simulator-sent.csv"
    mq = c.mqtt
    err.print(f"simulating {path.name}: {len(gateway or gw_ids)} gateways, {duration:g} s at {rate:g} Hz, "
              f"batch {batch}; log {log_path}")
    stop = _stop_on_signals()
    res = run_simulation(spec, mq.host, mq.port, creds, duration_s=duration, rate_hz=rate, batch=batch,
                         log_path=log_path, seed=seed, gateways=gateway or None, stop=stop)
    console.print(f"已发送 sent {res.readings_sent} readings in {res.messages_sent} messages "
                  f"({'all acknowledged' if res.acked else 'NOT all acknowledged'}; kept up: {res.kept_up})")
    if not res.acked:
        raise typer.Exit(1)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def _handler(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


@app.command()
def demo(
    ctx: typer.Context,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of simulated operation.")] = 60.0,
    rate: Annotated[float, typer.Option("--rate", help="Samples per second per point.")] = 5.0,
    batch: Annotated[int, typer.Option("--batch", help="Readings per MQTT message.")] = 50,
) -> None:
    """Start everything, play the sample county site, and show what was stored."""
    from api.demo import run_demo

    c = _ctx(ctx)
    if not c.private:
        err.print("[yellow]demo uses the private services; unset RISKWATCH_DB_URL / RISKWATCH_MQTT_URL[/]")
        raise typer.Exit(2)
    run_demo(c, console, duration=duration, rate=rate, batch=batch, stop=_stop_on_signals())
