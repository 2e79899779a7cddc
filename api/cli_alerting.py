"""CLI commands of alerting: `alerting check|dispatch|notifications|retry`.

`register(app)` adds them to the `riskwatch` Typer app (api.cli calls it).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from core.errors import SourceError

if TYPE_CHECKING:
    from api.cli import Context

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _c(ctx: typer.Context) -> Context:
    obj: Any = ctx.obj
    assert obj is not None and hasattr(obj, "resolved"), "run through the riskwatch CLI"
    return obj  # type: ignore[no-any-return]


def _db_url(ctx: typer.Context) -> str:
    c = _c(ctx)
    return c.settings.db_url or c.db_url


def register(app: typer.Typer) -> None:
    if any(g.name == "alerting" for g in app.registered_groups):
        return
    a = typer.Typer(help="预警通知 Alerting: routing file, dispatcher, notifications.", no_args_is_help=True)
    a.command("check")(check)
    a.command("dispatch")(dispatch)
    a.command("notifications")(notifications)
    a.command("retry")(retry)
    app.add_typer(a, name="alerting")


def _load(path: Path | None) -> Any:
    from alerting.config import load_alerting

    try:
        return load_alerting(path)
    except SourceError as exc:
        for p in exc.problems:
            err.print(f"[red]error[/] {p}")
        raise typer.Exit(2) from exc


def check(file: Annotated[Path, typer.Argument(help="The routing file (YAML).")]) -> None:
    """Validate a routing file; every problem is reported with its file and line."""
    cfg = _load(file)
    console.print(f"[green]ok[/] {file}: {len(cfg.channels)} channels, {len(cfg.people)} people, "
                  f"{len(cfg.rosters)} rosters, {len(cfg.receivers)} receivers")


def dispatch(
    ctx: typer.Context,
    public_url: Annotated[str | None, typer.Option("--public-url", help="Base of acknowledgement links.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Parallel deliveries.")] = 4,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="Rule catalog the collector runs.")] = None,
) -> None:
    """Run the alerting dispatcher alone (serve runs it too): outbox → notifications → channels."""
    from alerting.ack import link_secret
    from alerting.dispatcher import Dispatcher, catalog_titles
    from core.db import migrate

    c = _c(ctx)
    # Only the database is needed: with RISKWATCH_DB_URL set, no private services are started.
    settings = c.settings if c.settings.db_url else c.resolved()
    assert settings.db_url is not None
    migrate(settings.db_url)
    cfg = _load(settings.routing_file())
    url = public_url or settings.public_url or "http://127.0.0.1:8080"
    d = Dispatcher(settings.db_url, cfg, public_url=url,
                   link_secret=link_secret(settings.link_secret, settings.data_dir), workers=workers,
                   titles=catalog_titles(catalog))
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    signal.signal(signal.SIGINT, lambda *_: d.stop())
    err.print(f"riskwatch alerting dispatch: {len(cfg.receivers)} receivers, links → {url}; SIGTERM stops")
    try:
        d.run()
    finally:
        d.close()
    err.print(f"dispatcher stopped: {d.stats.sent} sent, {d.stats.failed} failed attempts, {d.stats.dead} dead")


def notifications(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="pending | sent | dead")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 30,
) -> None:
    """The newest notifications and how their delivery went."""
    from alerting import store

    with psycopg.connect(_db_url(ctx), autocommit=True) as conn:
        rows = store.list_notifications(conn, scope=None, status=status, limit=limit)
    t = Table(title=f"通知 notifications ({len(rows)})", title_justify="left")
    for col in ("#", "时间 created", "类型 kind", "接收 receiver", "渠道 channel", "对象 to", "状态 status", "次数",
                "主题 subject / error"):
        t.add_column(col)
    for n in rows:
        t.add_row(str(n.id), n.created_at.strftime("%m-%d %H:%M:%S"), n.kind, n.receiver, n.channel,
                  n.address or n.contact_id or "", n.status, str(n.attempts),
                  n.subject if n.status != "dead" else f"{n.subject} — {n.last_error}")
    console.print(t)


def retry(ctx: typer.Context, notification_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Put a dead notification back in the queue."""
    import time

    from alerting import store

    with psycopg.connect(_db_url(ctx), autocommit=True) as conn:
        if not store.retry(conn, notification_id, time.time()):
            err.print(f"[red]error[/] 通知 #{notification_id} 不存在或未失败 not found or not dead")
            raise typer.Exit(2)
    console.print(f"通知 #{notification_id} 已重新排队 queued again")
