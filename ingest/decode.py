"""JSON v1 payload decoder and validator (DESIGN.md, MQTT contract).

Policy:
- Message-level faults (too large, not UTF-8, not JSON, wrong shape, too many
  readings) reject the whole message with one reason.
- Reading-level faults (wrong types, non-finite value, bad or out-of-range
  timestamp, bad quality) reject only that reading; the rest are kept.
- A reading must carry a timestamp, its own or the message's: the time is half
  of its identity (point, time), and a receive time would turn a QoS1
  redelivery into a second reading.
- NaN and Infinity are not JSON, but common gateway firmware sends them; we
  parse them leniently so that only the offending reading is rejected.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from core.errors import RiskwatchError
from core.settings import IngestLimits
from core.timeconst import US_PER_MS, US_PER_S

QUALITY = {"good": 0, "uncertain": 1, "bad": 2}


class MessageRejected(RiskwatchError):
    """The whole message is unusable."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class ReadingRejected:
    index: int
    reason: str
    detail: str
    raw: Any


@dataclass(slots=True)
class Decoded:
    """Valid readings as parallel lists, plus rejected readings."""

    tags: list[str]
    times_us: list[int]
    values: list[float]
    qualities: list[int]
    rejected: list[ReadingRejected]
    seq: int | None = None  # the message's sequence number, for the end-to-end confirmation
    ts_us: int | None = None  # the message's own ts (when it was sent, gateway clock): its clock skew (issue 14)


SEQ_MAX = 2**63 - 1  # PostgreSQL bigint


def message_seq(raw: Any) -> int | None:
    """The message's `seq` when it is a usable one (an integer in [0, 2^63)), else None.

    A missing or odd `seq` does not reject the message: it only means the message confirms nothing, since
    a gateway that cannot number its messages cannot use the confirmation either.
    """
    if type(raw) is not int or not 0 <= raw <= SEQ_MAX:
        return None
    return raw


def _parse(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as fast_exc:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MessageRejected("invalid_utf8", str(exc)) from exc
        try:
            return json.loads(text)  # accepts NaN / Infinity
        except (json.JSONDecodeError, RecursionError, ValueError):
            raise MessageRejected("invalid_json", str(fast_exc)) from fast_exc


def parse_time_us(ts: Any) -> int | None:
    """Epoch milliseconds (number) or an RFC 3339 string with offset -> epoch microseconds."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int):
        return ts * US_PER_MS
    if isinstance(ts, float):
        if not math.isfinite(ts):
            return None
        return round(ts * US_PER_MS)
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None  # RFC 3339 requires an offset
        return round(dt.timestamp() * US_PER_S)
    return None


def decode_json_v1(payload: bytes, now_s: float, limits: IngestLimits) -> Decoded:
    if len(payload) > limits.max_payload_bytes:
        raise MessageRejected("payload_too_large", f"{len(payload)} bytes > {limits.max_payload_bytes}")
    doc = _parse(payload)
    if not isinstance(doc, dict):
        raise MessageRejected("bad_schema", f"payload is a JSON {type(doc).__name__}, expected an object")
    if "readings" in doc:
        readings = doc["readings"]
        if not isinstance(readings, list):
            raise MessageRejected("bad_schema", "'readings' must be a list")
    elif "tag" in doc:
        readings = [doc]  # a bare single reading
        doc = {}
    else:
        raise MessageRejected("bad_schema", "expected 'readings' or a bare reading with 'tag'")
    if not readings:
        raise MessageRejected("no_readings", "'readings' is empty")
    if len(readings) > limits.max_readings:
        raise MessageRejected("too_many_readings", f"{len(readings)} > {limits.max_readings}")

    lo_us = round((now_s - limits.max_past_s) * 1e6)
    hi_us = round((now_s + limits.max_future_s) * 1e6)
    msg_ts = doc.get("ts")
    msg_us = parse_time_us(msg_ts) if msg_ts is not None else None
    d = _fast(readings, msg_us, lo_us, hi_us)
    if d is None:
        d = _careful(readings, msg_us, msg_ts, lo_us, hi_us, limits)
    d.seq = message_seq(doc.get("seq"))
    d.ts_us = msg_us
    return d


_MISSING = object()


def _fast(readings: list[Any], msg_us: int | None, lo_us: int, hi_us: int) -> Decoded | None:
    """The common case in one tight pass: every reading well formed, epoch-ms timestamps.

    Returns None at the first anything-unusual; the careful pass then decides reading by reading.
    """
    tags: list[str] = []
    times: list[int] = []
    values: list[float] = []
    quals: list[int] = []
    for r in readings:
        if type(r) is not dict:
            return None
        tag = r.get("tag")
        v: Any = r.get("v")  # narrowed by exact type checks below (the hot path: no isinstance)
        tv = type(v)
        if tv is float:
            if v - v != 0.0:  # NaN or infinite
                return None
        elif tv is int:
            v = float(v)
        else:
            return None
        if type(tag) is not str or not 0 < len(tag) <= 64:
            return None
        ts = r.get("ts", _MISSING)
        if ts is _MISSING:
            if msg_us is None:
                return None
            t = msg_us
        elif type(ts) is int:
            t = ts * US_PER_MS
        else:
            return None
        if t < lo_us or t > hi_us:
            return None
        q = r.get("q")
        if q is None:
            qc = 0
        else:
            qc = QUALITY.get(q, -1) if type(q) is str else -1
            if qc < 0:
                return None
        tags.append(tag)
        times.append(t)
        values.append(v)
        quals.append(qc)
    return Decoded(tags, times, values, quals, [])


def _careful(readings: list[Any], msg_us: int | None, msg_ts: Any, lo_us: int, hi_us: int,
             limits: IngestLimits) -> Decoded:
    """Reading by reading, with a reason for each one rejected."""
    msg_ts_bad = msg_ts is not None and msg_us is None
    tags: list[str] = []
    times: list[int] = []
    values: list[float] = []
    quals: list[int] = []
    rejected: list[ReadingRejected] = []
    for i, r in enumerate(readings):
        if not isinstance(r, dict):
            rejected.append(ReadingRejected(i, "bad_schema", "reading is not an object", r))
            continue
        tag = r.get("tag")
        if not isinstance(tag, str) or not tag or len(tag) > 64:
            rejected.append(ReadingRejected(i, "bad_tag", "'tag' must be a string of 1-64 characters", r))
            continue
        v = r.get("v")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            rejected.append(ReadingRejected(i, "bad_value_type", f"'v' must be a number, got {type(v).__name__}", r))
            continue
        v = float(v)
        if not math.isfinite(v):
            rejected.append(ReadingRejected(i, "non_finite_value", f"'v' is {v}", r))
            continue
        q = r.get("q", "good")
        qc = QUALITY.get(q) if isinstance(q, str) else None
        if qc is None:
            rejected.append(ReadingRejected(i, "bad_quality", "'q' must be good, uncertain or bad", r))
            continue
        if "ts" in r:
            t_us = parse_time_us(r["ts"])
            if t_us is None:
                rejected.append(ReadingRejected(i, "bad_timestamp", "'ts' must be epoch ms or RFC 3339", r))
                continue
        elif msg_us is not None:
            t_us = msg_us
        else:
            reason = "bad_timestamp" if msg_ts_bad else "missing_timestamp"
            rejected.append(ReadingRejected(i, reason, "no usable 'ts' on the reading or the message", r))
            continue
        if not lo_us <= t_us <= hi_us:
            window = f"[now-{limits.max_past_s:.0f}s, now+{limits.max_future_s:.0f}s]"
            rejected.append(ReadingRejected(i, "timestamp_out_of_range", f"{t_us / 1e6:.3f} outside {window}", r))
            continue
        tags.append(tag)
        times.append(t_us)
        values.append(v)
        quals.append(qc)
    return Decoded(tags, times, values, quals, rejected)


def decode_status(payload: bytes) -> bool:
    """The online flag of a status message."""
    doc = _parse(payload)
    if not isinstance(doc, dict) or not isinstance(doc.get("online"), bool):
        raise MessageRejected("bad_schema", "status must be {\"online\": true|false}")
    return bool(doc["online"])


def decode_status_at(payload: bytes) -> tuple[bool, float | None]:
    """The online flag and the message's own time (epoch s) from an optional 'ts' (epoch ms or RFC 3339).

    A retained status replayed at subscribe time is old news; its own time (when it has one) tells the rule
    engine since when the gateway has been in that state, which the replay's arrival time cannot.
    """
    online = decode_status(payload)
    doc = _parse(payload)
    if "ts" not in doc:
        return online, None
    t_us = parse_time_us(doc["ts"])
    if t_us is None:
        raise MessageRejected("bad_timestamp", "status 'ts' must be epoch ms or RFC 3339")
    return online, t_us / 1e6
