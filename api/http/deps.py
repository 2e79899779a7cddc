"""`Annotated` dependencies: the app context, a database connection, the caller, the clock, paging.

Nothing here is a module-level global: the context hangs off `app.state`,
built by `api.app.create_app` from the typed Settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

import psycopg
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from api.http import auth
from api.http.health import Check
from api.http.metrics import Metrics
from api.http.problems import ApiProblem, forbidden
from core.clock import Clock
from core.settings import Settings
from core.tls import ClientCerts
from hazards.risk.store import AvailabilityCache


class Database:
    """The app's connection pool, opened on first use and closed with the app's lifespan.

    psycopg_pool cannot reopen a closed pool, and an ASGI client may or may not run the lifespan
    (test clients, property-based runners): opening lazily and creating anew after a close keeps
    the app usable either way.
    """

    def __init__(self, url: str, size: int):
        self.url = url
        self.size = size
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(self.url, min_size=1, max_size=self.size, open=True,
                                            # JIT off: the API's and console's queries are short; PostgreSQL's
                                            # JIT compiled each one with a large cost estimate anew (10-20 ms a
                                            # page on the console bench), for nothing.
                                            # Custom plans always: the reads filter with optional parameters
                                            # (`%(scope)s IS NULL OR pl.enterprise_id = %(scope)s`), which only a
                                            # plan made for the actual values can drop. psycopg prepares a query
                                            # from its fifth run, and PostgreSQL may then switch it to a generic
                                            # plan that keeps every branch: the bureau's points page went from
                                            # 6 ms to 600 ms of database time on the 100k-point bench database.
                                            kwargs={"autocommit": True, "application_name": "riskwatch-api",
                                                    "options": "-c jit=off -c plan_cache_mode=force_custom_plan"},
                                            name="riskwatch-api")
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


@dataclass
class AppContext:
    settings: Settings
    db: Database
    clock: Clock
    metrics: Metrics
    #: Regenerates the broker's password file and ACL after gateway credentials change (private broker).
    broker_sync: Callable[[psycopg.Connection], object] | None = None
    #: Signs gateway client certificates for the private broker's mutual-TLS listener (None: no such listener).
    client_certs: ClientCerts | None = None
    #: The risk rating's costly inputs (availability, mandatory gaps), shared by the API and the console and kept
    #: fresh by serve's `risk-cache` task.
    risk_cache: AvailabilityCache = field(default_factory=AvailabilityCache)
    #: Extra health checks, e.g. the collector's thread when `riskwatch serve` runs one.
    checks: dict[str, Callable[[], Check]] = field(default_factory=dict)
    _link_key: bytes | None = None

    def link_key(self) -> bytes:
        """The key that signs acknowledgement links (read or generated on first use)."""
        if self._link_key is None:
            from alerting.ack import link_secret

            self._link_key = link_secret(self.settings.link_secret, self.settings.data_dir)
        return self._link_key


def _ctx(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


Ctx = Annotated[AppContext, Depends(_ctx)]


def _conn(ctx: Ctx) -> Iterator[psycopg.Connection]:
    """A pooled connection in autocommit: each ledger/registry operation commits its own transaction
    before the handler returns, so the response never runs ahead of the database."""
    with ctx.db.pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.Connection, Depends(_conn)]

_bearer = HTTPBearer(auto_error=False, description="riskwatch API token (`riskwatch token create`)")


def _principal(request: Request, conn: Conn,
               creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> auth.Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        raise ApiProblem(401, "unauthorized", "未认证 Unauthorized",
                         "需要 Bearer 令牌。 A bearer token is required (Authorization: Bearer rwt_…).")
    who = auth.authenticate(conn, creds.credentials)
    if who is None:
        raise ApiProblem(401, "unauthorized", "未认证 Unauthorized",
                         "令牌无效、已过期或已吊销。 The token is invalid, expired or revoked.")
    request.state.principal = who  # for the audit log
    return who


Auth = Annotated[auth.Principal, Depends(_principal)]


def _now(ctx: Ctx) -> float:
    return ctx.clock.now()


Now = Annotated[float, Depends(_now)]


@dataclass(frozen=True)
class Paging:
    limit: int
    offset: int


def _paging(limit: Annotated[int, Query(ge=1, le=500, description="page size")] = 50,
            offset: Annotated[int, Query(ge=0, le=10_000_000, description="items to skip")] = 0) -> Paging:
    return Paging(limit, offset)


Page = Annotated[Paging, Depends(_paging)]


def require(who: auth.Principal, *roles: str) -> None:
    """Refuse (403) a role not in `roles`. Call it after looking up any object named in the path, so
    an enterprise asking about another's object gets 404, as if it did not exist."""
    if who.role not in roles:
        raise forbidden(f"角色 {who.role} 无权执行此操作（需要：{'、'.join(roles)}）。 "
                        f"Role {who.role} may not do this (needs {', '.join(roles)}).")


BUREAU = ("admin", "bureau")
ALL = ("admin", "bureau", "enterprise")
