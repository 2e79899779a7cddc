"""A simulated plant gateway: a real paho-mqtt 2.x client speaking the JSON v1 contract.

The publisher behaves like a well-configured gateway, because the collector's
guarantees are only tested if the sender does not lose data itself:

- a persistent MQTT 3.1.1 session (fixed client id = gateway id, clean
  session off), so the broker keeps the session across reconnects; the
  broker binds client ids to usernames, so this is also the only id it
  would accept — one connection per gateway account at a time;
- TLS (``mqtts://``) when given a context: the broker's certificate and host
  name are verified (``tls_context`` builds one from the CA file); a client
  certificate in the context is the login on a mutual-TLS listener;
- QoS 1 telemetry with an unbounded local queue (``max_queued_messages 0``)
  and a 1000-message in-flight window; on reconnect paho re-sends every
  message not yet acknowledged with PUBACK (marked DUP), so a broker restart
  loses nothing (it may duplicate, which the collector's unique key absorbs);
- a retained ``{"online": true}`` status on every connect, a retained will
  ``{"online": false}``, and an explicit offline status on a clean stop (a
  clean disconnect does not fire the will);
- back-pressure: the caller blocks while too many messages are unacknowledged,
  instead of growing the queue until paho's 16-bit message ids collide;
- a refused connection (bad credentials) raises :class:`GatewayAuthError`
  at once and stops paho's reconnect loop instead of retrying forever;
- :meth:`GatewayPublisher.unplug` imitates a power cut for fault scenarios:
  the TCP connection goes down without an MQTT DISCONNECT, so the broker
  publishes the retained will.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import RiskwatchError
from core.settings import MqttUrl
from ingest import topics
from ingest.edge.publisher import stored_ranges

log = logging.getLogger("riskwatch.simulators.gateway")

TOPIC_PREFIX = "rw/v1/"
MAX_PAYLOAD_BYTES = 256 * 1024  # the contract's default limit; larger messages are dead-lettered
ONLINE = b'{"online": true}'
OFFLINE = b'{"online": false}'

#: Refusal reasons (as paho names them for MQTT 3.1.1 CONNACK codes 4 and 5).
_AUTH_REFUSALS = {"Bad user name or password", "Not authorized"}

Value = float | int


class GatewayError(RiskwatchError):
    """A simulated gateway could not do its job; the message names the gateway."""

    def __init__(self, gateway_id: str, message: str):
        super().__init__(f"gateway {gateway_id}: {message}")
        self.gateway_id = gateway_id


class GatewayConnectError(GatewayError):
    """The broker could not be reached or did not answer CONNECT."""


class GatewayAuthError(GatewayError):
    """The broker refused the gateway's credentials."""


class PayloadTooLarge(ValueError):
    """An encoded message would exceed MAX_PAYLOAD_BYTES; send fewer readings per message."""


def tls_context(cafile: str | None, certfile: str | None = None, keyfile: str | None = None) -> ssl.SSLContext:
    """A verifying client context for a broker whose certificate `cafile` signed (None: the system's CAs).

    The same rules as every other riskwatch client (`core.settings.MqttUrl.ssl_context`): TLS >= 1.2, the
    certificate chain and the host name checked; `certfile`/`keyfile` add a client certificate (mutual TLS).
    """
    ctx = MqttUrl(host="", port=0, tls=True, cafile=cafile, certfile=certfile, keyfile=keyfile).ssl_context()
    assert ctx is not None  # tls=True always gives one
    return ctx


def telemetry_topic(gateway_id: str) -> str:
    return f"{TOPIC_PREFIX}{gateway_id}/telemetry"


def status_topic(gateway_id: str) -> str:
    return f"{TOPIC_PREFIX}{gateway_id}/status"


def encode_telemetry(seq: int, ts_ms: int, tags: Sequence[str], values: Sequence[Value],
                     times_ms: Sequence[int]) -> bytes:
    """A JSON v1 telemetry payload; each reading carries its own sample time.

    ``ts`` of the message is when it was sent; the per-reading ``ts`` (which
    overrides it) is when the value was sampled, so a re-sent message yields
    the same (point, time) keys.
    """
    readings = [{"tag": t, "v": v, "ts": ts}
                for t, v, ts in zip(tags, values, times_ms, strict=True)]
    return orjson.dumps({"ts": ts_ms, "seq": seq, "readings": readings})


@dataclass(frozen=True)
class GatewayStats:
    gateway_id: str
    messages: int  # telemetry messages handed to the client
    readings: int  # readings in those messages
    published: int  # all QoS 1 messages, status included
    acked: int  # PUBACKs received
    connects: int
    disconnects: int

    @property
    def pending(self) -> int:
        return self.published - self.acked


class GatewayPublisher:
    """One gateway's MQTT client: start, publish_telemetry..., wait_acked, close.

    ``publish_telemetry`` may be called from one thread (the simulator's loop);
    paho's network thread runs the socket, acknowledgements and reconnects.
    """

    def __init__(self, gateway_id: str, password: str | None, host: str, port: int, *,
                 tls: ssl.SSLContext | None = None, keepalive: int = 20, max_pending: int = 20_000,
                 stall_timeout_s: float = 120.0):
        """``tls``: connect over TLS with this context (see `tls_context`); None: plain MQTT (tests' fake
        brokers). ``password`` None: no password (a mutual-TLS listener takes the certificate as the login)."""
        if max_pending >= 65_000:
            raise ValueError("max_pending must stay below paho's 16-bit message-id space")
        self.gateway_id = gateway_id
        self.host = host
        self.port = port
        self.tls = tls is not None
        self.keepalive = keepalive
        self.max_pending = max_pending
        self.stall_timeout_s = stall_timeout_s
        self._cond = threading.Condition()
        self._connected = False
        self._fatal: GatewayError | None = None
        self._published = 0
        self._acked = 0
        self._messages = 0
        self._readings = 0
        self._connects = 0
        self._disconnects = 0
        self._seq = 0
        #: added to the host's time in each message's own ``ts`` (a gateway clock running off; scenarios)
        self.clock_offset_ms = 0
        self._started = False
        self._closed = False
        self._unplugged = False

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id,
                        protocol=MQTTProtocolVersion.MQTTv311, clean_session=False)
        c.username_pw_set(gateway_id, password)
        if tls is not None:
            c.tls_set_context(tls)  # paho passes server_hostname=host: the host name is verified
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)  # unbounded: never drop; back-pressure is ours
        # paho annotates int but does float arithmetic with it; 0.1 s first retry.
        c.reconnect_delay_set(0.1, 2)  # type: ignore[arg-type]
        c.will_set(status_topic(gateway_id), OFFLINE, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c

    # -- paho callbacks (network thread) ------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Any) -> None:
        if reason_code.is_failure:
            name = reason_code.getName()
            where = f"broker {self.host}:{self.port}"
            exc: GatewayError
            if name in _AUTH_REFUSALS:
                exc = GatewayAuthError(self.gateway_id, f"{where} refused the credentials ({name})")
            else:
                exc = GatewayConnectError(self.gateway_id, f"{where} refused connection ({name})")
            with self._cond:
                self._fatal = exc
                self._cond.notify_all()
            # Ends paho's loop: retrying refused credentials forever would hang the caller.
            client.disconnect()
            return
        log.info("%s connected (session present: %s)", self.gateway_id, flags.session_present)
        # Queued before paho re-sends the unacknowledged backlog; ordering of
        # status vs telemetry does not matter to the collector.
        self._publish_raw(status_topic(self.gateway_id), ONLINE, retain=True)
        with self._cond:
            self._connected = True
            self._connects += 1
            self._cond.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Any) -> None:
        if self._unplugged:
            # Called on paho's own thread, loop_stop() only flags the loop to end:
            # it then exits instead of reconnecting (see unplug).
            client.loop_stop()
        with self._cond:
            was = self._connected
            self._connected = False
            if was:
                self._disconnects += 1
            self._cond.notify_all()
        if was and not self._closed:
            log.warning("%s disconnected (%s); reconnecting, unacknowledged messages will be "
                        "re-sent", self.gateway_id, reason_code.getName())

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode,
                    properties: Any) -> None:
        with self._cond:
            self._acked += 1
            self._cond.notify_all()

    # -- caller side ---------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Connect and wait for the CONNACK; raise instead of retrying on refusal or timeout."""
        if self._started:
            raise RuntimeError("start() called twice")
        self._started = True
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive)
        except ssl.SSLCertVerificationError as exc:
            raise GatewayConnectError(
                self.gateway_id, f"broker {self.host}:{self.port}: TLS: certificate verify failed "
                                 f"({exc.verify_message})") from exc
        except ssl.SSLError as exc:
            raise GatewayConnectError(
                self.gateway_id, f"broker {self.host}:{self.port}: TLS: {exc.reason or exc}") from exc
        except OSError as exc:
            raise GatewayConnectError(
                self.gateway_id, f"cannot reach broker {self.host}:{self.port}: {exc}"
            ) from exc
        self._client.loop_start()
        with self._cond:
            ok = self._cond.wait_for(lambda: self._connected or self._fatal is not None, timeout)
            fatal = self._fatal
        if fatal is not None or not ok:
            self._client.disconnect()
            self._client.loop_stop()
            self._closed = True
            if fatal is not None:
                raise fatal
            hint = "" if self.tls else " (a TLS listener? this gateway speaks plain MQTT)"
            raise GatewayConnectError(self.gateway_id, f"no CONNACK from {self.host}:{self.port} "
                                                       f"within {timeout:g} s{hint}")

    def _check(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    def _publish_raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        # Count first: the PUBACK may arrive before publish() returns.
        with self._cond:
            self._published += 1
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        # NO_CONN is fine: the message is queued and sent after reconnect.
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._cond:
                self._published -= 1
            raise GatewayError(self.gateway_id, f"publish to {topic} failed: "
                                                f"{mqtt.error_string(info.rc)}")

    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value],
                          times_ms: Sequence[int]) -> int:
        """Queue one telemetry message at QoS 1; returns its ``seq``.

        Blocks while ``max_pending`` messages await PUBACK (e.g. the broker is
        restarting); raises if that lasts ``stall_timeout_s`` or the gateway
        hit a fatal error, and PayloadTooLarge (nothing sent) if the message
        would break the contract's size limit.
        """
        self._check()
        deadline = time.monotonic() + self.stall_timeout_s
        with self._cond:
            while self._published - self._acked >= self.max_pending and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    pending = self._published - self._acked
                    raise GatewayError(self.gateway_id, f"{pending} messages unacknowledged for "
                                                        f"{self.stall_timeout_s:g} s")
                self._cond.wait(min(left, 0.5))
        self._check()
        payload = encode_telemetry(self._seq + 1, int(time.time() * 1000) + self.clock_offset_ms, tags, values,
                                   times_ms)
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(f"{len(tags)} readings encode to {len(payload)} bytes")
        self._seq += 1
        self._publish_raw(telemetry_topic(self.gateway_id), payload)
        self._messages += 1
        self._readings += len(tags)
        return self._seq

    def wait_acked(self, timeout: float) -> bool:
        """Wait until every published message has its PUBACK; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._acked >= self._published or self._fatal is not None, timeout
            ) and self._fatal is None

    def wait_window(self, max_pending: int, timeout: float) -> None:
        """Block until at most ``max_pending`` messages await PUBACK.

        A backfill run publishes as fast as the broker acknowledges; this
        keeps the messages held in memory bounded by a window, not by the
        length of the run. Raises GatewayError on a fatal error or when the
        window does not open within ``timeout``.
        """
        self._check()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._published - self._acked <= max_pending or self._fatal is not None, timeout)
            pending = self._published - self._acked
        self._check()
        if not ok:
            raise GatewayError(self.gateway_id, f"{pending} messages unacknowledged for {timeout:g} s")

    def unplug(self, timeout: float = 5.0) -> bool:
        """Cut the connection as a power cut would: no offline status, no MQTT DISCONNECT.

        The broker sees the TCP connection end without DISCONNECT and
        publishes the retained will ``{"online": false}``. Messages already
        handed over are given ``timeout`` to be acknowledged first (returns
        whether they were), so a test knows exactly what reached the broker.
        A real power cut sends no TCP FIN either; the broker would notice only
        after 1.5 x keepalive, which the collector's silence rule covers.
        """
        if self._closed:
            return False
        acked = self.wait_acked(timeout)
        self._closed = True  # no reconnect warnings, and close() becomes a no-op
        self._unplugged = True
        sock = self._client.socket()
        if isinstance(sock, socket.socket):
            try:
                # shutdown, not close: paho's thread owns the descriptor and closes it
                # when it sees the connection lost (then _on_disconnect ends its loop).
                # The plain socket's shutdown, also under TLS: no close_notify (a power cut
                # sends none), and SSLSocket.shutdown would drop its SSL object under paho's thread.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        self._client.loop_stop()
        log.info("%s unplugged (connection cut without DISCONNECT)", self.gateway_id)
        return acked

    def stats(self) -> GatewayStats:
        with self._cond:
            return GatewayStats(self.gateway_id, self._messages, self._readings, self._published,
                                self._acked, self._connects, self._disconnects)

    def close(self, timeout: float = 5.0) -> None:
        """Publish a retained offline status, then disconnect.

        A clean disconnect does not fire the will, and a retained "online"
        left behind would claim the gateway is still there.
        """
        if self._closed:
            return
        try:
            if self._fatal is None and self._connected:
                self._publish_raw(status_topic(self.gateway_id), OFFLINE, retain=True)
                self.wait_acked(timeout)
        finally:
            self._closed = True
            self._client.disconnect()
            self._client.loop_stop()


class ConfirmingPublisher(GatewayPublisher):
    """A gateway that keeps every telemetry message until riskwatch, not only the broker, has stored it.

    A PUBACK only says the broker has the message; a broker killed before its next save loses what it had
    acknowledged. This publisher therefore keeps each message in a bounded in-memory buffer (the real edge
    agent keeps it in SQLite) until the collector's retained confirmation ``rw/v1/{gateway}/stored``
    (``{"seq": n, "ts": ..., "seqs": [[first, last], ...]}``, published after each commit) lists its ``seq``,
    and after every reconnect re-sends everything unconfirmed, in seq order (the collector's unique key absorbs
    what was stored already).

    It deletes exactly what ``seqs`` lists, as the agent does (ingest.edge.buffer, docs/edge.md): a broker may
    drop a message for the collector's session while both connections stay up, so the collector stores n but
    not n-10, and "everything up to n" would lose n-10. A confirmation without ``seqs`` (a collector from before
    them) still covers everything up to ``seq``; that is safe only because new messages wait while disconnected
    and the whole backlog goes out first on reconnect, with paho's in-flight window unlimited so nothing it still
    holds from the last connection overtakes the re-sends. A malformed ``seqs`` voids the confirmation.

    The stall clock is the watermark (the highest seq below which nothing is buffered): when it has not moved for
    ``resend_after_s``, the backlog goes out again. Confirmations above a hole do not move it, so a hole is
    re-sent while the stream goes on.

    Seqs start at the microsecond clock (``first_seq``), so a restarted gateway numbers above what it sent
    before without persisting a counter; a confirmation above anything this publisher sent (a previous run's)
    is ignored instead of dropping the buffer.
    """

    def __init__(self, gateway_id: str, password: str | None, host: str, port: int, *,
                 max_buffer: int = 50_000, first_seq: int | None = None, resend_after_s: float = 5.0, **kw: Any):
        super().__init__(gateway_id, password, host, port, **kw)
        self.resend_after_s = resend_after_s
        self._progress_at = time.monotonic()  # last time the watermark advanced (or the backlog was re-sent)
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self.max_buffer = max_buffer
        self._seq = (time.time_ns() // 1000 if first_seq is None else first_seq) - 1
        self._first_seq = self._seq + 1
        self._buffer: dict[int, bytes] = {}  # seq -> payload, in seq order (insertion order)
        self._confirmed = self._seq  # highest seq confirmed by the collector
        self._live = False  # connected and the backlog re-sent: new messages may go straight out
        self._send_lock = threading.Lock()  # orders hand-overs to paho: never held by paho callbacks
        self._resends = 0
        self._seen: deque[int] = deque(maxlen=10_000)  # confirmations received, for diagnostics and tests
        self._client.max_inflight_messages_set(0)  # unlimited: see the class docstring (ordering)
        self._client.message_callback_add(topics.stored(gateway_id), self._on_stored)

    @property
    def confirmed_seq(self) -> int | None:
        """The highest seq the collector confirmed to this publisher (None before the first)."""
        with self._cond:
            return self._confirmed if self._confirmed >= self._first_seq else None

    @property
    def last_seq(self) -> int | None:
        with self._cond:
            return self._seq if self._seq >= self._first_seq else None

    def confirmations_seen(self) -> list[int]:
        """The seqs of the last confirmations received, in arrival order (retained replays included)."""
        with self._cond:
            return list(self._seen)

    def buffered(self) -> int:
        with self._cond:
            return len(self._buffer)

    @property
    def resends(self) -> int:
        """Messages re-sent from the buffer after reconnects."""
        return self._resends

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(topics.stored(self.gateway_id), qos=1)
            with self._send_lock:
                with self._cond:
                    backlog = list(self._buffer.items())
                for _seq, payload in backlog:
                    self._publish_raw(telemetry_topic(self.gateway_id), payload)
                self._resends += len(backlog) if self._connects else 0
                self._live = True
            if backlog and self._connects:
                log.info("%s re-sent %d unconfirmed messages", self.gateway_id, len(backlog))
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason_code: ReasonCode, properties: Any) -> None:
        with self._send_lock:
            self._live = False
        super()._on_disconnect(client, userdata, flags, reason_code, properties)

    def _on_stored(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            doc = None
        seq = doc.get("seq") if isinstance(doc, dict) else None
        seqs = stored_ranges(doc.get("seqs"), seq) if isinstance(doc, dict) and "seqs" in doc else None
        if type(seq) is not int or isinstance(seqs, str):
            if msg.payload:
                log.warning("%s: unusable confirmation %r", self.gateway_id, msg.payload[:100])
            return
        with self._cond:
            self._seen.append(seq)
            if seq > self._seq:
                # Not ours to trust: a previous run's numbering, or a forgery; dropping the buffer would lose data.
                if seq >= self._first_seq:
                    log.warning("%s: confirmation of seq %d above the last sent (%d) ignored",
                                self.gateway_id, seq, self._seq)
                return
            self._confirmed = max(self._confirmed, seq)
            before = self._watermark()
            for first, last in [(before + 1, seq)] if seqs is None else seqs:
                self._drop(max(first, before + 1), last)
            if self._watermark() > before:
                self._progress_at = time.monotonic()
            self._cond.notify_all()

    def _watermark(self) -> int:
        """Every seq up to this one is confirmed (the buffer is in seq order: its first key is the lowest)."""
        return next(iter(self._buffer)) - 1 if self._buffer else self._seq

    def _drop(self, first: int, last: int) -> None:
        """Delete the buffered seqs in [first, last], walking whichever is shorter: the range or the buffer."""
        if last - first < len(self._buffer):
            for s in range(first, last + 1):
                self._buffer.pop(s, None)
        else:
            for s in [s for s in self._buffer if first <= s <= last]:
                del self._buffer[s]

    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value],
                          times_ms: Sequence[int]) -> int:
        """Buffer one telemetry message and send it now if connected; returns its ``seq``.

        Blocks while the buffer is full (the collector has not confirmed ``max_buffer`` messages), raising
        GatewayError after ``stall_timeout_s``; PayloadTooLarge when the message would break the size limit.
        """
        self._check()
        deadline = time.monotonic() + self.stall_timeout_s
        with self._cond:
            while (len(self._buffer) >= self.max_buffer
                   or self._published - self._acked >= self.max_pending) and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise GatewayError(self.gateway_id, f"{len(self._buffer)} messages unconfirmed for "
                                                        f"{self.stall_timeout_s:g} s")
                self._cond.wait(min(left, 0.5))
        self._check()
        with self._send_lock:
            seq = self._seq + 1
            payload = encode_telemetry(seq, int(time.time() * 1000) + self.clock_offset_ms, tags, values, times_ms)
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise PayloadTooLarge(f"{len(tags)} readings encode to {len(payload)} bytes")
            with self._cond:
                self._seq = seq
                self._buffer[seq] = payload
                self._messages += 1
                self._readings += len(tags)
            if self._live:
                self._publish_raw(telemetry_topic(self.gateway_id), payload)
        return seq

    def start(self, timeout: float = 10.0) -> None:
        super().start(timeout)
        threading.Thread(target=self._resender, name=f"resend-{self.gateway_id}", daemon=True).start()

    def _resender(self) -> None:
        """Re-send the unconfirmed backlog when confirmations stall while connected.

        A broker that lost the collector's session in a crash accepts (PUBACKs) what arrives before the
        collector subscribes again and delivers it to nobody; nothing reconnects afterwards, so only a timer
        notices. Re-sends are duplicates at worst, which the unique key absorbs.
        """
        while not self._closed:
            time.sleep(min(1.0, self.resend_after_s / 2))
            with self._cond:
                stalled = (self._buffer and time.monotonic() - self._progress_at > self.resend_after_s)
            if not stalled:
                continue
            with self._send_lock:
                if not self._live or self._closed:
                    continue
                with self._cond:
                    backlog = list(self._buffer.values())
                    self._progress_at = time.monotonic()
                for payload in backlog:
                    self._publish_raw(telemetry_topic(self.gateway_id), payload)
                self._resends += len(backlog)
            log.info("%s: no confirmation for %.0f s, re-sent %d unconfirmed messages", self.gateway_id,
                     self.resend_after_s, len(backlog))

    def wait_confirmed(self, timeout: float) -> bool:
        """Wait until the collector has confirmed every message sent; False on timeout or a fatal error."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._buffer or self._fatal is not None, timeout) and self._fatal is None

