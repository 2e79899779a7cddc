"""The public CLI end to end, on private services under a temporary data dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from core.services import LocalServices
from core.settings import MqttUrl
from tests.conftest import FIXTURES, wait_for

RISKWATCH = str(Path(sys.executable).parent / "riskwatch")


class Cli:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
        self.env["RISKWATCH_DATA_DIR"] = str(data_dir)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([RISKWATCH, *args], env=self.env, capture_output=True, text=True, timeout=180)
        if check and res.returncode != 0:
            raise AssertionError(f"riskwatch {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    c = Cli(tmp_path / "rw")
    yield c
    LocalServices(c.data_dir).destroy()


def test_services_lifecycle_and_registry(cli: Cli, tmp_path: Path) -> None:
    env_out = cli("services", "up", "--env").stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in env_out.strip().splitlines())
    assert set(exports) == {"RISKWATCH_DATA_DIR", "RISKWATCH_DB_URL", "RISKWATCH_MQTT_URL", "RISKWATCH_MQTT_HEALTH_URL"}
    db_url = exports["RISKWATCH_DB_URL"].strip("'")
    # up twice is harmless and keeps the same URLs
    assert cli("services", "up", "--env").stdout == env_out
    assert cli("services", "status").returncode == 0

    first = cli("migrate").stdout
    assert "0001_registry" in first
    assert "up to date" in cli("migrate").stdout
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert conn.execute("SELECT count(*) FROM timescaledb_information.hypertables"
                            " WHERE hypertable_name = 'readings'").fetchone() == (1,)

    out = cli("registry", "load", str(FIXTURES / "mini_site.yaml")).stdout
    assert "7 points" in out
    cli("registry", "load", str(FIXTURES / "mini_site.yaml"))  # idempotent
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM points").fetchone() == (7,)

    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "mini_site.yaml").read_text().replace("industry: cement", "industry: steel"))
    res = cli("registry", "load", str(bad), check=False)
    assert res.returncode == 2
    assert f"{bad}:11" in res.stderr and "industry" in res.stderr

    added = cli("gateway", "add", "gw-a1").stdout
    password = next(line.split()[-1] for line in added.splitlines() if "password" in line)
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT credential_hash FROM gateways WHERE id = 'gw-a1'").fetchone()
    assert stored and stored[0].startswith("$7$") and password not in stored[0]
    new_gw = cli("gateway", "add", "gw-new", "--plant", "plant-a").stdout
    assert "gw-new" in new_gw
    assert cli("gateway", "add", "gw-x", "--plant", "no-such-plant", check=False).returncode == 2

    # collector + a third-party client, through the CLI's own services
    collector = subprocess.Popen([RISKWATCH, "-v", "collect"], env=cli.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        mq = MqttUrl.parse(exports["RISKWATCH_MQTT_URL"].strip("'"))  # mqtts://…:port?cafile=<private CA>
        assert mq.tls and mq.cafile
        ts = int(time.time() * 1000)
        payload = orjson.dumps({"ts": ts, "readings": [{"tag": "TT-101", "v": 42.0}]})

        def publish() -> bool:
            r = subprocess.run(["mosquitto_pub", "-h", mq.host, "-p", str(mq.port), "--cafile", str(mq.cafile),
                                "-q", "1", "-u", "gw-a1", "-P", password,
                                "-t", "rw/v1/gw-a1/telemetry", "-m", payload.decode()], capture_output=True)
            return r.returncode == 0

        def stored_count() -> int:
            with psycopg.connect(db_url) as conn:
                return conn.execute("SELECT count(*) FROM readings").fetchone()[0]  # type: ignore[index]

        # the collector's session may not exist yet on the first publish; republishing
        # the same reading is harmless (unique key)
        wait_for(lambda: publish() and stored_count() == 1, timeout=30, interval=0.5, message="reading stored")
    finally:
        collector.terminate()
        out, _ = collector.communicate(timeout=30)
    assert collector.returncode == 0, out
    assert "readings stored" in out

    # down stops only this data dir's services
    other = LocalServices(tmp_path / "other")
    other.up()
    try:
        cli("services", "down")
        assert cli("services", "status", check=False).returncode == 3
        assert other.status() == {"postgres": True, "mosquitto": True}
    finally:
        other.destroy()


THREE_ERRORS = """\
catalog: broken
title: {zh: 错误示例, en: Broken}
version: "x"
industries: [cement]
rules:
  - id: b.one
    title: {zh: 温度高, en: Temperature high}
    basis: test
    applies: {equipment: [bag_filter], point: {quantity: temperature}}
    shape: threshold
    limits: {hi: 70, hihi: 60}
  - id: b.two
    title: {zh: 压力, en: Pressure}
    basis: test basis
    applies: {equipment: [kiln], point: {quantity: pressure}}
    shape: thresold
    limits: {lo: 1}
  - id: b.three
    title: {zh: 状态, en: State}
    basis: test basis
    applies: {point: {quantity: state}}
    shape: state
    equals: [1]
    severity: critical
"""


def test_rules_check_reports_every_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(THREE_ERRORS)
    res = subprocess.run([RISKWATCH, "rules", "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    errors = [line for line in res.stderr.splitlines() if line.startswith("error ")]
    assert len(errors) == 3, res.stderr
    # limits out of order (line 11), misspelt shape (line 16), unknown severity (line 24)
    assert [e.split(":")[1] for e in errors] == ["11", "16", "24"], errors
    assert all(str(bad) in e for e in errors)
    ok = subprocess.run([RISKWATCH, "rules", "check"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_bench_prints_latency_figures() -> None:
    res = subprocess.run([RISKWATCH, "bench", "--quick", "--only", "latency", "--json"], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    import json

    fig = json.loads(res.stdout)
    assert fig["alarm_latency_samples"] >= 50
    assert 0 < fig["alarm_latency_p50_ms"] <= fig["alarm_latency_p99_ms"]
