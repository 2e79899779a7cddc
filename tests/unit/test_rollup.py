"""Per-minute aggregation of a batch (pure) and the binary COPY decoder the fallback path uses."""

from __future__ import annotations

import numpy as np

from ingest.batch import Readings
from ingest.rollup import BUCKET_US, aggregate
from ingest.writer import decode_copy, encode_copy

M = BUCKET_US


def _r(pids: list[int], times: list[int], values: list[float]) -> Readings:
    return Readings(np.array(pids, np.int32), np.array(times, np.int64), np.array(values, np.float64),
                    np.zeros(len(pids), np.int16))


def test_groups_by_point_and_minute_whatever_the_order() -> None:
    # point 2 minute 0, point 1 minutes 0 and 1, shuffled; last is by time, not by position
    a = aggregate(_r([1, 2, 1, 1, 1, 2], [5 * 10**6, 0, M + 1, 2 * 10**6, M - 1, 30 * 10**6],
                     [3.0, 7.0, -1.0, 9.0, 4.0, 6.0]))
    assert a.point_id.tolist() == [1, 1, 2]
    assert a.bucket_us.tolist() == [0, M, 0]
    assert a.min.tolist() == [3.0, -1.0, 6.0]
    assert a.max.tolist() == [9.0, -1.0, 7.0]
    assert a.sum.tolist() == [16.0, -1.0, 13.0]
    assert a.count.tolist() == [3, 1, 2]
    assert a.last_time_us.tolist() == [M - 1, M + 1, 30 * 10**6]
    assert a.last.tolist() == [4.0, -1.0, 6.0]


def test_minutes_before_1970_floor_not_truncate() -> None:
    a = aggregate(_r([1], [-1], [1.0]))
    assert a.bucket_us.tolist() == [-M]


def test_empty_batch() -> None:
    assert len(aggregate(_r([], [], []))) == 0


def test_decode_copy_inverts_encode_copy() -> None:
    r = _r([7, 8, 9], [1_764_460_800_123_456, 1, -5], [71.25, -0.0, 1e300])
    r.quality[:] = [0, 1, 2]
    back = decode_copy(encode_copy(r))
    for col in ("point_id", "time_us", "value", "quality"):
        assert getattr(back, col).tolist() == getattr(r, col).tolist()
        assert getattr(back, col).dtype == getattr(r, col).dtype
    assert len(decode_copy(encode_copy(_r([], [], [])))) == 0
