"""Issue #11 item 1, run as a hostile enterprise would: the collector's account cannot be taken.

Before the fix an enterprise token could register the gateway `riskwatch-collector` and issue credentials
for it: the broker's password file then held two `riskwatch-collector` lines, Mosquitto took the
enterprise's, and that enterprise read every enterprise's telemetry while the real collector was refused.
Here a real collector ingests a real gateway's stream through a real broker while the enterprise tries
every reserved or unsafe id through the API; everything published before, during and after is stored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from api.http.app import create_app
from core import registry
from core.clock import FakeClock
from core.errors import ConfigError
from core.mqtt import configure
from core.services import COLLECTOR_USER
from core.settings import MqttUrl, Settings
from tests.conftest import CollectorProcess, Site, sql_one, wait_for
from tests.fix_api import T0, make_tokens

pytestmark = pytest.mark.integration

HOSTILE_IDS = ["riskwatch-collector", "RISKWATCH-collector", "RiskWatch-Collector", "riskwatch-health", "riskwatch",
               "riskwatch-anything", "$SYS", "$share", "a/b", "#", "+", "rw/v1/#", "gw a", "gw:a", "",
               "riskwatch-collector ", "x" * 65]


@dataclass
class SyncedApi:
    client: TestClient
    tokens: dict[str, str]
    syncs: list[list[str]]

    def call(self, method: str, path: str, role: str, **kw: object) -> object:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {self.tokens[role]}"},
                                   **kw)  # type: ignore[arg-type]


@pytest.fixture
def synced_api(mini_site: Site, tmp_path: Path) -> Iterator[SyncedApi]:
    """The API on the mini site's database, writing the real broker's password file on every change, as
    `riskwatch serve` does with its private broker."""
    syncs: list[list[str]] = []

    def sync(conn: psycopg.Connection) -> None:
        creds = registry.broker_credentials(conn)
        syncs.append([gw for gw, _ in creds])
        mini_site.sync(conn)

    app = create_app(Settings(data_dir=tmp_path / "api", db_url=mini_site.db_url), clock=FakeClock(T0),
                     broker_sync=sync)
    with TestClient(app) as client:
        yield SyncedApi(client, make_tokens(mini_site.db_url), syncs)


def passwd_users(site: Site) -> list[str]:
    return [line.split(":", 1)[0] for line in site.broker.passwd.read_text().splitlines() if line.strip()]


class Stream:
    """gw-a1 publishing TT-101 at QoS1 through the real broker, counting what the broker acknowledged."""

    def __init__(self, site: Site):
        url = MqttUrl.parse(site.broker.url("gw-a1", site.credentials["gw-a1"]))
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-a1", protocol=mqtt.MQTTv311)
        configure(self.client, url)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connected.set() if not rc.is_failure else None
        self.client.connect(url.host, url.port)
        self.client.loop_start()
        assert self.connected.wait(10), "gw-a1 could not log in"
        self.published = 0
        self.t0_ms = int(time.time() * 1000) - 60_000
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, n: int = 1) -> None:
        for _ in range(n):
            seq = self.published + 1
            payload = orjson.dumps({"ts": self.t0_ms + seq * 10, "seq": seq,
                                    "readings": [{"tag": "TT-101", "v": float(seq)}]})
            info = self.client.publish("rw/v1/gw-a1/telemetry", payload, qos=1)
            info.wait_for_publish(10)
            assert info.is_published(), f"message {seq} not acknowledged by the broker"
            self.published = seq

    def start(self) -> None:
        def run() -> None:
            while not self._stop.is_set():
                self.publish()
                time.sleep(0.02)
        self._thread = threading.Thread(target=run, name="gw-a1-stream", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(20)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def stored(site: Site) -> int:
    return int(sql_one(site.db_url, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id"  # type: ignore[arg-type]
                       " WHERE p.gateway_id = 'gw-a1' AND p.tag = 'TT-101'"))


def test_enterprise_cannot_take_a_reserved_id_while_ingestion_continues(
        mini_site: Site, collector: CollectorProcess, synced_api: SyncedApi) -> None:
    collector.start()
    stream = Stream(mini_site)
    try:
        stream.publish(20)  # before
        wait_for(lambda: stored(mini_site) == 20, message="the first 20 readings")
        stream.start()  # during
        for gid in HOSTILE_IDS:
            r = synced_api.call("POST", "/api/v1/gateways", "ent_a", json={"id": gid, "plant_id": "plant-a"})
            assert r.status_code == 422, (gid, r.status_code, r.text)  # type: ignore[attr-defined]
            problem = r.json()  # type: ignore[attr-defined]
            assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
            assert problem["code"] in ("reserved-id", "invalid-id"), (gid, problem)
            assert problem["title"] == "网关编号不可用 Gateway id not allowed"
            assert problem["detail"].startswith("网关编号"), problem  # Chinese first, then English
            if gid.lower().startswith("riskwatch") or gid.startswith("$"):
                assert problem["code"] == "reserved-id", (gid, problem)
            creds = synced_api.call("POST", f"/api/v1/gateways/{quote(gid, safe='')}/credentials", "ent_a")
            assert creds.status_code in (404, 422), (gid, creds.status_code, creds.text)  # type: ignore[attr-defined]
            # the bureau cannot register one either: the ids are the service's, whoever asks
            r = synced_api.call("POST", "/api/v1/gateways", "bureau", json={"id": gid, "plant_id": "plant-a"})
            assert r.status_code == 422, (gid, r.text)  # type: ignore[attr-defined]
        # an ordinary gateway still registers and gets credentials: the broker files are rewritten mid-stream
        ok = synced_api.call("POST", "/api/v1/gateways", "ent_a", json={"id": "gw-a-new", "plant_id": "plant-a"})
        assert ok.status_code == 201, ok.text  # type: ignore[attr-defined]
        issued = synced_api.call("POST", "/api/v1/gateways/gw-a-new/credentials", "ent_a")
        assert issued.status_code == 201, issued.text  # type: ignore[attr-defined]
        time.sleep(1.0)
        stream.stop()
        stream.publish(20)  # after
        wait_for(lambda: stored(mini_site) == stream.published, timeout=30,
                 message=f"all {stream.published} readings stored")
    finally:
        stream.stop()
        stream.close()
    assert stream.published > 40  # the stream really ran while the attacks went on
    assert stored(mini_site) == stream.published
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM gateways WHERE starts_with(lower(id), 'riskwatch')") == 0
    users = passwd_users(mini_site)
    assert len(users) == len(set(users)), users  # never two lines for one user
    assert users.count(COLLECTOR_USER) == 1 and "gw-a-new" in users
    assert not [u for u in users if registry.check_gateway_id(u) is not None and not u.startswith("riskwatch-")]
    assert synced_api.syncs and all(not gw.lower().startswith("riskwatch") for s in synced_api.syncs for gw in s)
    assert collector.alive() and collector.stop() == 0


def test_a_reserved_row_from_before_the_fix_never_reaches_the_broker(
        mini_site: Site, synced_api: SyncedApi, caplog: pytest.LogCaptureFixture) -> None:
    """Defence in depth: a `riskwatch-collector` row that is already in the database (inserted before ids
    were checked) gets no new credential from the CLI path or the API, and its old one is left out of the
    password file with a warning."""
    with psycopg.connect(mini_site.db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE gateways DROP CONSTRAINT gateways_id_not_reserved")  # as before migration 0008
        conn.execute("INSERT INTO gateways (id, plant_id, credential_hash)"
                     " VALUES ('riskwatch-collector', 'plant-a', %s)", (registry.mosquitto_hash("stolen"),))
        with pytest.raises(ConfigError, match="reserved"):
            registry.issue_credentials(conn, "riskwatch-collector")
        with pytest.raises(ConfigError, match="reserved"):
            registry.issue_credentials(conn, "RiskWatch-2", "plant-a")  # `riskwatch gateway add … --plant`
        with caplog.at_level("WARNING", logger="riskwatch.registry"):
            creds = registry.broker_credentials(conn)
        assert "riskwatch-collector" not in [gw for gw, _ in creds]
        assert "riskwatch-collector" in caplog.text and "left out" in caplog.text
    r = synced_api.call("POST", "/api/v1/gateways/riskwatch-collector/credentials", "ent_a")
    assert r.status_code == 422 and r.json()["code"] == "reserved-id", r.text  # type: ignore[attr-defined]
    with psycopg.connect(mini_site.db_url) as conn:
        mini_site.sync(conn)
    users = passwd_users(mini_site)
    assert users.count(COLLECTOR_USER) == 1 and len(users) == len(set(users))
    assert sql_one(mini_site.db_url, "SELECT credential_hash FROM gateways WHERE id = 'riskwatch-collector'") \
        is not None  # the old hash is still there, but only the service's own line reaches the broker
