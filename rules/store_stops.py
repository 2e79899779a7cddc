"""SQL of production-stop filing (停产报备): tables production_stops and production_stop_events (migration 0016).

Every change is one transaction that also appends the audit row (who, when, what, comment); the engine
reads approved stops through `load_stops`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from core.clock import secs, ts
from core.errors import RiskwatchError
from rules.stops import Stop, StopAction, StopError, act, check_filing

__all__ = ["StopNotFound", "StopRecord", "UnknownTarget", "decide", "file_stop", "get_stop", "list_stops",
           "load_stops", "plant_enterprise", "stop_events"]


class StopNotFound(RiskwatchError, LookupError):
    pass


class UnknownTarget(RiskwatchError, LookupError):
    """The plant, or the device within it, does not exist."""


_COLS = ("id, enterprise_id, plant_id, device_id, kind, reason, starts_at, ends_at, status, filed_by, filed_at,"
         " decided_by, decided_at, decision_comment")


@dataclass(frozen=True)
class StopRecord:
    id: int
    enterprise_id: str
    plant_id: str
    device_id: int | None
    kind: str
    reason: str
    starts_at: float
    ends_at: float
    status: str
    filed_by: str
    filed_at: float
    decided_by: str | None
    decided_at: float | None
    decision_comment: str | None

    def stop(self) -> Stop:
        return Stop(self.id, self.enterprise_id, self.plant_id, self.device_id, self.starts_at, self.ends_at,
                    self.status, self.reason, self.kind)  # type: ignore[arg-type]


def _record(r: tuple[Any, ...]) -> StopRecord:
    return StopRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6].timestamp(), r[7].timestamp(), r[8], r[9],
                      r[10].timestamp(), r[11], secs(r[12]), r[13])


def plant_enterprise(conn: psycopg.Connection, plant_id: str) -> str | None:
    row = conn.execute("SELECT enterprise_id FROM plants WHERE id = %s", (plant_id,)).fetchone()
    return None if row is None else str(row[0])


def _device(conn: psycopg.Connection, plant_id: str, device_code: str | None) -> int | None:
    if device_code is None:
        return None
    row = conn.execute("SELECT id FROM devices WHERE plant_id = %s AND code = %s", (plant_id, device_code)).fetchone()
    if row is None:
        raise UnknownTarget(f"厂区 {plant_id} 无设备 {device_code} no device {device_code} in plant {plant_id}")
    return int(row[0])


def _event(conn: psycopg.Connection, stop_id: int, action: str, actor: str, comment: str, now: float) -> None:
    conn.execute("INSERT INTO production_stop_events (stop_id, time, action, actor, comment) VALUES (%s,%s,%s,%s,%s)",
                 (stop_id, ts(now), action, actor, comment))


def file_stop(conn: psycopg.Connection, *, plant_id: str, device_code: str | None, kind: str, reason: str,
              starts: float, ends: float, actor: str, filer_enterprise: str | None, now: float,
              approved_comment: str | None = None) -> int:
    """File a stop; with `approved_comment` the bureau files and approves it at once (the CLI's windows)."""
    with conn.transaction():
        owner = plant_enterprise(conn, plant_id)
        if owner is None:
            raise UnknownTarget(f"厂区不存在 no plant {plant_id}")
        check_filing(plant_enterprise=owner, filer_enterprise=filer_enterprise, starts=starts, ends=ends, now=now,
                     reason=reason)
        device_id = _device(conn, plant_id, device_code)
        approved = approved_comment is not None
        row = conn.execute(
            """INSERT INTO production_stops (enterprise_id, plant_id, device_id, kind, reason, starts_at, ends_at,
                   status, filed_by, filed_at, decided_by, decided_at, decision_comment)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id""",
            (owner, plant_id, device_id, kind, reason.strip(), ts(starts), ts(ends),
             "approved" if approved else "filed", actor, ts(now), actor if approved else None,
             ts(now) if approved else None, approved_comment)).fetchone()
        assert row is not None
        sid = int(row[0])
        _event(conn, sid, "file", actor, reason.strip(), now)
        if approved:
            _event(conn, sid, "approve", actor, approved_comment or "", now)
    return sid


def get_stop(conn: psycopg.Connection, stop_id: int, scope: str | None = None, *, lock: bool = False
             ) -> StopRecord | None:
    r = conn.execute(f"SELECT {_COLS} FROM production_stops WHERE id = %s AND (%s::text IS NULL OR enterprise_id = %s)"
                     + (" FOR UPDATE" if lock else ""), (stop_id, scope, scope)).fetchone()
    return None if r is None else _record(r)


def decide(conn: psycopg.Connection, stop_id: int, action: StopAction, *, actor: str, comment: str,
           by_enterprise: str | None, now: float) -> StopRecord:
    """Approve, reject or withdraw, audited; StopNotFound outside the caller's scope, StopError if refused."""
    if action == "reject" and not comment.strip():
        raise StopError("驳回须说明理由 a rejection needs a comment")
    with conn.transaction():
        rec = get_stop(conn, stop_id, by_enterprise, lock=True)
        if rec is None:
            raise StopNotFound(f"报备不存在 no stop filing #{stop_id}")
        new = act(rec.stop(), action, by_enterprise=by_enterprise, now=now)
        if action in ("approve", "reject"):
            conn.execute("UPDATE production_stops SET status = %s, decided_by = %s, decided_at = %s,"
                         " decision_comment = %s WHERE id = %s", (new.status, actor, ts(now), comment, stop_id))
        else:
            conn.execute("UPDATE production_stops SET status = %s, ends_at = %s WHERE id = %s",
                         (new.status, ts(new.ends), stop_id))
        _event(conn, stop_id, action, actor, comment, now)
        out = get_stop(conn, stop_id)
    assert out is not None
    return out


def list_stops(conn: psycopg.Connection, scope: str | None, *, status: str | None = None,
               plant_id: str | None = None, limit: int = 50, offset: int = 0) -> tuple[list[StopRecord], int]:
    where = ("(%(scope)s::text IS NULL OR enterprise_id = %(scope)s)"
             " AND (%(status)s::text IS NULL OR status = %(status)s)"
             " AND (%(plant)s::text IS NULL OR plant_id = %(plant)s)")
    args = {"scope": scope, "status": status, "plant": plant_id, "limit": limit, "offset": offset}
    rows = conn.execute(f"SELECT {_COLS} FROM production_stops WHERE {where} ORDER BY id DESC"
                        " LIMIT %(limit)s OFFSET %(offset)s", args).fetchall()
    total = conn.execute(f"SELECT count(*) FROM production_stops WHERE {where}", args).fetchone()
    return [_record(r) for r in rows], int(total[0]) if total else 0


def stop_events(conn: psycopg.Connection, stop_id: int) -> list[tuple[float, str, str, str]]:
    return [(r[0].timestamp(), r[1], r[2], r[3]) for r in conn.execute(
        "SELECT time, action, actor, comment FROM production_stop_events WHERE stop_id = %s ORDER BY id", (stop_id,))]


def load_stops(conn: psycopg.Connection, now: float) -> list[Stop]:
    """Approved stops not long over, for the engine (it checks each transition's own time against them)."""
    return [_record(r).stop() for r in conn.execute(
        f"SELECT {_COLS} FROM production_stops WHERE status = 'approved' AND ends_at > %s", (ts(now - 3600),))]
