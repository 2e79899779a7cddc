"""One typed settings object, built once in `main` and passed down.

Nothing reads the environment at import time; `Settings.from_env()` is called
by the CLI. When the service URLs are unset, commands use the private local
services under the data dir (see core.services).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.errors import ConfigError


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ConfigError(f"RISKWATCH_MQTT_URL must start with mqtt:// (got scheme {parts.scheme!r})")
        if not parts.hostname:
            raise ConfigError("RISKWATCH_MQTT_URL has no host")
        return cls(
            host=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"mqtt://{user}{self.host}:{self.port}"


@dataclass(frozen=True)
class IngestLimits:
    """Per-message limits of the JSON v1 contract (DESIGN.md, MQTT contract)."""

    max_payload_bytes: int = 256 * 1024
    max_readings: int = 5000
    max_past_s: float = 7 * 24 * 3600
    max_future_s: float = 300


@dataclass(frozen=True)
class CollectorSettings:
    client_id: str = "riskwatch-collector"
    batch_max_readings: int = 20_000
    batch_max_age_s: float = 0.1
    receive_maximum: int = 1000
    session_expiry_s: int = 7 * 24 * 3600
    registry_refresh_s: float = 5.0


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str | None = field(default=None, repr=False)
    mqtt_url: str | None = field(default=None, repr=False)
    limits: IngestLimits = IngestLimits()
    collector: CollectorSettings = CollectorSettings()
    alerting_file: Path | None = None          # the routing file; None: data_dir/alerting.yaml if present
    public_url: str | None = None              # where acknowledgement links point (default: the API's address)
    link_secret: str | None = field(default=None, repr=False)  # signs acknowledgement links

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("RISKWATCH_DATA_DIR") or "./.riskwatch").expanduser().resolve()
        mqtt = env.get("RISKWATCH_MQTT_URL") or None
        if mqtt:
            MqttUrl.parse(mqtt)  # fail early on a malformed URL
        alerting = env.get("RISKWATCH_ALERTING") or None
        return cls(data_dir=data_dir, db_url=env.get("RISKWATCH_DB_URL") or None, mqtt_url=mqtt,
                   alerting_file=Path(alerting).expanduser().resolve() if alerting else None,
                   public_url=env.get("RISKWATCH_PUBLIC_URL") or None,
                   link_secret=env.get("RISKWATCH_LINK_SECRET") or None)

    def routing_file(self) -> Path | None:
        """The alerting routing file in use, if any."""
        if self.alerting_file is not None:
            return self.alerting_file
        default = self.data_dir / "alerting.yaml"
        return default if default.exists() else None

    def with_services(self, db_url: str, mqtt_url: str) -> Settings:
        return replace(self, db_url=self.db_url or db_url, mqtt_url=self.mqtt_url or mqtt_url)
