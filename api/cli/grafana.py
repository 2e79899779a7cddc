"""CLI commands for Grafana and data retention: `riskwatch grafana render|push|grants`, `riskwatch retention run`.

The dashboards evolve on their own (api.grafana); `api.cli.main` calls `register(app)`. Commands
take the database URL from the CLI's context object (the private local services when RISKWATCH_DB_URL is
unset), like every other command.
"""

# No `from __future__ import annotations` here: typer reads the annotations of the commands, which
# are defined inside register() and refer to its local names.
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import psycopg
import typer
from rich.console import Console

from api.cli.context import progress

if TYPE_CHECKING:
    from api.grafana import GeneratedDashboard

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class _HasDb(Protocol):
    @property
    def db_url(self) -> str: ...


def _db_url(ctx: typer.Context) -> str:
    obj: _HasDb = ctx.obj
    return obj.db_url


def _dashboards(ctx: typer.Context, catalog: Path | None, datasource_uid: str) -> "list[GeneratedDashboard]":
    from api.grafana import generate
    from api.run.compose import load_rule_catalog
    from core.db import migrate

    url = _db_url(ctx)
    migrate(url)
    with psycopg.connect(url) as conn:
        return generate(conn, load_rule_catalog(catalog), datasource_uid)


def register(app: typer.Typer) -> None:
    """Add the `grafana` and `retention` command groups to the riskwatch CLI."""
    from api.grafana import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID
    from core.retention import DEFAULT_RAW_DAYS, DEFAULT_ROLLUP_DAYS
    from core.retention_operational import (
        DEFAULT_DEAD_LETTER_DAYS,
        DEFAULT_DELIVERIES_DAYS,
        DEFAULT_NOTIFICATIONS_DAYS,
        DEFAULT_OUTBOX_DAYS,
        OperationalRetention,
    )

    grafana_app = typer.Typer(help="Grafana 仪表盘即代码 Dashboards generated from the registry and rule catalog.",
                              no_args_is_help=True)
    retention_app = typer.Typer(help="数据保留 Retention: drop old raw readings, keep the 1-minute rollup longer.",
                                no_args_is_help=True)
    app.add_typer(grafana_app, name="grafana")
    app.add_typer(retention_app, name="retention")

    def catalog_opt() -> Any:
        return typer.Option("--catalog", help="Rule catalog dir or file (default: shipped).")

    def ds_opt() -> Any:
        return typer.Option("--datasource-uid", help="uid of Grafana's TimescaleDB data source.")

    @grafana_app.command("render")
    def grafana_render(
        ctx: typer.Context,
        outdir: Annotated[Path, typer.Argument(help="Directory for the dashboard JSON files.")],
        catalog: Annotated[Path | None, catalog_opt()] = None,
        datasource_uid: Annotated[str, ds_opt()] = DATASOURCE_UID,
    ) -> None:
        """Write every dashboard as JSON (for Grafana's file provisioning)."""
        from api.grafana import render

        dashboards = _dashboards(ctx, catalog, datasource_uid)
        for path, d in zip(render(dashboards, outdir), dashboards, strict=True):
            console.print(f"  {path}  {d.title}")
        console.print(f"已生成 rendered {len(dashboards)} dashboards into {outdir}")

    @grafana_app.command("push")
    def grafana_push(
        ctx: typer.Context,
        url: Annotated[str, typer.Option("--url", envvar="GRAFANA_URL", help="Grafana base URL.")],
        token: Annotated[str, typer.Option("--token", envvar="GRAFANA_TOKEN",
                                           help="Service-account token (Editor or Admin).")],
        catalog: Annotated[Path | None, catalog_opt()] = None,
        datasource_uid: Annotated[str, ds_opt()] = DATASOURCE_UID,
        folder_uid: Annotated[str, typer.Option("--folder-uid")] = FOLDER_UID,
        folder_title: Annotated[str, typer.Option("--folder-title")] = FOLDER_TITLE,
    ) -> None:
        """Create or update the riskwatch folder and its dashboards in Grafana (idempotent)."""
        from api.grafana import push

        dashboards = _dashboards(ctx, catalog, datasource_uid)
        with progress(f"推送 pushing to {url}", total=len(dashboards)) as advance:
            res = push(url, token, dashboards, folder_uid, folder_title, progress=advance)
        console.print(f"文件夹 folder {res.folder_uid} {'created' if res.folder_created else 'up to date'}")
        for uid, where in res.dashboards:
            console.print(f"  {uid}  {where}")
        console.print(f"已推送 pushed {len(res.dashboards)} dashboards to {url}")

    @grafana_app.command("grants")
    def grafana_grants(
        ctx: typer.Context,
        apply: Annotated[bool, typer.Option("--apply", help="Apply the reader's grants to the database and check "
                                                            "them (as the tables' owner).")] = False,
        login: Annotated[str, typer.Option("--login", help="Grafana's LOGIN role in the printed SQL.")] = "grafana",
        owner: Annotated[str, typer.Option("--owner", help="riskwatch's owner role in the printed SQL.")]
        = "riskwatch",
    ) -> None:
        """Print the SQL that gives Grafana a read-only login (member of grafana_reader), or --apply the grants.

        grafana_reader may SELECT the views of the `grafana` schema and nothing else (migration 0009).
        """
        from api.grafana import access

        if not apply:
            print(access.setup_sql(login, owner), end="")
            return
        from core.db import migrate

        url = _db_url(ctx)
        migrate(url)
        with psycopg.connect(url) as conn:
            before = access.inspect(conn)
            if not before.role_exists:
                err.print(f"[red]error[/] 角色不存在 role {access.READER_ROLE} does not exist: create it first "
                          "(riskwatch grafana grants prints the SQL)")
                raise typer.Exit(2)
            access.apply_grants(conn)
            after = access.inspect(conn)
        console.print(f"{access.READER_ROLE} 可读视图 may read {len(after.views)} views: "
                      + ", ".join(f"{access.SCHEMA}.{v}" for v in after.views))
        if after.elsewhere:
            err.print(f"[red]error[/] {access.READER_ROLE} 仍可访问 can still reach (owned by another role?): "
                      + ", ".join(after.elsewhere))
            raise typer.Exit(1)
        revoked = sorted(set(before.elsewhere))
        console.print(f"已撤销 revoked {len(revoked)} other grants" + (": " + ", ".join(revoked) if revoked else ""))

    @retention_app.command("run")
    def retention_run(
        ctx: typer.Context,
        raw_days: Annotated[float, typer.Option("--raw-days", help="Keep raw readings this many days.")]
        = DEFAULT_RAW_DAYS,
        rollup_days: Annotated[float, typer.Option("--rollup-days", help="Keep readings_1m this many days.")]
        = DEFAULT_ROLLUP_DAYS,
        outbox_days: Annotated[float, typer.Option("--outbox-days", help="Keep routed outbox rows this many days.")]
        = DEFAULT_OUTBOX_DAYS,
        notifications_days: Annotated[float, typer.Option(
            "--notifications-days", help="Keep finished notifications this many days.")] = DEFAULT_NOTIFICATIONS_DAYS,
        deliveries_days: Annotated[float, typer.Option(
            "--deliveries-days", help="Keep delivery attempts this many days (≤ notifications).")]
        = DEFAULT_DELIVERIES_DAYS,
        dead_letter_days: Annotated[float, typer.Option("--dead-letter-days", help="Keep ingest dead letters.")]
        = DEFAULT_DEAD_LETTER_DAYS,
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
    ) -> None:
        """Drop raw chunks older than --raw-days and rollup chunks older than --rollup-days; delete old outbox rows,
        notifications, deliveries and dead letters."""
        from core.retention import RETENTION_STEPS, RetentionPolicy, run_retention

        policy = RetentionPolicy(raw_days, rollup_days, OperationalRetention(
            outbox_days, notifications_days, deliveries_days, dead_letter_days))
        what = "保留期清理 retention" + (" (dry run)" if dry_run else "")
        with psycopg.connect(_db_url(ctx)) as conn, progress(what, total=len(RETENTION_STEPS)) as bar:
            res = run_retention(conn, policy, dry_run=dry_run, on_step=bar.advance)
        verb = "将删除 would drop" if dry_run else "已删除 dropped"
        console.print(f"{verb} {len(res.raw_chunks)} raw chunks (readings before {res.raw_cutoff:%Y-%m-%d %H:%M} UTC)"
                      f" and {len(res.rollup_chunks)} rollup chunks (readings_1m before "
                      f"{res.rollup_cutoff:%Y-%m-%d %H:%M} UTC)")
        for c in res.raw_chunks + res.rollup_chunks:
            console.print(f"  {c}")
        for table, n in sorted(res.rows.items()):
            console.print(f"{verb} {n} rows of {table}")
