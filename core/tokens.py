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

from core.registry import check_gateway_id

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


# --- gateway HTTP ingest tokens (issue 18) --------------------------------------------------------------
# A gateway that cannot speak MQTT posts JSON v1 to /api/v1/ingest with a token of its own: one per gateway
# (table gateway_http_tokens), `rwg_` + 256 random bits, stored as its SHA-256 like the API tokens above. The
# prefix differs on purpose: an API token is never an ingest token and an ingest token never an API token.

GATEWAY_TOKEN_PREFIX = "rwg_"


@dataclass(frozen=True)
class GatewayToken:
    """The gateway a live ingest token belongs to: the only identity an HTTP ingest request has."""

    gateway_id: str
    enabled: bool


def issue_gateway_token(conn: psycopg.Connection, gateway_id: str, created_by: str) -> tuple[str, str]:
    """Issue (or rotate: the old one stops at once) the HTTP ingest token of an existing gateway.

    Returns (token, prefix); the token is never stored. A reserved or malformed id never gets one, even for
    a row from before ids were checked: the token would write as a name the service keeps for itself.
    """
    refusal = check_gateway_id(gateway_id)
    if refusal is not None:
        raise TokenError(f"{refusal.zh} {refusal.en}")
    token = GATEWAY_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM gateways WHERE id = %s", (gateway_id,)).fetchone() is None:
            raise TokenError(f"网关不存在 no gateway {gateway_id!r}")
        conn.execute(
            """INSERT INTO gateway_http_tokens (gateway_id, token_hash, prefix, created_by) VALUES (%s, %s, %s, %s)
               ON CONFLICT (gateway_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, prefix = EXCLUDED.prefix,
                   created_at = now(), created_by = EXCLUDED.created_by, last_used_at = NULL""",
            (gateway_id, hash_token(token), token[:12], created_by))
    return token, token[:12]


def gateway_for_token(conn: psycopg.Connection, token: str) -> GatewayToken | None:
    """The gateway of a live ingest token, or None (an API token, a rotated or forged one, a reserved id)."""
    if not token.startswith(GATEWAY_TOKEN_PREFIX) or len(token) > 100:
        return None
    row = conn.execute(
        """WITH t AS (SELECT h.gateway_id, g.enabled, h.last_used_at FROM gateway_http_tokens h
                      JOIN gateways g ON g.id = h.gateway_id WHERE h.token_hash = %s),
                u AS (UPDATE gateway_http_tokens SET last_used_at = now() FROM t
                      WHERE gateway_http_tokens.gateway_id = t.gateway_id
                        AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute'))
           SELECT gateway_id, enabled FROM t""", (hash_token(token),)).fetchone()
    if row is None:
        return None
    if check_gateway_id(str(row[0])) is not None:
        return None  # defence in depth: a hand-inserted row for a reserved id writes nothing
    return GatewayToken(str(row[0]), bool(row[1]))
