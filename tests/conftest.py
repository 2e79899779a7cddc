"""Shared fixtures: real PostgreSQL+TimescaleDB and real Mosquitto, private, on free ports.

A missing binary or a service that will not start is an error, never a skip.
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from core import registry
from core.db import migrate
from core.mqtt import configure
from core.services import COLLECTOR_USER, LocalMosquitto, LocalPostgres, ServicesState, free_port
from core.settings import MqttUrl
from simulators.gateway import tls_context

pytest_plugins = ["tests.alerting_fixtures"]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """One private cluster for the session; each test gets its own database (see `db_url`)."""
    data_dir = tmp_path_factory.mktemp("rw-session")
    pg_dir = (f"/var/tmp/riskwatch-pg/test-{uuid.uuid4().hex[:10]}" if os.geteuid() == 0
              else str(data_dir / "pg"))
    if os.geteuid() == 0:
        Path(pg_dir).parent.mkdir(parents=True, exist_ok=True)
        os.chmod(Path(pg_dir).parent, 0o755)
    state = ServicesState(pg_dir=pg_dir, pg_port=free_port(), pg_password=secrets.token_urlsafe(12),
                          mqtt_port=0, collector_password="")
    server = LocalPostgres(data_dir, state)
    server.init()
    server.start()
    yield server
    server.stop(mode="immediate")
    import shutil

    shutil.rmtree(pg_dir, ignore_errors=True)


@pytest.fixture
def db_url(pg: LocalPostgres) -> Iterator[str]:
    """A fresh, migrated database for this test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    yield url
    if pg.running():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """A private Mosquitto for this test: TLS only (password listener on `mqtt_port`, mutual-TLS listener on
    `mqtt_mtls_port`), anonymous refused, password file + ACL, client id bound to the username."""
    state = ServicesState(pg_dir="", pg_port=0, pg_password="", mqtt_port=free_port(),
                          collector_password=secrets.token_urlsafe(12), mqtt_mtls_port=free_port())
    m = LocalMosquitto(tmp_path, state)
    m.write_config()
    m.start()
    yield m
    m.stop()


def pub_args(broker: LocalMosquitto, *, mtls: bool = False) -> list[str]:
    """mosquitto_pub / mosquitto_sub arguments reaching this broker over TLS, verifying it with the private CA."""
    port = broker.state.mqtt_mtls_port if mtls else broker.state.mqtt_port
    return ["-h", "127.0.0.1", "-p", str(port), "--cafile", str(broker.cafile)]


def broker_tls(broker: LocalMosquitto) -> ssl.SSLContext:
    """The client TLS context every test gateway uses: the broker's certificate and host name verified."""
    return tls_context(str(broker.cafile))


def mqtt_client(broker: LocalMosquitto, user: str | None, password: str | None, *, client_id: str = "",
                protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311, clean_session: bool | None = None) -> mqtt.Client:
    """A paho client for this broker (TLS through `core.mqtt.configure`), not yet connected: `connect_to`."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                    clean_session=clean_session)
    url = MqttUrl.parse(broker.url(user or "", password or ""))
    configure(c, url if user else url.with_user("", None))
    return c


def connect_to(c: mqtt.Client, broker: LocalMosquitto, **kw: object) -> None:
    c.connect("127.0.0.1", broker.state.mqtt_port, **kw)  # type: ignore[arg-type]


def sql_one(url: str, query: str, params: tuple[object, ...] = ()) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


class Site:
    """A loaded site with issued gateway credentials, synced into the broker."""

    def __init__(self, db_url: str, broker: LocalMosquitto, path: Path):
        self.db_url = db_url
        self.broker = broker
        self.spec = registry.parse_site(path)
        self.credentials: dict[str, str] = {}
        with psycopg.connect(db_url) as conn:
            registry.upsert_site(conn, self.spec)
            for _plant, gw in self.spec.gateways():
                self.credentials[gw.id] = registry.issue_credentials(conn, gw.id)
            self.sync(conn)

    @property
    def tls(self) -> ssl.SSLContext:
        """For `simulate(..., tls=site.tls)` and GatewayPublisher: the broker's CA verified."""
        return broker_tls(self.broker)

    def sync(self, conn: psycopg.Connection, extra: list[tuple[str, str]] | None = None) -> None:
        self.broker.write_auth(registry.broker_credentials(conn) + (extra or []))
        self.broker.reload()
        time.sleep(0.2)


@pytest.fixture
def mini_site(db_url: str, broker: LocalMosquitto) -> Site:
    return Site(db_url, broker, FIXTURES / "mini_site.yaml")


class CollectorProcess:
    """`riskwatch collect` in a subprocess, so tests can SIGKILL and restart it."""

    def __init__(self, db_url: str, broker: LocalMosquitto, workdir: Path):
        self.env = {
            **os.environ,
            "RISKWATCH_DB_URL": db_url,
            "RISKWATCH_MQTT_URL": broker.url(COLLECTOR_USER),
            "RISKWATCH_DATA_DIR": str(workdir / "data"),
        }
        self.log = workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.extra_args: list[str] = []

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as f:
            f.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen([str(VENV_BIN / "riskwatch"), "-v", "collect", *self.extra_args],
                                         env=self.env,
                                         stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "MQTT connected" not in self.log.read_text().split(f"--- start {self.starts}\n")[-1]:
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"collector did not connect:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout)


@pytest.fixture
def collector(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[CollectorProcess]:
    c = CollectorProcess(db_url, broker, tmp_path)
    yield c
    if c.alive():
        c.kill()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


__all__ = ["Site", "CollectorProcess", "broker_tls", "connect_to", "mqtt_client", "pub_args", "sql_one", "wait_for",
           "replace"]
