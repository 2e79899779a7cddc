"""The HTTP boundary shared by the webhook, robot and SMS channels: one request, httpx errors mapped to ours.

    timeout, connection error, 408, 429, 5xx   -> TransientError
    any other non-2xx                          -> PermanentError
    robot errcode != 0                         -> PermanentError, unless the code means "busy / too fast"

Messages carry only the redacted URL: robot URLs hold their access token in the query, webhook URLs
may hold userinfo. httpx itself logs each request line with the full URL at INFO, so `client()` puts a
redacting filter on its logger before any request is made.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from alerting.channels.base import PermanentError, Receipt, TransientError, redact_url
from core.redact import redact_logger

log = logging.getLogger("riskwatch.alerting.channels")

_TRANSIENT_STATUS = frozenset({408, 425, 429})


def client(timeout_s: float) -> httpx.Client:
    """The HTTP client of a channel; httpx's own request log lines are redacted (they quote the URL)."""
    redact_logger("httpx")
    return httpx.Client(timeout=timeout_s)


def request(client: httpx.Client, channel: str, method: str, url: str, *,
            content: bytes | None = None, headers: dict[str, str] | None = None,
            shown_url: str | None = None) -> httpx.Response:
    """Send once; return the 2xx response or raise TransientError / PermanentError.

    `shown_url` is what errors name (redacted) when the real URL holds secrets outside its query.
    """
    where = f"{channel}: {method} {redact_url(shown_url or url)}"
    try:
        resp = client.request(method, url, content=content, headers=headers)
    except httpx.TimeoutException as exc:
        raise TransientError(f"{where}: timed out", detail=type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{where}: {type(exc).__name__}", detail=str(exc)) from exc
    if resp.is_success:
        return resp
    detail = f"{resp.status_code} {resp.text[:200]}"
    if resp.status_code in _TRANSIENT_STATUS or resp.status_code >= 500:
        raise TransientError(f"{where}: HTTP {resp.status_code}", detail=detail)
    raise PermanentError(f"{where}: HTTP {resp.status_code}", detail=detail)


def robot_receipt(resp: httpx.Response, channel: str, transient_codes: frozenset[int]) -> Receipt:
    """DingTalk and WeCom answer HTTP 200 with `{"errcode": 0, "errmsg": "ok"}`; anything else is a failure."""
    try:
        answer: Any = resp.json()
        code = int(answer["errcode"])
        errmsg = str(answer.get("errmsg", ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentError(f"{channel}: unexpected robot answer", detail=resp.text[:200]) from exc
    if code == 0:
        return Receipt(detail=f"errcode 0 {errmsg}".strip())
    error = TransientError if code in transient_codes else PermanentError
    raise error(f"{channel}: robot refused the message: errcode {code} {errmsg}", detail=f"errcode {code} {errmsg}")


def check_url(url: str) -> str:
    """Config-load check: an absolute http(s) URL. The message never echoes the URL (it may hold a token)."""
    try:
        parsed: httpx.URL | None = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    return url
