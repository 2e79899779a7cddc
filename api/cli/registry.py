"""`riskwatch migrate`, `registry load|check`, `gateway add|disable|enable`, `broker export`.

The registry is the source of truth for the broker's accounts: every command that changes gateways
regenerates the private broker's password file and ACL (`Context.sync_broker`); for an external
broker, `broker export` writes them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from api.cli.context import console, ctx_of, err, progress
from core import registry
from core.db import migrate as run_migrations
from core.mandatory import missing_mandatory
from core.services import BRIDGE_USER, COLLECTOR_USER, HEALTH_USER, mosquitto_hash, render_auth
from core.settings import MqttUrl
from core.tls import write_private

__all__ = ["migrate", "register", "register_broker"]

registry_app = typer.Typer(help="登记信息 Registry: enterprises, plants, gateways, devices, points.",
                           no_args_is_help=True)
gateway_app = typer.Typer(help="网关 Gateways: credentials and enable/disable.", no_args_is_help=True)
broker_app = typer.Typer(help="消息服务器 The MQTT broker's files, generated from the registry.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(registry_app, name="registry")
    root.add_typer(gateway_app, name="gateway")


def register_broker(root: typer.Typer) -> None:
    root.add_typer(broker_app, name="broker")


def migrate(ctx: typer.Context) -> None:
    """Apply pending SQL migrations."""
    applied = run_migrations(ctx_of(ctx).db_url)
    if applied:
        for m in applied:
            console.print(f"  applied {m.version:04d}_{m.name}")
    else:
        console.print("数据库已是最新 database is up to date")


@registry_app.command("load")
def registry_load(ctx: typer.Context, file: Path) -> None:
    """Validate a site YAML file and upsert it (idempotent)."""
    c = ctx_of(ctx)
    with progress(f"校验 validating {file}"):
        site = registry.parse_site(file)
    run_migrations(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        with progress(f"载入 loading {file.name} (points)", total=len(site.points())) as bar:
            res = registry.upsert_site(conn, site, on_points=lambda n: bar.advance(n=n))
        with progress("同步代理 syncing the broker's password file and ACL"):
            synced = c.sync_broker(conn)
    console.print(
        f"已载入 loaded {file}: {res.enterprises} enterprises, {res.plants} plants, "
        f"{res.gateways} gateways, {res.devices} devices, {res.points} points"
    )
    if not synced:
        console.print("[yellow]external broker: update its password file/ACL yourself[/]")


@registry_app.command("check")
def registry_check(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="A site YAML file; without it, the registry as loaded.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a mandatory point is missing.")] = False,
) -> None:
    """Validate a site file (or the loaded registry) and list the mandatory dust-collector points it lacks
    (接入完整性, the national dust-explosion data-access specification)."""
    if file is not None:
        site = registry.parse_site(file)
        missing = missing_mandatory(site)
        console.print(f"[green]OK[/] {file}: {len(site.points())} points")
    else:
        with psycopg.connect(ctx_of(ctx).db_url) as conn:
            missing = missing_mandatory(conn)
    if not missing:
        console.print("必接测点齐全 every dust collector has its mandatory points")
        return
    console.print(f"[yellow]缺少必接测点 {len(missing)} mandatory points missing:[/]")
    for m in missing:
        console.print(f"  {m.describe()}")
    if strict:
        raise typer.Exit(1)


@gateway_app.command("add")
def gateway_add(
    ctx: typer.Context,
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    plant: Annotated[str | None, typer.Option("--plant", help="Plant the gateway belongs to.")] = None,
    cert: Annotated[bool, typer.Option("--cert", help="Also issue a client certificate (CN = ID) for mutual TLS, "
                                       "signed by the private CA.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Where --cert writes ID.crt, ID.key and ca.crt "
                                             "(default ./ID-tls).")] = None,
) -> None:
    """Create a gateway (or rotate its secret) and issue credentials, shown once."""
    c = ctx_of(ctx)
    run_migrations(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        secret = registry.issue_credentials(conn, gateway_id, plant)
        c.sync_broker(conn)
    mq = c.mqtt
    ca = c.services.mqtt.cafile if c.mqtt_private else (Path(mq.cafile) if mq.cafile else None)
    console.print(f"网关凭据 gateway credentials for [bold]{gateway_id}[/] (shown once, stored hashed):")
    console.print(f"  username  {gateway_id}   (the client id must be the same; the broker enforces it)")
    console.print(f"  password  {secret}")
    console.print(f"  broker    {mq.scheme}://{mq.host}:{mq.port}   topic rw/v1/{gateway_id}/telemetry")
    if ca is not None:
        console.print(f"  CA        {ca}")
    tls = f" --cafile {ca}" if mq.tls and ca else ""
    console.print(f"  try it    mosquitto_pub -h {mq.host} -p {mq.port}{tls} -i {gateway_id} -u {gateway_id} -P '…' "
                  f"-q 1 -t rw/v1/{gateway_id}/telemetry -m '{{\"readings\":[{{\"tag\":\"TT-101\",\"v\":1}}]}}'")
    if not cert:
        return
    if not c.mqtt_private:
        err.print("[red]error[/] --cert signs with the private broker's CA; with an external broker use its own CA "
                  "(the certificate's CN must be the gateway id)")
        raise typer.Exit(2)
    issued = c.services.mqtt.ca.issue_client(gateway_id)
    dest = out or Path(f"{gateway_id}-tls")
    dest.mkdir(parents=True, exist_ok=True)
    write_private(dest / f"{gateway_id}.key", issued.key_pem)
    write_private(dest / f"{gateway_id}.crt", issued.cert_pem, 0o644)
    write_private(dest / "ca.crt", c.services.mqtt.cafile.read_bytes(), 0o644)
    port = c.services.state.mqtt_mtls_port
    console.print(f"客户端证书 client certificate (CN={gateway_id}) written to {dest}/ "
                  "— the key is secret (mode 0600):")
    console.print(f"  mutual TLS  mqtts://{mq.host}:{port}   mosquitto_pub -h {mq.host} -p {port} "
                  f"--cafile {dest}/ca.crt --cert {dest}/{gateway_id}.crt --key {dest}/{gateway_id}.key "
                  f"-q 1 -t rw/v1/{gateway_id}/telemetry …")


def _set_enabled(ctx: typer.Context, gateway_id: str, enabled: bool) -> None:
    c = ctx_of(ctx)
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


@broker_app.command("export")
def broker_export(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write passwd, acl (and ca.crt).")],
    collectors: Annotated[int, typer.Option(
        "--collectors", min=1, max=16, help="Logins for a collector group: the collector's user, then -2 … -N "
                                            "(same password; `collect --group`, docs/scaling.md).")] = 1,
) -> None:
    """Write the Mosquitto password file and ACL from the registry (and the private CA) for an external broker.

    The collector's account is the one in RISKWATCH_MQTT_URL; the health account, if RISKWATCH_MQTT_HEALTH_URL
    is set, and the HTTP-ingest bridge's, if RISKWATCH_MQTT_BRIDGE_URL is set (docs/http-ingest.md), get a line
    too. Re-run it (and SIGHUP the broker) whenever gateways change.
    """
    c = ctx_of(ctx)
    mq = c.mqtt
    if not mq.username or mq.password is None:
        err.print("[red]error[/] RISKWATCH_MQTT_URL has no collector username and password")
        raise typer.Exit(2)
    health = c.resolved().mqtt_health_url
    health_hash = None
    if health:
        h = MqttUrl.parse(health)
        if h.username != HEALTH_USER:
            err.print(f"[red]error[/] RISKWATCH_MQTT_HEALTH_URL must use the account {HEALTH_USER}")
            raise typer.Exit(2)
        health_hash = mosquitto_hash(h.password or "")
    bridge_hash = None
    bridge = os.environ.get("RISKWATCH_MQTT_BRIDGE_URL")
    if bridge:
        b = MqttUrl.parse(bridge)
        if b.username != BRIDGE_USER or not b.password:
            err.print(f"[red]error[/] RISKWATCH_MQTT_BRIDGE_URL must use the account {BRIDGE_USER} with a password")
            raise typer.Exit(2)
        bridge_hash = mosquitto_hash(b.password)
    with psycopg.connect(c.db_url) as conn:
        gateways = registry.broker_credentials(conn)
        disabled = registry.disabled_gateways(conn)
    auth = render_auth(gateways, mosquitto_hash(mq.password), health_hash, collector_user=mq.username or COLLECTOR_USER,
                       disabled=disabled, bridge_hash=bridge_hash, collector_instances=collectors)
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / "passwd", auth.passwd.encode())
    write_private(directory / "acl", auth.acl.encode())
    written = ["passwd", "acl"]
    if c.mqtt_private and c.services.mqtt.cafile.exists():
        write_private(directory / "ca.crt", c.services.mqtt.cafile.read_bytes(), 0o644)
        written.append("ca.crt")
    console.print(f"已导出 exported {', '.join(written)} to {directory}: {len(gateways) - len(auth.refused)} gateways"
                  + (f"; left out (reserved or repeated): {', '.join(auth.refused)}" if auth.refused else ""))
    console.print("  mosquitto.conf: password_file, acl_file, use_username_as_clientid true on every listener "
                  "(deploy/mosquitto/mosquitto.conf.example); then SIGHUP the broker")
