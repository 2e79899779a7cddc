"""Request body limits, enforced before anything parses a body (pure ASGI, no buffering).

One authenticated request with a 3.6 MB JSON body used to hold the event loop for ~13 s while it
was parsed and validated (and answered with an 18 MB list of errors): every other request waited.
Here a body over the limit is refused with 413 (problem+json) before the application reads it:

- a `Content-Length` over the limit is answered at once, the body never read;
- a body without one (chunked) is counted as it streams in, and refused at the first chunk that
  crosses the limit — at most one chunk past the limit is ever held.

Evidence uploads (`POST /api/v1/hazards/{id}/evidence`) get their own, larger limit. Both limits
are `core.settings.ApiSettings` (`RISKWATCH_API_MAX_BODY`, `RISKWATCH_API_MAX_UPLOAD`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.problems import PROBLEM_JSON, TYPE_BASE
from core.settings import ApiSettings

__all__ = ["UPLOAD_PATHS", "BodyLimitMiddleware", "BodyTooLarge"]

#: Paths whose bodies may be as large as `max_upload_bytes`.
UPLOAD_PATHS: tuple[re.Pattern[str], ...] = (re.compile(r"^/api/v1/hazards/[^/]+/evidence$"),)

TITLE = "请求体过大 Content too large"


def _detail(limit: int) -> str:
    return f"请求体超过 {limit} 字节的上限。 The request body exceeds the limit of {limit} bytes."


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body crosses the limit.

    A FastAPI HTTPException on purpose: FastAPI turns any other exception raised while it reads a
    body into "400 error parsing the body"; this one it re-raises, and the problem handlers answer 413.
    """

    code = "body-too-large"

    def __init__(self, limit: int):
        super().__init__(413, _detail(limit), headers={"Connection": "close"})
        self.limit = limit
        self.problem_extra = {"limit_bytes": limit}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: ApiSettings, upload_paths: Sequence[re.Pattern[str]] = UPLOAD_PATHS):
        self.app = app
        self.max_body = limits.max_body_bytes
        self.max_upload = limits.max_upload_bytes
        self.upload_paths = tuple(upload_paths)

    def limit_for(self, path: str) -> int:
        return self.max_upload if any(p.match(path) for p in self.upload_paths) else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared == -1:
            await _problem(send, path, 400, "请求错误 Bad request", "bad-content-length",
                           "Content-Length 无效。 The Content-Length header is not a valid length.")
            return
        if declared is not None and declared > limit:
            await _too_large(send, path, limit)
            return

        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # read outside FastAPI's body parsing (a plain Starlette route): answer here if still possible
            if started:
                raise
            await _too_large(send, path, limit)


def _content_length(scope: Scope) -> int | None:
    """The declared length; None when absent; -1 when malformed (or several different values)."""
    values = {v.strip() for k, v in scope.get("headers", ()) if k.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1:
        return -1
    raw = values.pop()
    if not raw.isdigit() or len(raw) > 18:
        return -1
    return int(raw)


async def _too_large(send: Send, path: str, limit: int) -> None:
    await _problem(send, path, 413, TITLE, "body-too-large", _detail(limit), {"limit_bytes": limit})


async def _problem(send: Send, path: str, status: int, title: str, code: str, detail: str,
                   extra: dict[str, object] | None = None) -> None:
    body = json.dumps({"type": TYPE_BASE + code, "title": title, "status": status, "detail": detail,
                       "instance": path, "code": code, **(extra or {})}, ensure_ascii=False).encode()
    # Connection: close — the unread body is still on the wire; the server drops it with the connection
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
