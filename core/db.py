"""Database access: connections, pools and numbered SQL migrations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from core.errors import MigrationError

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x5249534B  # "RISK"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("core.migrations").iterdir():
        m = _MIGRATION_NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers: {versions}")
    return found


def connect(url: str, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(url, **kwargs)  # type: ignore[arg-type]


def migrate(url: str) -> list[Migration]:
    """Apply pending migrations in order, each in its own transaction; return those applied."""
    applied: list[Migration] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            for mig in migrations():
                if mig.version in done:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(mig.sql)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (mig.version, mig.name),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {mig.version:04d}_{mig.name}.sql failed: {exc}") from exc
                applied.append(mig)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied
