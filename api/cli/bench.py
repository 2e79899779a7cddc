"""`riskwatch bench`: figures measured on private services (simulators.bench, through api.run), printed as one table."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.context import console, err, progress

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    root.command("bench")(bench)


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="A short run (well under 3 minutes).")] = False,
    only: Annotated[str, typer.Option("--only", "--part", help="Comma-separated parts: db,broker,e2e,latency,"
                                                               "grafana,alerting,edge,scale,console (scale: 1, 2 "
                                                               "and 3 lease-group collectors; console: page times "
                                                               "on a county-sized database; not in the default run)."
                                      )] = "db,broker,e2e,latency,grafana,alerting,edge,scale",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    duration: Annotated[float | None, typer.Option("--duration", help="Seconds per throughput part.")] = None,
    points: Annotated[int | None, typer.Option("--points", help="Registry size (default 100k; 2k quick).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Readings per message in the batched run.")] = 100,
    procs: Annotated[int, typer.Option("--procs", help="Publisher processes.")] = 2,
) -> None:
    """Measure on private services and print figures (medians, percentiles, ratios).

    Exits 1 when a part's check failed (a breach not detected, a reading or message not delivered): the figures
    are still printed, then each failure."""
    import json

    from rich.table import Table

    from api.run.simulate import BENCH_PARTS as PARTS
    from api.run.simulate import bench as run_bench

    parts = [p.strip() for p in only.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise typer.BadParameter(f"{', '.join(unknown) or 'none'}: the parts are {', '.join(PARTS)}",
                                 param_hint="--only")
    with progress(f"bench {','.join(parts)} (parts)", total=len(parts)) as bar:
        done = [0]

        def step(msg: str) -> None:
            err.print(f"[dim]{msg}[/]")
            bar.update(done[0], len(parts), msg[:60])

        def part(n: int, name: str) -> None:
            done[0] = n
            bar.update(n, len(parts), name)

        fig = run_bench(parts, quick, progress=step, duration=duration, points=points, batch=batch, procs=procs,
                        on_part=part)
    pages = fig.data.pop("console_table", None)  # the console part's per-page lines (80 columns)
    if as_json:
        print(json.dumps({**fig.data, "failures": fig.failures}, indent=2))
        if fig.failures:
            raise typer.Exit(1)
        return
    t = Table(title="riskwatch bench" + (" --quick" if quick else ""), title_justify="left")
    t.add_column("指标 figure")
    t.add_column("数值 value", justify="right")
    t.add_column("说明 note")
    for row in fig.rows:
        t.add_row(*row)
    console.print(t)
    if pages:
        console.print("\n".join(pages), markup=False, highlight=False)
    if fig.failures:
        for f in fig.failures:
            err.print(f"[red]失败 FAILED[/] {f}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1)
