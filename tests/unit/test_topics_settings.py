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
