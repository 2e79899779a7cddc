"""The console's registry reads: gateways with their status, plants to attach to, points with live values.

Every read takes the viewer's scope (None for bureau and admin, else the one enterprise) and applies it in
SQL through the plant's enterprise, the way the HTTP API scopes its own (`api/http/queries/registry.py`): a
gateway, plant or point outside the scope is simply not there, so every page answers 404 for it.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

Row = dict[str, Any]

_SCOPE = "(%(scope)s::text IS NULL OR pl.enterprise_id = %(scope)s)"
_ENT = "(%(enterprise)s::text IS NULL OR pl.enterprise_id = %(enterprise)s)"
_PLANT = "(%(plant)s::text IS NULL OR pl.id = %(plant)s)"
_GATEWAY = "(%(gateway)s::text IS NULL OR g.id = %(gateway)s)"

# Status: the gateway's own retained status message (gateways.online) and the engine's view of its traffic
# (gateway_arrivals.online false = the offline rule fired); last_seen is the newest live message.
_GW = """SELECT g.id, g.name, g.plant_id, pl.name AS plant_name, pl.enterprise_id, e.name AS enterprise_name,
                g.enabled, g.credential_hash IS NOT NULL AS has_credentials, g.credential_issued_at,
                g.online AS reported_online, ga.online AS engine_online, g.status_at,
                greatest(g.last_seen, ga.last_seen) AS last_seen,
                (SELECT count(*) FROM points p WHERE p.gateway_id = g.id) AS points
         FROM gateways g JOIN plants pl ON pl.id = g.plant_id JOIN enterprises e ON e.id = pl.enterprise_id
         LEFT JOIN gateway_arrivals ga ON ga.gateway_id = g.id"""


def list_gateways(conn: psycopg.Connection, scope: str | None, enterprise_id: str | None = None,
                  plant_id: str | None = None, limit: int = 500) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{_GW} WHERE {_SCOPE} AND {_ENT} AND {_PLANT} ORDER BY e.id, pl.id, g.id "
                           "LIMIT %(limit)s",
                           {"scope": scope, "enterprise": enterprise_id, "plant": plant_id, "limit": limit}).fetchall()


def get_gateway(conn: psycopg.Connection, gateway_id: str, scope: str | None) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{_GW} WHERE g.id = %(id)s AND {_SCOPE}", {"id": gateway_id, "scope": scope}).fetchone()


def plants_in_scope(conn: psycopg.Connection, scope: str | None) -> list[Row]:
    """The plants a viewer may attach a gateway to (id, name, enterprise), in enterprise order."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"""SELECT pl.id, pl.name, pl.enterprise_id, e.name AS enterprise_name
                               FROM plants pl JOIN enterprises e ON e.id = pl.enterprise_id
                               WHERE {_SCOPE} ORDER BY pl.enterprise_id, pl.id""", {"scope": scope}).fetchall()


def get_plant(conn: psycopg.Connection, plant_id: str, scope: str | None) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"SELECT pl.id, pl.name, pl.enterprise_id FROM plants pl WHERE pl.id = %(id)s AND {_SCOPE}",
                           {"id": plant_id, "scope": scope}).fetchone()


# The latest reading per point: one index probe each on readings (point_id, time DESC).
_PT = """SELECT p.id, p.tag, p.name, p.quantity, p.unit, p.kind, p.required, p.interval_s, p.setpoints, p.states,
                p.gateway_id, d.name AS device_name, pl.id AS plant_id, pl.name AS plant_name, pl.enterprise_id,
                r.time AS reading_time, r.value, r.quality
         FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
         JOIN gateways g ON g.id = p.gateway_id
         LEFT JOIN LATERAL (SELECT time, value, quality FROM readings WHERE point_id = p.id
                            ORDER BY time DESC LIMIT 1) r ON true"""


def list_points(conn: psycopg.Connection, scope: str | None, plant_id: str | None = None,
                gateway_id: str | None = None, limit: int = 500) -> list[Row]:
    """Points in scope with their latest reading, filtered by plant and gateway, at most `limit`."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{_PT} WHERE {_SCOPE} AND {_PLANT} AND {_GATEWAY} ORDER BY pl.id, p.gateway_id, p.tag "
                           "LIMIT %(limit)s",
                           {"scope": scope, "plant": plant_id, "gateway": gateway_id, "limit": limit}).fetchall()
