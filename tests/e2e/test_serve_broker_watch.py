"""`riskwatch serve` on the private services supervises the private broker: killed (Mosquitto 2.0.11 once
segfaulted while its password file was reloaded), it is started again, /healthz says it was down and then that
it was restarted, and the collector connects again and stores what gateways send afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from core.services import LocalServices, free_port
from tests.conftest import FIXTURES, sql_one, wait_for
from tests.e2e.test_cli import RISKWATCH, Cli, cli  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_serve_restarts_a_dead_private_broker_and_healthz_says_so(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    cli("services", "up")
    cli("registry", "load", str(FIXTURES / "mini_site.yaml"))
    secret = next(line.split()[-1] for line in cli("gateway", "add", "gw-a1").stdout.splitlines()
                  if line.strip().startswith("password"))
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as f:
        proc = subprocess.Popen([RISKWATCH, "-v", "serve", "--port", str(port), "--no-alerting"], env=cli.env,
                                stdout=f, stderr=subprocess.STDOUT)
    s = LocalServices(cli.data_dir)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "MQTT connected" in log.read_text(errors="replace"), timeout=60, message="serve ready")

        def health() -> dict:  # type: ignore[type-arg]
            try:
                return httpx.get(f"{base}/healthz", timeout=5).json()  # type: ignore[no-any-return]
            except httpx.HTTPError:
                return {}

        wait_for(lambda: health().get("status") == "ok", timeout=30, message="healthz ok")
        body = health()
        assert body["checks"]["mosquitto"]["ok"] and body["checks"]["broker"]["ok"]
        old = s.mqtt.pid()
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: s.mqtt.running() and s.mqtt.pid() != old, timeout=20, message="the broker restarted")
        wait_for(lambda: "restarted 1 time" in (health().get("checks", {}).get("mosquitto", {}).get("detail") or ""),
                 timeout=20, message="healthz reports the restart")
        wait_for(lambda: health().get("status") == "ok", timeout=60, message="healthz ok again")
        # the collector is back (connected and subscribed again): a reading published now is stored
        wait_for(lambda: log.read_text(errors="replace").count("MQTT connected") >= 2, timeout=30,
                 message="the collector reconnected")
        time.sleep(1.0)  # its SUBSCRIBE follows the CONNACK
        db_url = s.db_url
        ts = int(time.time() * 1000)
        pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(s.state.mqtt_port), "--cafile", str(s.mqtt.cafile),
               "-i", "gw-a1", "-u", "gw-a1", "-P", secret, "-q", "1", "-t", "rw/v1/gw-a1/telemetry",
               "-m", f'{{"ts": {ts}, "readings": [{{"tag": "TT-101", "v": 42.5}}]}}']
        wait_for(lambda: subprocess.run(pub, capture_output=True, timeout=20).returncode == 0, timeout=30,
                 message="publish after the restart")
        wait_for(lambda: sql_one(db_url, "SELECT count(*) FROM readings WHERE value = 42.5") == 1, timeout=30,
                 message="the reading stored after the broker restart")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
