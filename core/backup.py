"""Backup and restore of the whole riskwatch database, TimescaleDB-aware.

A backup is one `pg_dump --format=custom` file: the standard tools read it
(`pg_restore --list FILE`), and pg_dump's single repeatable-read snapshot
means it holds every transaction committed before it started, even while the
collector keeps writing (COPY takes no lock that conflicts with pg_dump's).

A restore goes into a fresh (empty) database, the way TimescaleDB documents:
`timescaledb_pre_restore()` switches the extension's catalog triggers off,
`pg_restore` loads schema, chunks and catalog rows, `timescaledb_post_restore()`
switches them back on — also when pg_restore failed, so a half-restored
database is never left in restoring mode. Objects are restored owned by the
login that restores (`--no-owner`): a backup can move to another cluster
whose administrator has another name; grants (the `grafana_reader` role's
SELECT on the dashboard views) are kept, the role created when missing.

The broker's password file and ACL are not in the database: after a restore
they are regenerated from the restored registry (`sync_broker`), so every
gateway logs in again with the credentials it held when the backup was
taken, and a gateway disabled then is denied again.

The TimescaleDB version installed where a backup is restored must be the one
it was taken with (TimescaleDB's own rule for pg_dump/pg_restore): `backup`
returns it (`BackupResult.timescaledb_version`) for the operator to record;
a plain pg_dump archive has no place for it that pg_restore would not load.

Passwords never reach a command line (`ps` shows arguments): libpq tools get
the connection without its password and the password in `PGPASSWORD`.
"""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from core import registry
from core.clock import Clock, SystemClock
from core.db import migrations
from core.errors import RiskwatchError
from core.services import LocalMosquitto, pg_bindir

log = logging.getLogger("riskwatch.backup")

#: Tables a riskwatch backup must hold; a dump without them is not one (restoring it would leave an empty service).
REQUIRED_TABLES = ("schema_migrations", "readings", "gateways")
_TSDB_VERSION_SQL = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"


class BackupError(RiskwatchError):
    """A backup or restore could not be done; the message names the step and what to do."""


@dataclass(frozen=True)
class BackupResult:
    file: Path
    size_bytes: int
    schema_version: int
    timescaledb_version: str
    started_at: float  # epoch seconds: everything committed before this is in the file


@dataclass(frozen=True)
class RestoreResult:
    database: str
    schema_version: int
    unknown_migrations: list[int]  # versions in the backup this code does not know (a newer riskwatch took it)
    pending_migrations: list[int]  # versions this code has that the backup lacks: run `riskwatch migrate`
    broker_synced: bool
    broker_refused: list[str]  # gateway ids left out of the regenerated password file


# --- connection plumbing ------------------------------------------------------------------------------------------


def _split(db_url: str) -> tuple[dict[str, str], str | None]:
    """A libpq URL as (parameters without the password, password)."""
    try:
        params = {k: str(v) for k, v in conninfo.conninfo_to_dict(db_url).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise BackupError(f"not a valid database URL: {exc}") from exc
    password = params.pop("password", None)
    return params, password


def _tool_env(password: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return env


def _tool(name: str) -> str:
    """The libpq tool of the server's major (pg_dump must be at least as new as the server)."""
    path = pg_bindir() / name
    if not path.exists():
        raise BackupError(f"{name} not found next to initdb ({path.parent}): run scripts/bootstrap")
    return str(path)


def _run(step: str, cmd: list[str], password: str | None, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, env=_tool_env(password), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{step}: still running after {timeout:g} s") from exc
    if res.returncode != 0:
        tail = "\n".join((res.stderr or res.stdout).strip().splitlines()[-15:])
        raise BackupError(f"{step} failed ({res.returncode}):\n{tail}")
    for line in res.stderr.splitlines():
        log.debug("%s: %s", step, line)
    return res


def _url(params: dict[str, str], password: str | None, **override: str) -> str:
    p = {**params, **override}
    if password is not None:
        p["password"] = password
    return conninfo.make_conninfo(**p)


# --- backup ---------------------------------------------------------------------------------------------------------


def backup(db_url: str, file: str | Path, *, clock: Clock | None = None, timeout: float = 3600.0) -> BackupResult:
    """Dump the whole database to `file` (pg_dump custom format, mode 0600), atomically: the file appears complete
    or not at all. Safe while the collector ingests; holds everything committed before it started."""
    clock = clock or SystemClock()
    target = Path(file)
    params, password = _split(db_url)
    try:
        with psycopg.connect(db_url, connect_timeout=10) as conn:
            missing = [t for t in REQUIRED_TABLES
                       if conn.execute("SELECT to_regclass(%s)", (f"public.{t}",)).fetchone() == (None,)]
            if missing:
                raise BackupError(f"{params.get('dbname', '?')} is not a riskwatch database (no {', '.join(missing)}):"
                                  " run `riskwatch migrate` first, or check RISKWATCH_DB_URL")
            version = int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0])  # type: ignore[index]
            row = conn.execute(_TSDB_VERSION_SQL).fetchone()
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot reach the database to back it up: {exc}") from exc
    tsdb = str(row[0]) if row else ""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.partial")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # pg_dump keeps this mode
    started = clock.now()
    try:
        _run("pg_dump", [_tool("pg_dump"), "--format=custom", "--compress=6", f"--file={tmp}",
                         "--dbname", conninfo.make_conninfo(**params)], password, timeout)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BackupResult(target, target.stat().st_size, version, tsdb, started)


# --- restore --------------------------------------------------------------------------------------------------------


def _archive_toc(file: Path, timeout: float) -> str:
    if not file.is_file():
        raise BackupError(f"{file}: no such backup file")
    try:
        res = _run("pg_restore --list", [_tool("pg_restore"), "--list", str(file)], None, timeout)
    except BackupError as exc:
        raise BackupError(f"{file} is not a riskwatch backup (a pg_dump custom-format file): {exc}") from exc
    toc = res.stdout
    missing = [t for t in REQUIRED_TABLES if f" TABLE public {t} " not in toc]
    if missing:
        raise BackupError(f"{file} is a pg_dump archive but not of a riskwatch database (no {', '.join(missing)})")
    return toc


def _user_tables(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        "   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'timescaledb_information',"
        "                         'timescaledb_experimental')"
        "   AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname NOT LIKE '\\_timescaledb%'").fetchone()
    return int(row[0]) if row else 0


def _prepare_target(params: dict[str, str], password: str | None, replace: bool) -> None:
    """Make the target database exist and be empty: create it, or (replace) drop and create it."""
    dbname = params.get("dbname") or params.get("user") or ""
    if not dbname:
        raise BackupError("the database URL names no database to restore into")
    admin = _url(params, password, dbname="postgres")
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if exists and replace:
                log.warning("restore: dropping database %s to replace it", dbname)
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(dbname)))
                exists = None
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            # The dump grants the dashboard views to this group role; roles live in the cluster, not the dump.
            conn.execute(
                "DO $$ BEGIN"
                " IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'grafana_reader') THEN"
                "   BEGIN CREATE ROLE grafana_reader NOLOGIN;"
                "   EXCEPTION WHEN insufficient_privilege THEN"
                "     RAISE WARNING 'riskwatch: cannot create role grafana_reader; its grants will fail'; END;"
                " END IF; END $$")
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot reach the server to restore into: {exc}") from exc
    with psycopg.connect(_url(params, password), autocommit=True, connect_timeout=10) as conn:
        n = _user_tables(conn)
        if n:
            raise BackupError(f"database {dbname} is not empty ({n} tables or views): restore into a fresh database,"
                              " or pass replace to drop and recreate it")


def restore(db_url: str, file: str | Path, *, replace: bool = False, broker: LocalMosquitto | None = None,
            timeout: float = 3600.0) -> RestoreResult:
    """Restore a `backup` file into the database of `db_url`, which must be empty or missing (created here);
    `replace` drops and recreates it first. With `broker` (the private Mosquitto), its password file and ACL are
    regenerated from the restored registry and the broker reloaded."""
    path = Path(file)
    params, password = _split(db_url)
    _archive_toc(path, timeout)
    _prepare_target(params, password, replace)
    url = _url(params, password)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute("SELECT timescaledb_pre_restore()")
    try:
        _run("pg_restore", [_tool("pg_restore"), "--no-owner", "--exit-on-error", "--single-transaction",
                            "--dbname", conninfo.make_conninfo(**params), str(path)], password, timeout)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT timescaledb_post_restore()")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")
        have = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
        known = {m.version for m in migrations()}
        version = max(have, default=0)
        result = RestoreResult(params.get("dbname", ""), version, sorted(have - known), sorted(known - have),
                               False, [])
        if broker is not None:
            refused = sync_broker(conn, broker)
            result = RestoreResult(result.database, version, result.unknown_migrations, result.pending_migrations,
                                   True, refused)
    if result.unknown_migrations:
        log.warning("restore: the backup has migrations %s this riskwatch does not know; use the version that "
                    "took it", result.unknown_migrations)
    return result


def sync_broker(conn: psycopg.Connection, broker: LocalMosquitto) -> list[str]:
    """Regenerate the private broker's password file and ACL from this database's registry and reload it;
    returns the gateway ids the password file refused (reserved or malformed)."""
    return broker.write_auth(registry.broker_credentials(conn), reload=True,
                             disabled=registry.disabled_gateways(conn))
