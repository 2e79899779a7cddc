"""The northbound link: sends the buffer to the broker and deletes what the collector confirms.

A fresh paho client per connection attempt, so nothing paho queued for a dead connection can be re-sent
out of order behind our back: after every (re)connect the whole unconfirmed buffer goes out again, in seq
order, before anything newer.

In order is not enough to trust "the highest seq stored": a broker may drop a QoS1 message for the collector's
session while both connections stay up (its queue for a slow collector full), deliver the later ones, and the
collector then stores n but not n-10. So the buffer deletes only the seqs a confirmation lists (`seqs`, see
buffer.py; a confirmation without them, from an older collector, still covers everything up to its `seq`), and
a hole keeps the buffer's watermark (`confirmed_seq`) below it while later messages are confirmed above it.

The stall clock is the watermark: when it has not moved for `resend_after_s` while something sent is
unconfirmed, whatever is still buffered above it goes out again, the first message alone as a probe until it is
confirmed (see `_serve`). Confirmations of messages above a hole do not reset that clock, so a hole is re-sent
while the stream goes on. The probe also runs after every connect: a broker that lost the collector's session
accepts messages for nobody until the collector subscribes again, and the whole backlog would go nowhere.
Re-sends are duplicates at worst, which the collector's unique key absorbs and confirms again.

The wire format (`formats.Format`) decides the will, what goes out first on every connection (Sparkplug's NBIRTH),
what the agent subscribes to for commands (Sparkplug's NCMD: a rebirth request is answered on this thread, in
order with the telemetry, then everything unconfirmed is sent again behind the new birth), and what a message
looks like at send time (Sparkplug's 0-255 `seq`, stamped here, never stored).

Reconnects back off exponentially with full jitter between `backoff_initial_s` and `backoff_max_s`, reset
after a connection that lasted a minute.

A primary host (`Format.primary_host`, Sparkplug 3.0) gates a connection: its STATE topic is subscribed with the
commands, and `_serve` publishes nothing but the health document until the host's STATE says online, then the
connection's NBIRTH and the probe as always. A host going offline ends the connection (NDEATH first, then a
clean disconnect, as the spec asks); the next one, at once rather than after a backoff, waits again. Readings
wait in the buffer meanwhile, and everything unconfirmed goes out behind the next birth.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from core.mqtt import configure
from core.settings import MqttUrl
from ingest import topics
from ingest.edge.buffer import Buffer
from ingest.edge.formats import OFFLINE, CommandError, Format, PrimaryHost

log = logging.getLogger("riskwatch.edge.publisher")


def stored_ranges(value: object, seq: object) -> list[tuple[int, int]] | Literal["bad"]:
    """A confirmation's `seqs` as (first, last) pairs, or "bad" when it is not a list of inclusive integer ranges
    at or below its `seq`. A bad list voids the whole confirmation: reading it as "everything up to `seq`"
    could delete a hole, and ignoring it costs a re-send at most."""
    if type(seq) is not int or not isinstance(value, list):
        return "bad"
    out: list[tuple[int, int]] = []
    for r in value:
        if not (isinstance(r, list) and len(r) == 2 and type(r[0]) is int and type(r[1]) is int
                and r[0] <= r[1] <= seq):
            return "bad"
        out.append((r[0], r[1]))
    return out


def next_backoff(attempt: int, initial: float, maximum: float, rnd: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(max, initial * 2^attempt)], at least initial/2."""
    cap = min(maximum, initial * float(2 ** min(attempt, 30)))
    return max(initial / 2, cap * rnd())


@dataclass
class LinkState:
    """What the publisher knows, for the status message and tests (read under `Publisher.lock`)."""

    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0
    resends: int = 0  # stalls after which the unconfirmed backlog went out again
    rebirths: int = 0  # rebirth requests answered
    commands_rejected: int = 0
    last_error: str | None = None
    clock_skew_ms: int | None = None
    confirmations: list[int] = field(default_factory=list)


class Publisher:
    def __init__(self, gateway: str, url: MqttUrl, buffer: Buffer, fmt: Format, *, window: int = 100,
                 resend_after_s: float = 15.0, keepalive_s: int = 20, backoff_initial_s: float = 0.5,
                 backoff_max_s: float = 30.0, max_clock_skew_s: float = 5.0,
                 status: Callable[[], dict[str, Any]] | None = None, status_interval_s: float = 10.0,
                 clock: Callable[[], float] = time.time):
        self.gateway = gateway
        self.url = url
        self.buffer = buffer
        self.fmt = fmt
        self.window = window
        self.resend_after_s = resend_after_s
        self.keepalive_s = keepalive_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_clock_skew_s = max_clock_skew_s
        self.status = status or (lambda: {})
        self.status_interval_s = status_interval_s
        self.clock = clock
        self.lock = threading.Condition()
        self.state = LinkState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self._inflight = 0
        self._progress_at = time.monotonic()
        self._fatal_refusal = False
        self._rebirth = False  # a rebirth request is waiting for the serving loop
        self._host_left = False  # the last connection ended because the primary host went offline
        self._state_mid: int | None = None  # the STATE subscription, whose refusal is worth an error

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"edge-publisher-{self.gateway}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New sealed messages: send them now rather than at the next tick."""
        with self.lock:
            self.lock.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish a retained offline status if connected, then disconnect (a clean stop fires no will)."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout + 5)

    # -- paho callbacks (network thread) -------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        with self.lock:
            if rc.is_failure:
                self.state.last_error = f"broker refused connection: {rc.getName()}"
                self._fatal_refusal = rc.getName() in ("Bad user name or password", "Not authorized")
                self.lock.notify_all()
                return
        # Subscribed (queued ahead of anything `_serve` publishes) before the serving loop may send a birth:
        # Sparkplug wants the NCMD subscription in place before the NBIRTH.
        client.subscribe(topics.stored(self.gateway), qos=1)
        for t in self.fmt.command_topics(self.gateway):
            client.subscribe(t, qos=1)
        host = self.fmt.primary_host
        if host is not None:
            with self.lock:
                host.new_connection()  # before the retained STATE this subscription replays
            _rc, self._state_mid = client.subscribe(host.topic, qos=1)
        with self.lock:
            self.state.connected = True
            self.state.connects += 1
            self.state.last_error = None
            self._rebirth = False  # the connection's own birth comes first anyway
            self.lock.notify_all()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        with self.lock:
            if self.state.connected:
                self.state.disconnects += 1
            self.state.connected = False
            if rc.is_failure:
                self.state.last_error = f"connection lost: {rc.getName()}"
            self.lock.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: object, _mid: int, _rc: object, _p: object) -> None:
        with self.lock:
            self._inflight = max(0, self._inflight - 1)
            self.state.acked += 1
            self.lock.notify_all()

    def _on_stored(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            doc = None
        seq = doc.get("seq") if isinstance(doc, dict) else None
        ts = doc.get("ts") if isinstance(doc, dict) else None
        seqs = stored_ranges(doc.get("seqs"), seq) if isinstance(doc, dict) and "seqs" in doc else None
        if type(seq) is not int or isinstance(seqs, str):
            if msg.payload:
                log.warning("%s: unusable confirmation %r ignored", self.gateway, msg.payload[:100])
            return
        if type(ts) is int and not msg.retain:
            # A live confirmation was stamped by the collector right after its commit: local time minus that
            # is our clock's offset plus one broker hop. Retained replays carry an old ts, so they are skipped.
            skew = int(self.clock() * 1000) - ts
            with self.lock:
                self.state.clock_skew_ms = skew
            if abs(skew) > self.max_clock_skew_s * 1000:
                log.warning("%s: local clock is %+.1f s off riskwatch's (limit %.1f s): readings are stamped "
                            "with this clock; fix NTP on the box", self.gateway, skew / 1000, self.max_clock_skew_s)
        result = self.buffer.confirm(seq, seqs)
        with self.lock:
            self.state.confirmations.append(seq)
            del self.state.confirmations[:-1000]
            if result.outcome == "advanced":
                self._progress_at = time.monotonic()
            self.lock.notify_all()
        if result.outcome == "ahead":
            log.warning("%s: confirmation of seq %d above the last seq sent (%d) ignored (a previous "
                        "installation's numbering, or forged)", self.gateway, seq, self.buffer.last_seq)

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, codes: list[Any], _p: object) -> None:
        host = self.fmt.primary_host
        if host is not None and mid == self._state_mid and any(rc.is_failure for rc in codes):
            log.error("%s: the broker refused the subscription to %s: the agent cannot see its primary host and "
                      "holds every reading (grant the gateway read on spBv1.0/STATE/+, see docs/security.md, or "
                      "set publish.primary_host_id: null)", self.gateway, host.topic)
            with self.lock:
                self.state.last_error = f"subscription to {host.topic} refused"

    def _on_state(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        host = self.fmt.primary_host
        if host is None:
            return
        with self.lock:
            seen = host.observe(bytes(msg.payload))
            self.lock.notify_all()
        if seen.outcome in ("stale", "unreadable"):
            log.warning("%s: STATE of primary host %r ignored: %s", self.gateway, host.host_id, seen.why)
        else:
            log.info("%s: primary host %r %s (%s)", self.gateway, host.host_id, seen.outcome, seen.why)

    def _on_command(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            what = self.fmt.command(bytes(msg.payload))
        except CommandError as exc:
            with self.lock:
                self.state.commands_rejected += 1
            log.warning("%s: command on %s ignored: %s", self.gateway, msg.topic, exc)
            return
        if what == "rebirth":
            log.info("%s: rebirth requested by the host (%s)", self.gateway, msg.topic)
            with self.lock:
                self._rebirth = True
                self.lock.notify_all()

    # -- the connection loop (own thread) -----------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.gateway, protocol=MQTTProtocolVersion.MQTTv311,
                        clean_session=True)
        configure(c, self.url)
        c.max_inflight_messages_set(0)  # our window bounds it; paho must never hold back a lower seq
        c.max_queued_messages_set(0)
        will_topic, will_payload, will_retain = self.fmt.will(self.gateway)
        c.will_set(will_topic, will_payload, qos=1, retain=will_retain)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.message_callback_add(topics.stored(self.gateway), self._on_stored)
        if self.fmt.primary_host is not None:
            c.message_callback_add(self.fmt.primary_host.topic, self._on_state)
        for t in self.fmt.command_topics(self.gateway):
            c.message_callback_add(t, self._on_command)
        return c

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            began = time.monotonic()
            self._host_left = False
            self._connection()
            if self._stop.is_set():
                break
            if self._host_left:  # not the broker's fault: connect again now and wait for the host there
                attempt = 0
                self._stop.wait(self.backoff_initial_s)
                continue
            attempt = 0 if time.monotonic() - began > 60 else attempt + 1
            delay = next_backoff(attempt, self.backoff_initial_s,
                                 self.backoff_max_s if not self._fatal_refusal else max(self.backoff_max_s, 60))
            with self.lock:
                err = self.state.last_error
            log.warning("%s: broker %s:%d unavailable (%s); retrying in %.1f s (attempt %d)", self.gateway,
                        self.url.host, self.url.port, err or "no connection", delay, attempt)
            self._stop.wait(delay)

    def _connection(self) -> None:
        c = self._new_client()
        self._client = c
        with self.lock:
            self._inflight = 0
            self.state.connected = False
            self.state.last_error = None  # this attempt's outcome, not the previous one's
        try:
            c.connect(self.url.host, self.url.port, keepalive=self.keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            with self.lock:
                self.state.last_error = f"{type(exc).__name__}: {exc}"
            return
        c.loop_start()
        try:
            with self.lock:
                self.lock.wait_for(lambda: self.state.connected or self.state.last_error is not None
                                   or self._stop.is_set(), 15)
                ok = self.state.connected
            if not ok:
                with self.lock:
                    self.state.last_error = self.state.last_error or "no CONNACK within 15 s"
                return
            log.info("%s: connected to %s:%d; re-sending from seq %d", self.gateway, self.url.host, self.url.port,
                     self.buffer.confirmed_seq + 1)
            self._serve(c)
        finally:
            c.disconnect()
            c.loop_stop()
            self._client = None

    def _publish(self, c: mqtt.Client, topic: str, payload: bytes, retain: bool = False, qos: int = 1) -> bool:
        """Hand one message to paho. QoS 0 counts in the window until paho has written it (its on_publish)."""
        info = c.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        with self.lock:
            self._inflight += 1
            self.state.published += 1
        return True

    def _serve(self, c: mqtt.Client) -> None:
        """Connected: probe, then send everything after the last confirmation and keep up; health every interval.

        Probe first: after a connect (and after any stall of the watermark) only the first unconfirmed message
        goes out, alone, until a confirmation covers it. A broker that restarted without the collector's session
        accepts messages for nobody until the collector subscribes again: the whole backlog would go nowhere and
        have to be sent again (and a collector from before the `seqs` ranges would confirm a later seq and the
        lost ones with it). A confirmed probe proves the collector is subscribed behind this connection. Costs
        one round trip per reconnect; a hole found later (a message the broker dropped) stalls the watermark and
        is probed the same way.
        """
        if not self._await_host(c):
            return
        for topic, payload, retain in self.fmt.on_connect_messages(self.gateway):
            if not self._publish(c, topic, payload, retain, self.fmt.data_qos):
                return
        cursor = self.buffer.confirmed_seq
        probe: int | None = None  # the seq sent alone; None once the collector confirmed it (streaming)
        probing = True
        next_status = 0.0
        self._progress_at = time.monotonic()
        host = self.fmt.primary_host
        while not self._stop.is_set():
            with self.lock:
                if not self.state.connected:
                    return
                host_gone = host is not None and not host.online
                room = self.window - self._inflight
                rebirth, self._rebirth = self._rebirth, False
            if host is not None and host_gone:
                self._leave_for_host(c, host)
                return
            if rebirth:
                for topic, payload, retain in self.fmt.rebirth_messages(self.gateway):
                    if not self._publish(c, topic, payload, retain, self.fmt.data_qos):
                        return
                with self.lock:
                    self.state.rebirths += 1
                # The host forgot this session (or saw a gap): what it had not stored goes out again behind the
                # new birth. Duplicates are absorbed by the unique key; the collector is subscribed (it asked).
                cursor = self.buffer.confirmed_seq
            if time.monotonic() >= next_status:
                self._publish(c, topics.status(self.gateway), orjson.dumps(self._status_doc()),
                              retain=self.fmt.status_retained)
                next_status = time.monotonic() + self.status_interval_s
            confirmed = self.buffer.confirmed_seq
            if probing and probe is not None and confirmed >= probe:
                probing = False
                log.debug("%s: probe %d confirmed; streaming", self.gateway, probe)
            if probing:
                room = 1 if cursor <= confirmed else 0
            if room > 0:
                batch = self.buffer.after(cursor, room)
                for seq, payload in batch:
                    if not self._publish(c, self.fmt.telemetry_topic(self.gateway), self.fmt.outgoing(payload),
                                         qos=self.fmt.data_qos):
                        return  # the connection went away; the next one re-sends from the confirmation
                    cursor = seq
                    if probing:
                        probe = seq
            confirmed = self.buffer.confirmed_seq
            cursor = max(cursor, confirmed)
            with self.lock:
                stalled = (cursor > confirmed and time.monotonic() - self._progress_at > self.resend_after_s)
            if stalled:
                log.info("%s: seq %d not confirmed for %.0f s; probing again from it", self.gateway, confirmed + 1,
                         self.resend_after_s)
                with self.lock:
                    self.state.resends += 1
                    self._progress_at = time.monotonic()
                cursor = confirmed
                probing, probe = True, None
                continue
            with self.lock:
                self.lock.wait(0.2)
        # clean stop: say so, since a clean disconnect does not fire the will
        if self._stop.is_set():
            self._say_offline(c)

    def _await_host(self, c: mqtt.Client) -> bool:
        """Sparkplug 3.0 (tck-id-message-flow-edge-node-birth-publish-phid-wait): no NBIRTH, hence no data, until the
        primary host's STATE on this connection says online. The health document still goes out: it is riskwatch's
        own topic, and how an operator sees an agent that waits. False: stopped or disconnected meanwhile."""
        host = self.fmt.primary_host
        if host is None:
            return True
        next_status = 0.0
        waited = False
        while not self._stop.is_set():
            with self.lock:
                if not self.state.connected:
                    return False
                if host.online:
                    self._rebirth = False  # the birth that follows answers a request that came meanwhile
                    break
            if not waited:
                waited = True
                log.info("%s: waiting for primary host %r to be online (%s) before the NBIRTH; readings stay "
                         "buffered", self.gateway, host.host_id, host.topic)
            if time.monotonic() >= next_status:
                self._publish(c, topics.status(self.gateway), orjson.dumps(self._status_doc()),
                              retain=self.fmt.status_retained)
                next_status = time.monotonic() + self.status_interval_s
            with self.lock:
                self.lock.wait(0.5)
        return not self._stop.is_set()

    def _leave_for_host(self, c: mqtt.Client, host: PrimaryHost) -> None:
        """The primary host went offline (tck-id-message-flow-edge-node-birth-publish-phid-offline): NDEATH, then
        a clean disconnect, and connect again (`_run`) to wait for it. Nothing is lost: the buffer keeps every
        unconfirmed reading for the next birth."""
        log.warning("%s: primary host %r went offline: NDEATH, reconnecting to wait for it; readings stay buffered",
                    self.gateway, host.host_id)
        self._say_offline(c)
        self._host_left = True

    def _say_offline(self, c: mqtt.Client) -> None:
        """Before a clean disconnect (which fires no will): the format's offline message, waited for up to 3 s."""
        for topic, payload, retain in self.fmt.on_stop_messages(self.gateway):
            self._publish(c, topic, payload, retain)
        with self.lock:
            self.lock.wait_for(lambda: self._inflight == 0 or not self.state.connected, 3)

    def _status_doc(self) -> dict[str, Any]:
        d = self.buffer.depth()
        now_ms = int(self.clock() * 1000)
        with self.lock:
            skew = self.state.clock_skew_ms
            commands = {"rebirths": self.state.rebirths, "rejected": self.state.commands_rejected}
        doc: dict[str, Any] = {
            "online": True, "ts": now_ms,
            "buffer": {"messages": d.messages, "readings": d.readings, "dropped": d.dropped,
                       "oldest_age_s": None if d.oldest_ms is None else round((now_ms - d.oldest_ms) / 1000, 3),
                       "confirmed_seq": self.buffer.confirmed_seq, "last_seq": self.buffer.last_seq},
            "clock_skew_ms": skew,
            "commands": commands,
            **self.fmt.health(),
        }
        doc.update(self.status())
        return doc

    def connected(self) -> bool:
        with self.lock:
            return self.state.connected


__all__ = ["OFFLINE", "LinkState", "Publisher", "next_backoff"]
