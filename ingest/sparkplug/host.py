"""The Sparkplug B host application's session state, one per edge node (= gateway): pure, no MQTT, no database.

`Host.handle(gateway, topic, payload, now_s)` takes one decoded message and returns what it means for riskwatch
(`Outcome`): readings under their tags, reading-level dead letters, an online/offline change of the edge node or
of one of its devices, the edge node's riskwatch/seq, and whether to ask the edge node for a rebirth. The
collector turns that into the same Batch as a JSON v1 message (ingest.collector) and publishes the rebirth request
(NCMD) after the batch has committed.

What the state is for (Sparkplug 3.0, docs/sparkplug.md):
- aliases: NBIRTH/DBIRTH declare each metric's name, alias and datatype; NDATA/DDATA usually send the alias only.
  One table per edge node (aliases are unique across the node and its devices), forgotten at NDEATH or a new NBIRTH.
- seq (0-255, over NBIRTH, NDATA, DBIRTH, DDATA, DDEATH): a gap means a message was lost, so the aliases and
  values this host holds may be stale; data before any NBIRTH, or an alias never declared, means the host lacks
  the birth. Each asks the edge node for a rebirth, once: no other request for that node until an NBIRTH arrives
  or `rebirth_hold_s` pass, so a burst of out-of-sequence messages does not become a burst of NCMDs.
- bdSeq: an NDEATH is the edge node's MQTT will, and the broker may deliver the will of an old connection after
  the new connection's NBIRTH. An NDEATH whose bdSeq is older than the current NBIRTH's is a stale will, ignored;
  any other (the current bdSeq, none known, no birth known) ends the session.

- devices: a DDEATH ends one device's session; in the current session and in seq order it says that device is
  offline (`Outcome.device`), since the edge node stays up and only the device behind it (a PLC) went away. Out of
  order (a seq gap, a redelivery) or before any NBIRTH it says nothing: the host cannot tell it from an old
  message, and the rebirth it asks for shows which devices are alive. A DBIRTH or DDATA of a born session says the
  device is alive. An NDEATH says nothing of the devices: the gateway is offline, which covers them.

- riskwatch/seq (riskwatch's edge agent): confirmed on rw/v1/{gw}/stored like a JSON v1 seq, except from a
  detected loss (gap, data before birth, unknown alias) until the next NBIRTH, since the agent drops what a
  confirmation covers and re-sends its unconfirmed backlog after each birth.

The collector may handle the same messages twice: a batch whose transaction failed is decoded again. `begin`,
`commit` and `rollback` bracket a batch so that a failed one leaves no trace in the state (no seq moved, no
rebirth timer armed), and the retry sees exactly what the first attempt saw.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace

from core.settings import IngestLimits
from core.timeconst import US_PER_MS
from ingest.decode import ReadingRejected
from ingest.sparkplug.payload import (
    BDSEQ,
    NUMERIC,
    RW_SEQ,
    DataType,
    Metric,
    Payload,
    ignored_name,
    integer_value,
    numeric_value,
)
from ingest.sparkplug.topics import Topic

__all__ = ["Host", "MetricDef", "Outcome", "Reading", "Session", "TAG_MAX"]

TAG_MAX = 64  # as a JSON v1 tag (registry.points.tag)
SEQ_MOD = 256
BDSEQ_MOD = 256
REBIRTH_HOLD_S = 10.0
_SEQUENCED = frozenset({"NBIRTH", "NDATA", "DBIRTH", "DDATA", "DDEATH"})


@dataclass(frozen=True, slots=True)
class MetricDef:
    """A metric as a birth declared it. `tag` is what the registry maps: the name for a node metric,
    `{device}:{name}` for a device metric."""

    tag: str
    name: str
    datatype: int


@dataclass(slots=True)
class Reading:
    tag: str
    t_us: int
    value: float
    index: int  # the metric's position in the payload
    quality: int = 0  # 0 good, 1 uncertain, 2 bad (the metric's `Quality` property)


@dataclass(slots=True)
class Outcome:
    readings: list[Reading] = field(default_factory=list)
    rejected: list[ReadingRejected] = field(default_factory=list)
    online: bool | None = None  # True at NBIRTH, False at the current session's NDEATH
    device: tuple[str, bool] | None = None  # (device id, alive): a DBIRTH/DDATA alive, an in-order DDEATH dead
    rebirth: str | None = None  # the group id to send `Node Control/Rebirth` to, when one is due
    rw_seq: int | None = None  # the riskwatch edge agent's buffer seq (end-to-end confirmation)
    stale_death: bool = False
    notes: list[str] = field(default_factory=list)  # for the collector's log


@dataclass(slots=True)
class Session:
    """One edge node as this host knows it."""

    group: str
    born: bool = False
    bdseq: int | None = None
    seq: int | None = None  # the last seq seen
    aliases: dict[int, MetricDef] = field(default_factory=dict)
    names: dict[str, MetricDef] = field(default_factory=dict)  # by tag
    devices: set[str] = field(default_factory=set)  # born and not dead
    rebirth_until: float | None = None  # no new rebirth request before this (epoch s)
    # riskwatch/seq is not confirmed from a detected loss (gap, data before birth, unknown alias) until the next
    # NBIRTH: the edge agent drops what a confirmation covers, and it re-sends its unconfirmed backlog after a birth.
    hold_confirm: bool = False

    def copy(self) -> Session:
        return replace(self, aliases=dict(self.aliases), names=dict(self.names), devices=set(self.devices))


class Host:
    def __init__(self, limits: IngestLimits | None = None, *, rebirth_hold_s: float = REBIRTH_HOLD_S):
        self.limits = limits or IngestLimits()
        self.rebirth_hold_s = rebirth_hold_s
        self.sessions: dict[str, Session] = {}
        self.stats: Counter[str] = Counter()
        self._journal: dict[str, Session | None] = {}
        self._pending: Counter[str] = Counter()

    # --- batches --------------------------------------------------------------------------------------------

    def begin(self) -> None:
        self._journal.clear()
        self._pending.clear()

    def commit(self) -> None:
        self.stats.update(self._pending)
        self._journal.clear()
        self._pending.clear()

    def rollback(self) -> None:
        for gw, before in self._journal.items():
            if before is None:
                self.sessions.pop(gw, None)
            else:
                self.sessions[gw] = before
        self._journal.clear()
        self._pending.clear()

    def _session(self, gateway: str, group: str) -> Session:
        if gateway not in self._journal:
            s = self.sessions.get(gateway)
            self._journal[gateway] = s.copy() if s is not None else None
        s = self.sessions.get(gateway)
        if s is None:
            s = self.sessions[gateway] = Session(group)
        return s

    def forget(self, gateway: str) -> None:
        """Drop a gateway's session (its lease went to another collector: the next owner asks for a rebirth)."""
        self.sessions.pop(gateway, None)

    # --- messages -------------------------------------------------------------------------------------------

    def handle(self, gateway: str, topic: Topic, payload: Payload, now_s: float) -> Outcome:
        """One NBIRTH/NDATA/NDEATH/DBIRTH/DDATA/DDEATH of `gateway` (the topic's edge node id)."""
        s = self._session(gateway, topic.group)
        out = Outcome()
        kind = topic.kind
        self._pending[f"messages_{kind.lower()}"] += 1
        if kind == "NDEATH":
            self._death(s, gateway, payload, out)
            return out
        in_order = True  # no seq gap and a birth known: a DDEATH is then this session's
        if kind == "NBIRTH":
            s.group = topic.group
            s.born = True
            s.bdseq = None
            s.seq = payload.seq
            s.aliases = {}
            s.names = {}
            s.devices = set()
            s.rebirth_until = None
            s.hold_confirm = False
            for m in payload.metrics:
                if m.name == BDSEQ:
                    s.bdseq = integer_value(m)
            out.online = True
        elif kind in _SEQUENCED:
            in_order = self._in_sequence(s, topic, payload, now_s, out)
        if kind in ("DBIRTH", "DDATA") and s.born:
            assert topic.device is not None
            out.device = (topic.device, True)
        if kind == "DBIRTH":
            assert topic.device is not None
            s.devices.add(topic.device)
        if kind == "DDEATH":
            assert topic.device is not None
            s.devices.discard(topic.device)
            if in_order:
                out.device = (topic.device, False)
                out.notes.append(f"device {topic.device!r} died (offline; its aliases stay until the next NBIRTH)")
            else:
                self._pending["device_deaths_ignored"] += 1
                out.notes.append(f"DDEATH of device {topic.device!r} ignored: out of sequence or before any NBIRTH")
            return out
        birth = kind in ("NBIRTH", "DBIRTH")
        self._metrics(s, topic, payload, now_s, birth, out)
        return out

    def rejected(self, gateway: str, topic: Topic, payload: Payload, now_s: float) -> Outcome:
        """An NDATA/DDATA the collector rejects as a whole although it decodes (more metrics than IngestLimits allow,
        over the size limit): only its seq and its riskwatch/seq count, nothing in it is read.

        It is dead-lettered, not lost: it takes its Sparkplug seq like any other (the next message is no gap), and
        its riskwatch/seq (by name, or by the alias the NBIRTH declared) is confirmed, or the agent's watermark
        would stall on it and re-send it for ever. Not after a detected loss, as for any message. Another kind
        rejected as a whole says nothing: a birth the host could not read declares no aliases."""
        out = Outcome()
        if topic.kind not in ("NDATA", "DDATA"):
            return out
        s = self._session(gateway, topic.group)
        self._pending["messages_rejected"] += 1
        self._in_sequence(s, topic, payload, now_s, out)
        prefix = f"{topic.device}:" if topic.device is not None else ""
        for m in payload.metrics:
            d = self._resolve(s, m, prefix, birth=False)
            if d is not None:
                _take_rw_seq(d, m, out)
        _withhold_after_loss(s, out)
        return out

    def _in_sequence(self, s: Session, topic: Topic, payload: Payload, now_s: float, out: Outcome) -> bool:
        """Check a sequenced message (not an NBIRTH) against the session's seq and take its seq; False, and a
        rebirth asked for, when it comes before any NBIRTH or after a gap."""
        in_order = True
        if not s.born:
            out.notes.append(f"{topic.kind} before any NBIRTH of this session")
            s.hold_confirm = True
            in_order = False
            self._rebirth(s, topic.group, now_s, out)
        else:
            expected = None if s.seq is None else (s.seq + 1) % SEQ_MOD
            if payload.seq is None or (expected is not None and payload.seq != expected):
                self._pending["seq_gaps"] += 1
                out.notes.append(f"seq gap: expected {expected}, got {payload.seq}")
                s.hold_confirm = True
                in_order = False
                self._rebirth(s, topic.group, now_s, out)
        if payload.seq is not None:
            s.seq = payload.seq
        return in_order

    def _death(self, s: Session, gateway: str, payload: Payload, out: Outcome) -> None:
        bdseq = next((integer_value(m) for m in payload.metrics if m.name == BDSEQ), None)
        if s.born and s.bdseq is not None and bdseq is not None and _behind(bdseq, s.bdseq):
            out.stale_death = True
            self._pending["stale_deaths"] += 1
            out.notes.append(f"stale NDEATH ignored: bdSeq {bdseq}, current birth's {s.bdseq}")
            return
        self.sessions[gateway] = Session(s.group)
        out.online = False

    def _rebirth(self, s: Session, group: str, now_s: float, out: Outcome) -> None:
        if s.rebirth_until is not None and now_s < s.rebirth_until:
            return
        s.rebirth_until = now_s + self.rebirth_hold_s
        out.rebirth = group
        self._pending["rebirth_requests"] += 1

    def _metrics(self, s: Session, topic: Topic, payload: Payload, now_s: float, birth: bool, out: Outcome) -> None:
        lo_us = round((now_s - self.limits.max_past_s) * 1e6)
        hi_us = round((now_s + self.limits.max_future_s) * 1e6)
        prefix = f"{topic.device}:" if topic.device is not None else ""
        for m in payload.metrics:
            d = self._resolve(s, m, prefix, birth)
            if d is None:
                out.rejected.append(ReadingRejected(m.index, "sparkplug_alias", _undeclared(m), m.describe()))
                s.hold_confirm = True  # a reading lost until the rebirth: confirm nothing past it
                if m.alias is not None or m.name is not None:
                    self._rebirth(s, topic.group, now_s, out)  # a birth would declare it
                continue
            if _take_rw_seq(d, m, out):
                continue
            if ignored_name(d.name):
                continue
            if birth and (m.kind is None or m.is_null):
                continue  # declared without a current value: a definition, nothing to store nor reject
            r = self._reading(d, m, payload, lo_us, hi_us)
            if isinstance(r, ReadingRejected):
                out.rejected.append(r)
            else:
                out.readings.append(r)
        _withhold_after_loss(s, out)

    def _resolve(self, s: Session, m: Metric, prefix: str, birth: bool) -> MetricDef | None:
        """The metric's definition: declared now (a birth), by alias, by name; None if the host cannot know it."""
        if birth and m.name is not None:
            dt = m.datatype if m.datatype is not None else DataType.Unknown
            d = MetricDef(prefix + m.name, m.name, dt)
            if m.datatype is not None:
                s.names[d.tag] = d
                if m.alias is not None:
                    s.aliases[m.alias] = d
            return d
        if m.alias is not None:
            d0 = s.aliases.get(m.alias)
            if d0 is not None:
                return d0 if m.datatype is None else replace(d0, datatype=m.datatype)
        if m.name is not None:
            d0 = s.names.get(prefix + m.name)
            if d0 is not None:
                return d0 if m.datatype is None else replace(d0, datatype=m.datatype)
            if m.datatype is not None or ignored_name(m.name):
                # Not in the birth but self-describing (or bookkeeping): usable without a rebirth.
                return MetricDef(prefix + m.name, m.name, m.datatype if m.datatype is not None else DataType.Unknown)
        return None

    def _reading(self, d: MetricDef, m: Metric, payload: Payload, lo_us: int, hi_us: int) -> Reading | ReadingRejected:
        raw = m.describe()
        raw["tag"] = d.tag
        if not 0 < len(d.tag) <= TAG_MAX:
            return ReadingRejected(m.index, "bad_tag", f"tag {d.tag[:80]!r} is not 1-{TAG_MAX} characters", raw)
        if m.is_null:
            return ReadingRejected(m.index, "sparkplug_null", f"{d.tag}: is_null (no value)", raw)
        if d.datatype not in NUMERIC:
            return ReadingRejected(m.index, "sparkplug_type",
                                   f"{d.tag}: datatype {_dt_name(d.datatype)} is not numeric", raw)
        v = numeric_value(d.datatype, m)
        if v is None:
            what = "no value" if m.kind is None else f"value in {m.kind}"
            return ReadingRejected(m.index, "sparkplug_type",
                            f"{d.tag}: {what}, which cannot hold a {_dt_name(d.datatype)}", raw)
        if not math.isfinite(v):
            return ReadingRejected(m.index, "non_finite_value", f"{d.tag}: value is {v}", raw)
        ts_ms = m.timestamp_ms if m.timestamp_ms is not None else payload.timestamp_ms
        if ts_ms is None:
            return ReadingRejected(m.index, "missing_timestamp",
                                   f"{d.tag}: no timestamp on the metric or the payload", raw)
        t_us = ts_ms * US_PER_MS
        if not lo_us <= t_us <= hi_us:
            window = f"[now-{self.limits.max_past_s:.0f}s, now+{self.limits.max_future_s:.0f}s]"
            return ReadingRejected(m.index, "timestamp_out_of_range",
                                   f"{d.tag}: {t_us / 1e6:.3f} outside {window}", raw)
        return Reading(d.tag, t_us, v, m.index, m.quality)


def _behind(bdseq: int, current: int) -> bool:
    """An NDEATH's bdSeq from an older connection than the current NBIRTH's (bdSeq counts 0-255 and wraps).

    Only older means stale. A bdSeq ahead of the birth's is not a will the broker held back: some edge libraries
    (pysparkplug 0.6) publish their clean-disconnect NDEATH with the next connection's bdSeq. That edge node is
    going away, so it is taken as the session's death rather than ignored."""
    return 0 < (current - bdseq) % BDSEQ_MOD < BDSEQ_MOD // 2


def _undeclared(m: Metric) -> str:
    if m.alias is not None:
        return f"alias {m.alias} was never declared in a birth of this session; rebirth requested"
    if m.name is not None:
        return f"metric {m.name[:80]!r} was never declared in a birth and has no datatype; rebirth requested"
    return "metric with neither a name nor an alias"


def _dt_name(dt: int) -> str:
    try:
        return DataType(dt).name
    except ValueError:
        return f"#{dt}"


def _take_rw_seq(d: MetricDef, m: Metric, out: Outcome) -> bool:
    """Whether the metric is the agent's `riskwatch/seq` (no reading); its value, the highest of the message, goes
    to `out.rw_seq`."""
    if d.name != RW_SEQ:
        return False
    n = integer_value(m)
    if n is not None and not m.is_null:
        out.rw_seq = n if out.rw_seq is None else max(out.rw_seq, n)
    return True


def _withhold_after_loss(s: Session, out: Outcome) -> None:
    """After a detected loss (gap, data before birth, unknown alias) nothing is confirmed until the next NBIRTH."""
    if s.hold_confirm and out.rw_seq is not None:
        out.notes.append(f"riskwatch/seq {out.rw_seq} not confirmed: a loss was seen since the last NBIRTH")
        out.rw_seq = None
