from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.services import mosquitto_hash, mosquitto_verify
from core.settings import MqttUrl, Settings
from ingest import topics


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("rw/v1/gw-1/telemetry", ("gw-1", "telemetry")),
        ("rw/v1/gw-1/status", ("gw-1", "status")),
        ("rw/v1/gw-1/other", None),
        ("rw/v1//telemetry", None),
        ("rw/v2/gw-1/telemetry", None),
        ("rw/v1/gw-1/telemetry/x", None),
    ],
)
def test_topic_parse(topic: str, parsed: tuple[str, str] | None) -> None:
    assert topics.parse(topic) == parsed


def test_mqtt_url() -> None:
    u = MqttUrl.parse("mqtt://gw%2F1:p%40ss@host:1884")
    assert (u.host, u.port, u.username, u.password) == ("host", 1884, "gw/1", "p@ss")
    assert "p@ss" not in u.redacted() and "p@ss" not in repr(u)
    with pytest.raises(ConfigError):
        MqttUrl.parse("http://host")


def test_settings_from_env_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Settings.from_env({"RISKWATCH_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path and s.db_url is None and s.mqtt_url is None
    s2 = s.with_services("postgresql://x", "mqtt://y:z@h:1")
    assert s2.db_url == "postgresql://x"
    assert "postgresql://x" not in repr(s2)


def test_mosquitto_hash_roundtrip() -> None:
    h = mosquitto_hash("secret")
    assert h.startswith("$7$") and mosquitto_verify("secret", h) and not mosquitto_verify("nope", h)


@pytest.mark.parametrize(
    ("topic", "routed"),
    [
        ("rw/v1/gw-1/telemetry", ("gw-1", "telemetry")),
        ("rw/v1/gw-1/status", ("gw-1", "status")),
        ("rw/v1/gw-1/stored", ("gw-1", "stored")),
        ("rw/v1/gw-1/cmd", ("gw-1", "cmd")),
        ("rw/v1/gw-1/cmd/reboot/now", ("gw-1", "cmd")),
        ("rw/v1/gw-1/telemetry/extra", None),
        ("rw/v1/gw-1/stored/x", None),
        ("rw/v1/gw-1/foo", None),
        ("rw/v1/gw-1", None),
        ("rw/v1//cmd", None),
        ("rw/v2/gw-1/telemetry", None),
    ],
)
def test_topic_route(topic: str, routed: tuple[str, str] | None) -> None:
    """Issue 15: everything under rw/v1/ is routed; only contract data topics reach `parse`."""
    assert topics.route(topic) == routed
    assert topics.parse(topic) == (routed if routed and routed[1] in ("telemetry", "status") else None)


def test_gateway_of_bad_topics() -> None:
    assert topics.gateway_of("rw/v1/gw-a1/telemetry/extra") == "gw-a1"
    assert topics.gateway_of("rw/v1/") is None
    assert topics.gateway_of("other/x") is None
    assert topics.stored("gw-a1") == "rw/v1/gw-a1/stored"
