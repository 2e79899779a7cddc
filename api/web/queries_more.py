"""Reads of the notifications, interviews, reports and self-report pages that no stage store has: names
beside ids, for people. Every read takes the viewer's scope (None for bureau and admin, else the one
enterprise) and applies it in SQL, so another enterprise's rows are simply not there."""

from __future__ import annotations

import psycopg


def plants_in_scope(conn: psycopg.Connection, scope: str | None) -> list[tuple[str, str]]:
    """(id, name) of the plants of the viewer's enterprise (all plants for the bureau), for the self-report form."""
    return [(str(r[0]), str(r[1])) for r in conn.execute(
        "SELECT id, name FROM plants WHERE (%(scope)s::text IS NULL OR enterprise_id = %(scope)s) ORDER BY name, id",
        {"scope": scope}).fetchall()]


def enterprise_names(conn: psycopg.Connection, ids: list[str], scope: str | None) -> dict[str, str]:
    """id -> name of the given enterprises that are in scope (an out-of-scope id gets no name)."""
    if not ids:
        return {}
    return {str(r[0]): str(r[1]) for r in conn.execute(
        "SELECT id, name FROM enterprises WHERE id = ANY(%(ids)s) AND (%(scope)s::text IS NULL OR id = %(scope)s)",
        {"ids": list(set(ids)), "scope": scope}).fetchall()}
