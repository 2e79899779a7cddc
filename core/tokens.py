"""API tokens: issued, listed and revoked, stored hashed.

A token is 256 random bits (`rwt_` + 43 URL-safe characters). Only its
SHA-256 is stored: for a secret of that entropy a slow password hash adds
nothing against guessing, and a plain digest lets a request find its token
with one indexed lookup. The first characters are kept as a `prefix` so an
operator can tell tokens apart in lists and the audit log.

The store of table `api_tokens`, shared by the HTTP face (which authenticates
requests with it) and the CLI (which issues and revokes tokens); neither face
imports the other for it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg.rows import class_row

ApiRole = Literal["admin", "bureau", "enterprise"]
ROLES: tuple[ApiRole, ...] = ("admin", "bureau", "enterprise")
TOKEN_PREFIX = "rwt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass
class TokenRecord:
    id: int
    name: str
    role: str
    enterprise_id: str | None
    prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


_COLS = "id, name, role, enterprise_id, prefix, created_at, created_by, expires_at, revoked_at, last_used_at"


class TokenError(ValueError):
    """A token request that cannot be honoured (unknown enterprise, enterprise missing for the role, ...)."""


def create_token(conn: psycopg.Connection, role: ApiRole, name: str, enterprise_id: str | None = None,
                 created_by: str = "cli", expires_at: datetime | None = None) -> tuple[TokenRecord, str]:
    """Store a new token's hash; return its record and the token itself, which is never stored."""
    if role not in ROLES:
        raise TokenError(f"未知角色 unknown role {role!r} (admin, bureau, enterprise)")
    if (role == "enterprise") != (enterprise_id is not None):
        raise TokenError("企业角色必须且只能绑定一个企业 the enterprise role needs --enterprise, and only it")
    if not name.strip():
        raise TokenError("令牌需有名称 a token needs a name")
    token = new_token()
    with conn.transaction():
        if enterprise_id is not None and conn.execute(
                "SELECT 1 FROM enterprises WHERE id = %s", (enterprise_id,)).fetchone() is None:
            raise TokenError(f"企业不存在 no enterprise {enterprise_id!r}")
        with conn.cursor(row_factory=class_row(TokenRecord)) as cur:
            rec = cur.execute(
                f"""INSERT INTO api_tokens (name, role, enterprise_id, token_hash, prefix, created_by, expires_at)
                    VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING {_COLS}""",
                (name.strip(), role, enterprise_id, hash_token(token), token[:12], created_by, expires_at),
            ).fetchone()
    assert rec is not None
    return rec, token


def list_tokens(conn: psycopg.Connection, include_revoked: bool = False) -> list[TokenRecord]:
    with conn.cursor(row_factory=class_row(TokenRecord)) as cur:
        return cur.execute(f"SELECT {_COLS} FROM api_tokens WHERE %s OR revoked_at IS NULL ORDER BY id",
                           (include_revoked,)).fetchall()


def get_token(conn: psycopg.Connection, token_id: int) -> TokenRecord | None:
    with conn.cursor(row_factory=class_row(TokenRecord)) as cur:
        return cur.execute(f"SELECT {_COLS} FROM api_tokens WHERE id = %s", (token_id,)).fetchone()


def revoke_token(conn: psycopg.Connection, token_id: int) -> TokenRecord | None:
    with conn.cursor(row_factory=class_row(TokenRecord)) as cur:
        rec = cur.execute(f"UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
                          f" RETURNING {_COLS}", (token_id,)).fetchone()
    return rec
