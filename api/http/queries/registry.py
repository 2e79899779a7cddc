"""Registry reads and writes for the API, every one scoped to the caller's enterprise.

`scope` is the enterprise a caller is bound to (None: every enterprise). A
lookup outside the scope returns None, exactly as for a missing row, so the
API answers 404 either way. Bulk loading from YAML stays in core.registry.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core import gateways

Row = dict[str, Any]


def _rows(conn: psycopg.Connection, sql: str, args: list[Any] | tuple[Any, ...]) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, args).fetchall()


def _one(conn: psycopg.Connection, sql: str, args: list[Any] | tuple[Any, ...]) -> Row | None:
    rows = _rows(conn, sql, args)
    return rows[0] if rows else None


def _where(conds: list[tuple[str, Any]]) -> tuple[str, list[Any]]:
    live = [(c, v) for c, v in conds if v is not None]
    return (" WHERE " + " AND ".join(c for c, _ in live)) if live else "", [v for _, v in live]


def _count(conn: psycopg.Connection, sql: str, args: list[Any]) -> int:
    row = conn.execute(f"SELECT count(*) FROM ({sql}) AS q", args).fetchone()
    return int(row[0]) if row else 0


# --- enterprises ------------------------------------------------------------------------------

_ENT = """SELECT e.*, (SELECT count(*) FROM plants p WHERE p.enterprise_id = e.id) AS plants FROM enterprises e"""


def _enterprise(r: Row) -> Row:
    r["principal"] = {"name": r.pop("principal_name"), "phone": r.pop("principal_phone"),
                      "email": r.pop("principal_email")}
    r["controller"] = {"name": r.pop("controller_name"), "phone": r.pop("controller_phone"),
                       "email": r.pop("controller_email")}
    return r


def enterprise_names(conn: psycopg.Connection, scope: str | None, enterprise_id: str | None) -> dict[str, str]:
    """id -> name of the enterprises in scope (one, when `enterprise_id` is given), in id order."""
    rows = conn.execute("SELECT id, name FROM enterprises WHERE (%(s)s::text IS NULL OR id = %(s)s)"
                        " AND (%(e)s::text IS NULL OR id = %(e)s) ORDER BY id",
                        {"s": scope, "e": enterprise_id}).fetchall()
    return {str(i): str(n) for i, n in rows}


def list_enterprises(conn: psycopg.Connection, scope: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    where, args = _where([("e.id = %s", scope)])
    rows = _rows(conn, f"{_ENT}{where} ORDER BY e.id LIMIT %s OFFSET %s", [*args, limit, offset])
    return [_enterprise(r) for r in rows], _count(conn, f"SELECT 1 FROM enterprises e{where}", args)


def get_enterprise(conn: psycopg.Connection, enterprise_id: str, scope: str | None) -> Row | None:
    where, args = _where([("e.id = %s", enterprise_id), ("e.id = %s", scope)])
    r = _one(conn, f"{_ENT}{where}", args)
    return _enterprise(r) if r else None


def _contacts(contacts: list[dict[str, Any]] | None) -> Jsonb:
    """Routine contacts as stored: each with its three fields, so a read needs no defaults."""
    return Jsonb([{f: c.get(f) for f in ("name", "phone", "email")} for c in contacts or []])


def create_enterprise(conn: psycopg.Connection, e: dict[str, Any]) -> None:
    p, c = e["principal"], e["controller"]
    conn.execute(
        """INSERT INTO enterprises (id, name, credit_code, address, principal_name, principal_phone, principal_email,
               controller_name, controller_phone, controller_email, routine_contacts)
           VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
        (e["id"], e["name"], e.get("credit_code"), e.get("address"), p["name"], p.get("phone"), p.get("email"),
         c["name"], c.get("phone"), c.get("email"), _contacts(e.get("routine_contacts"))))


def update_enterprise(conn: psycopg.Connection, enterprise_id: str, changes: dict[str, Any]) -> None:
    cols: dict[str, Any] = {k: changes[k] for k in ("name", "credit_code", "address") if k in changes}
    for who in ("principal", "controller"):
        if changes.get(who) is not None:
            for f in ("name", "phone", "email"):
                cols[f"{who}_{f}"] = changes[who].get(f)
    if changes.get("routine_contacts") is not None:
        cols["routine_contacts"] = _contacts(changes["routine_contacts"])
    _update(conn, "enterprises", "id", enterprise_id, cols, ("name",))


def _update(conn: psycopg.Connection, table: str, key: str, ident: Any, cols: dict[str, Any],
            not_null: tuple[str, ...] = ()) -> None:
    """Set the given columns; a null for a NOT NULL column means "leave as is"."""
    cols = {k: v for k, v in cols.items() if v is not None or k not in not_null}
    if not cols:
        return
    sets = ", ".join(f"{c} = %s" for c in cols)
    conn.execute(f"UPDATE {table} SET {sets}, updated_at = now() WHERE {key} = %s", [*cols.values(), ident])


# --- plants -----------------------------------------------------------------------------------


def list_plants(conn: psycopg.Connection, scope: str | None, enterprise_id: str | None, industry: str | None,
                limit: int, offset: int) -> tuple[list[Row], int]:
    where, args = _where([("enterprise_id = %s", scope), ("enterprise_id = %s", enterprise_id),
                          ("industry = %s", industry)])
    rows = _rows(conn, f"SELECT * FROM plants{where} ORDER BY id LIMIT %s OFFSET %s", [*args, limit, offset])
    return rows, _count(conn, f"SELECT 1 FROM plants{where}", args)


def get_plant(conn: psycopg.Connection, plant_id: str, scope: str | None) -> Row | None:
    where, args = _where([("id = %s", plant_id), ("enterprise_id = %s", scope)])
    return _one(conn, f"SELECT * FROM plants{where}", args)


def create_plant(conn: psycopg.Connection, p: dict[str, Any]) -> None:
    conn.execute("INSERT INTO plants (id, enterprise_id, name, industry, address) VALUES (%s,%s,%s,%s,%s)",
                 (p["id"], p["enterprise_id"], p["name"], p["industry"], p.get("address")))


def update_plant(conn: psycopg.Connection, plant_id: str, changes: dict[str, Any]) -> None:
    _update(conn, "plants", "id", plant_id, {k: v for k, v in changes.items() if k in ("name", "industry", "address")},
            ("name", "industry"))


# --- gateways ---------------------------------------------------------------------------------

_GW = """SELECT g.id, g.plant_id, pl.enterprise_id, g.name, g.enabled, g.credential_hash IS NOT NULL AS has_credentials,
                g.credential_issued_at, g.online, g.status_at, g.last_seen, g.created_at
         FROM gateways g JOIN plants pl ON pl.id = g.plant_id"""


def list_gateways(conn: psycopg.Connection, scope: str | None, plant_id: str | None, enterprise_id: str | None,
                  enabled: bool | None, limit: int, offset: int) -> tuple[list[Row], int]:
    where, args = _where([("pl.enterprise_id = %s", scope), ("g.plant_id = %s", plant_id),
                          ("pl.enterprise_id = %s", enterprise_id), ("g.enabled = %s", enabled)])
    rows = _rows(conn, f"{_GW}{where} ORDER BY g.id LIMIT %s OFFSET %s", [*args, limit, offset])
    return rows, _count(conn, f"{_GW}{where}", args)


def get_gateway(conn: psycopg.Connection, gateway_id: str, scope: str | None) -> Row | None:
    where, args = _where([("g.id = %s", gateway_id), ("pl.enterprise_id = %s", scope)])
    return _one(conn, f"{_GW}{where}", args)


def create_gateway(conn: psycopg.Connection, g: dict[str, Any]) -> None:
    gateways.create_gateway(conn, g)  # one insert for both faces (core.gateways)


def update_gateway(conn: psycopg.Connection, gateway_id: str, changes: dict[str, Any]) -> None:
    _update(conn, "gateways", "id", gateway_id, {k: v for k, v in changes.items() if k in ("name",)})


def feeds_required_point(conn: psycopg.Connection, gateway_id: str) -> bool:
    """Whether turning this gateway off would silence a point the bureau requires."""
    return gateways.feeds_required_point(conn, gateway_id)


# --- devices ----------------------------------------------------------------------------------

_DEV = """SELECT d.id, d.plant_id, pl.enterprise_id, d.code, d.name, d.kind, d.created_at
          FROM devices d JOIN plants pl ON pl.id = d.plant_id"""


def list_devices(conn: psycopg.Connection, scope: str | None, plant_id: str | None, kind: str | None,
                 limit: int, offset: int) -> tuple[list[Row], int]:
    where, args = _where([("pl.enterprise_id = %s", scope), ("d.plant_id = %s", plant_id), ("d.kind = %s", kind)])
    rows = _rows(conn, f"{_DEV}{where} ORDER BY d.id LIMIT %s OFFSET %s", [*args, limit, offset])
    return rows, _count(conn, f"{_DEV}{where}", args)


def get_device(conn: psycopg.Connection, device_id: int, scope: str | None) -> Row | None:
    where, args = _where([("d.id = %s", device_id), ("pl.enterprise_id = %s", scope)])
    return _one(conn, f"{_DEV}{where}", args)


def create_device(conn: psycopg.Connection, d: dict[str, Any]) -> int:
    row = conn.execute("INSERT INTO devices (plant_id, code, name, kind) VALUES (%s,%s,%s,%s) RETURNING id",
                       (d["plant_id"], d["code"], d["name"], d["kind"])).fetchone()
    assert row is not None
    return int(row[0])


def update_device(conn: psycopg.Connection, device_id: int, changes: dict[str, Any]) -> None:
    _update(conn, "devices", "id", device_id, {k: v for k, v in changes.items() if k in ("name", "kind")},
            ("name", "kind"))


# --- points -----------------------------------------------------------------------------------

_PT = """SELECT p.id, p.device_id, d.plant_id, pl.enterprise_id, p.gateway_id, p.tag, p.name, p.quantity, p.role,
                p.unit, p.kind, p.required, p.interval_s, p.states, p.setpoints, p.baseline, p.created_at
         FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id"""


def list_points(conn: psycopg.Connection, scope: str | None, device_id: int | None, gateway_id: str | None,
                plant_id: str | None, limit: int, offset: int) -> tuple[list[Row], int]:
    where, args = _where([("pl.enterprise_id = %s", scope), ("p.device_id = %s", device_id),
                          ("p.gateway_id = %s", gateway_id), ("d.plant_id = %s", plant_id)])
    rows = _rows(conn, f"{_PT}{where} ORDER BY p.id LIMIT %s OFFSET %s", [*args, limit, offset])
    return rows, _count(conn, f"{_PT}{where}", args)


def get_point(conn: psycopg.Connection, point_id: int, scope: str | None) -> Row | None:
    where, args = _where([("p.id = %s", point_id), ("pl.enterprise_id = %s", scope)])
    return _one(conn, f"{_PT}{where}", args)


def create_point(conn: psycopg.Connection, p: dict[str, Any]) -> int:
    row = conn.execute(
        """INSERT INTO points (device_id, gateway_id, tag, name, quantity, role, unit, kind, required, interval_s,
               states, setpoints) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id""",
        (p["device_id"], p["gateway_id"], p["tag"], p.get("name"), p["quantity"], p.get("role"), p.get("unit", ""),
         p.get("kind", "analog"), p.get("required", False), p.get("interval_s", 1.0),
         Jsonb(p["states"]) if p.get("states") else None, Jsonb(p["setpoints"]) if p.get("setpoints") else None),
    ).fetchone()
    assert row is not None
    return int(row[0])


def update_point(conn: psycopg.Connection, point_id: int, changes: dict[str, Any]) -> None:
    cols = {k: v for k, v in changes.items() if k in ("name", "unit", "required", "interval_s")}
    for k in ("states", "setpoints"):
        if k in changes:
            cols[k] = Jsonb(changes[k]) if changes[k] else None
    _update(conn, "points", "id", point_id, cols, ("unit", "required", "interval_s"))


# --- supervised changes -----------------------------------------------------------------------


def get_object(conn: psycopg.Connection, kind: str, object_id: str, scope: str | None) -> Row | None:
    """The registry object a change request names, as its GET shows it (None if missing or out of scope)."""
    if kind in ("device", "point"):
        if not object_id.isdigit():
            return None
        return (get_device if kind == "device" else get_point)(conn, int(object_id), scope)
    getter = {"enterprise": get_enterprise, "plant": get_plant, "gateway": get_gateway}[kind]
    return getter(conn, object_id, scope)


def apply_changes(conn: psycopg.Connection, kind: str, object_id: str, changes: dict[str, Any]) -> None:
    """Write a change to a registry object: a direct PATCH, or an approved change request. A gateway's
    `enabled` goes through the same statement as `riskwatch gateway disable`."""
    if kind == "gateway":
        if "enabled" in changes:
            cur = conn.execute("UPDATE gateways SET enabled = %s, updated_at = now() WHERE id = %s",
                               (bool(changes["enabled"]), object_id))
            assert cur.rowcount == 1, object_id
        update_gateway(conn, object_id, changes)
    elif kind == "enterprise":
        update_enterprise(conn, object_id, changes)
    elif kind == "plant":
        update_plant(conn, object_id, changes)
    elif kind == "device":
        update_device(conn, int(object_id), changes)
    elif kind == "point":
        update_point(conn, int(object_id), changes)
    else:
        raise ValueError(f"unknown object kind {kind!r}")
