"""The `riskwatch` command line: the Typer app and the registration of every command group.

Each group lives in its own module (services, registry, alarms, hazards, tokens, alerting, grafana,
bench, server); this module only builds the app, registers them in the order `--help` lists them,
and reports the project's errors (`RiskwatchError` and its kinds) all the same way. Settings are
built once here, through the composition root, and passed down in the `Context`.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import psycopg
import typer

from api.cli import (
    alarms,
    alerting,
    backup,
    edge,
    grafana,
    hazards,
    logfmt,
    northbound,
    registry,
    server,
    services,
    tokens,
    users,
)
from api.cli.context import Context, err, fit_to_terminal
from api.run.settings import load_settings
from core.errors import RiskwatchError, SourceError

__all__ = ["app", "main"]

app = typer.Typer(help="riskwatch 风险监测预警 — IoT risk monitoring and early warning.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
    log_format: Annotated[str, typer.Option(
        "--log-format", help="text | json (one object per line: time, level, logger, event, gateway, rule, ...); "
                             "also RISKWATCH_LOG_FORMAT.", envvar="RISKWATCH_LOG_FORMAT")] = "text",
) -> None:
    if log_format not in logfmt.FORMATS:
        raise typer.BadParameter(f"{log_format!r}: text or json", param_hint="--log-format")
    logfmt.configure(logging.INFO if verbose else logging.WARNING, log_format)
    fit_to_terminal()
    ctx.obj = Context(load_settings())


def _register(root: typer.Typer) -> None:
    """Every command and group, once, in the order of `riskwatch --help`."""
    root.command("migrate")(registry.migrate)
    server.register(root)  # collect, serve, simulate, bench, demo
    backup.register(root)  # backup, restore
    edge.register(root)  # the edge agent (ingest.edge)
    services.register(root)
    registry.register(root)
    alarms.register(root)
    registry.register_broker(root)
    grafana.register(root)
    tokens.register(root)
    hazards.register(root)
    alerting.register(root)
    northbound.register(root)  # forwarding to the provincial platform (alerting.northbound)
    users.register(root)  # console accounts (the web console's; core.accounts)


_register(app)


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
