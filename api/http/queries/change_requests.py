"""Change requests in the database, scoped like every registry read: `scope` is the caller's enterprise
(None: all), and a request outside it reads as missing."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.http.auth import Principal
from core import gateways

Row = dict[str, Any]

_COLS = """id, enterprise_id, object_kind, object_id, changes, old_values, reason, status, requested_by,
           requested_at, decided_by, decided_at, decision_comment"""


def create(conn: psycopg.Connection, enterprise_id: str, kind: str, object_id: str, changes: dict[str, Any],
           old_values: dict[str, Any], reason: str | None, who: Principal, now: float) -> Row:
    # one insert for both faces: the console files a gateway's disable through the same function
    return gateways.file_change_request(conn, enterprise_id, kind, object_id, changes, old_values, reason,
                                        gateways.Requester(who.name, who.token_id), now)


def get(conn: psycopg.Connection, request_id: int, scope: str | None, *, lock: bool = False) -> Row | None:
    sql = f"SELECT {_COLS} FROM change_requests WHERE id = %s AND (%s::text IS NULL OR enterprise_id = %s)"
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql + (" FOR UPDATE" if lock else ""), (request_id, scope, scope)).fetchone()


def list_requests(conn: psycopg.Connection, scope: str | None, status: str | None, enterprise_id: str | None,
                  object_kind: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    conds = [("enterprise_id = %s", scope), ("enterprise_id = %s", enterprise_id), ("status = %s", status),
             ("object_kind = %s", object_kind)]
    live = [(c, v) for c, v in conds if v is not None]
    where = (" WHERE " + " AND ".join(c for c, _ in live)) if live else ""
    args = [v for _, v in live]
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {_COLS} FROM change_requests{where} ORDER BY id DESC LIMIT %s OFFSET %s",
                           [*args, limit, offset]).fetchall()
    total = conn.execute(f"SELECT count(*) FROM change_requests{where}", args).fetchone()
    return rows, int(total[0]) if total else 0


def decide(conn: psycopg.Connection, request_id: int, status: str, who: Principal, comment: str | None,
           now: float) -> Row:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""UPDATE change_requests SET status = %s, decided_by = %s, decided_token_id = %s,
                    decided_at = to_timestamp(%s), decision_comment = %s
                WHERE id = %s AND status = 'pending' RETURNING {_COLS}""",
            (status, who.name, who.token_id, now, comment, request_id)).fetchone()
    assert row is not None, f"change request {request_id} was not pending"
    return row
