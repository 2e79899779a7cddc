"""The `riskwatch` command line.

Settings are built once here (from the environment) and passed down. When
RISKWATCH_DB_URL / RISKWATCH_MQTT_URL are unset, commands use (and start) the
private local services under RISKWATCH_DATA_DIR.
"""

from __future__ import annotations

import logging
import os
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
rules_app = typer.Typer(help="规则清单 Rule catalog (一行业一清单).", no_args_is_help=True)
alarms_app = typer.Typer(help="报警 Alarms: list, acknowledge, shelve, out of service, flood.",
                         no_args_is_help=True)
baseline_app = typer.Typer(help="基线 Baselines (AQ 4273: recorded after installation or a bag change).",
                           no_args_is_help=True)
maintenance_app = typer.Typer(help="检修窗口 Maintenance windows (alarms recorded, not annunciated).",
                              no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(alarms_app, name="alarms")
app.add_typer(baseline_app, name="baseline")
app.add_typer(maintenance_app, name="maintenance")

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
        return self.settings.with_services(self.services.db_url, self.services.mqtt_url,
                                           self.services.mqtt_health_url)

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
        self.services.mqtt.write_auth(registry.broker_credentials(conn), reload=True,
                                      disabled=registry.disabled_gateways(conn))
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
    env: Annotated[bool, typer.Option("--env", help="Print export lines (with secrets).")] = False,
) -> None:
    """Start the private PostgreSQL+TimescaleDB and Mosquitto (harmless if already up)."""
    c = _ctx(ctx)
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
    from urllib.parse import urlsplit

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


@services_app.command("down")
def services_down(ctx: typer.Context) -> None:
    """Stop the private services of this data dir (and nothing else)."""
    _ctx(ctx).services.down()
    console.print("服务已停止 services down")


@services_app.command("status")
def services_status(
    ctx: typer.Context,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print the URLs with their passwords.")] = False,
    env: Annotated[bool, typer.Option("--env", help="Print export lines (with secrets).")] = False,
) -> None:
    """Show whether each private service runs (no secret unless asked)."""
    c = _ctx(ctx)
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
    cert: Annotated[bool, typer.Option("--cert", help="Also issue a client certificate (CN = ID) for mutual TLS, "
                                       "signed by the private CA.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Where --cert writes ID.crt, ID.key and ca.crt "
                                             "(default ./ID-tls).")] = None,
) -> None:
    """Create a gateway (or rotate its secret) and issue credentials, shown once."""
    from core.tls import write_private

    c = _ctx(ctx)
    run_migrations(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        secret = registry.issue_credentials(conn, gateway_id, plant)
        c.sync_broker(conn)
    mq = c.mqtt
    ca = c.services.mqtt.cafile if c.private else (Path(mq.cafile) if mq.cafile else None)
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
    if not c.private:
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


broker_app = typer.Typer(help="消息服务器 The MQTT broker's files, generated from the registry.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")


@broker_app.command("export")
def broker_export(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write passwd, acl (and ca.crt).")],
) -> None:
    """Write the Mosquitto password file and ACL from the registry (and the private CA) for an external broker.

    The collector's account is the one in RISKWATCH_MQTT_URL; the health account, if RISKWATCH_MQTT_HEALTH_URL
    is set, gets a line too. Re-run it (and SIGHUP the broker) whenever gateways change.
    """
    from core.services import COLLECTOR_USER, HEALTH_USER, mosquitto_hash, render_auth
    from core.tls import write_private

    c = _ctx(ctx)
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
    with psycopg.connect(c.db_url) as conn:
        gateways = registry.broker_credentials(conn)
        disabled = registry.disabled_gateways(conn)
    auth = render_auth(gateways, mosquitto_hash(mq.password), health_hash, collector_user=mq.username or COLLECTOR_USER,
                       disabled=disabled)
    directory.mkdir(parents=True, exist_ok=True)
    write_private(directory / "passwd", auth.passwd.encode())
    write_private(directory / "acl", auth.acl.encode())
    written = ["passwd", "acl"]
    if c.private and c.services.mqtt.cafile.exists():
        write_private(directory / "ca.crt", c.services.mqtt.cafile.read_bytes(), 0o644)
        written.append("ca.crt")
    console.print(f"已导出 exported {', '.join(written)} to {directory}: {len(gateways) - len(auth.refused)} gateways"
                  + (f"; left out (reserved or repeated): {', '.join(auth.refused)}" if auth.refused else ""))
    console.print("  mosquitto.conf: password_file, acl_file, use_username_as_clientid true on every listener "
                  "(deploy/mosquitto/mosquitto.conf.example); then SIGHUP the broker")


# --- collector ------------------------------------------------------------------------------


@app.command()
def collect(
    ctx: typer.Context,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="Rule catalog dir or file.")] = None,
) -> None:
    """Run the MQTT -> TimescaleDB collector with the rule engine until SIGTERM / Ctrl-C."""
    from hazards.intake import open_or_attach
    from ingest.collector import Collector
    from rules.engine import RuleEngine

    c = _ctx(ctx)
    run_migrations(c.db_url)
    s = c.resolved()
    engine = RuleEngine(catalog_dir=catalog, on_candidate=open_or_attach)
    col = Collector(c.db_url, c.mqtt, s.collector, s.limits, processors=[engine])

    def _term(_sig: int, _frame: object) -> None:
        col.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    err.print(f"collector: {c.mqtt.redacted()} -> database; SIGTERM flushes and exits")
    profile = os.environ.get("RISKWATCH_PROFILE")
    if profile:  # a cProfile of the flush loop under load, for `riskwatch bench` and tuning
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(col.run)
        prof.dump_stats(profile)
    else:
        col.run()
    st = col.stats
    err.print(f"collector stopped: {st.messages} messages, {st.readings_stored} readings stored, "
              f"{st.readings_duplicate} duplicates absorbed, {st.dead_letters} dead letters; "
              f"{engine.stats.activations} alarm activations, {engine.stats.candidates} hazard candidates; "
              f"at most {st.max_inbox} messages waiting")


# --- rules and alarms -----------------------------------------------------------------------


@rules_app.command("check")
def rules_check(path: Annotated[Path | None, typer.Argument(help="Catalog dir or file (default: shipped).")] = None,
                site: Annotated[Path | None, typer.Option("--site", help="Also bind to this site file.")] = None,
                ) -> None:
    """Validate a rule catalog; every error is reported with file and line."""
    from rules.model import default_catalog_dir, load_catalog

    target = path or default_catalog_dir()
    cat = load_catalog(target)
    n_files = len(cat.files)
    console.print(f"[green]OK[/] {target}: {len(cat)} rules in {n_files} file(s); versions "
                  + ", ".join(sorted({f"{f.catalog}@{f.version}" for _, f in cat.files})))
    if site is not None:
        from rules.compile import DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules

        spec = registry.parse_site(site)
        pts, devs, plants, gws = [], {}, {}, []
        pid = 0
        for e in spec.enterprises:
            for p in e.plants:
                plants[p.id] = PlantRow(p.id, p.industry, e.id)
                gws += [GatewayRow(g.id, p.id, g.enabled) for g in p.gateways]
                for d in p.devices:
                    did = len(devs) + 1
                    devs[did] = DeviceRow(did, p.id, d.kind, d.code)
                    for pt in d.points:
                        pid += 1
                        pts.append(PointRow(pid, d.gateway, pt.tag, did, pt.quantity, pt.role, pt.required,
                                            pt.interval_s, pt.setpoints or {}, pt.baseline))
        compiled = compile_rules(cat, RegistryView(pts, devs, plants, gws))
        console.print(f"  {site}: {len(compiled.instances)} alarm instances")
        for s in compiled.skipped:
            console.print(f"  [yellow]not bound[/] {s}")


def _now() -> float:
    import time

    return time.time()


@alarms_app.command("list")
def alarms_list(
    ctx: typer.Context,
    plant: Annotated[str | None, typer.Option("--plant")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include alarms back to normal.")] = False,
) -> None:
    """Alarms that are active or awaiting acknowledgement, most severe first."""
    from rich.table import Table

    from rules.actions import list_alarms

    with psycopg.connect(_ctx(ctx).db_url) as conn:
        rows = list_alarms(conn, plant=plant, include_normal=all_)
    t = Table(title="报警 alarms", title_justify="left")
    for col in ("级别 severity", "状态 state", "规则 rule", "对象 subject", "位号 tag", "时间 since", "值 value",
                "说明 reason"):
        t.add_column(col)
    for r in rows:
        flags = "".join(f for f, on in (("⏸", r.shelved), ("~", r.chattering), ("⛔", r.out_of_service)) if on)
        t.add_row(r.severity + (" ★" if r.candidate else ""), r.state + flags, r.rule_id, r.subject, r.tag or "",
                  r.activated_at.strftime("%m-%d %H:%M:%S") if r.activated_at else "",
                  "" if r.value is None else f"{r.value:g}", r.reason or "")
    console.print(t)
    console.print("★ 重大事故隐患候选 candidate major hazard · ⏸ shelved · ~ chattering · ⛔ out of service")


def _alarm_action(ctx: typer.Context, rule_id: str, gateway: str, tag: str | None, action: str, **kw: object) -> None:
    from rules import actions

    with psycopg.connect(_ctx(ctx).db_url) as conn:
        try:
            subject = actions.subject_for(conn, gateway, tag)
            fn = getattr(actions, action)
            events = fn(conn, rule_id, subject, now=_now(), **kw)
        except (actions.AlarmNotFound, ValueError) as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    for e in events:
        console.print(f"{e.event}: {e.from_state} -> {e.to_state} ({e.reason})")


@alarms_app.command("ack")
def alarms_ack(ctx: typer.Context, rule_id: str, gateway: str, tag: Annotated[str | None, typer.Argument()] = None,
               by: Annotated[str, typer.Option("--by", help="Who acknowledges.")] = "operator",
               comment: Annotated[str, typer.Option("--comment")] = "") -> None:
    """Acknowledge an alarm: RULE_ID GATEWAY [TAG] (gateway alarms: RULE_ID GATEWAY)."""
    _alarm_action(ctx, rule_id, gateway, tag, "acknowledge", actor=by, comment=comment)


@alarms_app.command("shelve")
def alarms_shelve(ctx: typer.Context, rule_id: str, gateway: str, tag: Annotated[str | None, typer.Argument()] = None,
                  minutes: Annotated[float, typer.Option("--minutes")] = 60.0,
                  reason: Annotated[str, typer.Option("--reason")] = "",
                  by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Shelve an alarm for a time, with a reason; it unshelves itself."""
    _alarm_action(ctx, rule_id, gateway, tag, "shelve", actor=by, duration_s=minutes * 60, reason=reason)


@alarms_app.command("unshelve")
def alarms_unshelve(ctx: typer.Context, rule_id: str, gateway: str,
                    tag: Annotated[str | None, typer.Argument()] = None,
                    by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Unshelve an alarm now."""
    _alarm_action(ctx, rule_id, gateway, tag, "unshelve", actor=by)


@alarms_app.command("out-of-service")
def alarms_oos(ctx: typer.Context, rule_id: str, gateway: str, tag: Annotated[str | None, typer.Argument()] = None,
               reason: Annotated[str, typer.Option("--reason")] = "",
               back: Annotated[bool, typer.Option("--back", help="Return to service.")] = False,
               by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Take an alarm out of service (or --back into service)."""
    _alarm_action(ctx, rule_id, gateway, tag, "out_of_service", actor=by, reason=reason, on=not back)


@alarms_app.command("history")
def alarms_history(ctx: typer.Context, rule_id: str, gateway: str,
                   tag: Annotated[str | None, typer.Argument()] = None) -> None:
    """Every recorded event of one alarm."""
    from rules import actions

    with psycopg.connect(_ctx(ctx).db_url) as conn:
        subject = actions.subject_for(conn, gateway, tag)
        for t, ev, f, to, ann, actor, reason, value in actions.history(conn, rule_id, subject):
            console.print(f"{t:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {ev:18} {f:>9} -> {to:9} "
                          f"{'📢' if ann else '  '} {actor:10} {'' if value is None else f'{value:g}'}  {reason}")


@alarms_app.command("flood")
def alarms_flood(ctx: typer.Context) -> None:
    """Annunciated alarms per plant in the last 10 minutes (ISA-18.2 flood: > 10)."""
    from rules.actions import flood

    with psycopg.connect(_ctx(ctx).db_url) as conn:
        rows = flood(conn, _now())
    if not rows:
        console.print("最近10分钟无报警 no alarms in the last 10 minutes")
    for plant, n, flooding in rows:
        console.print(f"  {plant:20} {n:5d} / 10 min {'[red]报警泛滥 FLOOD[/]' if flooding else ''}")


@baseline_app.command("set")
def baseline_set(ctx: typer.Context, gateway: str, tag: str,
                 value: Annotated[float | None, typer.Option("--value")] = None,
                 capture: Annotated[float | None, typer.Option("--capture-minutes",
                                                             help="Mean of the last N minutes.")] = None) -> None:
    """Record a point's baseline (e.g. filter pressure difference after a bag change)."""
    from rules.actions import AlarmNotFound, set_baseline

    if (value is None) == (capture is None):
        raise typer.BadParameter("give exactly one of --value or --capture-minutes")
    with psycopg.connect(_ctx(ctx).db_url) as conn:
        try:
            b = set_baseline(conn, gateway, tag, value, capture)
        except AlarmNotFound as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    console.print(f"基线已记录 baseline of {gateway}/{tag} = {b:g}")


@maintenance_app.command("add")
def maintenance_add(ctx: typer.Context, plant: str,
                    minutes: Annotated[float, typer.Option("--minutes")] = 60.0,
                    device: Annotated[str | None, typer.Option("--device", help="Device code.")] = None,
                    reason: Annotated[str, typer.Option("--reason")] = "",
                    by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Open a maintenance window from now on a plant (or one device)."""
    if not reason.strip():
        raise typer.BadParameter("a maintenance window needs a reason", param_hint="--reason")
    with psycopg.connect(_ctx(ctx).db_url) as conn:
        dev_id = None
        if device:
            row = conn.execute("SELECT id FROM devices WHERE plant_id = %s AND code = %s", (plant, device)).fetchone()
            if row is None:
                err.print(f"[red]error[/] no device {device} in plant {plant}")
                raise typer.Exit(2)
            dev_id = row[0]
        wid = conn.execute(
            "INSERT INTO maintenance_windows (plant_id, device_id, starts_at, ends_at, reason, created_by)"
            " VALUES (%s, %s, now(), now() + %s * interval '1 minute', %s, %s) RETURNING id",
            (plant, dev_id, minutes, reason, by)).fetchone()
        conn.commit()
    console.print(f"检修窗口 maintenance window #{wid[0] if wid else '?'} for {minutes:g} min")


def _register_extensions() -> None:
    from api import cli_alerting, cli_grafana, cli_server

    cli_grafana.register(app)
    cli_server.register(app)
    cli_alerting.register(app)


_register_extensions()


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
    scenario: Annotated[str | None, typer.Option("--scenario", help="Play an incident (see --list-scenarios).")] = None,
    list_scenarios: Annotated[bool, typer.Option("--list-scenarios", help="List the scenarios and exit.")] = False,
    start_ago: Annotated[float, typer.Option("--start-ago", help="Start data this many seconds in the past.")] = 0.0,
    backfill: Annotated[bool, typer.Option("--backfill", help="Send as fast as possible, not in real time.")] = False,
) -> None:
    """Publish simulated plant data through one real MQTT client per gateway."""
    import time

    from api import simcreds
    from simulators.gateway import tls_context
    from simulators.run import default_site_path, load_site
    from simulators.run import simulate as run_simulation
    from simulators.scenarios import SCENARIOS, get_scenario

    if list_scenarios:
        for name, sc in SCENARIOS.items():
            console.print(f"[bold]{name}[/]  {sc.title.zh} — {sc.title.en}")
            for e in sc.expects:
                console.print(f"    → {e.rule_id} on {e.tag} at +{e.at_s + e.earliest_s:g}…{e.at_s + e.latest_s:g} s"
                              f"{' ★ candidate' if e.candidate else ''}")
        return
    sc = get_scenario(scenario) if scenario else None
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
    start_ms = int((time.time() - start_ago) * 1000) if start_ago else None
    if sc is not None:
        err.print(f"scenario {sc.name}: {sc.title.zh} — {sc.description.en}")
    res = run_simulation(spec, mq.host, mq.port, creds, duration_s=duration, rate_hz=rate, batch=batch,
                         log_path=log_path, seed=seed, gateways=gateway or None, stop=stop, realtime=not backfill,
                         start_ms=start_ms, scenario=sc,
                         # the gateways trust the broker's CA that the collector's URL names (mqtts); no client cert
                         tls=tls_context(mq.cafile) if mq.tls else None)
    console.print(f"已发送 sent {res.readings_sent} readings in {res.messages_sent} messages "
                  f"({'all acknowledged' if res.acked else 'NOT all acknowledged'}; kept up: {res.kept_up})")
    if not res.acked:
        raise typer.Exit(1)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="A short run (well under 3 minutes).")] = False,
    only: Annotated[str, typer.Option("--only", help="Comma-separated parts: db,broker,e2e,latency,grafana,"
                                                     "alerting.")] = "db,broker,e2e,latency,grafana,alerting",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    duration: Annotated[float | None, typer.Option("--duration", help="Seconds per throughput part.")] = None,
    points: Annotated[int | None, typer.Option("--points", help="Registry size (default 100k; 2k quick).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Readings per message in the batched run.")] = 100,
    procs: Annotated[int, typer.Option("--procs", help="Publisher processes.")] = 2,
) -> None:
    """Measure on private services and print figures (medians, percentiles, ratios)."""
    import json

    from rich.table import Table

    from simulators import bench as bench_mod

    parts = [p.strip() for p in only.split(",") if p.strip()]
    fig = bench_mod.run(parts, quick, progress=lambda msg: err.print(f"[dim]{msg}[/]"), duration=duration,
                        points=points, batch=batch, procs=procs)
    if as_json:
        print(json.dumps(fig.data, indent=2))
        return
    t = Table(title="riskwatch bench" + (" --quick" if quick else ""), title_justify="left")
    t.add_column("指标 figure")
    t.add_column("数值 value", justify="right")
    t.add_column("说明 note")
    for row in fig.rows:
        t.add_row(*row)
    console.print(t)


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
