"""Grafana's database role reads the `grafana` views and nothing else (issue #11, item 11).

Grafana runs whatever SQL a dashboard editor types, so these tests are written as
that editor: connected as a login role that is a member of `grafana_reader` only,
they try to read whistle-blowers, rewards, token and credential hashes, contacts,
the audit log and the notifications, straight from the tables and from the
hypertables' chunks, and to write through the views. Every attempt must be
refused by PostgreSQL, while the dashboards' views still answer.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql

from api.http import auth
from core import registry
from core.db import migrate
from core.services import LocalPostgres, pg_bindir
from simulators.run import default_site_path
from tests.fix_grafana import grafana_login

pytestmark = pytest.mark.integration

INIT_SCRIPT = Path(__file__).resolve().parents[2] / "deploy/timescaledb/initdb/10-grafana-reader.sh"

# What the dashboards show; anything else in `grafana` is a view nobody reviewed.
VIEWS = {"readings", "readings_1m", "enterprises", "plants", "gateways", "devices", "points", "alarms",
         "alarm_events", "dead_letters", "hazard_counts", "open_hazards", "alarm_positions", "position_alarm_events"}
# Column names that must never reach Grafana, whatever view they would come through.
SECRET_COLUMNS = {"credential_hash", "token_hash", "tip_reporter_name", "tip_reporter_contact", "tip_internal",
                  "reward_status", "reward_amount_yuan", "reward_note", "principal_phone", "principal_email",
                  "controller_phone", "controller_email", "plan_responsible", "plan_responsible_phone",
                  "description", "payload", "acked_by", "ack_comment", "shelved_by", "shelve_reason",
                  "inspection_team", "credit_code", "address"}
# Schema-qualified: for a login named `grafana` the search path ("$user", public) finds the views first.
FORBIDDEN = [
    "SELECT tip_reporter_name, tip_reporter_contact FROM public.hazards",
    "SELECT reward_amount_yuan, reward_note FROM public.hazards",
    "SELECT count(*) FROM public.hazards",
    "SELECT token_hash FROM public.api_tokens",
    "SELECT credential_hash FROM public.gateways",
    "SELECT id FROM public.gateways",
    "SELECT principal_phone, principal_email, controller_phone, controller_email FROM public.enterprises",
    "SELECT * FROM public.audit_log",
    "SELECT * FROM public.notifications",
    "SELECT * FROM public.deliveries",
    "SELECT * FROM public.outbox",
    "SELECT * FROM public.hazard_events",
    "SELECT * FROM public.hazard_evidence",
    "SELECT * FROM public.hazard_interviews",
    "SELECT payload FROM public.dead_letters",
    "SELECT * FROM public.readings",
]
TIP_REPORTER = "举报人张三"


def _load(db_url: str) -> str:
    """The sample site with credentials, a token, a public tip with its reporter and a reading; return a chunk."""
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        site = registry.parse_site(default_site_path())
        registry.upsert_site(conn, site)
        gw = next(g for _p, g in site.gateways())
        registry.issue_credentials(conn, gw.id)
        auth.create_token(conn, "bureau", "值班室")
        conn.execute(
            "INSERT INTO hazards (enterprise_id, source, status, title, detected_at, created_at, created_by,"
            " updated_at, tip_reporter_name, tip_reporter_contact, reward_status, reward_amount_yuan)"
            " SELECT id, 'public_tip', 'candidate', '群众举报：除尘器泄爆口被封堵', %s, %s, 'bureau', %s, %s,"
            " '13800000000', 'pending', 500 FROM enterprises ORDER BY id LIMIT 1",
            (now, now, now, TIP_REPORTER))
        conn.execute("INSERT INTO audit_log (actor, method, path, status) VALUES ('admin', 'POST', '/x', 200)")
        point = conn.execute("SELECT min(id) FROM points").fetchone()
        assert point is not None
        conn.execute("INSERT INTO readings (time, point_id, value) VALUES (%s, %s, 1.5)", (now, point[0]))
        chunk = conn.execute("SELECT chunk_schema || '.' || chunk_name FROM timescaledb_information.chunks"
                             " WHERE hypertable_name = 'readings' LIMIT 1").fetchone()
        conn.commit()
    assert chunk is not None
    return str(chunk[0])


def _denied(conn: psycopg.Connection, statement: str) -> str | None:
    """None if PostgreSQL refused the statement for lack of privilege, else what happened."""
    try:
        rows = conn.execute(statement).fetchall()  # type: ignore[arg-type]
    except errors.InsufficientPrivilege:
        conn.rollback()
        return None
    except psycopg.Error as exc:
        conn.rollback()
        return f"{statement}: {type(exc).__name__} {exc}"
    conn.rollback()
    return f"{statement}: allowed, {len(rows)} rows"


def _readable_outside_grafana(owner: psycopg.Connection, role: str) -> list[str]:
    """Relations outside `grafana` the role may touch at all: pg_catalog, information_schema and TimescaleDB's own
    catalog (relations of the extension, which every role reads) excepted; hypertable chunks included."""
    rows = owner.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')"
        " AND n.nspname NOT IN ('grafana', 'pg_catalog', 'information_schema', '_timescaledb_catalog',"
        "                       'timescaledb_information', 'timescaledb_experimental', '_timescaledb_config',"
        "                       '_timescaledb_cache')"
        " AND n.nspname NOT LIKE 'pg_toast%%'"
        " AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
        "                 AND d.deptype = 'e')"
        " AND (has_table_privilege(%s, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')"
        "      OR (c.relkind = 'S' AND has_sequence_privilege(%s, c.oid, 'USAGE, SELECT, UPDATE')))"
        " ORDER BY 1", (role, role)).fetchall()
    owner.rollback()
    return [r[0] for r in rows]


def test_reader_is_refused_every_table_and_chunk_but_reads_the_views(db_url: str) -> None:
    chunk = _load(db_url)
    with grafana_login(db_url) as reader_url, psycopg.connect(reader_url) as conn:
        problems = [p for s in [*FORBIDDEN, f"SELECT * FROM {chunk}"] if (p := _denied(conn, s))]
        # writing through an (auto-updatable) view, or creating objects, is refused as well
        problems += [p for s in ["INSERT INTO grafana.readings (time, point_id, value) VALUES (now(), 1, 0)",
                                 "UPDATE grafana.gateways SET enabled = false",
                                 "DELETE FROM grafana.alarm_events",
                                 "CREATE TABLE public.stash (x text)",
                                 "CREATE TABLE grafana.stash (x text)",
                                 "CREATE VIEW grafana.leak AS SELECT 1 AS x",
                                 "SELECT riskwatch_grafana_grants()"] if (p := _denied(conn, s))]
        assert not problems, "\n".join(problems)

        # the views answer, with nothing of the reporter and no hash in them
        counts = conn.execute("SELECT source, status, tickets FROM grafana.hazard_counts").fetchall()
        assert counts == [("public_tip", "candidate", 1)]
        (row,) = conn.execute("SELECT * FROM grafana.open_hazards").fetchall()
        assert TIP_REPORTER not in str(row) and "13800000000" not in str(row)
        assert conn.execute("SELECT count(*) FROM grafana.readings").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM grafana.gateways").fetchone() != (0,)
        role = conn.execute("SELECT current_user").fetchone()
        assert role is not None
        conn.rollback()

    with psycopg.connect(db_url) as owner:
        views = owner.execute("SELECT table_name, table_type FROM information_schema.tables"
                              " WHERE table_schema = 'grafana'").fetchall()
        assert {v[0] for v in views} == VIEWS and {v[1] for v in views} == {"VIEW"}
        cols = owner.execute("SELECT table_name, column_name FROM information_schema.columns"
                             " WHERE table_schema = 'grafana'").fetchall()
        leaks = [f"grafana.{t}.{c}" for t, c in cols if c in SECRET_COLUMNS or c.startswith(("tip_", "reward_"))]
        assert not leaks, leaks
        # a view that filters rows is a security barrier (a leaky function in a panel's WHERE sees no hidden row)
        opts = owner.execute("SELECT reloptions FROM pg_class WHERE oid = 'grafana.open_hazards'::regclass").fetchone()
        assert opts is not None and "security_barrier=true" in (opts[0] or [])
        owner.rollback()


def test_upgrade_revokes_what_the_old_init_script_granted(db_url: str) -> None:
    """Deployments made before 0009 gave grafana_reader SELECT on all of public, and on future tables by default."""
    with psycopg.connect(db_url, autocommit=True) as owner:
        me = owner.execute("SELECT current_user").fetchone()
        assert me is not None
        owner.execute(sql.SQL(  # deploy/timescaledb/initdb/10-grafana-reader.sh before issue #11
            "GRANT USAGE ON SCHEMA public TO grafana_reader;"
            " GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;"
            " ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader"
        ).format(sql.Identifier(me[0])))
    chunk = _load(db_url)  # the chunk is created after the grant: TimescaleDB copies the hypertable's grants to it
    with grafana_login(db_url) as reader_url:
        with psycopg.connect(reader_url) as conn:
            # the hole this migration closes is real: the reader could read the reporter and the token hashes
            assert conn.execute("SELECT tip_reporter_name FROM public.hazards").fetchall() == [(TIP_REPORTER,)]
            assert conn.execute(f"SELECT count(*) FROM {chunk}").fetchone() == (1,)  # type: ignore[arg-type]
            conn.rollback()
        with psycopg.connect(db_url, autocommit=True) as owner:
            owner.execute("DELETE FROM schema_migrations WHERE version = 9")
        applied = migrate(db_url)  # the upgrade, which also re-runs 0009 over itself
        assert [m.version for m in applied] == [9]
        with psycopg.connect(db_url, autocommit=True) as owner:
            owner.execute("CREATE TABLE later_secret (x text)")  # a table a later migration adds
            role = reader_url.split("//", 1)[1].split(":", 1)[0]
            assert _readable_outside_grafana(owner, role) == []
        with psycopg.connect(reader_url) as conn:
            problems = [p for s in [*FORBIDDEN, f"SELECT * FROM {chunk}", "SELECT * FROM later_secret"]
                        if (p := _denied(conn, s))]
            assert not problems, "\n".join(problems)
            assert conn.execute("SELECT count(*) FROM grafana.readings WHERE time > %s",
                                (datetime.now(UTC) - timedelta(hours=1),)).fetchone() == (1,)


def test_reader_has_no_privilege_outside_grafana_on_a_fresh_database(db_url: str) -> None:
    _load(db_url)
    with grafana_login(db_url) as reader_url, psycopg.connect(db_url) as owner:
        role = reader_url.split("//", 1)[1].split(":", 1)[0]
        assert _readable_outside_grafana(owner, role) == []
        granted = owner.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'grafana' AND has_table_privilege(%s, c.oid, 'SELECT')", (role,)).fetchall()
        assert {g[0] for g in granted} == VIEWS


def test_compose_init_script_then_migrations_give_grafana_a_read_only_login(pg: LocalPostgres) -> None:
    """deploy/timescaledb/initdb/10-grafana-reader.sh on an empty database, then `riskwatch migrate`, as the
    timescaledb container and `riskwatch serve` do in deploy/compose.yaml."""
    name = f"t_init_{uuid.uuid4().hex[:8]}"
    admin = pg.url.rsplit("/", 1)[0] + "/postgres"
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    password = secrets.token_urlsafe(12)
    parts = urlsplit(pg.url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "POSTGRES_USER": parts.username or "", "POSTGRES_DB": name,
               "GRAFANA_DB_PASSWORD": password, "PGHOST": parts.hostname or "", "PGPORT": str(parts.port),
               "PGPASSWORD": parts.password or "", "PATH": f"{pg_bindir()}:{os.environ['PATH']}"}
        res = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        migrate(url)
        grafana = urlunsplit((parts.scheme, f"grafana:{password}@{parts.hostname}:{parts.port}", f"/{name}", "", ""))
        with psycopg.connect(grafana) as conn:
            assert conn.execute("SELECT count(*) FROM grafana.plants").fetchone() == (0,)
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            conn.rollback()
            problems = [p for s in FORBIDDEN if (p := _denied(conn, s))]
            assert not problems, "\n".join(problems)
        with psycopg.connect(url) as owner:
            assert _readable_outside_grafana(owner, "grafana") == []
            member_of = owner.execute("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                                      " WHERE m.member = 'grafana'::regrole").fetchall()
            assert member_of == [("grafana_reader",)]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute("DROP ROLE IF EXISTS grafana")
