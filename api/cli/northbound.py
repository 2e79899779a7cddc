"""CLI commands of northbound forwarding: `northbound check|run|status` (docs/northbound.md).

`run` is the standalone forwarder (serve runs the same one as a supervised task when
RISKWATCH_NORTHBOUND names a file); `check` validates a file, every problem with file:line.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from api.cli.context import console, ctx_of, err
from core.errors import SourceError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    if any(g.name == "northbound" for g in app.registered_groups):
        return
    n = typer.Typer(help="北向转发 Northbound forwarding to the provincial platform.", no_args_is_help=True)
    n.command("check")(check)
    n.command("run")(run)
    n.command("status")(status)
    app.add_typer(n, name="northbound")


def _load(path: Path) -> object:
    from alerting.northbound_config import load_northbound

    try:
        return load_northbound(path)
    except SourceError as exc:
        for p in exc.problems:
            err.print(f"[red]error[/] {p}")
        raise typer.Exit(2) from exc


def check(file: Annotated[Path, typer.Argument(help="The northbound file (YAML).")]) -> None:
    """Validate a northbound file: schema, ${ENV} header secrets, body templates (file:line for each problem)."""
    from alerting.northbound_config import NorthboundConfig

    cfg = _load(file)
    assert isinstance(cfg, NorthboundConfig)
    for name, t in cfg.targets.items():
        console.print(f"{name}: {t.spec.kind} {', '.join(t.spec.send)} (batch {t.spec.batch_size},"
                      f" dead after {t.spec.max_attempts} attempts)")
    console.print(f"[green]ok[/] {file}: 校验通过 valid, {len(cfg.targets)} target(s)")


def run(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", help="The northbound file (default: RISKWATCH_NORTHBOUND).")] = None,
    poll_s: Annotated[float, typer.Option("--poll", help="Idle wait between looks for due items, seconds.")] = 1.0,
) -> None:
    """Run the forwarder alone until SIGTERM/SIGINT (serve runs it too when RISKWATCH_NORTHBOUND is set)."""
    from alerting.northbound import Forwarder
    from alerting.northbound_config import NorthboundConfig
    from api.run.northbound import ENV, configured_file
    from api.run.settings import build_clock
    from core.db import migrate

    path = config or configured_file()
    if path is None:
        err.print(f"[red]error[/] no northbound file: give --config or set {ENV}")
        raise typer.Exit(2)
    cfg = _load(path)
    assert isinstance(cfg, NorthboundConfig)
    c = ctx_of(ctx)
    settings = c.settings if c.settings.db_url else c.resolved(("postgres",))
    assert settings.db_url is not None
    migrate(settings.db_url)
    f = Forwarder(settings.db_url, cfg, clock=build_clock(), poll_s=poll_s)
    signal.signal(signal.SIGTERM, lambda *_: f.stop())
    signal.signal(signal.SIGINT, lambda *_: f.stop())
    try:
        f.run()
    finally:
        f.close()


def status(ctx: typer.Context) -> None:
    """Items per target and status (pending, sent, dead)."""
    from alerting.northbound_store import count_by_status

    c = ctx_of(ctx)
    with psycopg.connect(c.settings.db_url or c.db_url, autocommit=True) as conn:
        counts = count_by_status(conn)
    for (target, st), n in sorted(counts.items()):
        console.print(f"{target}\t{st}\t{n}")
