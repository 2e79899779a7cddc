"""HTTP ingest bridged onto the broker (issue 18): the body goes the collector's way, not a second writer.

The rule engine runs inside the collector's batch transaction (readings, rollups, rules and alarms commit
together), and in group mode each gateway belongs to one collector by lease. A second writer in `serve`
would store readings no rule sees. So `serve` publishes the body, at QoS1, on the telemetry topic of the
gateway its token belongs to, under an account of its own (`core.services.BRIDGE_USER`: write
`rw/v1/+/telemetry`, read `rw/v1/+/stored`, nothing else), and answers only once the collector's end-to-end
confirmation (`rw/v1/{gateway}/stored`, issue 15) covers the body's `seq`: the collector decodes it with
the same decoder, under the same limits, dead-letters what it would dead-letter from MQTT, stores it
exactly once (unique key (point, time)) and commits before it confirms.

Two things make "covered" mean "this body is committed":
- requests of one gateway are bridged one at a time (a lock per gateway), and a body is published only
  when its `seq` is above what is already stored, so the first confirmation reaching it can only come
  from its own commit (or a later message of the same gateway's, committed after it);
- the confirmation is read from the broker (pushed, fast) and from `gateway_stored_seq` (the table the
  batch raises in its transaction: the truth when a confirmation is held back or lost), whichever is first.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.errors import ConfigError, RiskwatchError
from core.mqtt import configure
from core.settings import MqttUrl
from ingest import topics

log = logging.getLogger("riskwatch.ingest.http")

#: Default seconds a request waits for the collector's confirmation (RISKWATCH_HTTP_INGEST_TIMEOUT).
DEFAULT_TIMEOUT_S = 10.0
STORED_FILTER = "rw/v1/+/stored"
_DB_POLL_S = 0.5


class BridgeUnavailable(RiskwatchError):
    """Nothing was published: the bridge has no broker connection (503, retry later)."""


class BridgeTimeout(RiskwatchError):
    """No confirmation in time: the body may still be stored; a retry with the same `seq` is safe (503)."""


@dataclass(frozen=True)
class BridgeSettings:
    """Where the bridge logs in and how long a request waits; read once by the composition root."""

    url: MqttUrl | None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls, env: dict[str, str], default_url: str | None = None) -> BridgeSettings:
        """RISKWATCH_MQTT_BRIDGE_URL (else `default_url`, the private broker's bridge account) and
        RISKWATCH_HTTP_INGEST_TIMEOUT (seconds, default 10)."""
        raw = env.get("RISKWATCH_MQTT_BRIDGE_URL") or default_url
        timeout_raw = env.get("RISKWATCH_HTTP_INGEST_TIMEOUT") or ""
        try:
            timeout = float(timeout_raw) if timeout_raw else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ConfigError(f"RISKWATCH_HTTP_INGEST_TIMEOUT must be seconds (got {timeout_raw!r})") from None
        if not 0.1 <= timeout <= 300:
            raise ConfigError(f"RISKWATCH_HTTP_INGEST_TIMEOUT must be within 0.1-300 s (got {timeout})")
        return cls(MqttUrl.parse(raw) if raw else None, timeout)


@dataclass(frozen=True)
class Bridged:
    """What a bridged request ended with: the gateway's stored `seq` and whether this body was published."""

    stored_seq: int
    published: bool


@dataclass
class BridgeStats:
    published: int = 0
    confirmed: int = 0
    already_covered: int = 0
    timeouts: int = 0
    unavailable: int = 0
    connects: int = 0
    started: float = field(default_factory=time.monotonic)


class IngestBridge:
    """One MQTT connection of `serve` (clean session) that publishes bodies and follows confirmations."""

    def __init__(self, settings: BridgeSettings):
        assert settings.url is not None
        self.url = settings.url
        self.timeout_s = settings.timeout_s
        self.stats = BridgeStats()
        self._cond = threading.Condition()
        self._stored: dict[str, int] = {}  # per gateway the highest confirmation seen on the broker
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None

    # --- the connection (a supervisor task: `run` blocks until `stop`) ---------------------------------

    def run(self) -> None:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.url.username or "",
                             protocol=mqtt.MQTTv5)
        try:
            configure(client, self.url)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"HTTP ingest bridge: cannot load the TLS files of {self.url.redacted()}: {exc}") from exc
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        client.connect_async(self.url.host, self.url.port, keepalive=30, clean_start=True)
        client.loop_forever(retry_first_connection=True)

    def stop(self) -> None:
        self._connected.clear()
        if self._client is not None:
            self._client.disconnect()

    def connected(self) -> bool:
        return self._connected.is_set()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.error("HTTP ingest bridge: %s refused %s (%s): is the bridge account in the broker's password "
                      "file and ACL? (docs/http-ingest.md)", self.url.redacted(), self.url.username, rc)
            return
        self.stats.connects += 1
        # Retained: the current confirmation of every gateway arrives right after the subscription.
        client.subscribe([(STORED_FILTER, SubscribeOptions(qos=1))])
        self._connected.set()
        log.info("HTTP ingest bridge connected to %s as %s", self.url.redacted(), self.url.username)

    def _on_disconnect(self, *_a: object) -> None:
        self._connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        route = topics.route(msg.topic)
        if route is None or route[1] != "stored":
            return
        try:
            seq = orjson.loads(msg.payload).get("seq")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if type(seq) is not int:
            return
        with self._cond:
            if seq > self._stored.get(route[0], -1):
                self._stored[route[0]] = seq
                self._cond.notify_all()

    # --- one request ------------------------------------------------------------------------------------

    def _lock_for(self, gateway_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(gateway_id, threading.Lock())

    def _covered(self, gateway_id: str, db_seq: Callable[[], int]) -> int:
        with self._cond:
            seen = self._stored.get(gateway_id, -1)
        return max(seen, db_seq())

    def send(self, gateway_id: str, payload: bytes, seq: int, db_seq: Callable[[], int]) -> Bridged:
        """Publish `payload` as `gateway_id`'s telemetry and wait until its `seq` is stored.

        `db_seq` reads gateway_stored_seq. A `seq` already covered is not published again (the caller decides
        whether that is a retry of a stored body); BridgeUnavailable: nothing was sent; BridgeTimeout: sent,
        not confirmed within the timeout.
        """
        deadline = time.monotonic() + self.timeout_s
        if not self._connected.is_set() or self._client is None:
            self.stats.unavailable += 1
            raise BridgeUnavailable("the HTTP ingest bridge has no broker connection")
        lock = self._lock_for(gateway_id)
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self.stats.timeouts += 1
            raise BridgeTimeout("another request of this gateway is still waiting for its confirmation")
        try:
            covered = self._covered(gateway_id, db_seq)
            if seq <= covered:
                self.stats.already_covered += 1
                return Bridged(covered, published=False)
            info = self._client.publish(topics.telemetry(gateway_id), payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS and not self._connected.is_set():
                self.stats.timeouts += 1  # paho keeps a QoS1 message queued and sends it on reconnect
                raise BridgeTimeout(f"broker connection lost while publishing ({mqtt.error_string(info.rc)})")
            self.stats.published += 1
            covered = self._wait(gateway_id, seq, deadline, db_seq)
            if covered < seq:
                self.stats.timeouts += 1
                raise BridgeTimeout(f"no confirmation of seq {seq} within {self.timeout_s:g} s")
            self.stats.confirmed += 1
            return Bridged(covered, published=True)
        finally:
            lock.release()

    def _wait(self, gateway_id: str, seq: int, deadline: float, db_seq: Callable[[], int]) -> int:
        """The gateway's stored seq once it reaches `seq`, or the last seen at the deadline."""
        next_db = time.monotonic() + _DB_POLL_S
        covered = -1
        while True:
            now = time.monotonic()
            with self._cond:
                covered = self._stored.get(gateway_id, -1)
                if covered < seq and now < deadline:
                    self._cond.wait(min(deadline, next_db) - now)
                    covered = self._stored.get(gateway_id, -1)
            if covered >= seq:
                return covered
            now = time.monotonic()
            if now >= next_db or now >= deadline:
                covered = max(covered, db_seq())
                if covered >= seq or now >= deadline:
                    return covered
                next_db = now + _DB_POLL_S
