"""Who is looking at a console page: the session cookie, its user, the actor it is, CSRF.

A console user acts as one of the API's roles (`admin` | `bureau` | `enterprise` bound to one enterprise,
`core.accounts.api_role`) and as the ledger's `hazards.model.Actor` — the type the shared policy (the
hazard workflow) decides on — so people and machines are judged by the same rules. Every read is scoped
by the user's enterprise in SQL (`api.web.queries`). The finer console role (leader, section chief, duty
officer, ...) rides along for the decisions only people make (`core.accounts.may_verify`).

The console imports no other face (tests/unit/test_architecture.py): it receives what it needs of the
HTTP app's context — settings, the connection pool, the clock — as the `ConsoleContext` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol
from urllib.parse import parse_qs

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from core import accounts
from core.clock import Clock
from core.settings import Settings
from core.tls import ClientCerts
from hazards.model import Actor
from hazards.risk.store import AvailabilityCache


class PoolHolder(Protocol):
    @property
    def pool(self) -> ConnectionPool: ...


class ConsoleContext(Protocol):
    """What the console needs of its host app (the HTTP app's `AppContext` has it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> PoolHolder: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def broker_sync(self) -> Callable[[psycopg.Connection], object] | None:
        """Regenerates the broker's password file and ACL after a gateway's credentials or enabled flag change
        (the private broker; None with an external one, whose files `riskwatch broker export` writes)."""
        ...

    @property
    def risk_cache(self) -> AvailabilityCache:
        """The risk rating's costly inputs, shared with the API (hazards.risk.store.AvailabilityCache)."""
        ...

    @property
    def client_certs(self) -> ClientCerts | None:
        """Signs a gateway's client certificate when the private broker's mutual-TLS listener is on."""
        ...


def _ctx(request: Request) -> ConsoleContext:
    ctx: ConsoleContext = request.app.state.console_ctx
    return ctx


Ctx = Annotated[ConsoleContext, Depends(_ctx)]


def _conn(ctx: Ctx) -> Iterator[psycopg.Connection]:
    """A pooled connection in autocommit: each action commits before the page answers."""
    with ctx.db.pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(_conn)]

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LOGIN_CSRF_COOKIE = "rw_login_csrf"
#: Console forms are short text; files come through their own upload route (next increment).
FORM_MAX_BYTES = 64 * 1024


class LoginRequired(Exception):
    """No live session: pages redirect to the login page, fragments and streams answer 401."""


class Refused(Exception):
    """A request the console refuses (403 CSRF, 403 role, 404 not visible, 409 not allowed now)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Viewer:
    user: accounts.User
    session_id: str

    @property
    def csrf(self) -> str:
        return accounts.csrf_token(self.session_id)

    @property
    def scope(self) -> str | None:
        """The enterprise every read and write is confined to; None for admin and bureau."""
        return self.user.scope

    @property
    def actor(self) -> Actor:
        return actor_of(self.user)


def actor_of(user: accounts.User) -> Actor:
    """The ledger actor of a console user: named by username (unique, unlike display names)."""
    return Actor(user.username, user.api_role, user.enterprise_id,
                 may_verify=user.role == "admin" or accounts.may_verify(user.role))


def _viewer(request: Request, ctx: Ctx, conn: Conn) -> Viewer:
    sid = request.cookies.get(accounts.SESSION_COOKIE)
    user = accounts.session_user(conn, sid, ctx.clock.now()) if sid else None
    if user is None or sid is None:
        raise LoginRequired()
    v = Viewer(user, sid)
    request.state.viewer = v
    return v


Signed = Annotated[Viewer, Depends(_viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form, size-limited, one value per field (the first)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise Refused(413, "表单过大 The form is too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "表单无法解析 The form cannot be read") from exc
    return {k: v[0] for k, v in parsed.items()}


def check_csrf(viewer: Viewer, request: Request, form: dict[str, str]) -> None:
    """Every state-changing request carries the session's CSRF token: in the form, or in a header (htmx)."""
    presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not accounts.csrf_ok(viewer.session_id, presented):
        raise Refused(403, "请求缺少有效的防伪令牌，请刷新页面后重试。 "
                           "Missing or invalid CSRF token: reload the page and try again.")


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"
