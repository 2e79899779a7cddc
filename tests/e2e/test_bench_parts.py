"""Issue 15: the bench's C-client broker ceiling and its `scale` part, run as the lead runs them.

`riskwatch bench --quick --only broker,scale --json` on its own private services (real Mosquitto with TLS,
real PostgreSQL/TimescaleDB, real collectors): the C drain must receive every message the C publishers had
acknowledged, in both modes, and every scale run must store exactly what it sent, with the leases spreading
the six gateways 6 / 3+3 / 2+2+2. A missing `mosquitto_pub`/`mosquitto_sub` or service fails the test.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

RISKWATCH = str(Path(sys.executable).parent / "riskwatch")


def test_broker_ceiling_with_c_clients_and_scale_with_one_to_three_collectors() -> None:
    res = subprocess.run([RISKWATCH, "bench", "--quick", "--only", "broker,scale", "--json"], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    fig = json.loads(res.stdout)
    assert fig["failures"] == []
    for mode in ("prefilled", "live"):
        assert fig[f"broker_{mode}_received"] == 20_000, mode
    assert fig["broker_msgs_per_s"] > 0 and fig["broker_live_msgs_per_s"] > 0
    for k, spread in ((1, [6]), (2, [3, 3]), (3, [2, 2, 2])):
        run = fig[f"scale_{k}"]
        assert run["sent"] > 0 and run["stored"] == run["sent"], (k, run)
        assert sorted(run["held"].values()) == spread, (k, run["held"])
        assert run["rate"] > 0 and set(run["cores"]) >= {"postgres", "broker", "machine"}


def test_a_failed_check_makes_the_bench_exit_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's contract for a part's failure (an undetected breach, a lost reading): the figures are printed,
    then exit 1. The measured run is replaced by its result here: only the CLI's handling is under test."""
    import typer
    from typer.testing import CliRunner

    import api.run.simulate as simulate
    from api.cli import bench as bench_cli
    from simulators.bench.harness import Figures

    fig = Figures()
    fig.add("alarm_latency_p50_ms", "p50", 12.0, "ms")
    fig.failures.append("latency: 1 of 60 breaches not detected: bench-gw-00/T00000 at 10:00:00.000Z")
    monkeypatch.setattr(simulate, "bench", lambda *a, **k: fig)
    app = typer.Typer()
    bench_cli.register(app)
    app.command("noop")(lambda: None)  # two commands: typer keeps `bench` a sub-command
    out = CliRunner().invoke(app, ["bench", "--only", "latency", "--json"])
    assert out.exit_code == 1, out.output
    assert json.loads(out.stdout)["failures"] == fig.failures
    table = CliRunner().invoke(app, ["bench", "--only", "latency"])
    assert table.exit_code == 1 and "p50" in table.stdout
    assert "FAILED" in table.output and "bench-gw-00/T00000" in table.output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_bench_stopped_by_a_signal_stops_its_private_services(sig: signal.Signals) -> None:
    """`timeout riskwatch bench`, a closed terminal or a CI runner giving up used to leave the bench's private
    PostgreSQL and Mosquitto running (Python's default SIGTERM/SIGHUP runs no `finally`). Stopped in its db part,
    the bench must exit with 128 + the signal and leave nothing running on its scratch dir."""
    from core.services import LocalServices

    p = subprocess.Popen([RISKWATCH, "bench", "--quick", "--only", "db"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    scratch: Path | None = None
    seen: list[str] = []
    try:
        assert p.stdout is not None
        for line in p.stdout:
            seen.append(line)
            if "scratch dir:" in line:
                scratch = Path(line.split("scratch dir:")[1].split()[0])
            if "binary COPY" in line:
                break
        assert scratch is not None, "".join(seen)[-2000:]
        services = LocalServices(scratch / "data")
        assert services.status() == {"postgres": True, "mosquitto": True}
        p.send_signal(sig)
        rc = p.wait(timeout=120)
        assert rc == 128 + sig, "".join(seen)[-2000:]
        assert services.status() == {"postgres": False, "mosquitto": False}
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if scratch is not None:
            LocalServices(scratch / "data").destroy()
            shutil.rmtree(scratch, ignore_errors=True)
