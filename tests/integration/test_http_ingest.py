"""HTTP ingest (issue 18) against real `riskwatch serve` + `riskwatch collect` + Mosquitto (TLS) + TimescaleDB.

`serve` runs without its own collector here, so a test can stop the collector: the body goes serve → broker
(the bridge account) → collector → one transaction, and the answer waits for the collector's confirmation.
Every "stored" assertion is SQL run right after the response, never a wait: the 200 means committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from api.http import auth
from core.services import BRIDGE_USER, LocalMosquitto, render_auth
from core.tokens import GATEWAY_TOKEN_PREFIX, gateway_for_token, issue_gateway_token
from tests.conftest import FIXTURES, ROOT, VENV_BIN, CollectorProcess, Site, pub_args, sql_one, wait_for
from tests.web.test_console_browser import Server

pytestmark = pytest.mark.integration

TIMEOUT_S = 3.0


class IngestServer(Server):
    """`riskwatch serve --no-collector` with the HTTP ingest bridge's account and a short confirmation timeout."""

    def __init__(self, db_url: str, broker: LocalMosquitto, workdir: Path):
        super().__init__(db_url, broker, workdir)
        self.env.update({"RISKWATCH_MQTT_BRIDGE_URL": broker.url(BRIDGE_USER),
                         "RISKWATCH_HTTP_INGEST_TIMEOUT": str(TIMEOUT_S)})

    def start(self) -> None:
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen([str(VENV_BIN / "riskwatch"), "-v", "serve", "--port", str(self.port),
                                          "--no-collector", "--no-alerting"], env=self.env, stdout=f,
                                         stderr=subprocess.STDOUT)
        wait_for(lambda: "HTTP ingest bridge connected" in self.log.read_text(errors="replace")
                 and "ready" in self.log.read_text(errors="replace") or self.proc.poll() is not None,  # type: ignore[union-attr]
                 timeout=60, message="serve and its ingest bridge")
        assert self.proc.poll() is None, self.log.read_text()[-3000:]


@pytest.fixture
def world(mini_site: Site, collector: CollectorProcess, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """mini_site, a collector on the test catalog, serve, and ingest tokens for gw-a1, gw-b1 and gw-a-off."""
    collector.extra_args = ["--catalog", str(FIXTURES / "rules_test.yaml")]
    collector.start()
    with psycopg.connect(mini_site.db_url, autocommit=True) as conn:
        tokens = {gw: issue_gateway_token(conn, gw, "test")[0] for gw in ("gw-a1", "gw-b1", "gw-a-off")}
        _, api_admin = auth.create_token(conn, "admin", "ingest test")
        _, api_ent_a = auth.create_token(conn, "enterprise", "ent a", enterprise_id="ent-a")
    s = IngestServer(mini_site.db_url, mini_site.broker, tmp_path)
    s.start()
    yield {"site": mini_site, "collector": collector, "server": s, "tokens": tokens, "admin": api_admin,
           "ent_a": api_ent_a}
    s.stop()


def post(s: Server, token: str | None, body: bytes, **kw: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{s.base}/api/v1/ingest", content=body, headers=headers, timeout=30, **kw)


def now_ms() -> int:
    return int(time.time() * 1000)


def body(seq: int | None, readings: list[tuple[str, float]], ts: int | None = None) -> bytes:
    doc: dict[str, Any] = {"ts": ts or now_ms(), "readings": [{"tag": t, "v": v} for t, v in readings]}
    if seq is not None:
        doc["seq"] = seq
    return orjson.dumps(doc)


def count(url: str, query: str, params: tuple[object, ...] = ()) -> int:
    return int(sql_one(url, query, params))  # type: ignore[call-overload]


READINGS_OF = "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id WHERE p.gateway_id = %s"


def test_stored_when_answered_once_on_retry_and_alarm_raised(world: dict[str, Any]) -> None:
    s, url, tok = world["server"], world["site"].db_url, world["tokens"]
    t0 = now_ms() - 5_000
    first = body(1, [("TT-101", 70.5), ("CO-101", 3.0)], t0)
    r = post(s, tok["gw-a1"], first)
    assert r.status_code == 200, r.text
    assert count(url, READINGS_OF, ("gw-a1",)) == 2  # committed before the answer: no wait
    assert r.json() == {"gateway_id": "gw-a1", "seq": 1, "stored_seq": 1, "duplicate": False,
                                           "accepted": 2, "rejected": [], "unmapped_tags": []}
    again = post(s, tok["gw-a1"], first)  # a client retrying after a lost answer
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    assert count(url, READINGS_OF, ("gw-a1",)) == 2

    breach = post(s, tok["gw-a1"], body(2, [("CO-101", 30.0)], t0 + 1000))
    assert breach.status_code == 200, breach.text
    # the rule engine ran in the collector's transaction: the alarm is there with the 200
    assert sql_one(url, "SELECT state FROM alarms WHERE rule_id = 'it.co:hi'") == "unack"

    behind = post(s, tok["gw-a1"], body(1, [("TT-101", 99.0)], t0 + 2000))  # a seq reset with new data
    assert behind.status_code == 409 and behind.json()["code"] == "seq-not-increasing", behind.text
    assert behind.json()["stored_seq"] == 2
    no_seq = post(s, tok["gw-a1"], body(None, [("TT-101", 1.0)], t0 + 3000))
    assert no_seq.status_code == 422 and no_seq.json()["code"] == "missing-seq"
    assert count(url, READINGS_OF, ("gw-a1",)) == 3
    assert world["collector"].alive()


def test_the_documented_curl_works_as_written(world: dict[str, Any]) -> None:
    """The tested block of docs/http-ingest.md, run by bash with the variables its previous block sets."""
    s, url = world["server"], world["site"].db_url
    doc = (ROOT / "docs" / "http-ingest.md").read_text()
    block = doc.split("<!-- tested -->\n```sh\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "RW_API": s.base, "RW_TOKEN": world["admin"], "GW": "gw-a2", "TAG": "TT-201"}
    res = subprocess.run(["bash", "-euo", "pipefail", "-c", block], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert answer["gateway_id"] == "gw-a2" and answer["stored_seq"] == 1 and answer["accepted"] == 1
    assert count(url, READINGS_OF, ("gw-a2",)) == 1


def test_tokens_scope_the_gateway(world: dict[str, Any]) -> None:
    s, url, tok = world["server"], world["site"].db_url, world["tokens"]
    t = now_ms() - 1000
    # A's token, with B named in the query string and B's tag in the body: stored as A (quarantined tag), never B
    r = post(s, tok["gw-a1"], orjson.dumps({"gateway": "gw-b1", "seq": 5, "ts": t,
                                            "readings": [{"tag": "FT-301", "v": 12.0}]}), params={"gateway": "gw-b1"})
    assert r.status_code == 200 and r.json()["gateway_id"] == "gw-a1" and r.json()["unmapped_tags"] == ["FT-301"]
    assert count(url, READINGS_OF, ("gw-b1",)) == 0
    assert sql_one(url, "SELECT gateway_id FROM unmapped_points WHERE tag = 'FT-301'") == "gw-a1"
    assert sql_one(url, "SELECT seq FROM gateway_stored_seq WHERE gateway_id = 'gw-b1'") is None

    ok = body(1, [("FT-301", 3.0)], t)
    assert post(s, None, ok).status_code == 401
    assert post(s, GATEWAY_TOKEN_PREFIX + "x" * 43, ok).status_code == 401  # forged
    assert post(s, world["admin"], ok).status_code == 401  # an API token is not an ingest token
    assert httpx.get(f"{s.base}/api/v1/gateways", headers={"Authorization": f"Bearer {tok['gw-b1']}"},
                     timeout=10).status_code == 401  # and an ingest token is not an API token
    off = post(s, tok["gw-a-off"], body(1, [("TT-901", 3.0)], t))
    assert off.status_code == 403 and off.json()["code"] == "gateway-disabled"
    assert count(url, READINGS_OF, ("gw-a-off",)) == 0
    # the audit log keeps the refusals (a forged token is an attack), not every stored reading (telemetry)
    audited = "SELECT count(*) FROM audit_log WHERE path = '/api/v1/ingest' AND status = %s"
    assert count(url, audited, (200,)) == 0
    assert count(url, audited, (401,)) >= 3 and count(url, audited, (403,)) >= 1

    # issue over the API: the enterprise for its own gateway only; rotation stops the old token
    hdr = {"Authorization": f"Bearer {world['ent_a']}"}
    assert httpx.post(f"{s.base}/api/v1/gateways/gw-b1/http-token", headers=hdr, timeout=10).status_code == 404
    issued = httpx.post(f"{s.base}/api/v1/gateways/gw-a1/http-token", headers=hdr, timeout=10)
    assert issued.status_code == 201, issued.text
    new = issued.json()["token"]
    assert new.startswith(GATEWAY_TOKEN_PREFIX) and issued.json()["prefix"] == new[:12]
    assert post(s, tok["gw-a1"], body(6, [("TT-101", 2.0)], t)).status_code == 401
    assert post(s, new, body(6, [("TT-101", 2.0)], t)).status_code == 200
    stored = sql_one(url, "SELECT token_hash FROM gateway_http_tokens WHERE gateway_id = 'gw-a1'")
    assert isinstance(stored, str) and new not in stored and len(stored) == 64  # only its SHA-256 at rest
    # the database refuses a reserved gateway row (gateways_id_not_reserved), so the API finds none to issue for
    reserved = httpx.post(f"{s.base}/api/v1/gateways/riskwatch-http-bridge/http-token",
                          headers={"Authorization": f"Bearer {world['admin']}"}, timeout=10)
    assert reserved.status_code == 404, reserved.text
    assert sql_one(url, "SELECT count(*) FROM gateway_http_tokens WHERE gateway_id LIKE 'riskwatch%%'") == 0


DEAD_ROW = "SELECT gateway_id, topic, reason, detail, reading_index, payload FROM dead_letters"


def _mqtt_pub(site: Site, gateway: str, payload: bytes) -> None:
    res = subprocess.run(["mosquitto_pub", *pub_args(site.broker), "-q", "1", "-u", gateway,
                          "-P", site.credentials[gateway], "-t", f"rw/v1/{gateway}/telemetry", "-s"],
                         input=payload, capture_output=True, timeout=20)
    assert res.returncode == 0, res.stderr


def test_invalid_bodies_get_the_mqtt_paths_dead_letters(world: dict[str, Any]) -> None:
    s, site, tok = world["server"], world["site"], world["tokens"]
    url = site.db_url
    ts = now_ms()
    corpus: list[tuple[bytes, int, str]] = [  # whole-message faults: (bytes, HTTP status, reason)
        (b"{not json", 422, "invalid_json"),
        (b"\xff\xfe\x00garbage", 422, "invalid_utf8"),
        (b"[1, 2, 3]", 422, "bad_schema"),
        (b'{"readings": []}', 422, "no_readings"),
        (b'{"seq": 1, "ts": 1, "readings": [' + b",".join([b'{"tag":"TT-101","v":1}'] * 5001) + b"]}", 422,
         "too_many_readings"),
        (b'{"pad": "' + b"x" * (300 * 1024) + b'"}', 413, "payload_too_large"),
    ]
    mixed = orjson.dumps({"seq": 40, "ts": ts, "readings": [{"tag": "TT-101", "v": "hot"}, {"tag": "CO-101", "v": 1.0},
                                                            {"tag": "PDT-101", "v": 1.0, "ts": ts + 3_600_000}]})
    for payload, status, reason in corpus:
        before = count(url, "SELECT count(*) FROM dead_letters")
        r = post(s, tok["gw-a1"], payload)
        assert r.status_code == status and r.json()["code"] == reason, (reason, r.text[:300])
        assert r.json()["dead_lettered"] is True and "。" in r.json()["detail"]  # Chinese first
        assert count(url, "SELECT count(*) FROM dead_letters") == before + 1  # exactly one, committed
    r = post(s, tok["gw-a1"], mixed)
    assert r.status_code == 200, r.text
    assert [x["reason"] for x in r.json()["rejected"]] == ["bad_value_type", "timestamp_out_of_range"]
    assert count(url, "SELECT count(*) FROM dead_letters") == len(corpus) + 2  # committed with the 200
    with psycopg.connect(url) as conn:
        http_rows = conn.execute(DEAD_ROW + " ORDER BY id").fetchall()
    # the same bytes through MQTT (mosquitto_pub, the gateway's own login) give the same rows
    for payload, _, _ in corpus:
        _mqtt_pub(site, "gw-a1", payload)
    _mqtt_pub(site, "gw-a1", mixed)
    wait_for(lambda: count(url, "SELECT count(*) FROM dead_letters") == 2 * len(http_rows), message="MQTT letters")
    with psycopg.connect(url) as conn:
        mqtt_rows = conn.execute(DEAD_ROW + " WHERE id > %s ORDER BY id", (max_id(conn, len(http_rows)),)).fetchall()
    norm = sorted((tuple(x[:5]), bytes(x[5])) for x in http_rows)
    assert norm == sorted((tuple(x[:5]), bytes(x[5])) for x in mqtt_rows)
    assert count(url, READINGS_OF, ("gw-a1",)) == 1  # CO-101 of `mixed`, once
    too_big = post(s, tok["gw-a1"], b"x" * (2 * 1024 * 1024))  # over the API's body limit: refused unread
    assert too_big.status_code == 413 and too_big.json()["code"] == "body-too-large"
    assert count(url, "SELECT count(*) FROM dead_letters") == 2 * len(http_rows)


def max_id(conn: psycopg.Connection, n: int) -> int:
    """The id of the n-th dead letter (the last one HTTP wrote)."""
    row = conn.execute("SELECT id FROM dead_letters ORDER BY id OFFSET %s LIMIT 1", (n - 1,)).fetchone()
    assert row is not None
    return int(row[0])


def test_collector_down_is_503_then_a_retry_stores_once(world: dict[str, Any]) -> None:
    s, url, tok, col = world["server"], world["site"].db_url, world["tokens"], world["collector"]
    assert col.stop() == 0  # its persistent session keeps what the broker is given meanwhile
    payload = body(7, [("TT-101", 55.0), ("PDT-101", 900.0)], now_ms() - 2000)
    t0 = time.monotonic()
    r = post(s, tok["gw-a1"], payload)
    took = time.monotonic() - t0
    assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
    assert r.json()["may_be_stored"] is True and TIMEOUT_S - 0.5 < took < TIMEOUT_S + 3
    assert count(url, READINGS_OF, ("gw-a1",)) == 0
    col.start()
    retry = post(s, tok["gw-a1"], payload)
    assert retry.status_code == 200, retry.text
    assert count(url, READINGS_OF, ("gw-a1",)) == 2
    assert post(s, tok["gw-a1"], payload).json()["duplicate"] is True
    time.sleep(1.0)  # both published copies have reached the collector by now
    assert count(url, READINGS_OF, ("gw-a1",)) == 2
    assert count(url, "SELECT count(*) FROM dead_letters") == 0


def test_gateway_tokens_at_rest(db_url: str) -> None:
    """Issue / verify / rotate without a server: one per gateway, reserved (checked before the database, which
    refuses such rows anyway) and unknown ids refused."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO enterprises (id, name) VALUES ('e1', '企业')")
        conn.execute("INSERT INTO plants (id, enterprise_id, name, industry) VALUES ('p1', 'e1', '厂', 'cement')")
        conn.execute("INSERT INTO gateways (id, plant_id) VALUES ('gw-1', 'p1')")
        t1, prefix = issue_gateway_token(conn, "gw-1", "tester")
        assert t1.startswith("rwg_") and prefix == t1[:12] and len(t1) == 47
        assert gateway_for_token(conn, t1) == auth_gw("gw-1", True)
        t2, _ = issue_gateway_token(conn, "gw-1", "tester")
        assert gateway_for_token(conn, t1) is None and gateway_for_token(conn, t2) == auth_gw("gw-1", True)
        assert conn.execute("SELECT count(*) FROM gateway_http_tokens").fetchone() == (1,)
        assert gateway_for_token(conn, "rwt_" + t2[4:]) is None  # an API-token spelling of it
        assert gateway_for_token(conn, t2 + "x") is None
        conn.execute("UPDATE gateways SET enabled = false WHERE id = 'gw-1'")
        assert gateway_for_token(conn, t2) == auth_gw("gw-1", False)
        for bad in ("RiskWatch-x", "no-such"):
            with pytest.raises(auth.TokenError):
                issue_gateway_token(conn, bad, "tester")


def auth_gw(gateway_id: str, enabled: bool) -> object:
    from core.tokens import GatewayToken

    return GatewayToken(gateway_id, enabled)


def test_bridge_account_in_the_broker_files() -> None:
    """The bridge writes telemetry and reads confirmations, nothing else; a gateway cannot take its name."""
    h = "$7$101$abc$def"
    out = render_auth([("gw-1", h), (BRIDGE_USER, h)], h, h, bridge_hash=h)
    assert out.passwd.count(f"{BRIDGE_USER}:") == 1 and BRIDGE_USER in out.refused
    block = out.acl.split(f"user {BRIDGE_USER}\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert block == ["topic write rw/v1/+/telemetry", "topic read rw/v1/+/stored"]
    assert BRIDGE_USER not in render_auth([("gw-1", h)], h, h).passwd
