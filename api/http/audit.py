"""The audit log: one row for every mutating API call, allowed or refused.

The row is written when the response status is known and *before* the
response starts, so a client that saw an answer can rely on the row being
there. It uses its own pooled connection: a handler's failure (rolled back)
must still leave a trace of the attempt. A failed audit write is logged and
counted; it does not turn a completed change into an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.auth import Principal
from api.http.metrics import Metrics, route_template

log = logging.getLogger("riskwatch.api.audit")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Telemetry, not a change to the system: a stored reading is its own record (readings, the ingest metrics), so
#: only refused or failed calls here get an audit row (a forged token, a disabled gateway, a timeout).
AUDITED_ONLY_WHEN_REFUSED = frozenset({"/api/v1/ingest"})


def write(conn: psycopg.Connection, who: Principal | None, method: str, path: str, route: str | None,
          query: str | None, status: int, duration_ms: float, client: str | None,
          changes: dict[str, Any] | None = None, *, actor: str | None = None) -> None:
    """`changes`: what the call changed, as a handler noted it in `request.state.audit_changes`.
    `actor`: who acted when no token did (the recipient following an acknowledgement link)."""
    conn.execute(
        """INSERT INTO audit_log (token_id, actor, role, enterprise_id, method, path, route, query, status,
               duration_ms, client, changes) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
        (who.token_id if who else None, who.name if who else actor or "anonymous", who.role if who else None,
         who.enterprise_id if who else None, method, path, route, query or None, status, duration_ms, client,
         Jsonb(changes) if changes else None))


class AuditMiddleware:
    def __init__(self, app: ASGIApp, pool: Callable[[], ConnectionPool], metrics: Metrics, prefix: str = "/api/"):
        self.app = app
        self.pool = pool
        self.metrics = metrics
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in MUTATING \
                or not str(scope.get("path", "")).startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await anyio.to_thread.run_sync(self._record, scope, int(message["status"]),
                                               (time.perf_counter() - start) * 1000)
            await send(message)

        await self.app(scope, receive, _send)

    def _record(self, scope: Scope, status: int, duration_ms: float) -> None:
        if status < 400 and str(scope.get("path", "")) in AUDITED_ONLY_WHEN_REFUSED:
            return
        state = scope.get("state") or {}
        who = state.get("principal") if isinstance(state, dict) else None
        client = scope.get("client")
        try:
            with self.pool().connection(timeout=5) as conn:
                write(conn, who if isinstance(who, Principal) else None, str(scope["method"]), str(scope["path"]),
                      route_template(scope), scope.get("query_string", b"").decode("latin-1")[:2000] or None,
                      status, duration_ms, f"{client[0]}" if client else None,
                      state.get("audit_changes") if isinstance(state, dict) else None)
        except Exception as exc:  # noqa: BLE001 - an audit failure is reported, never raised into the response
            self.metrics.audit_failures.inc()
            log.error("audit row not written for %s %s (%d): %s", scope.get("method"), scope.get("path"), status, exc)
