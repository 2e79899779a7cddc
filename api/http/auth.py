"""The principal a request acts as, found from its bearer token.

Tokens are issued, listed and revoked by the token store (`core.tokens`);
this module adds what only the HTTP face needs: the principal and how a
request's token resolves to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from core.tokens import (
    ROLES,
    TOKEN_PREFIX,
    ApiRole,
    TokenError,
    TokenRecord,
    create_token,
    get_token,
    hash_token,
    list_tokens,
    new_token,
    revoke_token,
)
from hazards.model import Actor

__all__ = ["ROLES", "TOKEN_PREFIX", "ApiRole", "Principal", "TokenError", "TokenRecord", "authenticate",
           "create_token", "get_token", "hash_token", "list_tokens", "new_token", "revoke_token"]


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
