"""CLI commands of alerting: `alerting check|dispatch|notifications|retry`.

`register(app)` adds them to the `riskwatch` Typer app (api.cli.main calls it); the dispatcher itself
is composed by `api.run.collect.dispatch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

from api.cli.context import Col, console, ctx_of, err, print_list
from core.errors import SourceError

__all__ = ["register"]


def _db_url(ctx: typer.Context) -> str:
    c = ctx_of(ctx)
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
    """Validate a routing file; every problem is reported with its file and line.

    First every environment variable its channels read (`${NAME}`) that is unset or empty, all at once,
    each with the line that needs it (deploy/example.env lists them with what each is for).
    """
    import os

    from alerting.envrefs import env_refs, missing

    try:
        gaps = missing(env_refs(file), os.environ) if file.is_file() else []
    except SourceError:
        gaps = []  # the YAML itself is broken: _load below reports where
    for ref, why in gaps:
        err.print(f"[red]error[/] {ref.path}:{ref.line}: {ref.setting}: environment variable {ref.name} is "
                  + ("not set" if why == "unset" else "empty (an empty value counts as unset)"))
    if gaps:
        names = sorted({r.name for r, _ in gaps})
        err.print(f"缺少环境变量 {len(names)} environment variable(s) missing: {', '.join(names)} — set them "
                  "(see deploy/example.env: cp it, fill in, `set -a; . FILE; set +a`) or remove the channels "
                  "that use them")
        raise typer.Exit(2)
    cfg = _load(file)
    console.print(f"[green]ok[/] {file}: {len(cfg.channels)} channels, {len(cfg.people)} people, "
                  f"{len(cfg.rosters)} rosters, {len(cfg.receivers)} receivers")
    from alerting.config import disposal_gaps

    for warning in disposal_gaps(cfg):
        console.print(f"[yellow]warning[/] {file}: {warning}")


def dispatch(
    ctx: typer.Context,
    public_url: Annotated[str | None, typer.Option("--public-url", help="Base of acknowledgement links.")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Parallel deliveries.")] = 4,
    catalog: Annotated[Path | None, typer.Option("--catalog", help="Rule catalog the collector runs.")] = None,
) -> None:
    """Run the alerting dispatcher alone (serve runs it too): outbox → notifications → channels."""
    from api.run.collect import dispatch as run_dispatch
    from core.db import migrate

    c = ctx_of(ctx)
    # Only the database is needed: with RISKWATCH_DB_URL set, no private services are started.
    settings = c.settings if c.settings.db_url else c.resolved(("postgres",))
    assert settings.db_url is not None
    migrate(settings.db_url)
    cfg = _load(settings.routing_file())
    url = public_url or settings.public_url or "http://127.0.0.1:8080"
    run_dispatch(settings, cfg, catalog, public_url=url, workers=workers, say=err.print)


def notifications(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="pending | sent | dead")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects.")] = False,
) -> None:
    """The newest notifications and how their delivery went (a dead one's error: in --json)."""
    from alerting import store

    with psycopg.connect(_db_url(ctx), autocommit=True) as conn:
        rows = store.list_notifications(conn, scope=None, status=status, limit=limit)
    shown = [{"id": n.id, "created_at": n.created_at, "kind": n.kind, "receiver": n.receiver, "channel": n.channel,
              "to": n.address or n.contact_id or "", "status": n.status, "attempts": n.attempts,
              "subject": n.subject, "last_error": n.last_error} for n in rows]
    print_list(f"通知 notifications ({len(rows)})",
               [Col("id", "#", ident=True), Col("created_at", "时间 created"), Col("kind", "类型 kind"),
                Col("receiver", "接收 receiver"), Col("channel", "渠道 channel"), Col("status", "状态 status"),
                Col("attempts", "次数"), Col("subject", "主题 subject")],
               shown, as_json=as_json)


def retry(ctx: typer.Context, notification_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Put a dead notification back in the queue."""
    import time

    from alerting import store

    with psycopg.connect(_db_url(ctx), autocommit=True) as conn:
        if not store.retry(conn, notification_id, time.time()):
            err.print(f"[red]error[/] 通知 #{notification_id} 不存在或未失败 not found or not dead")
            raise typer.Exit(2)
    console.print(f"通知 #{notification_id} 已重新排队 queued again")
