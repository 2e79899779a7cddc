"""Maintenance windows (检修窗口) opened from the CLI: since issue 14 they are production stops (停产报备,
rules.stops) filed and approved at once by the operator who opens them, with the audit trail of any stop
(production_stop_events). Alarms in scope are recorded but not annunciated and silence rules open no
candidates while the window holds (rules.engine).
"""

from __future__ import annotations

import psycopg

from core.timeconst import S_PER_MIN
from rules import store_stops
from rules.store_stops import UnknownTarget

__all__ = ["UnknownDevice", "open_window"]

#: Kept as the name callers catch.
UnknownDevice = UnknownTarget


def open_window(conn: psycopg.Connection, plant_id: str, minutes: float, reason: str, created_by: str,
                device_code: str | None = None, now: float | None = None) -> int:
    """Open a window from `now` (default: the database's now) for `minutes` on a plant (or one of its devices);
    the id of the approved stop it is.

    Commits: a window takes effect for the engine when it is committed.
    """
    if now is None:
        row = conn.execute("SELECT extract(epoch FROM now())").fetchone()
        assert row is not None
        now = float(row[0])
    sid = store_stops.file_stop(conn, plant_id=plant_id, device_code=device_code, kind="maintenance", reason=reason,
                                starts=now, ends=now + minutes * S_PER_MIN, actor=created_by, filer_enterprise=None,
                                now=now, approved_comment="检修窗口（命令行） maintenance window opened from the CLI")
    conn.commit()
    return sid
