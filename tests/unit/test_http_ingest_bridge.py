"""The HTTP ingest bridge's own decisions (issue 18): settings, confirmations followed, when a wait ends."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from api.http.ingest_bridge import DEFAULT_TIMEOUT_S, BridgeSettings, BridgeUnavailable, IngestBridge
from core.errors import ConfigError

URL = "mqtts://riskwatch-http-bridge:pw@127.0.0.1:1?cafile=/nonexistent"


def bridge(timeout: float = 2.0) -> IngestBridge:
    return IngestBridge(BridgeSettings.from_env({"RISKWATCH_MQTT_BRIDGE_URL": URL,
                                                 "RISKWATCH_HTTP_INGEST_TIMEOUT": str(timeout)}))


def stored(b: IngestBridge, topic: str, payload: bytes) -> None:
    msg = mqtt.MQTTMessage(topic=topic.encode())
    msg.payload = payload
    b._on_message(None, None, msg)  # type: ignore[arg-type]


def test_settings() -> None:
    s = BridgeSettings.from_env({}, None)
    assert s.url is None and s.timeout_s == DEFAULT_TIMEOUT_S
    s = BridgeSettings.from_env({}, URL)
    assert s.url is not None and s.url.username == "riskwatch-http-bridge"
    assert BridgeSettings.from_env({"RISKWATCH_MQTT_BRIDGE_URL": URL}, "mqtt://other@h:1").url == s.url
    for bad in ("soon", "0", "1e9"):
        with pytest.raises(ConfigError):
            BridgeSettings.from_env({"RISKWATCH_HTTP_INGEST_TIMEOUT": bad}, URL)


def test_confirmations_only_rise_and_only_from_stored_topics() -> None:
    b = bridge()
    stored(b, "rw/v1/gw-1/stored", b'{"seq": 5, "ts": 1}')
    stored(b, "rw/v1/gw-1/stored", b'{"seq": 3}')  # never lowered
    stored(b, "rw/v1/gw-2/telemetry", b'{"seq": 99}')  # not a confirmation
    stored(b, "rw/v1/gw-2/stored", b"not json")
    stored(b, "rw/v1/gw-2/stored", b'{"seq": "7"}')
    assert b._stored == {"gw-1": 5}


def test_a_wait_ends_on_the_confirmation_or_the_database_or_the_deadline() -> None:
    b = bridge()
    t0 = time.monotonic()
    threading.Timer(0.2, stored, (b, "rw/v1/gw-1/stored", b'{"seq": 8}')).start()
    assert b._wait("gw-1", 8, t0 + 2, lambda: -1) == 8
    assert time.monotonic() - t0 < 1.0  # woken by the confirmation, not by the next poll
    db = {"seq": 3}
    threading.Timer(0.3, db.update, kwargs={"seq": 9}).start()
    t0 = time.monotonic()
    assert b._wait("gw-1", 9, t0 + 3, lambda: db["seq"]) == 9  # a held-back confirmation: the table says so
    t0 = time.monotonic()
    assert b._wait("gw-1", 50, t0 + 0.6, lambda: 9) < 50
    assert 0.5 < time.monotonic() - t0 < 1.5


def test_nothing_is_sent_without_a_broker_connection() -> None:
    b = bridge()
    with pytest.raises(BridgeUnavailable):
        b.send("gw-1", b"{}", 1, lambda: -1)
    assert b.stats.unavailable == 1 and b.stats.published == 0
