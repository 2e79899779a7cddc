"""Binary COPY of readings, built with numpy (no per-row Python).

The normal path COPYs straight into `readings`. A QoS1 redelivery after a crash
repeats readings already stored; then the COPY hits the unique key, we roll
back to a savepoint and take the slower path once: COPY into a temporary
table and INSERT ... ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from ingest.batch import Readings

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in unix microseconds
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
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


def _copy(cur: psycopg.Cursor, table: str, data: bytes) -> None:
    stmt = sql.SQL("COPY {} {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table), sql.SQL(COLUMNS))
    with cur.copy(stmt) as copy:
        copy.write(data)


def write_readings(conn: psycopg.Connection, r: Readings) -> int:
    """Store readings inside the caller's transaction; return how many were new."""
    if len(r) == 0:
        return 0
    data = encode_copy(r)
    with conn.cursor() as cur:
        try:
            with conn.transaction():  # savepoint
                _copy(cur, "readings", data)
            return len(r)
        except psycopg.errors.UniqueViolation:
            pass
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS readings_stage"
            " (time timestamptz, point_id integer, value double precision, quality smallint)"
            " ON COMMIT DELETE ROWS"
        )
        cur.execute("TRUNCATE readings_stage")
        _copy(cur, "readings_stage", data)
        cur.execute(
            "INSERT INTO readings " + COLUMNS + " SELECT time, point_id, value, quality FROM readings_stage"
            " ON CONFLICT (point_id, time) DO NOTHING"
        )
        return cur.rowcount
