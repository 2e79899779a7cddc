"""确认链接 The acknowledgement page a notification links to.

GET shows what the notification announced and a button; POST acknowledges.
Acknowledging on GET would let mail scanners and link previews acknowledge
alarms nobody has read, so the click is a form post. The signed link is the
only credential; these pages are for people, not part of the API document.
"""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from alerting import ack
from alerting.acknowledge import AckView, UnknownNotification, acknowledge, view
from api.deps import Conn, Ctx, Now

router = APIRouter(prefix="/ack", include_in_schema=False)

STATE_ZH = {"unack": "未确认", "ack": "已确认", "rtn_unack": "已恢复·未确认", "normal": "已恢复",
            "received": "已确认收悉", "pending": "待确认"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{html.escape(title)}</title>"
        f"<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}"
        f"button{{font-size:1.2em;padding:.5em 2em}}li{{margin:.3em 0}}</style></head>"
        f"<body><h2>{html.escape(title)}</h2>{body}</body></html>", status_code=status)


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


@router.post("/{token}")
def ack_submit(token: str, ctx: Ctx, conn: Conn, now: Now) -> HTMLResponse:
    try:
        v, done = acknowledge(conn, ctx.link_key(), token, now)
    except (ack.LinkError, UnknownNotification) as exc:
        return _refused(exc)
    return _page("已确认 Acknowledged", _items(v) + f"<p>本次确认报警 {done} 条；提醒与升级已停止。 "
                 f"{done} alarm(s) acknowledged; reminders and escalation stopped.</p>")
