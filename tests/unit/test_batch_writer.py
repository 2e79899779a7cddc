"""Batch arrays, in-batch dedup and the binary COPY encoding (pure)."""

from __future__ import annotations

import struct

import numpy as np

from ingest.batch import Batch, Readings
from ingest.writer import PG_EPOCH_US, encode_copy


def _readings(pids: list[int], times: list[int]) -> Readings:
    n = len(pids)
    return Readings(np.array(pids, np.int32), np.array(times, np.int64),
                    np.arange(n, dtype=np.float64), np.zeros(n, np.int16))


def test_dedup_keeps_first_of_each_point_time() -> None:
    r = _readings([1, 2, 1, 1, 2], [10, 10, 10, 11, 10]).dedup()
    assert r.point_id.tolist() == [1, 2, 1]
    assert r.time_us.tolist() == [10, 10, 11]
    assert r.value.tolist() == [0.0, 1.0, 3.0]


def test_dedup_without_duplicates_is_identity() -> None:
    r = _readings([1, 2, 3], [5, 5, 5])
    assert r.dedup() is r


def test_encode_copy_matches_postgres_binary_format() -> None:
    t_unix_us = 1_764_460_800_123_456
    r = Readings(np.array([7], np.int32), np.array([t_unix_us], np.int64),
                 np.array([71.25]), np.array([1], np.int16))
    data = encode_copy(r)
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00")
    body = data[19:-2]
    fields, = struct.unpack(">h", body[:2])
    assert fields == 4
    lt, t, lp, p, lv, v, lq, q = struct.unpack(">iqiiidih", body[2:])
    assert (lt, lp, lv, lq) == (8, 4, 8, 2)
    assert t == t_unix_us - PG_EPOCH_US and p == 7 and v == 71.25 and q == 1
    assert data.endswith(b"\xff\xff")


def test_unmapped_aggregates() -> None:
    b = Batch()
    b.add_unmapped("gw", "X", 20, 2.0)
    b.add_unmapped("gw", "X", 10, 1.0)
    u = b.unmapped[("gw", "X")]
    assert (u.first_us, u.last_us, u.count, u.last_value) == (10, 20, 2, 2.0)
