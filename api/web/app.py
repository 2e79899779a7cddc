"""The console application: login, the live alarm board, account administration.

`create_console(ctx)` returns a FastAPI sub-application that the composition
root (`api/run/serve.py`) mounts at `/console` on the HTTP app; it shares that
app's context (database pool, clock, settings) and acts through the same
stores (`rules.actions` for alarms, the hazard ledger next), as the same
roles, as the API — without importing the HTTP face.

Every answer carries a strict Content-Security-Policy: scripts and styles
only from riskwatch itself (`/console/static/`, installed by
`scripts/assets`), nothing inline, no framing. Every POST needs the CSRF
token; login needs the double-submitted login token instead (no session yet).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.web import disposal as disposal_pages
from api.web import gateways as gateway_pages
from api.web import i18n, pages_more
from api.web import ledger as ledger_pages
from api.web import problems as problem_pages
from api.web import queries as wq
from api.web import queries_disposal as wqd
from api.web import risk as risk_pages
from api.web.events import AlarmHub
from api.web.session import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    Conn,
    ConsoleContext,
    LoginRequired,
    Refused,
    Signed,
    Viewer,
    check_csrf,
    client_of,
    read_form,
)
from core import accounts
from rules import actions
from rules.lifecycle import LifecycleError

log = logging.getLogger("riskwatch.web")

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES_DIR = HERE / "templates"
PREFIX = "/console"
#: The bureau's clock: China Standard Time (no daylight saving), whatever the server's zone.
CST = timezone(timedelta(hours=8), "CST")
HEARTBEAT_S = 15.0
MAX_SHELVE_MIN = 7 * 24 * 60

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]

STATE_KEYS = {"unack": "Active, unacknowledged", "ack": "Active, acknowledged",
              "rtn_unack": "Cleared, unacknowledged", "normal": "Normal"}
SEVERITY_KEYS = {"urgent": "Urgent", "high": "High", "medium": "Medium", "low": "Low"}
ROLE_KEYS = {"admin": "Administrator", "bureau_leader": "Bureau leader", "section_chief": "Section chief",
             "duty_officer": "Duty officer", "enterprise_manager": "Enterprise manager",
             "enterprise_officer": "Enterprise safety officer"}
#: Message ids held in the dicts above, which the template extractor cannot see (tests check the catalogs).
MESSAGE_IDS = (*STATE_KEYS.values(), *SEVERITY_KEYS.values(), *ROLE_KEYS.values(), *pages_more.MESSAGE_IDS)


class _SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware): it must not buffer the event stream.

    Also stamps `Server-Timing: app;dur=<ms>` (request in -> response headers out, which for a rendered page
    is the whole server time): `riskwatch bench --part console` reads it to tell server from network time."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                timing = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS, (b"server-timing", timing)]
            await send(message)

        await self.app(scope, receive, _send)


async def in_thread(fn: Callable[..., Response], *args: Any) -> Response:
    """Run a handler's blocking part (SQL, Argon2) off the event loop, which also carries the event streams."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def _load_titles(catalog: Path | None) -> dict[str, tuple[str, str | None]]:
    """Rule id -> (Chinese title, basis), from the catalog the collector runs."""
    from rules.model import load_catalog

    try:
        return {rid: (r.title.zh, r.basis) for rid, (_, r) in load_catalog(catalog).rules.items()}
    except Exception as exc:  # noqa: BLE001 - the board shows rule ids rather than not starting
        log.error("rule catalog not loaded for the console (%s): rule ids are shown instead of titles", exc)
        return {}


def create_console(ctx: ConsoleContext, *, catalog: Path | None = None, prefix: str = PREFIX,
                   titles: dict[str, tuple[str, str | None]] | None = None) -> FastAPI:
    """The console, to be mounted at `prefix` on the HTTP app (`app.mount(prefix, create_console(ctx))`).

    `titles` (rule id -> Chinese title, basis) when the caller has the catalog loaded already; otherwise
    the catalog at `catalog` (default: the shipped one) is read on first use."""
    app = FastAPI(title="riskwatch console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console_ctx = ctx
    catalogs = i18n.load_catalogs()
    if not (STATIC_DIR / "vendor" / "htmx.min.js").is_file():
        log.warning("console assets missing (%s/vendor): run scripts/assets; pages work without live updates",
                    STATIC_DIR)
    envs: dict[str, Environment] = {}
    for loc in i18n.LOCALES:
        env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                          extensions=["jinja2.ext.i18n"], auto_reload=False)
        env.install_gettext_translations(catalogs.get(loc), newstyle=True)  # type: ignore[attr-defined]
        env.filters["cst"] = _cst
        envs[loc] = env
    hub = AlarmHub(ctx.settings.db_url or "")
    app.state.hub = hub
    policy = accounts.LockoutPolicy()

    def rule_titles() -> dict[str, tuple[str, str | None]]:
        nonlocal titles
        if titles is None:
            titles = _load_titles(catalog)
        return titles

    def url(path: str) -> str:
        return prefix + path

    def render(request: Request, name: str, status: int = 200, viewer: Viewer | None = None,
               **values: Any) -> HTMLResponse:
        loc = i18n.pick_locale(request.cookies.get(i18n.LANG_COOKIE))
        tpl = envs[loc].get_template(name)
        body = tpl.render(url=url, static=lambda p: url("/static/" + p), viewer=viewer,
                          csrf=viewer.csrf if viewer else "", html_lang=i18n.HTML_LANG[loc], locale=loc,
                          path=request.url.path, role_names=ROLE_KEYS, **values)
        return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    def gettext_for(request: Request) -> Callable[[str], str]:
        return catalogs.get(i18n.pick_locale(request.cookies.get(i18n.LANG_COOKIE))).gettext

    def audit(conn: psycopg.Connection, request: Request, status: int, *, viewer: Viewer | None = None,
              actor: str | None = None, changes: dict[str, Any] | None = None) -> None:
        u = viewer.user if viewer else None
        accounts.audit(conn, actor=u.username if u else (actor or "anonymous"), role=u.role if u else None,
                       enterprise_id=u.enterprise_id if u else None, method=request.method,
                       path=request.url.path, status=status, client=client_of(request), changes=changes)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, _exc: LoginRequired) -> Response:
        login = url("/login")
        if request.headers.get("hx-request") or request.url.path.endswith("/events"):
            return Response(status_code=401, headers={"HX-Redirect": login, "Cache-Control": "no-store"})
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{login}?next={quote(nxt)}", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        viewer = getattr(request.state, "viewer", None)
        if request.method == "POST":  # a refused change (forged form, other enterprise's id) leaves a trace
            await anyio.to_thread.run_sync(_audit_refusal, request, viewer, exc)
        return render(request, "error.html", exc.status, viewer=viewer, message=exc.message)

    def _audit_refusal(request: Request, viewer: Viewer | None, exc: Refused) -> None:
        try:
            with ctx.db.pool.connection(timeout=5) as conn:
                audit(conn, request, exc.status, viewer=viewer, changes={"action": "refused", "reason": exc.message})
        except Exception as err:  # noqa: BLE001 - the refusal is answered whatever happens to its audit row
            log.error("audit row not written for refused %s %s: %s", request.method, request.url.path, err)

    # --- login / logout ------------------------------------------------------------------------

    def _login_page(request: Request, status: int = 200, error: str | None = None,
                    username: str = "") -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        resp = render(request, "login.html", status, login_csrf=token, error=error, username=username,
                      next=request.query_params.get("next", ""))
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path=url("/login"),
                        secure=request.url.scheme == "https", max_age=3600)
        return resp

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> HTMLResponse:
        return _login_page(request)

    def _safe_next(nxt: str | None) -> str:
        # only a path of this console: never an absolute or scheme-relative URL (open redirect)
        if nxt and nxt.startswith(prefix + "/") and not nxt.startswith("//") and "\\" not in nxt \
                and not nxt.startswith(url("/login")):
            return nxt
        return url("/")

    @app.post("/login")
    async def login_submit(request: Request) -> Response:
        form = await read_form(request)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
        presented = form.get(CSRF_FIELD)
        _ = gettext_for(request)
        if not cookie or not presented or not secrets.compare_digest(cookie, presented):
            raise Refused(403, "请求缺少有效的防伪令牌，请刷新页面后重试。 "
                               "Missing or invalid CSRF token: reload the page and try again.")
        username, password = form.get("username", "")[:200], form.get("password", "")

        def run() -> tuple[accounts.LoginResult, int]:
            with ctx.db.pool.connection() as conn:
                res = accounts.login(conn, username, password, client_of(request), ctx.clock.now(),
                                     user_agent=request.headers.get("user-agent"), policy=policy)
                status = {"ok": 303, "address_limited": 429}.get(res.decision.outcome, 401)
                u = res.user
                accounts.audit(conn, actor=u.username if u else username.strip().lower()[:64] or "anonymous",
                               role=u.role if u else None, enterprise_id=u.enterprise_id if u else None,
                               method="POST", path=url("/login"), status=status, client=client_of(request),
                               changes={"action": "login", "outcome": res.decision.outcome,
                                        "reason": res.decision.reason})
                return res, status

        res, status = await anyio.to_thread.run_sync(run)
        outcome = res.decision.outcome
        if outcome != "ok" or res.session_id is None:
            msg = {"locked": _("The account is locked after repeated failures. Try again later."),
                   "address_limited": _("Too many failed logins from this address. Try again later."),
                   "inactive": _("This account has been deactivated."),
                   }.get(outcome, _("Wrong username or password."))
            return _login_page(request, status, msg, username[:64])
        resp = RedirectResponse(_safe_next(form.get("next")), status_code=303)
        resp.set_cookie(accounts.SESSION_COOKIE, res.session_id, httponly=True, samesite="lax", path=prefix,
                        secure=request.url.scheme == "https")
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path=url("/login"))
        return resp

    @app.post("/logout")
    async def logout(request: Request, viewer: Signed, conn: Conn) -> Response:
        return await in_thread(_logout, request, viewer, conn, await read_form(request))

    def _logout(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        accounts.logout(conn, viewer.session_id)
        audit(conn, request, 303, viewer=viewer, changes={"action": "logout"})
        resp = RedirectResponse(url("/login"), status_code=303)
        resp.delete_cookie(accounts.SESSION_COOKIE, path=prefix)
        return resp

    @app.get("/lang/{locale}")
    def set_lang(locale: str, request: Request) -> Response:
        # Changes only the display language, so a plain link (no CSRF) is enough.
        resp = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
        if locale in i18n.LOCALES:
            resp.set_cookie(i18n.LANG_COOKIE, locale, samesite="lax", path=prefix, max_age=365 * 86400)
        return resp

    # --- alarm board ---------------------------------------------------------------------------

    def board_rows(conn: psycopg.Connection, viewer: Viewer) -> list[dict[str, Any]]:
        t = rule_titles()
        now = ctx.clock.now()
        out = []
        alarms = wq.board_alarms(conn, viewer.scope)
        owed = wqd.owed_disposals(conn, viewer.scope, ((r["rule_id"], r["subject"]) for r in alarms))
        for r in alarms:
            # a rule's levels are alarms of their own ("mach.cooling.diff:hi"): named by the rule's title
            title, basis = t.get(r["rule_id"]) or t.get(r["rule_id"].split(":", 1)[0]) or (r["rule_id"], None)
            shelved = r["shelved_until"] is not None and r["shelved_until"].timestamp() > now
            out.append({**r, "title": title, "basis": basis, "shelved": shelved,
                        "state_key": STATE_KEYS.get(r["state"], r["state"]),
                        "severity_key": SEVERITY_KEYS.get(r["severity"], r["severity"]),
                        "dom_id": "a-" + _dom_id(r["rule_id"], r["subject"]),
                        "disposal_id": owed.get((r["rule_id"], r["subject"]))})
        return out

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return render(request, "board.html", viewer=viewer, rows=board_rows(conn, viewer), page="board")

    @app.get("/board/rows", response_class=HTMLResponse)
    def rows_fragment(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return render(request, "_rows.html", viewer=viewer, rows=board_rows(conn, viewer))

    @app.get("/events")
    async def events(request: Request) -> Response:
        # No Conn dependency: a stream lasts hours and must not hold a pooled connection.
        sid = request.cookies.get(accounts.SESSION_COOKIE)

        def who() -> accounts.User | None:
            if not sid:
                return None
            with ctx.db.pool.connection() as conn:
                return accounts.session_user(conn, sid, ctx.clock.now())

        user = await anyio.to_thread.run_sync(who)
        if user is None:
            raise LoginRequired()
        sub = hub.subscribe(user.id, user.scope)

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 2000\n: connected\n\n"
                while True:
                    try:
                        ev = await asyncio.wait_for(sub.queue.get(), timeout=HEARTBEAT_S)
                    except TimeoutError:
                        if await anyio.to_thread.run_sync(who) is None:  # expired or deactivated meanwhile
                            yield "event: ended\ndata: {}\n\n"
                            return
                        yield ": keep-alive\n\n"
                        continue
                    if ev.kind == "ended":
                        yield "event: ended\ndata: {}\n\n"
                        return
                    yield f"event: {ev.kind}\ndata: {json.dumps(ev.data, ensure_ascii=False)}\n\n"
            finally:
                hub.unsubscribe(sub)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    def _alarm_action(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str],
                      action: str) -> Response:
        check_csrf(viewer, request, form)
        rule_id, subject = form.get("rule_id", "")[:200], form.get("subject", "")[:200]
        _ = gettext_for(request)
        if wq.get_alarm(conn, rule_id, subject, viewer.scope) is None:  # another enterprise's: as if absent
            raise Refused(404, _("No such alarm."))
        now = ctx.clock.now()
        try:
            if action == "ack":
                comment = _text(form.get("comment", ""))
                if not comment:
                    raise Refused(422, _("Acknowledging from the console needs a note (disposal, cause)."))
                actions.acknowledge(conn, rule_id, subject, viewer.actor.name, comment, now)
                changes: dict[str, Any] = {"action": "alarm_ack", "rule_id": rule_id, "subject": subject,
                                           "comment": comment[:500]}
            else:
                minutes, reason = float(form.get("minutes") or "nan"), _text(form.get("reason", ""))
                if not reason or not 0 < minutes <= MAX_SHELVE_MIN:
                    raise ValueError("shelve form")
                actions.shelve(conn, rule_id, subject, viewer.actor.name, minutes * 60, reason, now)
                changes = {"action": "alarm_shelve", "rule_id": rule_id, "subject": subject,
                           "minutes": minutes, "reason": reason[:500]}
        except LifecycleError as exc:
            raise Refused(409, str(exc)) from exc
        except ValueError as exc:
            raise Refused(422, _("Please fill in the form correctly: a reason, and a duration within 7 days."))\
                from exc
        except actions.AlarmNotFound as exc:
            raise Refused(404, _("No such alarm.")) from exc
        audit(conn, request, 303, viewer=viewer, changes=changes)
        return RedirectResponse(url("/"), status_code=303)

    @app.post("/alarms/ack")
    async def ack_alarm(request: Request, viewer: Signed, conn: Conn) -> Response:
        return await in_thread(_alarm_action, request, viewer, conn, await read_form(request), "ack")

    @app.post("/alarms/shelve")
    async def shelve_alarm(request: Request, viewer: Signed, conn: Conn) -> Response:
        return await in_thread(_alarm_action, request, viewer, conn, await read_form(request), "shelve")

    # --- account administration ----------------------------------------------------------------

    def _admin(viewer: Viewer, request: Request) -> None:
        if viewer.user.role != "admin":
            _ = gettext_for(request)
            raise Refused(403, _("Only an administrator manages accounts."))

    def _users_page(request: Request, viewer: Viewer, conn: psycopg.Connection, status: int = 200,
                    error: str | None = None, notice: str | None = None) -> HTMLResponse:
        return render(request, "users.html", status, viewer=viewer, users=accounts.list_users(conn),
                      enterprises=wq.enterprise_choices(conn), roles=accounts.ROLES, error=error, notice=notice,
                      page="users")

    @app.get("/admin/users", response_class=HTMLResponse)
    def users(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        _admin(viewer, request)
        return _users_page(request, viewer, conn)

    @app.post("/admin/users")
    async def add_user(request: Request, viewer: Signed, conn: Conn) -> Response:
        return await in_thread(_add_user, request, viewer, conn, await read_form(request))

    def _add_user(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        _admin(viewer, request)
        role = form.get("role", "")
        ent = form.get("enterprise_id") or None
        try:
            u = accounts.create_user(conn, form.get("username", ""), form.get("password", ""), role,
                                     display_name=form.get("display_name") or None,
                                     enterprise_id=ent if role in accounts.ENTERPRISE_ROLES else None,
                                     created_by=viewer.user.username)
        except accounts.AccountError as exc:
            audit(conn, request, 422, viewer=viewer, changes={"action": "user_add", "refused": str(exc)})
            return _users_page(request, viewer, conn, 422, error=str(exc))
        audit(conn, request, 303, viewer=viewer, changes={"action": "user_add", "user_id": u.id,
                                                          "username": u.username, "role": u.role,
                                                          "enterprise_id": u.enterprise_id})
        return RedirectResponse(url("/admin/users"), status_code=303)

    def _target(conn: psycopg.Connection, user_id: int, request: Request) -> accounts.User:
        u = accounts.get_user(conn, user_id)
        if u is None:
            _ = gettext_for(request)
            raise Refused(404, _("No such user."))
        return u

    @app.post("/admin/users/{user_id}/password")
    async def reset_password(user_id: int, request: Request, viewer: Signed, conn: Conn) -> Response:
        return await in_thread(_reset_password, request, viewer, conn, await read_form(request), user_id)

    def _reset_password(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str],
                        user_id: int) -> Response:
        check_csrf(viewer, request, form)
        _admin(viewer, request)
        _target(conn, user_id, request)
        try:
            u = accounts.reset_password(conn, user_id, form.get("password", ""))
        except accounts.AccountError as exc:
            return _users_page(request, viewer, conn, 422, error=str(exc))
        audit(conn, request, 303, viewer=viewer, changes={"action": "password_reset", "user_id": u.id,
                                                          "username": u.username})
        if u.id == viewer.user.id:  # one's own sessions ended too
            return RedirectResponse(url("/login"), status_code=303)
        return RedirectResponse(url("/admin/users"), status_code=303)

    @app.post("/admin/users/{user_id}/active")
    async def set_active(user_id: int, request: Request, viewer: Signed, conn: Conn) -> Response:
        return await in_thread(_set_active, request, viewer, conn, await read_form(request), user_id)

    def _set_active(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str],
                    user_id: int) -> Response:
        check_csrf(viewer, request, form)
        _admin(viewer, request)
        _target(conn, user_id, request)
        active = form.get("active") == "1"
        if user_id == viewer.user.id and not active:
            _ = gettext_for(request)
            return _users_page(request, viewer, conn, 409, error=_("You cannot deactivate your own account."))
        u = accounts.set_active(conn, user_id, active)
        audit(conn, request, 303, viewer=viewer, changes={"action": "user_activate" if active else "user_deactivate",
                                                          "user_id": u.id, "username": u.username})
        return RedirectResponse(url("/admin/users"), status_code=303)

    face = ledger_pages.Face(ctx, render, url, audit, gettext_for, catalog)
    pages_more.register(app, face)  # first: its /hazards/new must not be read as a ticket id
    ledger_pages.register(app, face)
    disposal_pages.register(app, face)
    gateway_pages.register(app, face)  # gateways (attach, credentials once) and points with live values
    problem_pages.register(app, face)  # 数据问题: dead letters, unmapped tags, map a tag (backfill)
    risk_pages.register(app, ledger_pages.Face(ctx, render, url, audit, gettext_for, catalog))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(_SecurityHeaders)
    app.state.started = time.time()
    return app


def _text(value: str) -> str:
    """A note or reason from a form: trimmed, at most 4000 characters, no NUL (PostgreSQL refuses it)."""
    v = value.strip()
    if len(v) > 4000 or "\x00" in v:
        raise ValueError("text too long or with NUL")
    return v


def _cst(t: datetime | None) -> str:
    return t.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S") if t is not None else ""


def _dom_id(rule_id: str, subject: str) -> str:
    """A stable element id for an alarm row (ids and subjects may hold characters an HTML id should not)."""
    return hashlib.sha256(f"{rule_id}\0{subject}".encode()).hexdigest()[:16]


__all__ = ["PREFIX", "create_console"]
