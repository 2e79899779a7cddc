"""Long CLI work shows a progress bar on a terminal, and nothing of it when the output is a pipe or a file.

The commands run under a real pseudo-terminal (`pty.fork`), as a newcomer's shell would run them, against
private services under a temporary data dir.
"""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import time

from core.registry import parse_site
from simulators.run import default_site_path
from tests.conftest import FIXTURES
from tests.e2e.test_cli import RISKWATCH, Cli, cli  # noqa: F401  (the fixture)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def in_terminal(cli: Cli, *args: str, timeout_s: float = 120) -> tuple[int, str]:  # noqa: F811
    """Run `riskwatch ARGS` with stdin/stdout/stderr on a pseudo-terminal; its exit code and everything it drew."""
    env = {**cli.env, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else
        os.execve(RISKWATCH, [RISKWATCH, *args], env)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while True:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"riskwatch {' '.join(args)} still running after {timeout_s:g} s")
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def test_registry_load_and_retention_draw_bars_on_a_terminal_and_nothing_into_a_pipe(cli: Cli) -> None:  # noqa: F811
    site_file = FIXTURES / "mini_site.yaml"
    n_points = len(parse_site(site_file).points())
    cli("services", "up")

    code, drawn = in_terminal(cli, "registry", "load", str(site_file))
    assert code == 0, drawn
    assert "载入 loading mini_site.yaml (points)" in drawn, drawn
    assert f"{n_points}/{n_points}" in drawn, drawn  # the bar counted every point
    assert f"{n_points} points" in drawn

    piped = cli("registry", "load", str(site_file))
    assert "loading" not in piped.stderr and f"{n_points}/{n_points}" not in piped.stderr + piped.stdout
    assert f"{n_points} points" in piped.stdout

    code, drawn = in_terminal(cli, "retention", "run", "--dry-run")
    assert code == 0, drawn
    assert "保留期清理 retention (dry run)" in drawn and "3/3" in drawn, drawn
    assert "3/3" not in cli("retention", "run", "--dry-run").stderr


def test_simulate_draws_a_bar_that_reaches_the_end(cli: Cli) -> None:  # noqa: F811
    cli("services", "up")
    cli("registry", "load", str(default_site_path()))
    code, drawn = in_terminal(cli, "simulate", "--duration", "5", "--backfill")
    assert code == 0, drawn
    assert "模拟 simulating 5 s" in drawn and "100%" in drawn, drawn
    assert re.search(r"\d+ readings sent", drawn), drawn
    assert "all acknowledged" in drawn


def test_bench_counts_its_parts_on_a_terminal_and_names_unknown_ones(cli: Cli) -> None:  # noqa: F811
    bad = cli("bench", "--only", "db,nope", check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr and "grafana" in bad.stderr and "scale" in bad.stderr
    code, drawn = in_terminal(cli, "bench", "--quick", "--only", "db", timeout_s=300)
    assert code == 0, drawn
    assert "bench db (parts)" in drawn and "1/1" in drawn, drawn
    assert "DB ceiling" in drawn
