"""Grafana's database access: the `grafana_reader` role and what it may read.

Migration 0009 creates the `grafana` views, the NOLOGIN group role
`grafana_reader` (when the migration role may create roles) and the function
`riskwatch_grafana_grants()`, which gives the group SELECT on those views and
takes away every other privilege it holds. Grafana itself logs in as a LOGIN
role that is a member of the group. Where riskwatch does not administer the
database (no CREATEROLE), a DBA creates both roles with `setup_sql()` and the
riskwatch owner then applies the grants (`riskwatch grafana grants --apply`).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

READER_ROLE = "grafana_reader"
SCHEMA = "grafana"


def setup_sql(login: str = "grafana", owner: str = "riskwatch") -> str:
    """The SQL a DBA runs once (psql, as a role with CREATEROLE) for an external database, then the owner's part.

    The password is a psql variable (`-v grafana_password=...`), so it is never printed or stored here.
    """
    ident = sql.Identifier(login).as_string(None)
    own = sql.Identifier(owner).as_string(None)
    return f"""-- 1. As a role with CREATEROLE (the DBA), once per cluster:
--      psql -v grafana_password='...' -d riskwatch -f grafana-roles.sql
SELECT 'CREATE ROLE {READER_ROLE} NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{READER_ROLE}') \\gexec
CREATE ROLE {ident} LOGIN PASSWORD :'grafana_password' IN ROLE {READER_ROLE};
ALTER ROLE {ident} SET default_transaction_read_only = on;
ALTER ROLE {ident} SET statement_timeout = '30s';
-- Grafana's login may belong to no other role: check that this lists {READER_ROLE} alone.
SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = {sql.Literal(login).as_string(None)});

-- 2. As the riskwatch owner ({own}, the role `riskwatch migrate` runs as), after the migrations:
SELECT riskwatch_grafana_grants();     -- or: riskwatch grafana grants --apply
"""


@dataclass(frozen=True)
class Access:
    """What a role may read: the `grafana` views it may SELECT, and any other relation it may touch (must be none)."""

    role_exists: bool
    views: tuple[str, ...]
    elsewhere: tuple[str, ...]


def apply_grants(conn: psycopg.Connection) -> None:
    """Grant the reader the views and revoke the rest (idempotent; needs the tables' owner)."""
    conn.execute("SELECT riskwatch_grafana_grants()")
    conn.commit()


def inspect(conn: psycopg.Connection, role: str = READER_ROLE) -> Access:
    """Which relations `role` (or a member of it) may read. TimescaleDB's and PostgreSQL's own catalogs, which
    every role reads, are left out; hypertable chunks are in."""
    if conn.execute("SELECT FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
        conn.rollback()
        return Access(False, (), ())
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'"
        " AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
        "                 AND d.deptype = 'e')"
        " AND n.nspname NOT IN ('timescaledb_information', 'timescaledb_experimental')"
        " AND (has_table_privilege(%s, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
        "      OR (c.relkind = 'S' AND has_sequence_privilege(%s, c.oid, 'USAGE, SELECT, UPDATE')))"
        " ORDER BY 1, 2", (role, role)).fetchall()
    conn.rollback()
    views = tuple(name for schema, name in rows if schema == SCHEMA)
    elsewhere = tuple(f"{schema}.{name}" for schema, name in rows if schema != SCHEMA)
    return Access(True, views, elsewhere)
