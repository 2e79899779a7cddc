"""A login role that is a member of `grafana_reader` only: what Grafana's data source connects as.

Roles belong to the cluster, not to a test's database, so each test gets its own
role (random name) and drops it afterwards.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


@contextmanager
def grafana_login(db_url: str) -> Iterator[str]:
    """Create `gf_<random>` LOGIN IN ROLE grafana_reader (nothing else) and yield a libpq URL for it."""
    name = f"gf_{uuid.uuid4().hex[:10]}"
    password = secrets.token_urlsafe(16)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE grafana_reader").format(
            sql.Identifier(name), sql.Literal(password)))
    parts = urlsplit(db_url)
    netloc = f"{name}:{password}@{parts.hostname}:{parts.port}"
    try:
        yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))

