"""`readings_1m` through the real `store_batch`: late, out-of-order and redelivered readings.

The rollup must equal a `time_bucket` aggregate over the raw readings exactly.
Values are multiples of 1/16 so that floating-point sums are exact in any
order: the check is then of the rollup's logic (what is counted, once), not
of the associativity of addition.
"""

from __future__ import annotations

import time

import numpy as np
import psycopg
import pytest

from ingest.batch import Batch
from ingest.store import StoreResult, store_batch

pytestmark = pytest.mark.integration

MIN_US = 60_000_000


def make_batch(pids: list[int] | np.ndarray, times_us: list[int] | np.ndarray,
               values: list[float] | np.ndarray) -> Batch:
    b = Batch()
    b.point_ids = [int(p) for p in pids]
    b.times_us = [int(t) for t in times_us]
    b.values = [float(v) for v in values]
    b.qualities = [0] * len(b.point_ids)
    return b


def store(url: str, b: Batch) -> StoreResult:
    with psycopg.connect(url) as conn:
        with conn.transaction():
            return store_batch(conn, b)


ROLLUP = "SELECT bucket, point_id, min, max, sum, count, last_time, last FROM readings_1m ORDER BY point_id, bucket"
RAW = """SELECT time_bucket('1 minute', time), point_id, min(value), max(value), sum(value), count(*),
                max(time), last(value, time)
         FROM readings GROUP BY 1, 2 ORDER BY 2, 1"""


def assert_rollup_exact(url: str) -> int:
    with psycopg.connect(url) as conn:
        rollup = conn.execute(ROLLUP).fetchall()
        raw = conn.execute(RAW).fetchall()
    assert rollup == raw
    return len(rollup)


def test_late_out_of_order_and_redelivered_readings(db_url: str) -> None:
    t0 = (int(time.time() * 1e6) // MIN_US - 30) * MIN_US  # a whole minute, 30 min ago
    # 1: three points, minutes 10..14, every 2 s, in order
    ts = t0 + 10 * MIN_US + np.arange(0, 5 * 60, 2) * 1_000_000
    pids = np.repeat([1, 2, 3], len(ts))
    times = np.tile(ts, 3)
    vals = np.arange(len(times)) / 16.0
    r1 = store(db_url, make_batch(pids, times, vals))
    assert (r1.stored, r1.duplicates) == (len(times), 0)
    assert_rollup_exact(db_url)

    # 2: out of order and late: odd seconds of the same minutes (merge into existing rows, some
    # older than those rows' last), minutes 0..2 (before anything stored), shuffled; plus
    # redelivered readings of batch 1 (one with a different value: the stored one must win),
    # and a reading repeated inside the batch.
    late = t0 + 10 * MIN_US + np.arange(1, 5 * 60, 2) * 1_000_000
    early = t0 + np.arange(0, 3 * 60, 3) * 1_000_000
    new_t = np.concatenate([late, early, late])
    new_p = np.concatenate([np.full(len(late), 1), np.full(len(early), 2), np.full(len(late), 3)])
    new_v = -np.arange(len(new_t)) / 16.0
    dup_idx = np.arange(0, len(times), 7)
    dup_v = vals[dup_idx].copy()
    dup_v[0] += 100.0  # same (point, time), different value: a gateway resending
    all_p = np.concatenate([new_p, pids[dup_idx], new_p[:1]])
    all_t = np.concatenate([new_t, times[dup_idx], new_t[:1]])
    all_v = np.concatenate([new_v, dup_v, [999.0]])
    perm = np.random.default_rng(1).permutation(len(all_p))
    r2 = store(db_url, make_batch(all_p[perm], all_t[perm], all_v[perm]))
    assert r2.stored == len(new_t)
    assert r2.duplicates == len(dup_idx) + 1
    assert_rollup_exact(db_url)

    # 3: the whole of batch 2 redelivered (the collector died before the PUBACK): nothing new
    r3 = store(db_url, make_batch(all_p[perm], all_t[perm], all_v[perm]))
    assert (r3.stored, r3.duplicates) == (0, len(all_p))
    n = assert_rollup_exact(db_url)

    # 4: a mix: newer readings in the minutes already stored (last must move), older ones
    # (last must not), one redelivered reading to force the slow path, a new point
    t_new = np.array([t0 + 14 * MIN_US + 59_500_000, t0 + 10 * MIN_US + 500_000, int(times[5]),
                      t0 + 20 * MIN_US])
    p_new = np.array([1, 1, int(pids[5]), 4])
    r4 = store(db_url, make_batch(p_new, t_new, [1 / 16, 2 / 16, 3 / 16, 4 / 16]))
    assert (r4.stored, r4.duplicates) == (3, 1)
    assert assert_rollup_exact(db_url) == n + 1
    with psycopg.connect(db_url) as conn:
        lasts: dict[int, float] = dict(conn.execute(
            "SELECT extract(epoch FROM bucket)::bigint * 1000000, last FROM readings_1m WHERE point_id = 1"
            " AND bucket IN (to_timestamp(%s), to_timestamp(%s))",
            ((t0 + 14 * MIN_US) / 1e6, (t0 + 10 * MIN_US) / 1e6)).fetchall())
    assert lasts[t0 + 14 * MIN_US] == 1 / 16  # the newer reading took over
    assert lasts[t0 + 10 * MIN_US] != 2 / 16  # the older one did not


def test_random_overlapping_batches(db_url: str) -> None:
    """Many batches drawn from one pool of readings, with heavy overlap and any order."""
    rng = np.random.default_rng(7)
    t0 = (int(time.time() * 1e6) // MIN_US - 120) * MIN_US
    n = 20_000
    pool_p = rng.integers(1, 9, n)
    pool_t = t0 + rng.integers(0, 90 * 60 * 1000, n) * 1000  # ms resolution over 90 minutes
    pool_v = rng.integers(-4000, 4000, n) / 16.0
    for _ in range(12):
        k = rng.integers(1, 4000)
        pick = rng.choice(n, size=k, replace=True)  # repeats inside a batch too
        store(db_url, make_batch(pool_p[pick], pool_t[pick], pool_v[pick]))
    assert assert_rollup_exact(db_url) > 100
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT sum(count) FROM readings_1m").fetchone()
        raw = conn.execute("SELECT count(*) FROM readings").fetchone()
    assert rows is not None and raw is not None and rows[0] == raw[0]
