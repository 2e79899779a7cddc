"""The 数据问题 page's own reads: the devices a tag can be mapped to (those of the gateway's plant).

Dead letters and unmapped tags are read through `ingest.quarantine` (`dead_letters`, `unmapped`), the same
scoped reads the HTTP API uses; only the form's device choices live here. Scoped in SQL like every console
read: another enterprise's plant has no devices to offer.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]


def devices_by_plant(conn: psycopg.Connection, plant_ids: list[str], scope: str | None) -> dict[str, list[Row]]:
    """plant id -> its devices (id, code, name), for the plants given, within the viewer's scope."""
    if not plant_ids:
        return {}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT d.id, d.code, d.name, d.plant_id FROM devices d JOIN plants pl ON pl.id = d.plant_id
               WHERE d.plant_id = ANY(%(plants)s) AND (%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)
               ORDER BY d.plant_id, d.code""", {"plants": sorted(set(plant_ids)), "scope": scope}).fetchall()
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(str(r["plant_id"]), []).append(r)
    return out
