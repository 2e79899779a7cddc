"""`riskwatch edge CONFIG [--check] [-v]`: the edge agent for a box in the plant (Modbus TCP / OPC UA -> mqtts).

The agent is `ingest.edge` (it needs neither the database nor the private services); this command only hands it
its arguments, so `riskwatch edge --help` and `python -m ingest.edge --help` say the same.
"""

from __future__ import annotations

import typer

from ingest.edge import main as edge_main

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("edge", context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                           "help_option_names": []}, add_help_option=False)(edge)


def edge(ctx: typer.Context) -> None:
    """网关侧采集代理 Run the edge agent: read PLCs, buffer on disk, publish until riskwatch confirms (CONFIG)."""
    raise typer.Exit(edge_main(list(ctx.args)))
