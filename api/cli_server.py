"""CLI commands of the API and the hazard ledger: `serve`, `token ...`, `hazards ...`.

`register(app)` adds them to the `riskwatch` Typer app (api.cli calls it). It
is idempotent, so a test harness may register onto an app that already has
them. Commands take the shared `api.cli.Context` from `ctx.obj`: settings
built once in `main`, private services started when the URLs are unset.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from api.cli import Context

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _c(ctx: typer.Context) -> Context:
    obj: Any = ctx.obj
    assert obj is not None and hasattr(obj, "resolved"), "run through the riskwatch CLI"
    return obj  # type: ignore[no-any-return]


def register(app: typer.Typer) -> None:
    """Add `serve`, `token` and `hazards` to the riskwatch CLI (once)."""
    if any(c.name == "serve" for c in app.registered_commands):
        return
    app.command("serve")(serve)
    token_app = typer.Typer(help="API 令牌 API tokens (shown once, stored hashed).", no_args_is_help=True)
    token_app.command("create")(token_create)
    token_app.command("list")(token_list)
    token_app.command("revoke")(token_revoke)
    app.add_typer(token_app, name="token")
    hazards_app = typer.Typer(help="重大事故隐患台账 Hazard ledger.", no_args_is_help=True)
    hazards_app.command("list")(hazards_list)
    hazards_app.command("show")(hazards_show)
    hazards_app.command("tick")(hazards_tick)
    hazards_app.command("intake")(hazards_intake)
    app.add_typer(hazards_app, name="hazards")


# --- serve ------------------------------------------------------------------------------------


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
) -> None:
    """Run the HTTP API, the collector (rules + hazard intake) and the hazards tick until SIGTERM.

    Outside loopback with alerting, RISKWATCH_PUBLIC_URL must be set (the address in e-mailed links).
    """
    from api.serve import serve as run_serve
    from api.serve_config import ServeNetwork, check_network
    from core.db import migrate

    c = _c(ctx)
    net = ServeNetwork(host, port, certfile, keyfile, proxy_headers, forwarded_allow_ips)
    check_network(net, alerting=not no_alerting, public_url=c.settings.public_url)  # before starting anything
    settings = c.resolved()
    assert settings.db_url is not None
    migrate(settings.db_url)
    sync = c.sync_broker if c.private else None
    err.print(f"riskwatch serve: {net.own_url()}/docs  (API, "
              f"{'collector, ' if not no_collector else ''}hazards tick every {hazard_tick:g} s); SIGTERM stops")
    run_serve(settings, host=host, port=port, catalog=catalog, collector=not no_collector,
              hazard_tick_s=hazard_tick, alerting=not no_alerting, broker_sync=sync,
              broker=c.services.mqtt if c.private else None,
              ready=lambda: err.print(f"[green]就绪 ready[/] {net.own_url()}"),
              certfile=certfile, keyfile=keyfile, proxy_headers=proxy_headers,
              forwarded_allow_ips=forwarded_allow_ips)
    err.print("riskwatch serve stopped")


# --- tokens -----------------------------------------------------------------------------------


def token_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option("--role", help="admin | bureau | enterprise")],
    enterprise: Annotated[str | None, typer.Option("--enterprise", help="Enterprise id (role enterprise).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Who holds it, e.g. 县工信局值班室.")] = None,
    expires_days: Annotated[float | None, typer.Option("--expires-days", help="Expire after N days.")] = None,
) -> None:
    """Create an API token and print it once (only its SHA-256 is stored)."""
    from api import auth
    from core.db import migrate

    if role not in auth.ROLES:
        err.print(f"[red]error[/] 未知角色 unknown role {role!r} (admin, bureau, enterprise)")
        raise typer.Exit(2)
    c = _c(ctx)
    migrate(c.db_url)
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with psycopg.connect(c.db_url, autocommit=True) as conn:
        try:
            rec, token = auth.create_token(conn, role, name or f"{role}{'-' + enterprise if enterprise else ''}",
                                           enterprise, created_by="cli", expires_at=expires)
        except auth.TokenError as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    err.print(f"令牌 token #{rec.id} '{rec.name}' role={rec.role}"
              f"{' enterprise=' + rec.enterprise_id if rec.enterprise_id else ''} — shown once, stored hashed:")
    print(token)


def token_list(ctx: typer.Context,
               all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False) -> None:
    """List tokens (never their secrets)."""
    from api import auth

    with psycopg.connect(_c(ctx).db_url, autocommit=True) as conn:
        rows = auth.list_tokens(conn, all_)
    t = Table(title="API 令牌 tokens", title_justify="left")
    for col in ("id", "名称 name", "角色 role", "企业 enterprise", "前缀 prefix", "最近使用 last used", "状态 state"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r.id), r.name, r.role, r.enterprise_id or "", r.prefix,
                  r.last_used_at.strftime("%Y-%m-%d %H:%M") if r.last_used_at else "",
                  "吊销 revoked" if r.revoked_at else "有效 active")
    console.print(t)


def token_revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke a token now."""
    from api import auth

    with psycopg.connect(_c(ctx).db_url, autocommit=True) as conn:
        rec = auth.revoke_token(conn, token_id)
    if rec is None:
        err.print(f"[red]error[/] no token #{token_id}")
        raise typer.Exit(2)
    console.print(f"已吊销 revoked token #{rec.id} '{rec.name}'")


# --- hazards ----------------------------------------------------------------------------------


def hazards_list(
    ctx: typer.Context,
    status: Annotated[list[str] | None, typer.Option("--status", help="candidate, confirmed, ...")] = None,
    enterprise: Annotated[str | None, typer.Option("--enterprise")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include closed and dismissed.")] = False,
    limit: Annotated[int, typer.Option("--limit")] = 50,
) -> None:
    """The hazard ledger, newest first."""
    from hazards import store
    from hazards.model import SOURCE_ZH, STATUS_ZH, Source, Status

    now = time.time()
    with psycopg.connect(_c(ctx).db_url, autocommit=True) as conn:
        rows, total = store.list_tickets(conn, store.Filters(status=status or [], enterprise_id=enterprise,
                                                             open=None if all_ or status else True),
                                         None, now, limit=limit)
    t = Table(title=f"重大事故隐患台账 hazard ledger ({len(rows)} of {total})", title_justify="left")
    for col in ("#", "状态 status", "来源 source", "企业 enterprise", "隐患 hazard", "期限 deadline", "督办", "次数"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r.id), STATUS_ZH[Status(r.status)] + (" ⚠逾期" if r.overdue(now) else ""),
                  SOURCE_ZH[Source(r.source)], r.enterprise_name, r.title,
                  r.plan_deadline.strftime("%Y-%m-%d") if r.plan_deadline else "",
                  (r.supervision_level or "") if not r.supervision_lifted_at else "", str(r.occurrences))
    console.print(t)


def hazards_show(ctx: typer.Context, hazard_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One ticket with its whole history (every step with its actor) and evidence."""
    from hazards import store
    from hazards.workflow import ACTION_ZH

    with psycopg.connect(_c(ctx).db_url, autocommit=True) as conn:
        rec = store.get(conn, hazard_id, None)
        if rec is None:
            err.print(f"[red]error[/] 隐患 #{hazard_id} 不存在 not found")
            raise typer.Exit(2)
        events = store.events(conn, hazard_id)
        evidence = store.evidence(conn, hazard_id, with_readings=False)
    console.print(f"[bold]#{rec.id} {rec.title}[/]  {rec.enterprise_name} / {rec.plant_name or ''}  "
                  f"[{rec.status}] {rec.basis or ''}")
    for e in events:
        console.print(f"  {e.time:%Y-%m-%d %H:%M:%S}  {ACTION_ZH.get(e.action, e.action):14} "
                      f"{e.from_status:>10} → {e.to_status:10} {e.actor} ({e.actor_role})  {e.comment}")
    console.print(f"  证据 evidence: {len(evidence)} item(s); 触发 occurrences: {rec.occurrences}")


def hazards_tick(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help="Pretend it is this time (ISO 8601), e.g. for a drill.")]
    = None,
) -> None:
    """Run the hazards tick once: list overdue tickets for supervision, take up stray candidates."""
    from api.metrics import Metrics
    from api.serve import HazardTicker
    from core.clock import FakeClock, SystemClock

    clock = FakeClock(datetime.fromisoformat(at).timestamp()) if at else SystemClock()
    c = _c(ctx)
    with psycopg.connect(c.db_url) as conn:
        supervised, swept = HazardTicker(c.db_url, clock, Metrics()).once(conn)
    console.print(f"挂牌督办 listed for supervision: {supervised}; 候选登记 candidates taken up: {swept}")


def show_sensor_tickets(console_: Console, db_url: str, since: float) -> int:
    """For `riskwatch demo`: the tickets the rule engine opened since `since`, waiting for the bureau."""
    from hazards import store
    from hazards.model import STATUS_ZH, Status

    with psycopg.connect(db_url, autocommit=True) as conn:
        rows, _ = store.list_tickets(conn, store.Filters(source=["sensor"], created_from=since), None, time.time(),
                                     limit=20, order="id")
    t = Table(title="重大事故隐患台账：自动登记的候选隐患（待局值班人员判定） "
                    "hazard ledger: candidate tickets opened by the incident", title_justify="left")
    for col in ("编号 #", "状态 status", "隐患 hazard", "依据 basis", "企业 enterprise", "次数 occurrences",
                "证据 evidence"):
        t.add_column(col, overflow="fold")  # the legal basis is the point: show it whole
    for r in rows:
        t.add_row(f"#{r.id}", f"{STATUS_ZH[Status(r.status)]} {r.status}", r.title, r.basis or "", r.enterprise_name,
                  str(r.occurrences), str(r.evidence_count))
    console_.print(t)
    if rows:
        first = rows[0].id
        console_.print(f"   判定与整改 judge and rectify: riskwatch serve, then POST /api/v1/hazards/{first}/confirm "
                       f"with a bureau token (riskwatch token create --role bureau); riskwatch hazards show {first}")
    return len(rows)


def hazards_intake(ctx: typer.Context) -> None:
    """Take up hazard candidates that have no ticket yet (e.g. raised before the ledger existed)."""
    from core.db import migrate
    from hazards import ledger

    c = _c(ctx)
    migrate(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        ids = ledger.sweep_candidates(conn)
    console.print(f"候选登记 candidates taken up into {len(set(ids))} ticket(s): {sorted(set(ids))}")
