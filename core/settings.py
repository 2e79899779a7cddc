"""One typed settings object, built once in `main` and passed down.

Nothing reads the environment at import time; `Settings.from_env()` is called
by the CLI. When the service URLs are unset, commands use the private local
services under the data dir (see core.services).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from core.errors import ConfigError
from core.timeconst import S_PER_DAY


@dataclass(frozen=True)
class MqttUrl:
    """A broker address: `mqtts://user:pass@host:8883?cafile=/path/ca.crt` (TLS, the default for gateways and the
    collector) or `mqtt://user:pass@host:1883` (plain TCP, for a broker on a trusted loopback only).

    Query parameters of an `mqtts` URL: `cafile` (the CA that signed the broker's certificate; without it the
    system's trust store is used), `certfile` and `keyfile` (a client certificate for mutual TLS). The server's
    certificate and host name are always verified.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
            raise ConfigError(f"RISKWATCH_MQTT_URL must start with mqtts:// or mqtt:// (got scheme {parts.scheme!r})")
        if not parts.hostname:
            raise ConfigError("RISKWATCH_MQTT_URL has no host")
        tls = parts.scheme in ("mqtts", "ssl")
        query: dict[str, str] = {}
        for k, vs in parse_qs(parts.query, keep_blank_values=True).items():
            if k not in ("cafile", "certfile", "keyfile"):
                raise ConfigError(f"RISKWATCH_MQTT_URL: unknown parameter {k!r} (cafile, certfile, keyfile)")
            if not tls:
                raise ConfigError(f"RISKWATCH_MQTT_URL: {k} needs an mqtts:// URL")
            query[k] = vs[-1]
        if ("certfile" in query) != ("keyfile" in query):
            raise ConfigError("RISKWATCH_MQTT_URL: certfile and keyfile go together (mutual TLS)")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ConfigError(f"RISKWATCH_MQTT_URL: bad port ({exc})") from exc
        return cls(
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls, cafile=query.get("cafile"), certfile=query.get("certfile"), keyfile=query.get("keyfile"),
        )

    @property
    def scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client-side TLS context (server certificate and host name verified), or None for plain TCP."""
        if not self.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.certfile:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx

    def with_user(self, username: str, password: str | None) -> MqttUrl:
        return replace(self, username=username, password=password)

    def url(self) -> str:
        """The URL again, secret included (for a child process's environment, never for a log)."""
        auth = ""
        if self.username:
            auth = quote(self.username, safe="") + (":" + quote(self.password, safe="") if self.password else "") + "@"
        q = {k: v for k, v in (("cafile", self.cafile), ("certfile", self.certfile), ("keyfile", self.keyfile)) if v}
        return f"{self.scheme}://{auth}{self.host}:{self.port}" + ("?" + urlencode(q) if q else "")

    def redacted(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}"


@dataclass(frozen=True)
class IngestLimits:
    """Per-message limits of the JSON v1 contract (DESIGN.md, MQTT contract)."""

    max_payload_bytes: int = 256 * 1024
    max_readings: int = 5000
    max_past_s: float = 7 * S_PER_DAY
    max_future_s: float = 300


@dataclass(frozen=True)
class CollectorSettings:
    client_id: str | None = None  # None: the MQTT username (the broker binds client ids to usernames)
    batch_max_readings: int = 20_000
    batch_max_age_s: float = 0.1
    receive_maximum: int = 1000
    session_expiry_s: int = 7 * S_PER_DAY
    registry_refresh_s: float = 5.0


@dataclass(frozen=True)
class ApiSettings:
    """HTTP limits: a request body larger than these is refused (413) before it is read into memory."""

    max_body_bytes: int = 1024 * 1024           # RISKWATCH_API_MAX_BODY
    max_upload_bytes: int = 16 * 1024 * 1024    # RISKWATCH_API_MAX_UPLOAD: evidence uploads

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ApiSettings:
        def size(name: str, default: int) -> int:
            raw = env.get(name) or ""
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number of bytes (got {raw!r})") from None
            if value < 1:
                raise ConfigError(f"{name} must be at least 1 byte (got {value})")
            return value

        return cls(size("RISKWATCH_API_MAX_BODY", cls.max_body_bytes),
                   size("RISKWATCH_API_MAX_UPLOAD", cls.max_upload_bytes))


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    db_url: str | None = field(default=None, repr=False)
    mqtt_url: str | None = field(default=None, repr=False)
    #: The account /healthz logs in with (never the collector's: client ids are bound to usernames).
    mqtt_health_url: str | None = field(default=None, repr=False)
    limits: IngestLimits = IngestLimits()
    collector: CollectorSettings = CollectorSettings()
    api: ApiSettings = ApiSettings()
    alerting_file: Path | None = None          # the routing file; None: data_dir/alerting.yaml if present
    public_url: str | None = None              # where acknowledgement links point (default: the API's address)
    link_secret: str | None = field(default=None, repr=False)  # signs acknowledgement links
    #: The broker address gateways are told to use (RISKWATCH_MQTT_PUBLIC_URL, `mqtts://host:8883[?cafile=…]`,
    #: no credentials): the console's connection snippet. None: the host and port of RISKWATCH_MQTT_URL.
    mqtt_public_url: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("RISKWATCH_DATA_DIR") or "./.riskwatch").expanduser().resolve()
        mqtt = env.get("RISKWATCH_MQTT_URL") or None
        if mqtt:
            MqttUrl.parse(mqtt)  # fail early on a malformed URL
        health = env.get("RISKWATCH_MQTT_HEALTH_URL") or None
        if health:
            MqttUrl.parse(health)
        alerting = env.get("RISKWATCH_ALERTING") or None
        public_mqtt = env.get("RISKWATCH_MQTT_PUBLIC_URL") or None
        if public_mqtt:
            MqttUrl.parse(public_mqtt)
        return cls(data_dir=data_dir, db_url=env.get("RISKWATCH_DB_URL") or None, mqtt_url=mqtt,
                   mqtt_health_url=health,
                   alerting_file=Path(alerting).expanduser().resolve() if alerting else None,
                   public_url=env.get("RISKWATCH_PUBLIC_URL") or None,
                   link_secret=env.get("RISKWATCH_LINK_SECRET") or None, api=ApiSettings.from_env(env),
                   mqtt_public_url=public_mqtt)

    def routing_file(self) -> Path | None:
        """The alerting routing file in use, if any."""
        if self.alerting_file is not None:
            return self.alerting_file
        default = self.data_dir / "alerting.yaml"
        return default if default.exists() else None

    def with_services(self, db_url: str, mqtt_url: str, mqtt_health_url: str | None = None) -> Settings:
        """Fill in the private services' URLs where the environment named none."""
        health = self.mqtt_health_url
        if health is None and self.mqtt_url is None:
            health = mqtt_health_url  # the private broker's health account goes with the private broker only
        return replace(self, db_url=self.db_url or db_url, mqtt_url=self.mqtt_url or mqtt_url, mqtt_health_url=health)
