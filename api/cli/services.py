"""`riskwatch services up|down|status`: the private PostgreSQL+TimescaleDB and Mosquitto of a data dir."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

import psycopg
import typer

from api.cli.context import NOT_RUNNING, Context, console, ctx_of, err
from core.services import LocalServices, collector_users
from core.settings import MqttUrl

__all__ = ["register"]

app = typer.Typer(help="私有本地服务 Private PostgreSQL+TimescaleDB and Mosquitto.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="services")


@app.command("up")
def services_up(
    ctx: typer.Context,
    env: Annotated[bool, typer.Option("--env", help="Print export lines (with secrets).")] = False,
) -> None:
    """Start the private PostgreSQL+TimescaleDB and Mosquitto (harmless if already up)."""
    c = ctx_of(ctx)
    s = c.services
    s.up()
    if env:
        _print_env(c)
        return
    console.print("[green]服务已启动 services up[/]")
    _print_services(s, show_secrets=False)


def _print_env(c: Context) -> None:
    s = c.services
    print(f"export RISKWATCH_DATA_DIR={c.settings.data_dir}")
    print(f"export RISKWATCH_DB_URL='{s.db_url}'")
    print(f"export RISKWATCH_MQTT_URL='{s.mqtt_url}'")
    print(f"export RISKWATCH_MQTT_HEALTH_URL='{s.mqtt_health_url}'")


def _redact_db(url: str) -> str:
    p = urlsplit(url)
    if p.password is None:
        return url
    return url.replace(f":{p.password}@", ":***@", 1)


def _print_services(s: LocalServices, *, show_secrets: bool) -> None:
    db = s.db_url if show_secrets else _redact_db(s.db_url)
    mq = MqttUrl.parse(s.mqtt_url)
    console.print(f"  PostgreSQL  {db}")
    console.print(f"  Mosquitto   {s.mqtt_url if show_secrets else mq.redacted()}   (TLS; CA {s.mqtt.cafile})")
    if s.state.mqtt_mtls_port:
        console.print(f"              mutual TLS on port {s.state.mqtt_mtls_port} (client certificate CN = gateway id)")
    if not show_secrets:
        console.print("  secrets: riskwatch services status --show-secrets, or services up --env")


#: More members than this is not a scale-out a 2-core county box or its broker needs (docs/scaling.md).
MAX_COLLECTORS = 16


@app.command("collectors")
def services_collectors(
    ctx: typer.Context,
    count: Annotated[int, typer.Argument(metavar="N", help=f"Members of the collector group (1..{MAX_COLLECTORS}).",
                                         min=1, max=MAX_COLLECTORS)],
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print the URLs with their passwords.")] = False,
) -> None:
    """Give the private broker N collector logins (riskwatch-collector, -2 … -N) for `collect --group`, and
    print how to start each member. Fewer than before removes the extra logins (their collectors are refused)."""
    c = ctx_of(ctx)
    s = c.services
    st = s.status()
    if not all(st.values()):
        err.print(f"[red]error[/] {NOT_RUNNING.format(names=', '.join(n for n, up in st.items() if not up))}")
        raise typer.Exit(3)
    before = s.state.collector_instances
    s.state.collector_instances = count
    s.state.save(s.state_path)
    with psycopg.connect(s.db_url) as conn:
        c.sync_broker(conn)  # the password file and ACL with the logins, the broker reloaded
    console.print(f"采集器账号 collector logins: {before} → {count}")
    for user in collector_users(instances=count):
        url = s.mqtt.url(user)
        shown = url if show_secrets else MqttUrl.parse(url).redacted()
        console.print(f"  RISKWATCH_MQTT_URL='{shown}' riskwatch collect --group", soft_wrap=True)
    if not show_secrets:
        console.print("  (the password is the collector's: --show-secrets prints it)")


@app.command("down")
def services_down(ctx: typer.Context) -> None:
    """Stop the private services of this data dir (and nothing else)."""
    ctx_of(ctx).services.down()
    console.print("服务已停止 services down")


@app.command("status")
def services_status(
    ctx: typer.Context,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print the URLs with their passwords.")] = False,
    env: Annotated[bool, typer.Option("--env", help="Print export lines (with secrets).")] = False,
) -> None:
    """Show whether each private service runs (no secret unless asked)."""
    c = ctx_of(ctx)
    s = c.services
    st = s.status()
    if env and all(st.values()):
        _print_env(c)
        raise typer.Exit(0)
    for name, up in st.items():
        mark = "[green]运行 running[/]" if up else "[red]停止 stopped[/]"
        console.print(f"  {name:10} {mark}")
    if all(st.values()):
        _print_services(s, show_secrets=show_secrets)
    raise typer.Exit(0 if all(st.values()) else 3)
