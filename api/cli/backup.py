"""`riskwatch backup FILE` and `riskwatch restore [--replace] FILE`: the whole database, TimescaleDB-aware.

The work is `core.backup`'s; this module only reports. After a restore into the private services the broker's
password file and ACL are regenerated from the restored registry, so the gateways it knows can log in again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.context import console, ctx_of
from core.backup import backup as run_backup
from core.backup import restore as run_restore

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("backup")(backup)
    root.command("restore")(restore)


def backup(ctx: typer.Context,
           file: Annotated[Path, typer.Argument(help="The archive to write (pg_dump -Fc).")]) -> None:
    """备份 Back up the whole database into FILE (safe while the collector ingests)."""
    c = ctx_of(ctx)
    res = run_backup(c.db_url, file)
    console.print(f"已备份 backed up to {res.file} ({res.size_bytes:,} bytes; schema {res.schema_version:04d}, "
                  f"TimescaleDB {res.timescaledb_version}): everything committed before the backup started")


def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An archive written by `riskwatch backup`.")],
    replace: Annotated[bool, typer.Option("--replace", help="Drop and recreate a non-empty database first.")] = False,
) -> None:
    """恢复 Restore FILE into the database (empty or missing; --replace to overwrite)."""
    c = ctx_of(ctx)
    broker = c.services.mqtt if c.private else None
    res = run_restore(c.db_url, file, replace=replace, broker=broker)
    console.print(f"已恢复 restored {file} into {res.database} (schema {res.schema_version:04d})")
    if res.broker_synced:
        console.print("消息服务器账户已按恢复的登记信息重建 broker password file and ACL regenerated from the registry"
                      + (f"; refused: {', '.join(res.broker_refused)}" if res.broker_refused else ""))
    else:
        console.print("[yellow]external broker: regenerate its files with `riskwatch broker export DIR`[/]")
    if res.pending_migrations:
        console.print(f"[yellow]run `riskwatch migrate`: {len(res.pending_migrations)} migrations newer than the "
                      "backup are pending[/]")
    if res.unknown_migrations:
        console.print(f"[red]the backup holds migrations this riskwatch does not know "
                      f"({', '.join(f'{v:04d}' for v in res.unknown_migrations)}): it was taken by a newer version[/]")
