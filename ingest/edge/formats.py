"""How buffered readings become MQTT messages: the seam between the buffer and a wire format.

The buffer stores encoded messages (so a re-send carries the same `seq` and the same per-reading times, which the
collector's unique key (point, time) absorbs). Two formats:

- `JsonV1`, the riskwatch contract (DESIGN.md "MQTT contract"); no session.
- `SparkplugB`, a Sparkplug 3.0 edge node (edge node id = gateway id) with the session Sparkplug requires: an
  NBIRTH on every connect declaring each tag (name, alias, Double), an NDEATH as the MQTT will with the same
  `bdSeq`, NDATA carrying aliases only plus the `riskwatch/seq` UInt64 metric (the buffer's 64-bit seq, which the
  collector confirms on `rw/v1/{gw}/stored` exactly as a JSON v1 `seq`), and the rebirth command.

Sparkplug's own `seq` (0-255, one counter over NBIRTH and NDATA of one session) cannot be in the stored bytes: a
message buffered for hours is sent in a later session, where its old number would look like a gap. The stored
NDATA therefore has no `seq` field, and `outgoing` appends it at send time: a protobuf field written after the
others is part of the same message (the encoding is a sequence of fields; concatenated messages merge), so this is
a 2-3 byte append rather than a decode and re-encode of up to 5000 metrics per send.

A Sparkplug edge node configured with a primary host application (`PrimaryHost`, Sparkplug 3.0 "Primary Host
Application") births only once that host's retained STATE says it is online, and leaves (NDEATH, disconnect, start
over) when it says offline: while riskwatch's collector is away the readings wait in the agent's disk buffer rather
than in the broker's queue. `PrimaryHost` is the decision only (STATE payloads in, online or not out); the publisher
subscribes, feeds it and holds the births.

Threads: the publisher's thread is the only caller of `will`, `on_connect_messages`, `rebirth_messages` and
`outgoing` (the session counters are not locked); `command` is pure and runs on paho's network thread, as does
`PrimaryHost.observe` (under the publisher's lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import orjson
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no py.typed

from ingest import topics
from ingest.sparkplug import sparkplug_b_pb2 as pb

QUALITY_NAMES = ("good", "uncertain", "bad")
# Sparkplug has no quality field; Ignition and most Sparkplug hosts read the metric property "Quality" as an OPC DA
# quality code. Absent means good.
QUALITY_PROPERTY = "Quality"
QUALITY_CODES = (192, 64, 0)

SPARKPLUG_NS = "spBv1.0"
SEQ_METRIC = "riskwatch/seq"  # the confirmation extension (docs/sparkplug.md)
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"

Message = tuple[str, bytes, bool]  # topic, payload, retain (always QoS 1)


@dataclass(frozen=True, slots=True)
class Reading:
    """One sampled value: `q` is 0 good, 1 uncertain, 2 bad (JSON v1's `q`)."""

    tag: str
    ts_ms: int
    v: float
    q: int = 0


class CommandError(ValueError):
    """A command message the agent cannot use (not a Sparkplug payload, or nothing it understands)."""


class StateError(ValueError):
    """A STATE message that is not Sparkplug 3.0's `{"online": true|false, "timestamp": ms}`."""


@dataclass(frozen=True, slots=True)
class HostState:
    """One STATE message: `timestamp` is the host's (ms); a host's birth and will of one connection share it."""

    online: bool
    timestamp: int


def parse_state(payload: bytes) -> HostState:
    """A Sparkplug 3.0 STATE payload (the JSON form; 2.2's plain `ONLINE`/`OFFLINE` has no timestamp to order by)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise StateError(f"not JSON: {payload[:60]!r}") from None
    if not isinstance(doc, dict):
        raise StateError(f"not a JSON object: {payload[:60]!r}")
    online, ts = doc.get("online"), doc.get("timestamp")
    if type(online) is not bool:
        raise StateError(f"'online' must be true or false, not {online!r}")
    if type(ts) is not int or ts < 0:
        raise StateError(f"'timestamp' must be milliseconds since the epoch, not {ts!r}")
    return HostState(online, ts)


@dataclass(frozen=True, slots=True)
class Observed:
    """What one STATE message did: `outcome` is the host's state now ("online", "offline"), or why the message was
    ignored ("stale": older than one already seen; "unreadable")."""

    outcome: Literal["online", "offline", "stale", "unreadable"]
    why: str


class PrimaryHost:
    """The primary host application an edge node waits for (Sparkplug 3.0, tck-id-message-flow-edge-node-birth-
    publish-phid-wait*): online once a STATE on `spBv1.0/STATE/{host_id}` of the current connection says so.

    The newest STATE by timestamp wins, across this process's connections: one older than the newest seen is ignored
    (-phid-wait-timestamp), so the will of a host's previous connection, delivered after its new birth, cannot take
    it offline. Equal timestamps count (a host's will carries its birth's timestamp). The current connection must
    have heard a STATE itself (the broker replays the retained one at subscription): a broker that restarted
    without it has no host behind it yet.
    """

    def __init__(self, host_id: str):
        self.host_id = host_id
        self.topic = f"{SPARKPLUG_NS}/STATE/{host_id}"
        self.latest: HostState | None = None
        self.heard = False  # a readable STATE arrived on the current connection
        self.ignored = 0

    def new_connection(self) -> None:
        self.heard = False

    def observe(self, payload: bytes) -> Observed:
        try:
            state = parse_state(payload)
        except StateError as exc:
            self.ignored += 1
            return Observed("unreadable", str(exc))
        self.heard = True
        if self.latest is not None and state.timestamp < self.latest.timestamp:
            self.ignored += 1
            return Observed("stale", f"timestamp {state.timestamp} is older than {self.latest.timestamp} already "
                                     f"seen (an earlier connection's)")
        self.latest = state
        return Observed("online" if state.online else "offline", f"timestamp {state.timestamp}")

    @property
    def online(self) -> bool:
        return self.heard and self.latest is not None and self.latest.online

    def health(self) -> dict[str, object]:
        """`online`/`timestamp`: the newest STATE seen; `waiting`: births and data are held (the host is offline, or
        this connection has not heard its STATE yet)."""
        return {"id": self.host_id, "online": None if self.latest is None else self.latest.online,
                "timestamp": None if self.latest is None else self.latest.timestamp, "waiting": not self.online,
                "ignored": self.ignored}


class SessionStore(Protocol):
    """What a session-bearing format keeps on disk (the buffer implements it)."""

    def aliases(self, tags: Sequence[str]) -> dict[str, int]: ...

    def next_bdseq(self) -> int: ...


class Format(Protocol):
    """A wire format and, for Sparkplug, its session. `status_retained`: whether the health document on
    `rw/v1/{gw}/status` is retained (it is the online state for JSON v1; with Sparkplug the will is the NDEATH, and
    a retained `online: true` would outlive a power cut)."""

    name: str
    status_retained: bool
    primary_host: PrimaryHost | None  # births and data wait for this host's STATE online (None: no waiting)
    data_qos: int  # MQTT QoS of births and telemetry (the will and a clean stop's message are always QoS 1)

    def telemetry_topic(self, gateway: str) -> str: ...

    def encode(self, seq: int, ts_ms: int, readings: Sequence[Reading]) -> bytes:
        """The stored form of one message (at seal time)."""
        ...

    def outgoing(self, payload: bytes) -> bytes:
        """The stored form as sent now (at send time)."""
        ...

    def will(self, gateway: str) -> Message:
        """The MQTT will of the next CONNECT (called once per connection attempt)."""
        ...

    def on_connect_messages(self, gateway: str) -> list[Message]:
        """Sent first on every connection, before any telemetry."""
        ...

    def rebirth_messages(self, gateway: str) -> list[Message]:
        """Sent when the host asked for a rebirth (`command` returned "rebirth")."""
        ...

    def on_stop_messages(self, gateway: str) -> list[Message]:
        """Sent before a clean disconnect, at a stop or when the primary host went offline (a clean disconnect
        fires no will)."""
        ...

    def command_topics(self, gateway: str) -> list[str]:
        """Topics the agent subscribes to for commands from the host."""
        ...

    def command(self, payload: bytes) -> Literal["rebirth"] | None:
        """What a command message asks for (None: nothing to do); CommandError if it cannot be read."""
        ...

    def health(self) -> dict[str, object]:
        """The format's part of the status document."""
        ...


OFFLINE = b'{"online": false}'


class JsonV1:
    """DESIGN.md "MQTT contract": `{"ts", "seq", "readings": [{"tag", "v", "ts", "q"?}]}`."""

    name = "json_v1"
    status_retained = True
    primary_host: PrimaryHost | None = None
    data_qos = 1  # DESIGN.md: the collector acknowledges after commit; QoS 0 is stored best effort

    def telemetry_topic(self, gateway: str) -> str:
        return topics.telemetry(gateway)

    def encode(self, seq: int, ts_ms: int, readings: Sequence[Reading]) -> bytes:
        out = []
        for r in readings:
            d: dict[str, object] = {"tag": r.tag, "v": r.v, "ts": r.ts_ms}
            if r.q:
                d["q"] = QUALITY_NAMES[r.q]
            out.append(d)
        return orjson.dumps({"ts": ts_ms, "seq": seq, "readings": out})

    def outgoing(self, payload: bytes) -> bytes:
        return payload

    def will(self, gateway: str) -> Message:
        return topics.status(gateway), OFFLINE, True

    def on_connect_messages(self, gateway: str) -> list[Message]:
        return []

    def rebirth_messages(self, gateway: str) -> list[Message]:
        return []

    def on_stop_messages(self, gateway: str) -> list[Message]:
        return [(topics.status(gateway), OFFLINE, True)]

    def command_topics(self, gateway: str) -> list[str]:
        return []

    def command(self, payload: bytes) -> Literal["rebirth"] | None:
        return None

    def health(self) -> dict[str, object]:
        return {"format": self.name}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_SEQ_KEY = bytes([(pb.Payload.DESCRIPTOR.fields_by_name["seq"].number << 3) | 0])  # field 3, varint


class SparkplugB:
    """A Sparkplug 3.0 edge node under `group_id`; the gateway id is the edge node id (the broker's ACL binds that
    topic position to the username). `tags` are the configured tags, declared in every NBIRTH with their aliases
    from `store` (stable across restarts; see Buffer.aliases).

    NBIRTH and NDATA go out with QoS 0, as Sparkplug 3.0 requires (tck-id-topics-nbirth-mqtt,
    tck-id-topics-ndata-mqtt); the NDEATH (will and clean stop) with QoS 1. Nothing is lost by it: a message
    leaves the buffer only once the collector's confirmation lists its `riskwatch/seq` (buffer.py), so one the
    broker drops (the collector away, or slow) stays buffered and is re-sent, after the next NBIRTH or when the
    watermark stalls (publisher.py); and the agent publishes only while its primary host says online.
    """

    name = "sparkplug_b"
    status_retained = False
    data_qos = 0

    def __init__(self, group_id: str, tags: Sequence[str], store: SessionStore,
                 clock: Callable[[], float] = time.time, primary_host_id: str | None = None):
        self.group_id = group_id
        self.primary_host = None if primary_host_id is None else PrimaryHost(primary_host_id)
        self.clock = clock
        self.store = store
        self.aliases = store.aliases(list(tags))
        self.bdseq: int | None = None  # of the current (or last attempted) connection
        self._seq = 0  # the next Sparkplug seq to send
        self.births = 0

    def topic(self, kind: str, gateway: str) -> str:
        return f"{SPARKPLUG_NS}/{self.group_id}/{kind}/{gateway}"

    def telemetry_topic(self, gateway: str) -> str:
        return self.topic("NDATA", gateway)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def encode(self, seq: int, ts_ms: int, readings: Sequence[Reading]) -> bytes:
        p = pb.Payload(timestamp=ts_ms)
        m = p.metrics.add(name=SEQ_METRIC, datatype=pb.UInt64, long_value=seq)
        for r in readings:
            alias = self.aliases.get(r.tag)
            if alias is not None:
                m = p.metrics.add(alias=alias, timestamp=r.ts_ms, datatype=pb.Double, double_value=r.v)
            else:  # a tag no longer configured, in a json_v1 message re-encoded at a format switch: by name
                # (with its datatype the metric is self-describing; the host needs no birth for it)
                m = p.metrics.add(name=r.tag, timestamp=r.ts_ms, datatype=pb.Double, double_value=r.v)
            if r.q:
                m.properties.keys.append(QUALITY_PROPERTY)
                m.properties.values.add(type=pb.Int32, int_value=QUALITY_CODES[r.q])
        return bytes(p.SerializeToString())

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def outgoing(self, payload: bytes) -> bytes:
        return payload + _SEQ_KEY + _varint(self._next_seq())

    def _bdseq_payload(self) -> pb.Payload:
        p = pb.Payload(timestamp=self._now_ms())
        p.metrics.add(name=BDSEQ_METRIC, datatype=pb.Int64, long_value=self.bdseq or 0)
        return p

    def will(self, gateway: str) -> Message:
        """A new CONNECT: the next bdSeq (persisted), and the NDEATH that carries it."""
        self.bdseq = self.store.next_bdseq()
        return self.topic("NDEATH", gateway), self._bdseq_payload().SerializeToString(), False

    def birth(self, gateway: str) -> Message:
        """NBIRTH, seq 0 (a birth starts the sequence): bdSeq, Node Control/Rebirth, then every tag declared with
        its alias and datatype and no value (`is_null`): readings travel only in NDATA, under the buffer's
        confirmation, so a birth never stores (or invents) a value."""
        if self.bdseq is None:
            raise RuntimeError("birth before will: the bdSeq of a birth is the one of its connection's will")
        p = self._bdseq_payload()
        p.metrics.add(name=REBIRTH_METRIC, datatype=pb.Boolean, boolean_value=False)
        p.metrics.add(name=SEQ_METRIC, datatype=pb.UInt64, is_null=True)
        for tag, alias in sorted(self.aliases.items(), key=lambda kv: kv[1]):
            p.metrics.add(name=tag, alias=alias, datatype=pb.Double, is_null=True)
        self._seq = 0
        p.seq = self._next_seq()
        self.births += 1
        return self.topic("NBIRTH", gateway), p.SerializeToString(), False

    def on_connect_messages(self, gateway: str) -> list[Message]:
        # Clear a retained status an earlier json_v1 configuration left (it may say online after a power cut).
        return [(topics.status(gateway), b"", True), self.birth(gateway)]

    def rebirth_messages(self, gateway: str) -> list[Message]:
        return [self.birth(gateway)]

    def on_stop_messages(self, gateway: str) -> list[Message]:
        return [(self.topic("NDEATH", gateway), self._bdseq_payload().SerializeToString(), False)]

    def command_topics(self, gateway: str) -> list[str]:
        return [self.topic("NCMD", gateway)]

    def command(self, payload: bytes) -> Literal["rebirth"] | None:
        try:
            p = pb.Payload.FromString(payload)
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            raise CommandError(f"not a Sparkplug B payload ({exc})") from None
        for m in p.metrics:
            if m.name == REBIRTH_METRIC:
                if m.WhichOneof("value") == "boolean_value":
                    return "rebirth" if m.boolean_value else None
                raise CommandError(f"{REBIRTH_METRIC} must be a Boolean")
        names = ", ".join(repr(m.name or f"alias {m.alias}") for m in p.metrics[:5])
        raise CommandError(f"no command the agent understands ({names or 'no metrics'})")

    def health(self) -> dict[str, object]:
        session: dict[str, object] = {"group_id": self.group_id, "bdseq": self.bdseq, "births": self.births,
                                      "metrics": len(self.aliases)}
        if self.primary_host is not None:
            session["primary_host"] = self.primary_host.health()
        return {"format": self.name, "sparkplug": session}


def decode_stored(name: str, payload: bytes, tag_of_alias: dict[int, str]) -> tuple[int, int, list[Reading]]:
    """(buffer seq, message ts ms, readings) of a message the buffer stored in format `name`: the inverse of
    `encode`, so a buffer sealed under one format can be re-encoded when the config switches to the other."""
    if name == "json_v1":
        doc = orjson.loads(payload)
        q = {n: i for i, n in enumerate(QUALITY_NAMES)}
        return int(doc["seq"]), int(doc["ts"]), [Reading(r["tag"], int(r["ts"]), float(r["v"]), q[r.get("q", "good")])
                                                 for r in doc["readings"]]
    if name == "sparkplug_b":
        p = pb.Payload.FromString(payload)
        seq: int | None = None
        out = []
        for m in p.metrics:
            if m.name == SEQ_METRIC:
                seq = m.long_value
                continue
            quality = 0
            if m.HasField("properties") and QUALITY_PROPERTY in m.properties.keys:
                code = m.properties.values[list(m.properties.keys).index(QUALITY_PROPERTY)].int_value
                quality = 0 if code >= 192 else 1 if code >= 64 else 2
            out.append(Reading(m.name or tag_of_alias[m.alias], m.timestamp, m.double_value, quality))
        if seq is None:
            raise ValueError(f"stored Sparkplug message without {SEQ_METRIC}")
        return seq, p.timestamp, out
    raise ValueError(f"unknown stored format {name!r}")


def make_format(name: str, *, group_id: str | None = None, tags: Sequence[str] = (),
                store: SessionStore | None = None, clock: Callable[[], float] = time.time,
                primary_host_id: str | None = None) -> Format:
    """The configured format; Sparkplug B needs its group, the tags to declare and the session store, and waits for
    `primary_host_id`'s STATE if given."""
    if name == "json_v1":
        return JsonV1()
    if name == "sparkplug_b":
        if group_id is None or store is None:
            raise ValueError("sparkplug_b needs group_id and a session store")
        return SparkplugB(group_id, tags, store, clock, primary_host_id)
    raise ValueError(f"publish format {name!r} is not implemented (json_v1, sparkplug_b)")


__all__ = ["CommandError", "Format", "HostState", "JsonV1", "Message", "Observed", "PrimaryHost", "Reading",
           "SessionStore", "SparkplugB", "StateError", "decode_stored", "make_format", "parse_state"]
