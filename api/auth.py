"""Bearer tokens, stored hashed, and the principal a request acts as.

A token is 256 random bits (`rwt_` + 43 URL-safe characters). Only its
SHA-256 is stored: for a secret of that entropy a slow password hash adds
nothing against guessing, and a plain digest lets a request find its token
with one indexed lookup. The first characters are kept as a `prefix` so an
operator can tell tokens apart in lists and the audit log.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from psycopg.rows import class_row

from hazards.model import Actor

ApiRole = Literal["admin", "bureau", "enterprise"]
ROLES: tuple[ApiRole, ...] = ("admin", "bureau", "enterprise")
TOKEN_PREFIX = "rwt_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a token's name and role, and for `enterprise` the one enterprise it is bound to."""

    token_id: int
    name: str
    role: ApiRole
    enterprise_id: str | None = None

    @property
    def scope(self) -> str | None:
        """The enterprise every read and write is confined to; None for admin and bureau."""
        return self.enterprise_id if self.role == "enterprise" else None

    def actor(self) -> Actor:
        return Actor(self.name, self.role, self.enterprise_id)

    def sees(self, enterprise_id: str | None) -> bool:
        return self.scope is None or self.scope == enterprise_id


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


def authenticate(conn: psycopg.Connection, token: str) -> Principal | None:
    """The principal of a live token (not revoked, not expired), or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    # last_used_at is written at most once a minute per token: reads should not each cost a write.
    row = conn.execute(
        """WITH t AS (SELECT id, name, role, enterprise_id, last_used_at FROM api_tokens
                      WHERE token_hash = %s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())),
                u AS (UPDATE api_tokens SET last_used_at = now() FROM t WHERE api_tokens.id = t.id
                        AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'))
           SELECT id, name, role, enterprise_id FROM t""", (hash_token(token),)).fetchone()
    if row is None:
        return None
    return Principal(int(row[0]), str(row[1]), row[2], row[3])


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
