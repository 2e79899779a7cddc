"""Collector against real Mosquitto and TimescaleDB: third-party clients, bad input, security."""

from __future__ import annotations

import json
import subprocess
import time

import orjson
import psycopg
import pytest

from core.services import mosquitto_hash
from tests.conftest import CollectorProcess, Site, connect_to, mqtt_client, pub_args, sql_one, wait_for

pytestmark = pytest.mark.integration


def pub(site: Site, gateway: str, payload: bytes | str, *, topic: str | None = None,
        password: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """Publish with the third-party mosquitto_pub client, QoS1, over TLS (the private CA)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return subprocess.run(
        ["mosquitto_pub", *pub_args(site.broker), "-q", "1",
         "-u", gateway, "-P", password if password is not None else site.credentials[gateway],
         "-t", topic or f"rw/v1/{gateway}/telemetry", "-s"],
        input=data, capture_output=True, timeout=20,
    )


def now_ms() -> int:
    return int(time.time() * 1000)


def test_mosquitto_pub_reading_is_stored(mini_site: Site, collector: CollectorProcess) -> None:
    collector.start()
    ts = now_ms()
    res = pub(mini_site, "gw-a1", json.dumps({"ts": ts, "seq": 1, "readings": [{"tag": "TT-101", "v": 71.2}]}))
    assert res.returncode == 0, res.stderr
    rfc3339 = time.strftime("%Y-%m-%dT%H:%M:%S.5Z", time.gmtime())
    bare = pub(mini_site, "gw-a2", json.dumps({"tag": "TT-201", "v": 850.5, "ts": rfc3339}))
    assert bare.returncode == 0, bare.stderr
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 2, message="2 readings")
    with psycopg.connect(mini_site.db_url) as conn:
        rows = conn.execute(
            "SELECT p.tag, r.value, r.quality, extract(epoch FROM r.time) FROM readings r"
            " JOIN points p ON p.id = r.point_id ORDER BY p.tag").fetchall()
    assert rows[0][0] == "TT-101" and rows[0][1] == 71.2 and rows[0][2] == 0
    assert float(rows[0][3]) == pytest.approx(ts / 1000, abs=1e-3)
    assert rows[1][0] == "TT-201" and rows[1][1] == 850.5
    assert float(rows[1][3]) % 1 == pytest.approx(0.5)
    assert collector.stop() == 0


def test_malformed_corpus_is_dead_lettered_and_valid_readings_kept(
    mini_site: Site, collector: CollectorProcess
) -> None:
    collector.start()
    ts = now_ms()
    week = 7 * 24 * 3600 * 1000
    # (payload, expected whole-message reason or None, expected per-reading reasons)
    corpus: list[tuple[bytes, str | None, list[str]]] = [
        (b"{not json", "invalid_json", []),
        (b"\xff\xfe\x00garbage", "invalid_utf8", []),
        (b"[1, 2, 3]", "bad_schema", []),
        (b'{"readings": "TT-101"}', "bad_schema", []),
        (b'{"readings": []}', "no_readings", []),
        (b'{"hello": 1}', "bad_schema", []),
        (b'{"ts": 1, "readings": [' + b",".join([b'{"tag":"TT-101","v":1}'] * 5001) + b"]}", "too_many_readings", []),
        (b'{"pad": "' + b"x" * (300 * 1024) + b'"}', "payload_too_large", []),
        # mixed messages: the good reading of each survives
        (orjson.dumps({"ts": ts, "readings": [{"tag": "TT-101", "v": "hot"}, {"tag": "CO-101", "v": 10.0}]}),
         None, ["bad_value_type"]),
        (f'{{"ts": {ts + 1}, "readings": [{{"tag": "TT-101", "v": NaN}}, {{"tag": "CO-101", "v": Infinity}},'
         f' {{"tag": "PDT-101", "v": 1180}}]}}'.encode(), None, ["non_finite_value", "non_finite_value"]),
        (orjson.dumps({"readings": [{"tag": "TT-101", "v": 1.0, "ts": ts - week - 60_000},
                                    {"tag": "CO-101", "v": 1.0, "ts": ts + 3_600_000},
                                    {"tag": "PDT-101", "v": 1.0, "ts": ts + 2}]}),
         None, ["timestamp_out_of_range", "timestamp_out_of_range"]),
        (orjson.dumps({"readings": [{"tag": "TT-101", "v": 1.0, "ts": "yesterday"},
                                    {"tag": "TT-101", "v": 2.0},
                                    {"tag": "TT-101", "v": 3.0, "ts": ts + 3, "q": "excellent"},
                                    {"tag": "TT-101", "v": True, "ts": ts + 4},
                                    {"tag": 7, "v": 1.0, "ts": ts + 5},
                                    "TT-101",
                                    {"tag": "TT-101", "v": 4.0, "ts": ts + 6, "q": "uncertain"}]}),
         None, ["bad_timestamp", "missing_timestamp", "bad_quality", "bad_value_type", "bad_tag", "bad_schema"]),
        (orjson.dumps({"ts": ts + 7, "readings": [{"tag": "NO-SUCH-TAG", "v": 5.0}, {"tag": "TT-101", "v": 5.0}]}),
         None, []),
    ]
    for payload, _, _ in corpus:
        res = pub(mini_site, "gw-a1", payload)
        assert res.returncode == 0, res.stderr
    expected_readings = 1 + 1 + 1 + 1 + 1  # CO-101, PDT-101, PDT-101(+2), TT-101(+6), TT-101(+7)
    expected_dead = sum(1 for _, r, _ in corpus if r) + sum(len(rs) for _, _, rs in corpus)
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM dead_letters") == expected_dead
             and sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == expected_readings,
             message="dead letters and readings")
    with psycopg.connect(mini_site.db_url) as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dead_letters"))
        unmapped = conn.execute("SELECT gateway_id, tag, count, last_value FROM unmapped_points").fetchall()
        uncertain = conn.execute("SELECT value FROM readings WHERE quality = 1").fetchall()
        partial = conn.execute(
            "SELECT reading_index, payload FROM dead_letters WHERE reason = 'bad_value_type' ORDER BY id LIMIT 1"
        ).fetchone()
    want = sorted([r for _, r, _ in corpus if r] + [x for _, _, rs in corpus for x in rs])
    assert reasons == want
    assert unmapped == [("gw-a1", "NO-SUCH-TAG", 1, 5.0)]
    assert uncertain == [(4.0,)]
    assert partial is not None and partial[0] == 0 and b'"hot"' in bytes(partial[1])
    # the collector survived all of it and still stores
    assert collector.alive()
    pub(mini_site, "gw-a1", orjson.dumps({"ts": ts + 100, "readings": [{"tag": "TT-101", "v": 1.0}]}))
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == expected_readings + 1)


def test_unknown_and_disabled_gateways_are_dead_lettered(mini_site: Site, collector: CollectorProcess) -> None:
    # A broker account the registry does not know (e.g. removed from the registry
    # while its credentials lingered), and a gateway disabled in the registry
    # whose broker account has not been revoked yet: the collector refuses both.
    with psycopg.connect(mini_site.db_url) as conn:
        conn.execute("UPDATE gateways SET enabled = false WHERE id = 'gw-a2'")
        conn.commit()
        mini_site.sync(conn, extra=[("gw-ghost", mosquitto_hash("ghost-pw")),
                                    ("gw-a2", mosquitto_hash(mini_site.credentials["gw-a2"]))])
    collector.start()
    ts = now_ms()
    assert pub(mini_site, "gw-ghost", orjson.dumps({"ts": ts, "readings": [{"tag": "TT-101", "v": 1}]}),
               password="ghost-pw").returncode == 0
    assert pub(mini_site, "gw-a2", orjson.dumps({"ts": ts, "readings": [{"tag": "TT-201", "v": 1}]})).returncode == 0
    assert pub(mini_site, "gw-a1", orjson.dumps({"ts": ts, "readings": [{"tag": "TT-101", "v": 1}]})).returncode == 0
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM dead_letters") == 2
             and sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 1)
    with psycopg.connect(mini_site.db_url) as conn:
        rows = sorted(conn.execute("SELECT gateway_id, reason FROM dead_letters").fetchall())
    assert rows == [("gw-a2", "gateway_disabled"), ("gw-ghost", "unknown_gateway")]


def _connect_rc(site: Site, user: str | None, password: str | None) -> int:
    """The CONNACK reason code a fresh client gets (0 = accepted)."""
    result: dict[str, int] = {}
    c = mqtt_client(site.broker, user, password, client_id=f"probe-{time.monotonic_ns()}")
    c.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc.value)
    connect_to(c, site.broker)
    deadline = time.monotonic() + 10
    while "rc" not in result and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    assert "rc" in result, "no CONNACK"
    return result["rc"]


def test_broker_security(mini_site: Site, collector: CollectorProcess) -> None:
    collector.start()
    assert _connect_rc(mini_site, "gw-a1", mini_site.credentials["gw-a1"]) == 0
    assert _connect_rc(mini_site, "gw-a1", "wrong-password") != 0
    assert _connect_rc(mini_site, None, None) != 0  # anonymous
    assert _connect_rc(mini_site, "gw-a-off", "anything") != 0  # disabled: no broker account
    assert pub(mini_site, "gw-a1", b"{}", password="wrong-password").returncode != 0

    # The collector watches everything below rw/v1/ and stores what it gets: it is the witness. (A separate
    # watcher under the collector's account would take over the collector's session: the broker binds client
    # ids to usernames.) The own-topic message is sent after the cross-topic one, on a new connection each,
    # so once it is stored the other would have been too.
    ts = now_ms()
    # gw-a1 publishes under gw-a2's topic: the broker drops it.
    assert pub(mini_site, "gw-a1", orjson.dumps({"ts": ts, "readings": [{"tag": "TT-201", "v": 9}]}),
               topic="rw/v1/gw-a2/telemetry").returncode == 0
    own = orjson.dumps({"ts": ts, "readings": [{"tag": "TT-101", "v": 9}]})
    assert pub(mini_site, "gw-a1", own).returncode == 0
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 1, message="own-topic message")
    time.sleep(0.5)
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM dead_letters") == 0
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 1)
    assert sql_one(mini_site.db_url, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id"
                                     " WHERE p.tag = 'TT-201'") == 0
    log_text = collector.log.read_text()
    assert "***" in log_text and mini_site.broker.state.collector_password not in log_text
