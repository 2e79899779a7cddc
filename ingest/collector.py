"""The collector: MQTT (paho, QoS1, manual ack) -> batch -> one transaction -> ack -> `stored` confirmation.

A message is acknowledged to the broker only after the transaction holding its
readings (or its dead letter) has committed, in arrival order. A collector
killed at any instant therefore loses nothing: the broker redelivers whatever
was not acknowledged, and the unique key (point, time) absorbs what had
already been stored.

Threads: paho's network thread only appends to a deque; the flush loop (the
caller's thread) decodes, writes and acknowledges. While the database is down
the flush loop keeps its batch, acknowledges nothing and retries with jittered
backoff; the broker stops sending once the in-flight window is full.

What arrives (issue 15), all on one `rw/v1/#` subscription at QoS1:
- QoS1 and QoS2 publishes are acknowledged after their commit (QoS2 is delivered to us as QoS1, see
  `_on_connect`); QoS0 is stored best effort and never acknowledged (`CollectorStats.qos0_messages`).
- a topic outside the contract is a `bad_topic` dead letter; `stored` (our own output) and `cmd/...` (the
  service's downlink) are ignored.
- a retained message replayed by the broker at (re)subscription is handled once: `retained_seen` holds
  (topic, SHA-256 of payload) of what was handled, written in the batch's transaction; a zero-length
  publish (the MQTT clear of a retained message) is ignored and forgets the topic's entries.
- after each commit, per gateway with a `seq` in the batch, the highest `seq` durably stored is published
  (retained, QoS1) to rw/v1/{gateway}/stored, with the seqs that commit holds (`seqs`, ranges; see `_confirm`):
  gateways with a store-and-forward buffer keep data until a confirmation lists it.

Sparkplug B (issue 18, docs/sparkplug.md): `spBv1.0/#` is subscribed alongside; an edge node's messages are decoded
(ingest.sparkplug.payload) and run through the host's per-edge-node session (ingest.sparkplug.host) into the same
batch (`_sparkplug`); the collector publishes its host STATE (`_publish_state`, with a will when alone) and, after
a commit, the rebirth requests that batch decided (`_request_rebirths`).

Several collectors (`leases`, issue 15; see ingest.leases and docs/scaling.md): instead of `rw/v1/#` the
collector subscribes to `rw/v1/{gateway}/#` for each gateway it holds by lease, renewed every few seconds in
the flush loop (and by the `Keeper` thread while the loop is busy with a long step, such as reloading rules).
Each batch checks its gateways' leases in its own transaction (`Leases.fence`): readings, dead letters and
confirmations of every message are stored (the unique key makes that safe whoever stores them), but only the
gateways still held at their claim's epoch reach the rule engine, so rule state is written by one collector
per gateway. On a claim the engine reloads the gained gateways' recorded state before the subscription starts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from core import registry
from core.clock import Clock
from core.errors import ConfigError, ServiceError
from core.mqtt import configure
from core.settings import CollectorSettings, IngestLimits, MqttUrl
from core.timeconst import MS_PER_S
from ingest import topics
from ingest.batch import Batch, DeadLetter
from ingest.decode import MessageRejected, decode_json_v1, decode_status, decode_status_at, message_seq
from ingest.leases import Keeper, Leases
from ingest.sparkplug import payload as sp_payload
from ingest.sparkplug import topics as sp_topics
from ingest.sparkplug.host import Host as SparkplugHost
from ingest.store import store_batch

log = logging.getLogger("riskwatch.collector")

DEAD_PAYLOAD_MAX = 64 * 1024
MAX_SEQ_RANGES = 64  # per confirmation (`_confirm`); a gateway's seqs are consecutive but for holes and re-sends


class BatchProcessor(Protocol):
    """Runs inside each batch's transaction (the rule engine plugs in here).

    `prepare` runs before the transaction; `process` inside it, after the
    readings are written, and returns a hook the collector calls once the
    transaction has committed. `tick` runs on the timer between batches.
    """

    tick_s: float

    def prepare(self, conn: psycopg.Connection) -> None: ...

    def process(self, conn: psycopg.Connection, batch: Batch, now: float) -> Callable[[], None]: ...

    def tick(self, conn: psycopg.Connection) -> None: ...


class ScopedProcessor(BatchProcessor, Protocol):
    """A processor with per-gateway state, for a collector of a group (ingest.leases).

    `scope` is set by the collector: inside a transaction of the processor's own (the tick), it returns the
    gateways whose state the processor may write, their leases locked until that transaction commits.
    `handover` runs after this collector claimed gateways, before it subscribes to them: the processor
    reloads what was recorded for them (the previous owner's committed state).
    """

    scope: Callable[[psycopg.Connection], frozenset[str]] | None

    def handover(self, conn: psycopg.Connection, gained: list[str]) -> None: ...


@dataclass
class CollectorStats:
    messages: int = 0
    readings_stored: int = 0
    readings_duplicate: int = 0
    dead_letters: int = 0
    unmapped: int = 0
    batches: int = 0
    db_errors: int = 0
    mqtt_connects: int = 0
    qos0_messages: int = 0  # stored best effort: never acknowledged, lost if the collector dies holding them
    ignored: int = 0  # the service's own traffic (stored, cmd) and retained clears: nothing to store
    retained_replays: int = 0  # retained messages replayed by the broker and already handled once
    confirmations: int = 0  # rw/v1/{gw}/stored messages published
    fenced_messages: int = 0  # stored, but kept from the rules: their gateway is not (or no longer) ours
    lease_rounds: int = 0
    leases_gained: int = 0
    leases_lost: int = 0
    sparkplug_messages: int = 0  # under spBv1.0/ from edge nodes (NBIRTH … DDEATH), decoded or dead-lettered
    rebirth_requests: int = 0  # NCMD `Node Control/Rebirth` published (after their batch committed)
    stale_deaths: int = 0  # NDEATHs of an older connection than the current NBIRTH's (bdSeq): ignored
    last_commit_s: float = 0.0
    max_inbox: int = 0  # most messages waiting at once: bounded by the MQTT receive window
    started: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Msg:
    mid: int
    topic: str
    payload: bytes
    generation: int
    retain: bool = False  # a retained message the broker replayed at subscribe time
    qos: int = 1  # as delivered: 0 is never acknowledged (Mosquitto drops a client that PUBACKs id 0)


class Collector:
    def __init__(
        self,
        db_url: str,
        mqtt_url: MqttUrl,
        settings: CollectorSettings | None = None,
        limits: IngestLimits | None = None,
        *,
        clock: Clock,
        processors: list[BatchProcessor] | None = None,
        leases: Leases | None = None,
    ):
        """`clock` is the process's one clock, given by the composition root (api.run) and shared with the
        rule engine, so arrivals and the engine's ticks read the same time. `leases`: one collector of a group
        (per-gateway subscriptions by lease); None: the only collector, on `rw/v1/#`."""
        self.db_url = db_url
        self.mqtt_url = mqtt_url
        self.settings = settings or CollectorSettings()
        self.limits = limits or IngestLimits()
        self.clock = clock
        self.processors = processors or []
        self.stats = CollectorStats()
        self._inbox: deque[_Msg] = deque()
        self._wake = threading.Event()
        self._room = threading.Event()
        self._stop = threading.Event()
        self._generation = 0
        self._ticked: dict[int, float] = {}
        self._ack_lock = threading.Lock()
        self._connected = threading.Event()
        self._fatal: str | None = None
        self._conn: psycopg.Connection | None = None
        self._snapshot: registry.Snapshot | None = None
        self._snapshot_at = 0.0
        self._confirmed: dict[str, int] = {}  # per gateway the highest seq published as `stored`
        self.client_id = self._resolve_client_id()
        self.leases = leases
        self._sub_lock = threading.Lock()
        self._subscribed: set[str] = set()  # gateways whose rw/v1/{gw}/# this connection subscribed to
        self._want: frozenset[str] = frozenset()  # the leases held, as the MQTT side reads them (under _sub_lock)
        self._unsub_due: dict[str, float] = {}  # gateways lost, to unsubscribe at (monotonic s): see _resubscribe
        self._resync = True  # after a (re)connect: drop a previous run's per-gateway subscriptions
        self._lease_at = -math.inf
        self._alive_at = time.monotonic()  # the flush loop's last iteration: the lease keeper's sign of progress
        self._keeper: Keeper | None = None
        self._resyncing: dict[str, _Resync] = {}  # gateways claimed whose confirmations wait for a re-send
        # Sparkplug B host application (docs/sparkplug.md): the edge nodes' sessions, touched only by the flush loop.
        self.sparkplug = SparkplugHost(self.limits)
        self._state_ts = 0  # our STATE's timestamp (ms): the will's and the birth's of one connection are equal
        self._state_mid: int | None = None  # the subscription whose SUBACK lets us publish STATE online
        if leases is not None:
            for p in self.processors:
                if hasattr(p, "handover"):
                    p.scope = self._fence_held  # type: ignore[attr-defined]  # ScopedProcessor
        self._client = self._make_client()

    # --- MQTT side (paho network thread) -------------------------------------------------

    def _resolve_client_id(self) -> str:
        """The MQTT client id, which keys the persistent session: the collector's username.

        The broker binds client ids to usernames (Mosquitto `use_username_as_clientid`: it replaces whatever id a
        client asks for), so the session lives under the username whatever we send; asking for exactly that keeps
        our id, the broker's and the logs in agreement. A configured id that differs is ignored, with a warning.
        """
        user = self.mqtt_url.username
        configured = self.settings.client_id
        if not user:
            return configured or "riskwatch-collector"
        if configured and configured != user:
            log.warning("collector client id %r differs from its MQTT username %r: using %r (the broker binds "
                        "client ids to usernames, so the persistent session is keyed on the username)",
                        configured, user, user)
        return user

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=True,
        )
        c.manual_ack_set(True)
        try:
            configure(c, self.mqtt_url)  # credentials and, for mqtts://, a context verifying CA and host name
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"MQTT TLS: cannot load the CA or client certificate of "
                              f"{self.mqtt_url.redacted()}: {exc}") from exc
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_pre_connect = self._on_pre_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        mqtt_log = logging.getLogger("riskwatch.collector.mqtt")
        mqtt_log.addFilter(_quiet_shutdown)
        c.enable_logger(mqtt_log)
        return c

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        if rc.is_failure:
            log.error("MQTT connect refused by %s: %s", self.mqtt_url.redacted(), rc)
            if rc.value in (0x86, 0x87, 0x8C):  # bad credentials / not authorised / bad auth method
                self._fatal = f"MQTT broker refused the collector's credentials: {rc}"
                self._stop.set()
                self._wake.set()
            return
        with self._ack_lock:
            self._generation += 1
        self.stats.mqtt_connects += 1
        log.info("MQTT connected to %s as %s (session present: %s)", self.mqtt_url.redacted(),
                 self.client_id, getattr(_f, "session_present", None))
        if self.leases is not None:
            self._state_mid = self._subscribe_held(client)
            if self._state_mid is None:
                self._publish_state(client, True)
            self._connected.set()
            return
        # The whole tree, so a topic outside the contract is dead-lettered rather than never seen; no_local keeps
        # the collector's own `stored` confirmations from coming back to it. Subscribing at QoS1 caps delivery
        # at QoS1: a gateway's QoS2 publish reaches us as QoS1, acknowledged after commit. Receiving QoS2 would be
        # worse, not better: paho sends PUBREC (the broker then forgets the message) before the application
        # sees it, so a collector killed before its commit would lose it.
        # Sparkplug B edge nodes publish under spBv1.0/ (the whole tree too, for the same reason).
        _rc, self._state_mid = client.subscribe([(topics.ALL_FILTER, SubscribeOptions(qos=1, noLocal=True)),
                                                 (sp_topics.ALL_FILTER, SubscribeOptions(qos=1, noLocal=True))])
        # Sessions of collectors before issue 15 hold the two narrow filters: overlapping subscriptions would
        # deliver every message twice. Unsubscribing a filter the session lacks is harmless.
        client.unsubscribe([topics.TELEMETRY_FILTER, topics.STATUS_FILTER])
        self._connected.set()

    def _on_subscribe(self, client: mqtt.Client, _u: object, mid: int, _rcs: object, _p: object) -> None:
        # Sparkplug 3.0: the host subscribes first and says it is online after, so an edge node that waits for
        # our STATE before its NBIRTH cannot publish it into a subscription not yet in place.
        if mid == self._state_mid:
            self._state_mid = None
            self._publish_state(client, True)

    # --- Sparkplug B: the primary host's STATE and rebirth requests ----------------------------------------

    def _publish_state(self, client: mqtt.Client, online: bool) -> None:
        """Sparkplug 3.0 host STATE on spBv1.0/STATE/riskwatch: retained, QoS1, `{"online", "timestamp"}`.

        Birth and will of one connection carry the same timestamp (`_state_ts`, set before each connect), so an
        edge node can tell a stale will from the current state. In a group of collectors there is no will (see
        `_on_pre_connect`): the birth says "riskwatch is up", which stays true while any member is.
        """
        payload = orjson.dumps({"online": online, "timestamp": self._state_ts})
        info = client.publish(sp_topics.state(), payload, qos=1, retain=True)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("could not publish the Sparkplug STATE: %s", mqtt.error_string(info.rc))

    def _leave_state(self) -> None:
        """A single collector stopping cleanly says so in its STATE (the broker sends no will after a clean
        disconnect). A member of a group says nothing: the others still hold their gateways."""
        if self.leases is not None or not self._connected.is_set():
            return
        payload = orjson.dumps({"online": False, "timestamp": self._state_ts})
        info = self._client.publish(sp_topics.state(), payload, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=2.0)
        except (RuntimeError, ValueError) as exc:
            log.warning("could not publish the Sparkplug STATE offline: %s", exc)

    def _request_rebirths(self, rebirths: list[tuple[str, str]]) -> None:
        """NCMD `Node Control/Rebirth` to each (gateway, group), QoS0 and not retained (Sparkplug 3.0).

        Sent after the batch that decided it committed: a batch that fails is decoded again and decides again
        (the host's state rolled back), so a request is published once per decision, never for a batch that left
        no trace. Waiting for the commit costs at most one batch age (batch_max_age_s) of delay.
        """
        ts = int(time.time() * MS_PER_S)
        for gw, group in rebirths:
            info = self._client.publish(sp_topics.ncmd(group, gw), sp_payload.rebirth_request(ts), qos=0)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # QoS0 is not queued while disconnected: the host asks again at the edge node's next unexplained
                # message once its 10 s hold has passed.
                log.warning("could not request a rebirth of %s: %s", gw, mqtt.error_string(info.rc))
                continue
            self.stats.rebirth_requests += 1
            log.info("Sparkplug: rebirth requested from edge node %s (group %s)", gw, group)

    # --- several collectors: per-gateway subscriptions by lease --------------------------------

    def _subscribe_held(self, client: mqtt.Client) -> int | None:
        """On (re)connect in a group: per gateway held `rw/v1/{gw}/#` and its Sparkplug topics (QoS1, no_local, as
        above)."""
        assert self.leases is not None
        with self._sub_lock:
            # A session of a single collector holds rw/v1/#: it would deliver every gateway to us.
            client.unsubscribe([topics.ALL_FILTER, topics.TELEMETRY_FILTER, topics.STATUS_FILTER,
                                sp_topics.ALL_FILTER])
            held = sorted(self._want)
            mid = None
            if held:
                _rc, mid = client.subscribe([(f, SubscribeOptions(qos=1, noLocal=True)) for g in held
                                             for f in _gateway_filters(g)])
            self._subscribed = set(held)
            self._resync = True
            return mid

    def _resubscribe(self, gained: list[str], lost: list[str], known: list[str]) -> None:
        """Follow the leases: subscribe to what was gained; unsubscribe what was lost two renewals later.

        The overlap is for the gateway's next owner, which subscribes at its next round (within renew_s): a
        QoS1 message published while nobody subscribes is acknowledged by the broker and delivered to nobody.
        Meanwhile both receive the gateway's messages; ours are stored (the unique key absorbs the doubles)
        without reaching our rules. After a (re)connect also unsubscribe every other known gateway: a
        persistent session of an earlier run still holds the subscriptions of the gateways it held then.
        Messages already queued for them arrive anyway and are stored without reaching the rules (`_flush`)."""
        assert self.leases is not None
        now = time.monotonic()
        for g in lost:
            self._unsub_due.setdefault(g, now + 2 * self.leases.settings.renew_s)
        with self._sub_lock:
            self._want = frozenset(self.leases.held)
            for g in list(self._unsub_due):
                if g in self._want:
                    del self._unsub_due[g]  # held again
            if not self._connected.is_set():
                return  # _subscribe_held does it all at the next connect
            due = {g for g, at in self._unsub_due.items() if at <= now}
            for g in due:
                del self._unsub_due[g]
            drop = due & self._subscribed
            if self._resync and known:
                drop |= set(known) - self._want
                self._resync = False
            add = [g for g in gained if g not in self._subscribed]
            if add:
                self._client.subscribe([(f, SubscribeOptions(qos=1, noLocal=True))
                                        for g in sorted(add) for f in _gateway_filters(g)])
                self._subscribed.update(add)
            for i in range(0, len(drop), 500):
                part = sorted(drop)[i:i + 500]
                self._client.unsubscribe([f for g in part for f in _gateway_filters(g)])
            self._subscribed -= drop

    def _lease_round(self) -> None:
        """Every renew_s: renew, rebalance, claim; reload the rule state of what was claimed, then subscribe."""
        assert self.leases is not None
        now = time.monotonic()
        if now - self._lease_at < self.leases.settings.renew_s:
            return
        self._lease_at = now
        try:
            conn = self._ensure_db()
            change = self.leases.round(conn)
            if change.gained:
                for p in self.processors:
                    handover = getattr(p, "handover", None)
                    if handover is not None:
                        handover(conn, change.gained)
            known = list(self._registry(conn).gateways) if self._resync else []
        except psycopg.Error as exc:
            # Leases run out unrenewed while the database is away; the fence keeps our batches honest meanwhile.
            log.warning("lease round skipped: %s", exc)
            self._rollback_quietly()
            return
        self.stats.lease_rounds += 1
        self.stats.leases_gained += len(change.gained)
        self.stats.leases_lost += len(change.lost)
        for g in change.lost:
            self._resyncing.pop(g, None)
            self.sparkplug.forget(g)  # its next owner holds the Sparkplug session (and asks for a rebirth)
        for g in change.gained:
            self._resyncing[g] = _Resync()
        self._resubscribe(change.gained, change.lost, known)

    def _fence_held(self, conn: psycopg.Connection) -> frozenset[str]:
        """The processors' scope: every gateway held, checked (and locked) in the caller's transaction."""
        assert self.leases is not None
        return self.leases.fence(conn, list(self.leases.held))

    def _rollback_quietly(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.rollback()
            except psycopg.Error:
                pass

    def _on_pre_connect(self, client: mqtt.Client, _u: object) -> None:
        # paho doubles its reconnect delay; a random extra wait keeps a fleet of
        # collectors (or a restarted broker's clients) from reconnecting in step.
        if self.stats.mqtt_connects:
            self._stop.wait(random.uniform(0.0, 1.0))
        # Sparkplug 3.0: the host's will is its STATE offline, with this connection's timestamp. Only a single
        # collector has one: in a group, one member's death would tell every edge node that riskwatch is gone
        # while the others hold their gateways (docs/sparkplug.md, "Several collectors").
        self._state_ts = int(time.time() * MS_PER_S)
        if self.leases is None:
            client.will_set(sp_topics.state(), orjson.dumps({"online": False, "timestamp": self._state_ts}),
                            qos=1, retain=True)

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT disconnected (%s); reconnecting with backoff", rc)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._inbox.append(_Msg(msg.mid, msg.topic, bytes(msg.payload), self._generation, bool(msg.retain), msg.qos))
        n = len(self._inbox)
        if n > self.stats.max_inbox:
            self.stats.max_inbox = n
        if n >= self._flush_messages:
            self._wake.set()
        if n >= self._inbox_limit:
            # Backpressure: Mosquitto 2.0.11 stops enforcing the receive window once acknowledgements
            # flow (eclipse-mosquitto/mosquitto#2301), so bound memory ourselves: stop reading the
            # socket until the flush loop has caught up; TCP flow control holds the broker back.
            self._room.clear()
            while len(self._inbox) >= self._inbox_limit // 2 and not self._stop.is_set():
                self._room.wait(0.5)

    @property
    def _inbox_limit(self) -> int:
        return 2 * self.settings.receive_maximum

    @property
    def _flush_messages(self) -> int:
        return max(1, self.settings.receive_maximum // 2)

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._room.set()

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Run until stop(); flush what has arrived, then disconnect cleanly."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        self._connect(props)
        self._client.loop_start()
        if self.leases is not None:
            self._keeper = Keeper(self.leases, lambda: psycopg.connect(
                self.db_url, connect_timeout=5, application_name="riskwatch-collector-leases"),
                lambda: self._alive_at)
            self._keeper.start()
        try:
            if ready:
                ready()
            self._loop()
        finally:
            if self._keeper is not None:
                self._keeper.stop()
            self._leave_state()
            self._client.disconnect()
            self._client.loop_stop()
            if self._conn is not None:
                self._conn.close()
        if self._fatal:
            raise ServiceError(self._fatal)

    def _connect(self, props: Properties) -> None:
        """First connection, retried with jittered backoff; paho reconnects after that."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._client.connect(self.mqtt_url.host, self.mqtt_url.port, keepalive=30,
                                     clean_start=False, properties=props)
                return
            except ssl.SSLCertVerificationError as exc:
                # Not transient: the broker is not who the URL's CA says it should be. Retrying would hide it.
                self._fatal = (f"MQTT broker {self.mqtt_url.redacted()}: TLS: certificate verify failed "
                               f"({exc.verify_message}); check the URL's cafile and host name")
                log.error("%s", self._fatal)
                self._stop.set()
                self._wake.set()
                return
            except OSError as exc:
                log.warning("MQTT broker %s unreachable (%s); retrying", self.mqtt_url.redacted(), exc)
                self._stop.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 30.0)

    def _tick(self) -> None:
        """Timer work of the processors (stale data, expiries), at most every tick_s."""
        now = time.monotonic()
        for p in self.processors:
            if now - self._ticked.get(id(p), 0.0) < p.tick_s:
                continue
            self._ticked[id(p)] = now
            try:
                p.tick(self._ensure_db())
            except psycopg.Error as exc:
                log.warning("tick skipped: %s", exc)
                self._rollback_quietly()

    def _loop(self) -> None:
        pending: list[_Msg] = []
        first_at = 0.0
        backoff = 0.0
        while True:
            self._alive_at = time.monotonic()
            stopping = self._stop.is_set()
            if not stopping and self.leases is not None:
                self._lease_round()
            if not stopping and self.processors:
                self._tick()
            if not pending:
                first_at = 0.0
            # Move arrivals into the pending list, up to the batch limits.
            while self._inbox and len(pending) < self._flush_messages:
                pending.append(self._inbox.popleft())
                if not first_at:
                    first_at = time.monotonic()
            if len(self._inbox) < self._inbox_limit // 2:
                self._room.set()
            if pending:
                age = time.monotonic() - first_at
                due = stopping or len(pending) >= self._flush_messages or age >= self.settings.batch_max_age_s
                if due:
                    if self._flush(pending):
                        pending = []
                        backoff = 0.0
                    else:
                        if stopping:
                            log.warning("stopping with %d unacknowledged messages (the broker keeps them)",
                                        len(pending))
                            return
                        backoff = min(5.0, max(0.2, backoff * 2))
                        self._stop.wait(backoff * random.uniform(0.5, 1.0))
                    continue
                self._wake.wait(max(0.0, self.settings.batch_max_age_s - age))
                self._wake.clear()
                continue
            if stopping and not self._inbox:
                self._leave()
                return
            self._wake.wait(self.settings.batch_max_age_s)
            self._wake.clear()

    def _leave(self) -> None:
        """A clean stop of a group member: hand its gateways over now rather than after the lease ttl."""
        if self._keeper is not None:
            self._keeper.stop()  # a renewal after the release would announce us alive again
        if self.leases is None or not self.leases.held:
            return
        try:
            self.leases.leave(self._ensure_db())
        except psycopg.Error as exc:
            log.warning("could not release leases (%s); they run out in %g s", exc, self.leases.settings.ttl_s)

    # --- database side --------------------------------------------------------------------

    def _ensure_db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                try:
                    self._conn.close()
                except psycopg.Error:
                    pass
            self._conn = psycopg.connect(self.db_url, connect_timeout=5, application_name="riskwatch-collector")
            self._snapshot = None
        return self._conn

    def _registry(self, conn: psycopg.Connection, force: bool = False) -> registry.Snapshot:
        now = time.monotonic()
        if self._snapshot is None or (force and now - self._snapshot_at > 1.0):
            self._snapshot = registry.snapshot(conn)
        elif now - self._snapshot_at > self.settings.registry_refresh_s:
            # re-read only when the registry changed
            if registry.snapshot_version(conn) != self._snapshot.version:
                self._snapshot = registry.snapshot(conn)
        else:
            return self._snapshot
        self._snapshot_at = now
        conn.commit()
        return self._snapshot

    def _flush(self, msgs: list[_Msg]) -> bool:
        """Decode, store and acknowledge msgs. False when the database is unavailable.

        The Sparkplug host's session state moves with the batch: kept if it commits, rolled back otherwise, so
        the retry decodes the same messages against the same state (no false seq gap, no second rebirth)."""
        self.sparkplug.begin()
        rebirths: list[tuple[str, str]] = []
        try:
            conn = self._ensure_db()
            for p in self.processors:
                p.prepare(conn)
            spans: list[tuple[str, int, int]] | None = [] if self.leases is not None else None
            seq_log: list[tuple[str, int]] = []
            batch = self._build(conn, msgs, spans, seq_log, rebirths)
            now = self.clock.now()
            hooks = []
            lost: list[str] = []
            owned: frozenset[str] | None = None
            with conn.transaction():
                res = store_batch(conn, batch)
                ruled = batch
                if spans is not None:
                    ruled, lost, owned = self._fenced(conn, batch, spans)
                for p in self.processors:
                    hooks.append(p.process(conn, ruled, now))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.sparkplug.rollback()
            self.stats.db_errors += 1
            log.warning("database unavailable (%s); holding %d messages unacknowledged", exc, len(msgs))
            return False
        except psycopg.Error as exc:
            # Not a connection problem: something in this batch is poison. Store
            # message by message and dead-letter what still fails.
            self.sparkplug.rollback()
            self.stats.db_errors += 1
            log.error("batch failed (%s); retrying message by message", exc)
            if len(msgs) > 1:
                return self._flush_one_by_one(msgs)
            return self._poison(msgs[0], exc)
        except BaseException:
            self.sparkplug.rollback()
            raise
        self.sparkplug.commit()
        self.stats.batches += 1
        self.stats.messages += len(msgs)
        self.stats.readings_stored += res.stored
        self.stats.readings_duplicate += res.duplicates
        self.stats.dead_letters += len(batch.dead)
        self.stats.unmapped += sum(u.count for u in batch.unmapped.values())
        self.stats.last_commit_s = time.time()
        self.stats.qos0_messages += sum(1 for m in msgs if m.qos == 0)
        for hook in hooks:
            hook()
        self._ack(msgs)
        self._confirm(res.confirmed if owned is None else self._handover_confirmed(res.confirmed, owned, seq_log),
                      seq_ranges(seq_log))
        if rebirths:
            # In a group, only the gateway's owner asks: the other member, still subscribed during a handover,
            # would otherwise send a second request.
            self._request_rebirths([r for r in rebirths if owned is None or r[0] in owned])
        if lost and self.leases is not None:
            gone = self.leases.forget(lost)
            for g in gone:
                self._resyncing.pop(g, None)
                self.sparkplug.forget(g)
            self.stats.leases_lost += len(gone)
            log.warning("leases of %s taken over by another collector: %s", self.client_id, gone)
            self._resubscribe([], gone, [])
        return True

    def _handover_confirmed(self, confirmed: dict[str, int], owned: frozenset[str],
                            seq_log: list[tuple[str, int]]) -> dict[str, int]:
        """A group member's `stored` confirmations: only for gateways it holds, and none that a handover voids.

        Confirming `seq` n tells a gateway that everything up to n is stored, which a single collector can say
        because the broker delivers a gateway's messages to its one session in order. After a claim that no
        longer holds: messages published before our subscription went to the previous owner's session (a dead
        collector's keeps them), so our highest stored seq says nothing about those below it. So after a claim
        the confirmation waits for the gateway to re-send its unconfirmed backlog (a confirming gateway does
        when confirmations stall): a seq at or below one already seen since the claim starts that backlog, and
        from there on our session holds, in order, everything the gateway has not seen confirmed. We then
        confirm the highest seq committed since, until it reaches the stored maximum (normal confirmations
        again). A gateway not held is never confirmed by us: its owner does.
        """
        out = {g: s for g, s in confirmed.items() if g in owned and g not in self._resyncing}
        for g, seq in seq_log:
            r = self._resyncing.get(g)
            if r is None or g not in owned:
                continue
            if not r.armed and seq <= r.max_seen:
                r.armed = True
            r.max_seen = max(r.max_seen, seq)
            if r.armed:
                r.best = max(r.best, seq)
        for g, r in list(self._resyncing.items()):
            if g in owned and r.armed and r.best >= 0:
                out[g] = r.best
                if r.best >= confirmed.get(g, -1):
                    del self._resyncing[g]  # caught up: the stored maximum is ours to confirm again
        return out

    def _fenced(self, conn: psycopg.Connection, batch: Batch,
                spans: list[tuple[str, int, int]]) -> tuple[Batch, list[str], frozenset[str]]:
        """The part of a stored batch the rules may see (gateways held at their epoch), the leases lost and the
        gateways held.

        Inside the batch's transaction: the fence locks the lease rows until the commit. Messages of other
        gateways (in flight when a lease moved, or queued in our session from an earlier run) are stored and
        acknowledged like any other; their rule state is the owner's business.
        """
        assert self.leases is not None
        gws = {g for g, _, _ in spans}
        owned = self.leases.fence(conn, sorted(gws))
        lost = sorted((gws & set(self.leases.held)) - owned)
        if owned == gws:
            return batch, lost, owned
        keep = np.zeros(len(batch.point_ids), bool)
        fenced = 0
        for g, a, b in spans:
            if g in owned:
                keep[a:b] = True
            else:
                fenced += 1
        self.stats.fenced_messages += fenced
        idx = np.flatnonzero(keep).tolist()
        return Batch(
            point_ids=[batch.point_ids[i] for i in idx], times_us=[batch.times_us[i] for i in idx],
            values=[batch.values[i] for i in idx], qualities=[batch.qualities[i] for i in idx],
            status={g: v for g, v in batch.status.items() if g in owned},
            replayed={g: v for g, v in batch.replayed.items() if g in owned},
            last_seen={g: v for g, v in batch.last_seen.items() if g in owned},
            devices={d: v for d, v in batch.devices.items() if d[0] in owned},
            skew={g: v for g, v in batch.skew.items() if g in owned},
            messages=batch.messages - fenced,
        ), lost, owned

    def _confirm(self, confirmed: dict[str, int], held: dict[str, list[list[int]]]) -> None:
        """Publish, after the commit, each gateway's highest durably stored `seq` (retained, QoS1) and the seqs
        this commit holds for it (`seqs`: inclusive ranges, sorted and merged).

        A gateway with a store-and-forward buffer drops messages only once a confirmation covers them, so riskwatch
        and not only the broker holds its data. It drops what `seqs` lists, not everything up to `seq`: a broker
        may drop a QoS1 message for our session while both connections stay up (its queue for us full), so the
        highest seq stored says nothing about the lower ones. A message whose readings were all duplicates is
        stored too and listed, so a re-sent hole is confirmed although `seq` does not move. Past
        MAX_SEQ_RANGES ranges the lowest are listed; the rest stay in the gateway's buffer until it re-sends them.
        `seq` comes from gateway_stored_seq (raised, never lowered, in the batch's transaction), so it never goes
        down, across restarts too; within a run nothing lower than what was already published is sent again, and
        a confirmation without new seqs is not sent. paho queues it while the broker is away.
        """
        ts = int(time.time() * MS_PER_S)
        for gw, new in sorted(confirmed.items()):
            prev = self._confirmed.get(gw, -1)
            seq = max(new, prev)
            seqs = [r for r in held.get(gw, []) if r[1] <= seq][:MAX_SEQ_RANGES]  # (a re-sync's `seq` may lag)
            if new <= prev and not seqs:
                continue
            self._confirmed[gw] = seq
            payload = orjson.dumps({"seq": seq, "ts": ts, "seqs": seqs})
            info = self._client.publish(topics.stored(gw), payload, qos=1, retain=True)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("could not publish the confirmation of %s (seq %d): %s", gw, seq,
                            mqtt.error_string(info.rc))
                continue
            self.stats.confirmations += 1

    def _flush_one_by_one(self, msgs: list[_Msg]) -> bool:
        """Flush each message alone; those done (committed and acknowledged) leave msgs."""
        while msgs:
            if not self._flush(msgs[:1]):
                return False
            del msgs[0]
        return True

    def _poison(self, m: _Msg, exc: psycopg.Error) -> bool:
        try:
            conn = self._ensure_db()
            batch = Batch(messages=1)
            parsed = topics.parse(m.topic)
            gw = parsed[0] if parsed else sp_topics.edge_of(m.topic) if sp_topics.is_sparkplug(m.topic) else None
            batch.dead.append(DeadLetter(gw, m.topic, "store_failed",
                                         str(exc)[:500], None, m.payload[:DEAD_PAYLOAD_MAX]))
            # Handled as its dead letter: listed, or a confirming gateway would re-send it for ever. Only by the
            # gateway's owner, and not while a handover waits for the gateway's re-send (_handover_confirmed).
            owner = parsed[0] if parsed is not None and parsed[1] == "telemetry" and not m.retain else None
            if owner is not None and self.leases is not None and (owner not in self.leases.held
                                                                  or owner in self._resyncing):
                owner = None
            seq = _rejected_seq(m.payload) if owner is not None else None
            if owner is not None and seq is not None:
                batch.add_seq(owner, seq)
            with conn.transaction():
                res = store_batch(conn, batch)
        except psycopg.Error as exc2:
            log.warning("could not dead-letter a poison message (%s)", exc2)
            return False
        self.stats.dead_letters += 1
        self._ack([m])
        if owner is not None and seq is not None:
            self._confirm(res.confirmed, {owner: [[seq, seq]]})
        return True

    def _ack(self, msgs: list[_Msg]) -> None:
        """Acknowledge, in arrival order, the committed messages that need it: QoS1 (PUBACK) and QoS2 (PUBCOMP).

        QoS0 has no acknowledgement (its message id is 0; Mosquitto answers a PUBACK for it with a protocol
        error and drops the connection). What QoS0 costs a gateway: it is stored best effort, lost when the
        collector dies between receipt and commit, while the collector is disconnected (Mosquitto does not
        queue QoS0 for offline sessions) or when the broker's queue for the collector is full.
        """
        with self._ack_lock:
            gen = self._generation
            for m in msgs:
                # Message ids of an earlier connection mean nothing now; the broker
                # redelivers those messages and they are acknowledged then.
                if m.generation == gen and m.qos in (1, 2):
                    self._client.ack(m.mid, m.qos)

    def _build(self, conn: psycopg.Connection, msgs: list[_Msg],
               spans: list[tuple[str, int, int]] | None = None,
               seq_log: list[tuple[str, int]] | None = None,
               rebirths: list[tuple[str, str]] | None = None) -> Batch:
        """Decode msgs into one batch. `spans` (a group member's): per message of a known gateway, (gateway,
        first, end) of its readings in the batch's lists, for the fence. `seq_log` receives (gateway, seq) of
        each live message with a seq the batch stores, for the confirmation's `seqs` (a retained one is stored but
        not listed: the agent never retains, and listing less only costs a re-send). `rebirths` receives the
        (gateway, group) of each Sparkplug rebirth request the batch decided, to publish once it has committed."""
        batch = Batch(messages=len(msgs))
        snap = self._registry(conn)
        now = self.clock.now()
        known = self._retained_known(conn, msgs)
        starts: list[int] = []  # where each message's dead letters begin
        status_keys: dict[int, tuple[str, bytes]] = {}  # retained statuses, by message index
        for i, m in enumerate(msgs):
            starts.append(len(batch.dead))
            route = topics.route(m.topic)
            if route is not None and route[1] in ("stored", "cmd"):
                # The service's own traffic: our confirmations, and the downlink to gateways (riskwatch
                # publishes commands; a gateway writing there is not sending data, so it is not a dead letter).
                self.stats.ignored += 1
                continue
            if not m.payload:
                # A zero-length publish is how MQTT clears a retained message (delivered live, without the
                # retain flag): nothing to store, and its topic's replays may be handled afresh later.
                self.stats.ignored += 1
                batch.retained_cleared.append(m.topic)
                continue
            key: tuple[str, bytes] | None = None
            if m.retain:
                key = (m.topic, _digest(m.payload))
                if key in known and (route is None or route[1] == "telemetry"):
                    # Handled once already (stored or dead-lettered, in a committed transaction): a replay
                    # at reconnect adds nothing. Retained statuses go on: their replay informs the rule engine.
                    self.stats.retained_replays += 1
                    continue
            if route is None and sp_topics.is_sparkplug(m.topic):
                snap = self._sparkplug(conn, batch, m, key, known, snap, now, spans, seq_log, rebirths)
                continue
            if route is None:
                if key is not None:
                    known.add(key)
                    batch.retained_new.append(key)
                batch.dead.append(DeadLetter(topics.gateway_of(m.topic), m.topic, "bad_topic",
                                             "not a topic of the contract: rw/v1/{gateway}/telemetry or "
                                             "rw/v1/{gateway}/status", None, m.payload[:DEAD_PAYLOAD_MAX]))
                continue
            gw, kind = route[0], route[1]
            if spans is not None:
                spans.append((gw, len(batch.point_ids), len(batch.point_ids)))
            if key is not None:
                if kind == "status":
                    status_keys[i] = key  # settled below, once its dead letters (if any) are known
                else:
                    known.add(key)
                    batch.retained_new.append(key)
            snap, info = self._gateway(conn, snap, gw)
            if info is None or not info.enabled:
                reason = "unknown_gateway" if info is None else "gateway_disabled"
                batch.dead.append(DeadLetter(gw, m.topic, reason, f"gateway {gw!r}", None,
                                             m.payload[:DEAD_PAYLOAD_MAX]))
                continue
            if kind == "status" and m.retain:
                # A replay is old news, not traffic: the rule engine weighs it against what it recorded.
                try:
                    batch.replayed[gw] = decode_status_at(m.payload)
                except MessageRejected as exc:
                    batch.dead.append(DeadLetter(gw, m.topic, exc.reason, exc.detail, None,
                                                 m.payload[:DEAD_PAYLOAD_MAX]))
                continue
            if not m.retain:  # retained telemetry (gateways should not retain it) replayed is not traffic either
                batch.last_seen[gw] = now
            if kind == "status":
                try:
                    batch.status[gw] = (decode_status(m.payload), now)
                except MessageRejected as exc:
                    batch.dead.append(DeadLetter(gw, m.topic, exc.reason, exc.detail, None,
                                                 m.payload[:DEAD_PAYLOAD_MAX]))
                continue
            try:
                d = decode_json_v1(m.payload, now, self.limits)
            except MessageRejected as exc:
                batch.dead.append(DeadLetter(gw, m.topic, exc.reason, exc.detail, None,
                                             m.payload[:DEAD_PAYLOAD_MAX]))
                seq = _rejected_seq(m.payload)
                if seq is not None and seq_log is not None and not m.retain:
                    # Handled: it is its dead letter. Unlisted, a confirming gateway would re-send it for ever.
                    batch.add_seq(gw, seq)
                    seq_log.append((gw, seq))
                continue
            if d.seq is not None:
                batch.add_seq(gw, d.seq)
                if seq_log is not None and not m.retain:
                    seq_log.append((gw, d.seq))
            if d.ts_us is not None and not m.retain:
                batch.skew[gw] = max(batch.skew.get(gw, -math.inf), d.ts_us / 1e6 - now)
            for rej in d.rejected:
                batch.dead.append(DeadLetter(gw, m.topic, rej.reason, rej.detail, rej.index,
                                             _reading_bytes(rej.raw)))
            snap = self._add_readings(conn, batch, snap, gw, d.tags, d.times_us, d.values, d.qualities, spans)
        starts.append(len(batch.dead))
        # An invalid retained status is dead-lettered the first time only; its replays still reach the engine.
        drop: list[tuple[int, int]] = []
        for i, key in status_keys.items():
            start, end = starts[i], starts[i + 1]
            if end == start:
                continue
            if key in known:
                drop.append((start, end))
            else:
                known.add(key)
                batch.retained_new.append(key)
        for start, end in reversed(drop):
            del batch.dead[start:end]
        replays = sum(1 for m in msgs if m.retain and not _service_traffic(m.topic))
        if replays:
            log.info("%d retained messages replayed by the broker (each handled once: stored or dead-lettered "
                     "the first time only)", replays)
        return batch

    def _add_readings(self, conn: psycopg.Connection, batch: Batch, snap: registry.Snapshot, gw: str,
                      tags: list[str], times_us: list[int], values: list[float], qualities: list[int],
                      spans: list[tuple[str, int, int]] | None) -> registry.Snapshot:
        """One message's valid readings into the batch: mapped tags as readings, unmapped ones quarantined (JSON v1
        and Sparkplug alike). Returns the registry snapshot, re-read when a tag was unknown."""
        pmap = snap.points.get(gw, {})
        pids = [pmap.get(tag, -1) for tag in tags]
        if -1 in pids:
            snap = self._registry(conn, force=True)  # a tag added to the registry a moment ago?
            pmap = snap.points.get(gw, {})
            pids = [pmap.get(tag, -1) for tag in tags]
        if -1 not in pids:
            batch.point_ids += pids
            batch.times_us += times_us
            batch.values += values
            batch.qualities += qualities
        else:
            for pid, tag, t_us, v, q in zip(pids, tags, times_us, values, qualities, strict=True):
                if pid < 0:
                    batch.add_unmapped(gw, tag, t_us, v, q)
                    continue
                batch.point_ids.append(pid)
                batch.times_us.append(t_us)
                batch.values.append(v)
                batch.qualities.append(q)
        if spans is not None:
            spans[-1] = (gw, spans[-1][1], len(batch.point_ids))
        return snap

    def _sparkplug(self, conn: psycopg.Connection, batch: Batch, m: _Msg, key: tuple[str, bytes] | None,
                   known: set[tuple[str, bytes]], snap: registry.Snapshot, now: float,
                   spans: list[tuple[str, int, int]] | None, seq_log: list[tuple[str, int]] | None,
                   rebirths: list[tuple[str, str]] | None) -> registry.Snapshot:
        """One message under spBv1.0/ into the batch, as `_build` does a JSON v1 one (docs/sparkplug.md).

        The edge node id is the gateway id (the broker's ACL binds it to the username). Commands (NCMD, DCMD: ours,
        or another collector's) and STATE messages are the host side's traffic, ignored like rw/v1/{gw}/cmd. The
        host's session state (ingest.sparkplug.host) resolves aliases and checks seq; readings then take the
        JSON v1 path: mapped points, quarantine for unknown tags, reading-level dead letters for the rest.
        """
        if _service_traffic(m.topic):
            self.stats.ignored += 1
            return snap
        t = sp_topics.parse(m.topic)
        if key is not None:
            known.add(key)
            batch.retained_new.append(key)  # an edge node should not retain: handled once, like telemetry
        self.stats.sparkplug_messages += 1
        if not isinstance(t, sp_topics.Topic):
            why = t.why if isinstance(t, sp_topics.Bad) else "STATE"  # (STATE is service traffic, above)
            batch.dead.append(DeadLetter(sp_topics.edge_of(m.topic), m.topic, "sparkplug_topic",
                                         f"not a Sparkplug B topic: {why}", None, m.payload[:DEAD_PAYLOAD_MAX]))
            return snap
        gw = t.edge
        where = f"group {t.group!r}, {t.kind}" + (f", device {t.device!r}" if t.device is not None else "")
        if spans is not None:
            spans.append((gw, len(batch.point_ids), len(batch.point_ids)))
        snap, info = self._gateway(conn, snap, gw)
        if info is None or not info.enabled:
            reason = "unknown_gateway" if info is None else "gateway_disabled"
            batch.dead.append(DeadLetter(gw, m.topic, reason, f"edge node (gateway) {gw!r}, {where}", None,
                                         m.payload[:DEAD_PAYLOAD_MAX]))
            return snap
        if not m.retain:
            batch.last_seen[gw] = now
        try:
            p = sp_payload.decode(m.payload, self.limits.max_payload_bytes)
            if len(p.metrics) > self.limits.max_readings:
                raise MessageRejected("too_many_readings", f"{len(p.metrics)} metrics > {self.limits.max_readings}")
        except MessageRejected as exc:
            batch.dead.append(DeadLetter(gw, m.topic, exc.reason, f"{where}: {exc.detail}", None,
                                         m.payload[:DEAD_PAYLOAD_MAX]))
            whole = _decoded_anyway(m.payload) if exc.reason != "sparkplug_decode" and not m.retain else None
            if whole is not None:
                # Handled: it is its dead letter. Its riskwatch/seq unlisted, the agent would re-send it for ever.
                out = self.sparkplug.rejected(gw, t, whole, now)
                for note in out.notes:
                    log.info("Sparkplug edge node %s (%s): %s", gw, where, note)
                if out.rebirth is not None and rebirths is not None:
                    rebirths.append((gw, out.rebirth))
                if out.rw_seq is not None:
                    batch.add_seq(gw, out.rw_seq)
                    if seq_log is not None:
                        seq_log.append((gw, out.rw_seq))
            return snap
        out = self.sparkplug.handle(gw, t, p, now)
        for note in out.notes:
            log.info("Sparkplug edge node %s (%s): %s", gw, where, note)
        if out.online is not None:
            batch.status[gw] = (out.online, now)
        if out.device is not None:
            batch.devices[(gw, out.device[0])] = (out.device[1], now)
        if out.stale_death:
            self.stats.stale_deaths += 1
        if out.rebirth is not None and rebirths is not None:
            rebirths.append((gw, out.rebirth))
        if out.rw_seq is not None:
            batch.add_seq(gw, out.rw_seq)
            if seq_log is not None and not m.retain:
                seq_log.append((gw, out.rw_seq))
        if p.timestamp_ms is not None and not m.retain and t.kind != "NDEATH":
            # NDEATH is a will: its timestamp is when the edge set it (Sparkplug 3.0), not when it was sent.
            batch.skew[gw] = max(batch.skew.get(gw, -math.inf), p.timestamp_ms / MS_PER_S - now)
        for rej in out.rejected:
            raw = rej.raw if isinstance(rej.raw, dict) else {"metric": rej.raw}
            batch.dead.append(DeadLetter(gw, m.topic, rej.reason, f"{where}: {rej.detail}", rej.index,
                                         _reading_bytes({**raw, "group": t.group})))
        if out.readings:
            snap = self._add_readings(conn, batch, snap, gw, [r.tag for r in out.readings],
                                      [r.t_us for r in out.readings], [r.value for r in out.readings],
                                      [r.quality for r in out.readings], spans)
        return snap

    def _gateway(self, conn: psycopg.Connection, snap: registry.Snapshot, gw: str
                 ) -> tuple[registry.Snapshot, registry.GatewayInfo | None]:
        """The registry's entry for `gw` (None: unknown), with the snapshot, reloaded once when `gw` is not in it
        (a gateway registered a moment ago)."""
        info = snap.gateways.get(gw)
        if info is None:
            snap = self._registry(conn, force=True)
            info = snap.gateways.get(gw)
        return snap, info

    def _retained_known(self, conn: psycopg.Connection, msgs: list[_Msg]) -> set[tuple[str, bytes]]:
        """The retained messages of this batch already handled once (retained_seen), by (topic, digest)."""
        keys = sorted({(m.topic, _digest(m.payload)) for m in msgs if m.retain and m.payload})
        if not keys:
            return set()
        rows = conn.execute(
            "SELECT topic, digest FROM retained_seen WHERE (topic, digest) IN"
            " (SELECT * FROM unnest(%s::text[], %s::bytea[]))",
            ([t for t, _ in keys], [d for _, d in keys]),
        ).fetchall()
        conn.commit()  # the batch's own transaction must start afresh, not as a savepoint of this read
        return {(str(t), bytes(d)) for t, d in rows}


@dataclass(slots=True)
class _Resync:
    """A gateway claimed by this collector, until its confirmations are trustworthy (_handover_confirmed)."""

    max_seen: int = -1
    armed: bool = False
    best: int = -1


def _gateway_filters(gateway_id: str) -> list[str]:
    """A group member's subscriptions for one gateway, subscribed and unsubscribed together: its whole rw/v1/
    subtree, so bad topics are still seen, and its Sparkplug B node and device topics in any group."""
    return [f"{topics.PREFIX}{gateway_id}/#", *sp_topics.gateway_filters(gateway_id)]


def seq_ranges(seq_log: list[tuple[str, int]]) -> dict[str, list[list[int]]]:
    """Per gateway, the seqs of `seq_log` as inclusive [first, last] ranges, sorted and merged."""
    by_gw: dict[str, set[int]] = {}
    for gw, seq in seq_log:
        by_gw.setdefault(gw, set()).add(seq)
    out: dict[str, list[list[int]]] = {}
    for gw, seqs in by_gw.items():
        ranges: list[list[int]] = []
        for seq in sorted(seqs):
            if ranges and seq == ranges[-1][1] + 1:
                ranges[-1][1] = seq
            else:
                ranges.append([seq, seq])
        out[gw] = ranges
    return out


def _rejected_seq(payload: bytes) -> int | None:
    """The `seq` of a JSON v1 message rejected as a whole, when it has one (what the broker let through is at
    most its max_packet_size, so parsing a message over our own size limit once more is bounded)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return message_seq(doc.get("seq")) if isinstance(doc, dict) else None


def _decoded_anyway(payload: bytes) -> sp_payload.Payload | None:
    """A Sparkplug payload rejected as a whole (too many metrics, over our size limit), decoded without our size
    limit to read its seqs; None when it is no protobuf at all. What the broker let through is at most its
    max_packet_size, so this second decode is bounded."""
    try:
        return sp_payload.decode(payload, len(payload))
    except MessageRejected:
        return None


def _service_traffic(topic: str) -> bool:
    """The service's own messages the collector sees on its subscriptions: `stored` confirmations, downlink
    commands (rw/v1/{gw}/cmd, Sparkplug NCMD/DCMD) and host STATE (ours, retained, replayed at each subscribe)."""
    r = topics.route(topic)
    if r is not None:
        return r[1] in ("stored", "cmd")
    if not sp_topics.is_sparkplug(topic):
        return False
    t = sp_topics.parse(topic)
    return isinstance(t, sp_topics.State) or (isinstance(t, sp_topics.Topic) and t.kind in sp_topics.COMMANDS)


def _quiet_shutdown(record: logging.LogRecord) -> bool:
    """paho's network loop logs one ERROR after a clean disconnect; it means nothing."""
    return "Client is not connected" not in record.getMessage()


def _digest(payload: bytes) -> bytes:
    """Identity of a retained message's content, with its topic, in retained_seen."""
    return hashlib.sha256(payload).digest()


def _reading_bytes(raw: object) -> bytes:
    import orjson

    try:
        return orjson.dumps(raw)[:DEAD_PAYLOAD_MAX]
    except TypeError:
        return repr(raw).encode()[:DEAD_PAYLOAD_MAX]
