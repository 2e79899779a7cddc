"""What every command group shares: the per-invocation `Context`, the consoles, small helpers.

A leaf: it imports no other part of `api`, so any command module may use it without a circle.
Settings are built once by `api.cli.main` (through the composition root) and handed to `Context`;
when RISKWATCH_DB_URL / RISKWATCH_MQTT_URL are unset, commands use the private local services under
RISKWATCH_DATA_DIR. Only `services up`, `demo` and the test fixtures start them: any other command that
finds them stopped says how to start them and exits, because a command run during a planned database
outage must not silently bring the database back.

Whether a URL points at the private services is read from the record `services up` keeps
(<data_dir>/services.json: the ports it chose), not guessed from which variables are set: after
`eval "$(riskwatch services up --env)"` the URLs are set, yet they still name the private broker, whose
password file and ACL `gateway add` and `registry load` must keep in step.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg
import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from core import registry
from core.services import LocalServices
from core.settings import MqttUrl, Settings

__all__ = ["NOT_RUNNING", "Col", "Context", "console", "ctx_of", "err", "fit_to_terminal", "now", "print_list",
           "progress", "Progress", "stop_on_signals"]

#: What a command says when the private services it needs are stopped (exit code 3, as `services status`).
NOT_RUNNING = ("私有服务未运行 the private services are not running ({names}); 请先启动 start them with: "
               "riskwatch services up")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def fit_to_terminal() -> None:
    """Size both consoles for this command. Rich reads COLUMNS once, when a Console is made (at import); a shell or a
    test harness may change it between commands, and a list command lays its ids out for the width it is given."""
    cols = os.environ.get("COLUMNS", "")
    width = int(cols) if cols.isdigit() and int(cols) > 0 else shutil.get_terminal_size().columns
    console.width = width
    err.width = width


class Context:
    """Settings plus the resolved service URLs for one command."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._services: LocalServices | None = None

    def _recorded(self) -> LocalServices | None:
        """This data dir's private services if `services up` ever recorded them, without creating anything."""
        if not (self.settings.data_dir / "services.json").exists():
            return None
        return self.services

    def _points_at(self, url: str | None, ports: set[int]) -> bool:
        if url is None:
            return True
        rec = self._recorded()
        if rec is None:
            return False
        try:
            p = urlsplit(url)
            return (p.hostname or "") in _LOOPBACK and p.port in ports
        except ValueError:
            return False

    @property
    def db_private(self) -> bool:
        """The database is this data dir's private PostgreSQL (unset, or the recorded port on loopback)."""
        rec = self._recorded()
        return self._points_at(self.settings.db_url, {rec.state.pg_port} if rec else set())

    @property
    def mqtt_private(self) -> bool:
        """The broker is this data dir's private Mosquitto (unset, or one of its recorded listeners)."""
        rec = self._recorded()
        ports = {rec.state.mqtt_port, rec.state.mqtt_mtls_port} - {0} if rec else set()
        return self._points_at(self.settings.mqtt_url, ports)

    @property
    def private(self) -> bool:
        return self.db_private or self.mqtt_private

    @property
    def services(self) -> LocalServices:
        if self._services is None:
            self._services = LocalServices(self.settings.data_dir)
        return self._services

    def resolved(self, need: tuple[str, ...] = ("postgres", "mosquitto")) -> Settings:
        """The settings with the private services' URLs filled in where none was given.

        Never starts a service: when a URL must come from the data dir and a service in `need` is stopped,
        the command ends with `NOT_RUNNING` (exit 3). A URL given explicitly is used as given, private or
        not (a collector pointed at a database under planned maintenance waits for it like for any other).
        """
        s = self.settings
        if s.db_url is not None and s.mqtt_url is not None:
            return s
        st = self.services.status() if (s.data_dir / "services.json").exists() else {}
        unset = {"postgres": s.db_url is None, "mosquitto": s.mqtt_url is None}
        stopped = [name for name in need if unset.get(name) and not st.get(name, False)]
        if stopped:
            err.print(f"[red]error[/] {NOT_RUNNING.format(names=', '.join(stopped))}  "
                      f"(RISKWATCH_DATA_DIR={s.data_dir})")
            raise typer.Exit(3)
        return s.with_services(self.services.db_url, self.services.mqtt_url, self.services.mqtt_health_url)

    @property
    def db_url(self) -> str:
        url = self.resolved(("postgres",)).db_url
        assert url is not None
        return url

    @property
    def mqtt(self) -> MqttUrl:
        url = self.resolved(("mosquitto",)).mqtt_url
        assert url is not None
        return MqttUrl.parse(url)

    def sync_broker(self, conn: psycopg.Connection) -> bool:
        """Regenerate the private broker's password file and ACL from the registry."""
        if not self.mqtt_private:
            return False
        self.services.mqtt.write_auth(registry.broker_credentials(conn), reload=True,
                                      disabled=registry.disabled_gateways(conn))
        return True


def ctx_of(ctx: typer.Context) -> Context:
    """The command's `Context`. A test harness may put an object with the same surface in `ctx.obj`."""
    obj: Any = ctx.obj
    assert obj is not None and hasattr(obj, "resolved"), "run through the riskwatch CLI"
    return obj  # type: ignore[no-any-return]


def now() -> float:
    return time.time()


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM / SIGINT: long commands stop cleanly on it."""
    stop = threading.Event()

    def _handler(_sig: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


@dataclass(frozen=True)
class Col:
    """One column of a list command: the row key, its header, and whether it is an identifier.

    An identifier column is never cut (no wrap, as wide as its longest value) because an operator copies
    it into the next command; every other column folds its text to fit 80 columns.
    """

    key: str
    header: str
    ident: bool = False


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone().strftime("%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def print_list(title: str, cols: Sequence[Col], rows: Sequence[Mapping[str, object]], *, as_json: bool,
               legend: str | None = None) -> None:
    """A list command's output: a table readable at 80 columns, or (`--json`) one JSON array of objects.

    The JSON objects carry every key of the rows (stable names, timestamps in ISO 8601), not only the
    columns the table has room for.
    """
    if as_json:
        print(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in rows], ensure_ascii=False))
        return
    cells = [[_cell(r.get(c.key)) for c in cols] for r in rows]
    ident_widths = [max([cell_len(row[i]) for row in cells] + [1]) for i, c in enumerate(cols) if c.ident]
    # Two cells of padding per column, and room for at least 4 characters of every other column.
    if sum(ident_widths) + 2 * len(cols) + 4 * (len(cols) - len(ident_widths)) > console.width:
        _print_records(title, cols, cells)  # the ids alone are wider than the terminal: one block per row
    else:
        _print_table(title, cols, cells)
    if legend and rows:
        console.print(legend)


def _print_records(title: str, cols: Sequence[Col], cells: list[list[str]]) -> None:
    console.print(title, markup=False)
    for row in cells:
        console.print()
        for c, value in zip(cols, row, strict=True):
            if value:
                console.print(f"  {c.header}: {value}", markup=False)


def _print_table(title: str, cols: Sequence[Col], cells: list[list[str]]) -> None:
    t = Table(title=Text(title), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, c in enumerate(cols):
        if c.ident:
            width = max([cell_len(row[i]) for row in cells] + [cell_len(c.header.split()[-1]), 1])
            t.add_column(c.header, no_wrap=True, overflow="fold", min_width=width)
        else:
            t.add_column(c.header, overflow="fold")
    for row in cells:
        t.add_row(*(Text(v) for v in row))  # never markup: titles and reasons are user text
    console.print(t)


class Progress:
    """What `progress()` yields: `advance(label, n)` for steps done, `update(done, total, label)` for work
    whose size is learnt on the way (a simulation's samples). A no-op off a terminal."""

    def __init__(self, bar: Any = None, task: Any = None):
        self._bar, self._task = bar, task

    def __call__(self, label: str = "", n: int = 1) -> None:
        self.advance(label, n)

    def advance(self, label: str = "", n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n, label=label)

    def update(self, done: float, total: float | None = None, label: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, label=label)


@contextmanager
def progress(description: str, total: int | None = None, *, bar: bool | None = None) -> Iterator[Progress]:
    """A progress bar (with `total`, or `bar=True` when the total comes later through `update`), else a
    spinner with the elapsed time, on stderr for long CLI work.

    Shown only on a terminal and never in `--log-format json` (stderr is then a stream of JSON objects),
    so scripts and tests read the same output as before.
    """
    if not err.is_terminal:
        yield Progress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    elif bar:
        columns += [BarColumn(), TaskProgressColumn()]
    columns += [TimeElapsedColumn(), TextColumn("{task.fields[label]}")]
    with Bar(*columns, console=err, transient=True) as b:
        yield Progress(b, b.add_task(description, total=total, label=""))
