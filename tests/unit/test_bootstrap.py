"""scripts/bootstrap talks: one line per step with its duration, silence when all is present, a failure that names
its step and shows the log's tail (issue 16).

The quiet and verbose runs are the real script on this machine (where `make test` has just run it). The failure
run is the real script in a scratch copy of the repository with Debian's archive made unreachable: `apt-get`
and `dpkg-query` on PATH are small stand-ins (the archive is a remote service), so nothing is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bootstrap"
STEP_DONE = re.compile(r"^bootstrap: (?P<what>.+) \((?P<why>.+)\) \.\.\. done in \d+\.\d s$")


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def test_script_parses() -> None:
    assert run(["bash", "-n", str(SCRIPT)]).returncode == 0
    if shutil.which("shellcheck"):
        res = run(["shellcheck", "-S", "warning", str(SCRIPT)])
        assert res.returncode == 0, res.stdout


def test_second_run_is_silent_and_fast() -> None:
    run([str(SCRIPT)])  # whatever was missing is there afterwards
    t0 = time.monotonic()
    res = run([str(SCRIPT)])
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""
    assert took < 10, f"a bootstrap with nothing to do took {took:.1f} s"


def test_verbose_lists_every_check() -> None:
    res = run([str(SCRIPT), "-v"])
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines and all(line.startswith("bootstrap: ok: ") for line in lines)
    text = res.stdout
    for what in ("PostgreSQL", "mosquitto", "chromium", "TimescaleDB", ".venv matches requirements.lock"):
        assert what in text


@pytest.fixture
def offline_debian(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A scratch repository and a PATH on which chromium is "not installed" and installing it fails."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(SCRIPT, repo / "scripts" / "bootstrap")
    for f in ("pyproject.toml", "requirements.lock"):
        shutil.copy2(ROOT / f, repo / f)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n"
        'for last; do :; done\n'
        'case "$last" in chromium|chromium-driver) exit 1;; esac\n'
        'printf "install ok installed"\n')
    (bin_dir / "apt-get").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = update ]; then echo "Hit:1 http://deb.debian.org/debian bookworm InRelease"; exit 0; fi\n'
        'echo "E: Unable to locate package chromium (archive unreachable in this test)" >&2\n'
        "exit 100\n")
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return repo, env


def test_failure_names_the_step_and_shows_the_log_tail(offline_debian: tuple[Path, dict[str, str]]) -> None:
    repo, env = offline_debian
    res = run([str(repo / "scripts" / "bootstrap")], env=env, cwd=repo)
    assert res.returncode == 1
    out = res.stdout.splitlines()
    # the step that ran before the failure: its own line, what and why, and its duration
    done = [m for line in out if (m := STEP_DONE.match(line))]
    assert [m["what"] for m in done] == ["apt-get update"]
    # the failing step is named, on stdout where it began and on stderr with the reason
    assert re.fullmatch(r"bootstrap: installing chromium chromium-driver \(.+\) \.\.\. FAILED after \d+\.\d s", out[-1])
    assert 'step "installing chromium chromium-driver" failed: apt-get install chromium chromium-driver failed' \
        in res.stderr
    # the log's tail is shown, with the package manager's own words
    assert "E: Unable to locate package chromium" in res.stderr
    assert str(repo / ".riskwatch" / "bootstrap" / "bootstrap.log") in res.stderr
    assert not (repo / ".venv").exists()  # it stopped at the failing step
