"""确认链接 The acknowledgement page a notification links to.

GET shows what the notification announced and a button; POST acknowledges.
Acknowledging on GET would let mail scanners and link previews acknowledge
alarms nobody has read, so the click is a form post. The signed link is the
only credential; these pages are for people, not part of the API document.

Because the URL is a credential, every answer says: do not cache it, do not
send it on as a Referer, do not frame this page (a click-jacked "acknowledge"),
load nothing from elsewhere (CSP: the page's own inline style, a form posting
back to itself). Each POST writes an audit row — the recipient as actor, the
notification and the alarms it acknowledged — never the token itself.
"""

from __future__ import annotations

import html
import time

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from alerting import ack
from alerting.acknowledge import Acknowledged, AckView, UnknownNotification, acknowledge, view
from api.http import audit
from api.http.deps import Conn, Ctx, Now
from rules.actions import acknowledge_from_link

router = APIRouter(prefix="/ack", include_in_schema=False)

ROUTE = "/ack/{token}"
#: The path written to the audit log: the token is a credential and stays out of it.
AUDIT_PATH = "/ack/<token>"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

STATE_ZH = {"unack": "未确认", "ack": "已确认", "rtn_unack": "已恢复·未确认", "normal": "已恢复",
            "received": "已确认收悉", "pending": "待确认"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}"
        f"button{{font-size:1.2em;padding:.5em 2em}}li{{margin:.3em 0}}</style></head>"
        f"<body><h2>{html.escape(title)}</h2>{body}</body></html>", status_code=status, headers=SECURITY_HEADERS)


def _items(v: AckView) -> str:
    rows = "".join(f"<li><code>{html.escape(i)}</code> — {STATE_ZH.get(s, s)}</li>" for i, s in v.items)
    return f"<p>{html.escape(v.subject)}</p><ul>{rows}</ul>"


def _refused(exc: Exception) -> HTMLResponse:
    status = 410 if isinstance(exc, ack.LinkExpired) else 404
    return _page("无法确认 Cannot acknowledge", f"<p>{html.escape(str(exc))}</p>", status)


@router.get("/{token}")
def ack_page(token: str, ctx: Ctx, conn: Conn, now: Now) -> HTMLResponse:
    try:
        v = view(conn, ctx.link_key(), token, now)
    except (ack.LinkError, UnknownNotification) as exc:
        return _refused(exc)
    if v.acked_at is not None:
        return _page("已确认 Acknowledged", _items(v) + f"<p>已由 {html.escape(v.acked_by or '')} 确认。</p>")
    return _page("确认报警 Acknowledge", _items(v) + (
        f"<p>接收人 recipient: {html.escape(v.contact)}</p>"
        "<form method=\"post\"><button type=\"submit\" name=\"confirm\" value=\"1\">确认 Acknowledge</button></form>"
        "<p>确认后将停止提醒与升级通知。 Acknowledging stops reminders and escalation.</p>"))


def _audit(conn: psycopg.Connection, request: Request, started: float, status: int,
           done: Acknowledged | None, refused: str | None = None) -> None:
    client = request.client.host if request.client else None
    changes: dict[str, object] = {"action": "ack_link"}
    if done is not None:
        changes |= {"notification_id": done.notification_id, "alarms": done.alarms, "items": done.items,
                    "recorded_as": done.actor}
    if refused is not None:
        changes["refused"] = refused
    audit.write(conn, None, "POST", AUDIT_PATH, ROUTE, None, status, (time.perf_counter() - started) * 1000,
                client, changes, actor=done.recipient if done is not None else None)


@router.post("/{token}")
def ack_submit(token: str, request: Request, ctx: Ctx, conn: Conn, now: Now) -> HTMLResponse:
    started = time.perf_counter()
    try:
        v, done = acknowledge(conn, ctx.link_key(), token, now,
                              record=lambda c, a: _audit(c, request, started, 200, a),
                              ack_alarm=acknowledge_from_link)
    except (ack.LinkError, UnknownNotification) as exc:
        page = _refused(exc)
        _audit(conn, request, started, page.status_code, None, type(exc).__name__)
        return page
    return _page("已确认 Acknowledged", _items(v) + f"<p>本次确认报警 {done} 条；提醒与升级已停止。 "
                 f"{done} alarm(s) acknowledged; reminders and escalation stopped.</p>")
