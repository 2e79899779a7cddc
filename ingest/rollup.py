"""The 1-minute rollup `readings_1m`, kept up to date inside each batch's transaction.

The Apache build of TimescaleDB has no continuous aggregates, so riskwatch
maintains the rollup itself, in the same transaction as the readings it
summarises: a crash loses or doubles neither, and Grafana's long ranges are
never behind the raw data.

Correctness under late, out-of-order and redelivered readings rests on two
things. Only readings that were actually inserted are rolled up
(`ingest.writer.write_readings` says which), so a QoS1 redelivery cannot
count a reading twice. And every column merges order-independently: min,
max, sum and count are commutative, and ``last`` is the value with the newest
time (times are unique per point, so there are no ties). A reading arriving
an hour late simply merges into its minute's row.

Cost: one numpy group-by over the batch, then ONE upsert statement whose
parameters are binary PostgreSQL arrays built with numpy, so there is no
Python object per reading or per minute.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from core.readings import Readings

BUCKET_US = 60_000_000
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in unix microseconds


@dataclass(frozen=True, slots=True)
class MinuteAggregates:
    """One row per (point, minute) of a batch, sorted by point then minute."""

    point_id: npt.NDArray[np.int32]
    bucket_us: npt.NDArray[np.int64]  # start of the minute, unix microseconds
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    sum: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]
    last_time_us: npt.NDArray[np.int64]
    last: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.point_id.shape[0])


def aggregate(r: Readings) -> MinuteAggregates:
    """Group readings by (point, minute); readings must be unique per (point, time)."""
    n = len(r)
    if n == 0:
        f = np.empty(0, np.float64)
        i = np.empty(0, np.int64)
        return MinuteAggregates(np.empty(0, np.int32), i, f, f, f, i, i, f)
    minute = np.floor_divide(r.time_us, BUCKET_US)
    order = np.lexsort((r.time_us, minute, r.point_id))  # by point, minute, then time
    p = r.point_id[order]
    m = minute[order]
    v = r.value[order]
    t = r.time_us[order]
    change = np.empty(n, dtype=np.bool_)
    change[0] = True
    np.not_equal(p[1:], p[:-1], out=change[1:])
    change[1:] |= m[1:] != m[:-1]
    starts = np.flatnonzero(change)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:] - 1
    ends[-1] = n - 1
    return MinuteAggregates(
        point_id=p[starts],
        bucket_us=m[starts] * BUCKET_US,
        min=np.minimum.reduceat(v, starts),
        max=np.maximum.reduceat(v, starts),
        sum=np.add.reduceat(v, starts),
        count=(ends - starts + 1).astype(np.int64),
        last_time_us=t[ends],
        last=v[ends],
    )


# --- binary array parameters ----------------------------------------------------------------
# PostgreSQL's binary array format (array_send): ndim, has-nulls flag, element oid, then per
# dimension its length and lower bound, then each element as (int32 length, big-endian bytes).


class _Array:
    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


class _Float8Array(_Array):
    pass


class _Int4Array(_Array):
    pass


class _Int8Array(_Array):
    pass


class _TimestamptzArray(_Array):
    pass


def _dumper(array_oid: int) -> type[Dumper]:
    class _ArrayDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: _Array) -> bytes:
            return obj.data

    return _ArrayDumper


# (wrapper, element oid, array oid, big-endian element dtype)
_FLOAT8 = (_Float8Array, 701, 1022, ">f8")
_INT4 = (_Int4Array, 23, 1007, ">i4")
_INT8 = (_Int8Array, 20, 1016, ">i8")
_TIMESTAMPTZ = (_TimestamptzArray, 1184, 1185, ">i8")
_DUMPERS = {cls: _dumper(array_oid) for cls, _, array_oid, _ in (_FLOAT8, _INT4, _INT8, _TIMESTAMPTZ)}


def _array(kind: tuple[type[_Array], int, int, str], values: npt.NDArray[np.generic]) -> _Array:
    cls, elem_oid, _, dt = kind
    n = values.shape[0]
    width = np.dtype(dt).itemsize
    body = np.empty(n, dtype=np.dtype([("len", ">i4"), ("v", dt)]))
    body["len"] = width
    body["v"] = values
    return cls(struct.pack(">iiIii", 1, 0, elem_oid, n, 1) + body.tobytes())


_UPSERT = """
INSERT INTO readings_1m AS r (bucket, point_id, min, max, sum, count, last_time, last)
SELECT * FROM unnest(%s::timestamptz[], %s::int4[], %s::float8[], %s::float8[], %s::float8[], %s::int8[],
                     %s::timestamptz[], %s::float8[])
ON CONFLICT (point_id, bucket) DO UPDATE SET
    min = least(r.min, EXCLUDED.min),
    max = greatest(r.max, EXCLUDED.max),
    sum = r.sum + EXCLUDED.sum,
    count = r.count + EXCLUDED.count,
    last = CASE WHEN EXCLUDED.last_time > r.last_time THEN EXCLUDED.last ELSE r.last END,
    last_time = greatest(r.last_time, EXCLUDED.last_time)
"""


def upsert(conn: psycopg.Connection, agg: MinuteAggregates) -> None:
    """Merge per-minute aggregates into `readings_1m` in one statement (caller's transaction)."""
    if len(agg) == 0:
        return
    params = (
        _array(_TIMESTAMPTZ, agg.bucket_us - PG_EPOCH_US),
        _array(_INT4, agg.point_id),
        _array(_FLOAT8, agg.min),
        _array(_FLOAT8, agg.max),
        _array(_FLOAT8, agg.sum),
        _array(_INT8, agg.count),
        _array(_TIMESTAMPTZ, agg.last_time_us - PG_EPOCH_US),
        _array(_FLOAT8, agg.last),
    )
    with conn.cursor() as cur:
        for cls, dumper in _DUMPERS.items():
            cur.adapters.register_dumper(cls, dumper)
        cur.execute(_UPSERT, params)


def rollup(conn: psycopg.Connection, inserted: Readings) -> int:
    """Roll up readings just inserted (and only those); return the number of minute rows touched."""
    agg = aggregate(inserted)
    upsert(conn, agg)
    return len(agg)
