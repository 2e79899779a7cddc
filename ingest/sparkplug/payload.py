"""Sparkplug B payloads (Eclipse Tahu's protobuf, `sparkplug_b.proto`): decode to plain values, encode for NCMD,
tests and the edge agent.

Decoding is in two steps because a Sparkplug DATA metric usually carries only an alias and a value: its name and
datatype were declared in the edge node's birth, which only the host's session state knows (ingest.sparkplug.host).
`decode` turns bytes into `Payload`/`Metric` records (the protobuf object never leaves this module);
`numeric_value` turns a metric's value into the float riskwatch stores, once the datatype is known.

Integer datatypes follow Sparkplug 3.0: Int8…Int32 and UInt8…UInt32 travel in `int_value` (uint32), Int64, UInt64
and DateTime in `long_value` (uint64). Signed values are read as two's complement at the datatype's own width, so
both encodings seen in the field decode alike: Tahu Java's sign-extended 32-bit word (-1 as 0xFFFFFFFF) and
Tahu Python's or pysparkplug's width-wrapped value (-1 as an Int8 is 255).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]  # protobuf ships no py.typed

from ingest.decode import MessageRejected
from ingest.sparkplug import sparkplug_b_pb2 as pb

__all__ = [
    "BDSEQ", "NUMERIC", "QUALITY", "REBIRTH", "RW_SEQ", "DataType", "Metric", "MetricOut", "Payload", "decode",
    "encode", "encode_ndeath", "ignored_name", "numeric_value", "rebirth_request",
]

BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
# riskwatch's end-to-end confirmation extension: the edge agent's 64-bit buffer seq, a node metric in each
# NDATA/DDATA (docs/sparkplug.md). The collector confirms it on rw/v1/{gw}/stored as it does a JSON v1 `seq`.
RW_SEQ = "riskwatch/seq"
QUALITY = "Quality"  # the metric property carrying an OPC DA quality code (Ignition's convention)
_QUALITY_CODES = (192, 64, 0)  # what encode writes for riskwatch's quality 0, 1, 2
# Metrics that are never readings nor quarantined: the session's own bookkeeping and the edge's controls.
_IGNORED_PREFIXES = ("Node Control/", "Device Control/", "Properties/")


class DataType(IntEnum):
    """Sparkplug B datatypes (the proto's `DataType` enum, same numbers)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21
    Int8Array = 22
    Int16Array = 23
    Int32Array = 24
    Int64Array = 25
    UInt8Array = 26
    UInt16Array = 27
    UInt32Array = 28
    UInt64Array = 29
    FloatArray = 30
    DoubleArray = 31
    BooleanArray = 32
    StringArray = 33
    DateTimeArray = 34


_SIGNED_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UNSIGNED_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64}
# The datatypes that become readings; Boolean as 0/1.
NUMERIC: frozenset[int] = frozenset({*_SIGNED_BITS, *_UNSIGNED_BITS, DataType.Float, DataType.Double,
                                     DataType.Boolean})
_NUMERIC_FIELDS = ("int_value", "long_value", "float_value", "double_value", "boolean_value")


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric as it came: name and alias as sent (either may be missing), datatype if sent, the value's
    protobuf field (`kind`, None when no value was sent) and that value (numeric fields as int/float/bool,
    string as str, anything else as None: never stored, only shown in a dead letter's detail)."""

    index: int
    name: str | None
    alias: int | None
    datatype: int | None
    timestamp_ms: int | None
    is_null: bool
    kind: str | None
    value: int | float | bool | str | None
    quality: int = 0  # riskwatch's 0 good, 1 uncertain, 2 bad, from the metric's `Quality` property


    def describe(self) -> dict[str, object]:
        """The metric as a JSON-able dict, for a dead letter's payload column."""
        return {"index": self.index, "name": self.name, "alias": self.alias, "datatype": self.datatype,
                "timestamp": self.timestamp_ms, "is_null": self.is_null, "value_field": self.kind,
                "value": self.value, "quality": self.quality}


@dataclass(frozen=True, slots=True)
class Payload:
    timestamp_ms: int | None
    seq: int | None
    metrics: tuple[Metric, ...]


def decode(data: bytes, max_bytes: int) -> Payload:
    """A Sparkplug B payload, or MessageRejected (`payload_too_large`, `sparkplug_decode`): the whole message is
    unusable, as a JSON v1 message that is not JSON."""
    if len(data) > max_bytes:
        raise MessageRejected("payload_too_large", f"{len(data)} bytes > {max_bytes}")
    try:
        p = pb.Payload.FromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise MessageRejected("sparkplug_decode", f"not a Sparkplug B protobuf payload: {exc}") from exc
    metrics = []
    for i, m in enumerate(p.metrics):
        kind = m.WhichOneof("value")
        value: int | float | bool | str | None = None
        if kind in _NUMERIC_FIELDS or kind == "string_value":
            value = getattr(m, kind)
        metrics.append(Metric(
            index=i,
            name=m.name if m.HasField("name") else None,
            alias=int(m.alias) if m.HasField("alias") else None,
            datatype=int(m.datatype) if m.HasField("datatype") else None,
            timestamp_ms=int(m.timestamp) if m.HasField("timestamp") else None,
            is_null=bool(m.is_null),
            kind=kind,
            value=value,
            quality=_quality(m) if m.HasField("properties") else 0,
        ))
    return Payload(
        timestamp_ms=int(p.timestamp) if p.HasField("timestamp") else None,
        seq=int(p.seq) if p.HasField("seq") else None,
        metrics=tuple(metrics),
    )


def _quality(m: pb.Payload.Metric) -> int:
    """The metric's `Quality` property (Ignition's convention, OPC DA codes: 192 good, 64 uncertain, 0 bad) as
    riskwatch's quality: >= 192 good (0), 64-191 uncertain (1), below 64 bad (2). Absent or unreadable: good, as a
    JSON v1 reading without `q`."""
    props = m.properties
    for key, pv in zip(props.keys, props.values, strict=False):
        if key != QUALITY or pv.is_null:
            continue
        which = pv.WhichOneof("value")
        if which not in ("int_value", "long_value"):
            return 0
        code = int(getattr(pv, which))
        if code >= 1 << 31 and which == "int_value":
            code -= 1 << 32  # an Int32 sent two's complement
        return 0 if code >= 192 else 1 if code >= 64 else 2
    return 0


def ignored_name(name: str) -> bool:
    """A metric that is never a reading nor quarantined (spec: bdSeq, controls, properties, riskwatch/seq)."""
    return name in (BDSEQ, RW_SEQ) or name.startswith(_IGNORED_PREFIXES)


def numeric_value(datatype: int, m: Metric) -> float | None:
    """The metric's value as riskwatch stores it, for a numeric datatype; None when the value is missing or sits
    in a field that cannot hold that datatype (a string for an Int32, say)."""
    v = m.value
    if m.kind not in _NUMERIC_FIELDS or v is None or isinstance(v, str):
        return None
    if datatype == DataType.Boolean:
        return 1.0 if v else 0.0
    if datatype in (DataType.Float, DataType.Double):
        return float(v)
    if isinstance(v, float):
        # An integer datatype sent in float_value/double_value: accepted when it is a whole number.
        return v if math.isfinite(v) and v == int(v) else None
    n = int(v)
    if datatype in _SIGNED_BITS:
        bits = _SIGNED_BITS[DataType(datatype)]
        n &= (1 << bits) - 1
        if n >= 1 << (bits - 1):
            n -= 1 << bits
        return float(n)
    if datatype in _UNSIGNED_BITS:
        return float(n & ((1 << _UNSIGNED_BITS[DataType(datatype)]) - 1))
    return None


def integer_value(m: Metric) -> int | None:
    """An integer metric's value as sent (bdSeq, riskwatch/seq), whatever integer field carries it."""
    v = m.value
    if m.kind in ("int_value", "long_value") and isinstance(v, int) and not isinstance(v, bool):
        return v
    return None


# --- encoding: NCMD, tests, the edge agent ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricOut:
    """A metric to encode. `name` and/or `alias`; `datatype` is written when given (births must give it);
    `value` None with `is_null` False writes no value at all."""

    name: str | None = None
    value: int | float | bool | str | bytes | None = None
    datatype: int | None = None
    alias: int | None = None
    timestamp_ms: int | None = None
    is_null: bool = False
    quality: int | None = None  # riskwatch's 0/1/2, written as the `Quality` property (192/64/0); None: none


def _field_for(datatype: int | None, value: object) -> str:
    if datatype is not None:
        if datatype in (DataType.Int8, DataType.Int16, DataType.Int32, DataType.UInt8, DataType.UInt16,
                        DataType.UInt32):
            return "int_value"
        if datatype in (DataType.Int64, DataType.UInt64, DataType.DateTime):
            return "long_value"
        if datatype == DataType.Float:
            return "float_value"
        if datatype == DataType.Double:
            return "double_value"
        if datatype == DataType.Boolean:
            return "boolean_value"
        if datatype in (DataType.String, DataType.Text, DataType.UUID):
            return "string_value"
        if datatype in (DataType.Bytes, DataType.File):
            return "bytes_value"
    if isinstance(value, bool):
        return "boolean_value"
    if isinstance(value, int):
        return "long_value"
    if isinstance(value, float):
        return "double_value"
    if isinstance(value, bytes):
        return "bytes_value"
    return "string_value"


def _wire_int(datatype: int | None, value: int) -> int:
    """A signed value as its unsigned protobuf field holds it: two's complement at the field's width
    (Int8…Int32 in a uint32, as Tahu Java writes them; Int64 in a uint64)."""
    if value >= 0:
        return value
    if datatype in (DataType.Int8, DataType.Int16, DataType.Int32):
        return value & 0xFFFF_FFFF
    return value & 0xFFFF_FFFF_FFFF_FFFF


def encode(metrics: Iterable[MetricOut], *, seq: int | None = None, timestamp_ms: int | None = None) -> bytes:
    """A Sparkplug B payload with these metrics (births, data, commands alike)."""
    p = pb.Payload()
    if timestamp_ms is not None:
        p.timestamp = timestamp_ms
    if seq is not None:
        p.seq = seq
    for mo in metrics:
        m = p.metrics.add()
        if mo.name is not None:
            m.name = mo.name
        if mo.alias is not None:
            m.alias = mo.alias
        if mo.datatype is not None:
            m.datatype = int(mo.datatype)
        if mo.timestamp_ms is not None:
            m.timestamp = mo.timestamp_ms
        if mo.quality is not None:
            m.properties.keys.append(QUALITY)
            pv = m.properties.values.add()
            pv.type = DataType.Int32
            pv.int_value = _QUALITY_CODES[mo.quality]
        if mo.is_null:
            m.is_null = True
            continue
        if mo.value is None:
            continue
        field = _field_for(mo.datatype, mo.value)
        v: object = mo.value
        if field in ("int_value", "long_value"):
            v = _wire_int(mo.datatype, int(mo.value))
        setattr(m, field, v)
    return bytes(p.SerializeToString())


def encode_ndeath(bdseq: int, timestamp_ms: int | None = None) -> bytes:
    """An NDEATH (an edge node's will): only its bdSeq, no seq (Sparkplug 3.0)."""
    return encode([MetricOut(BDSEQ, bdseq, DataType.UInt64)], timestamp_ms=timestamp_ms)


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload asking an edge node to publish its births again: `Node Control/Rebirth` = true."""
    return encode([MetricOut(REBIRTH, True, DataType.Boolean, timestamp_ms=timestamp_ms)], timestamp_ms=timestamp_ms)
