"""Binary COPY of readings, built with numpy (no per-row Python).

The normal path COPYs straight into `readings`. A QoS1 redelivery after a crash
repeats readings already stored; then the COPY hits the unique key, we roll
back to a savepoint and take the slower path once: COPY into a temporary
table and INSERT ... ON CONFLICT DO NOTHING.

Either way `write_readings` returns the readings it actually inserted, because
the 1-minute rollup (ingest.rollup) must count each reading exactly once: the
fast path inserted all of them; the fallback runs its INSERT inside
``COPY (INSERT ... RETURNING ...) TO STDOUT (FORMAT BINARY)`` so the inserted
rows come back in the very layout we encode, and are decoded with numpy too.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from core.readings import Readings

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in unix microseconds
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = _SIGNATURE + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_ROW = np.dtype(
    [("n", ">i2"),
     ("l_t", ">i4"), ("t", ">i8"),
     ("l_p", ">i4"), ("p", ">i4"),
     ("l_v", ">i4"), ("v", ">f8"),
     ("l_q", ">i4"), ("q", ">i2")]
)
COLUMNS = "(time, point_id, value, quality)"


def encode_copy(r: Readings) -> bytes:
    """The whole binary COPY stream for these readings."""
    rows = np.empty(len(r), dtype=_ROW)
    rows["n"] = 4
    rows["l_t"] = 8
    rows["t"] = r.time_us - PG_EPOCH_US
    rows["l_p"] = 4
    rows["p"] = r.point_id
    rows["l_v"] = 8
    rows["v"] = r.value
    rows["l_q"] = 2
    rows["q"] = r.quality
    return _HEADER + rows.tobytes() + _TRAILER


def decode_copy(data: bytes) -> Readings:
    """Readings from a binary COPY stream of (time, point_id, value, quality), none NULL."""
    if not data.startswith(_SIGNATURE) or len(data) < len(_HEADER) + len(_TRAILER):
        raise ValueError("not a binary COPY stream")
    ext = int.from_bytes(data[15:19], "big")
    body = data[19 + ext:-2]
    if data[-2:] != _TRAILER or len(body) % _ROW.itemsize:
        raise ValueError("binary COPY stream of unexpected layout")
    rows = np.frombuffer(body, dtype=_ROW)
    if len(rows) and not ((rows["n"] == 4).all() and (rows["l_t"] == 8).all() and (rows["l_p"] == 4).all()
                          and (rows["l_v"] == 8).all() and (rows["l_q"] == 2).all()):
        raise ValueError("binary COPY rows are not (timestamptz, int4, float8, int2)")
    return Readings(rows["p"].astype(np.int32), rows["t"].astype(np.int64) + PG_EPOCH_US,
                    rows["v"].astype(np.float64), rows["q"].astype(np.int16))


def _copy(cur: psycopg.Cursor, table: str, data: bytes) -> None:
    stmt = sql.SQL("COPY {} {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), sql.SQL(COLUMNS))
    with cur.copy(stmt) as copy:
        copy.write(data)


def write_readings(conn: psycopg.Connection, r: Readings) -> Readings:
    """Store readings inside the caller's transaction; return those that were new (not already stored)."""
    if len(r) == 0:
        return r
    data = encode_copy(r)
    with conn.cursor() as cur:
        try:
            with conn.transaction():  # savepoint
                _copy(cur, "readings", data)
            return r
        except psycopg.errors.UniqueViolation:
            pass
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_stage"
            " (time timestamptz, point_id integer, value double precision, quality smallint)"
            " ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE readings_stage")
        _copy(cur, "readings_stage", data)
        out = bytearray()
        with cur.copy(
            "COPY (INSERT INTO readings " + COLUMNS + " SELECT time, point_id, value, quality FROM readings_stage"
            " ON CONFLICT (point_id, time) DO NOTHING RETURNING time, point_id, value, quality)"
            " TO STDOUT (FORMAT BINARY)"
        ) as copy:
            for block in copy:
                out += block
        return decode_copy(bytes(out))
