"""The console's notifications, interviews (约谈), report downloads and enterprise self-report (企业自查上报) pages.

Each page calls the stage function the matching API route calls, as the viewer's `Actor` and scope, so the
two faces cannot disagree:

- notifications: `alerting.store.list_notifications` / `deliveries`, redacted for the viewer by
  `alerting.visibility` (the API's own rule), retried through `alerting.visibility.retry` (only a dead
  one, only by the bureau); the recipient's address is masked on screen (`visibility.mask_address`);
- interviews: `hazards.store.list_interviews`, `hazards.ledger.record_interview` / `get_interview`;
- downloads: `hazards.reports.period_summary` + `hazards.export.to_xlsx` (monthly, annual) and
  `hazards.records.evaluation` + `hazards.records.export.to_xlsx` (annual summary, three-year evaluation):
  the same workbook the API serves, scoped by the viewer's enterprise;
- self-report: `hazards.ledger.open_ticket` with `Source.SELF_REPORT`, as `POST /self-reports` does.

Another enterprise's interview, ticket or plant is "not found" (404), like the API; a notification outside
the viewer's scope likewise. Every change needs the session's CSRF token and leaves an audit row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alerting import store as alert_store
from alerting import visibility
from api.web import queries as wq
from api.web import queries_more as qm
from api.web.ledger import Face
from api.web.session import Conn, Refused, Signed, Viewer, check_csrf, read_form
from hazards import export, ledger, reports, workflow
from hazards import store as hstore
from hazards.errors import ActionForbidden, InvalidAction, ReferenceNotFound, TicketNotFound
from hazards.model import Source
from hazards.records import evaluation
from hazards.records import export as records_export

CST = timezone(timedelta(hours=8), "CST")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PAGE_SIZE = 50
NOTIFICATION_PAGE = 100
IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_ID = 2**63 - 1
KIND_KEYS = {"firing": "Notice: firing", "reminder": "Notice: reminder", "escalation": "Notice: escalation",
             "resolved": "Notice: resolved"}
NOTE_STATUS_KEYS = {"pending": "Pending delivery", "sent": "Delivered OK", "dead": "Dead (undeliverable)"}
#: Message ids held in the dicts above, which the template extractor cannot see (tests check the catalogs).
MESSAGE_IDS = (*KIND_KEYS.values(), *NOTE_STATUS_KEYS.values())


class FormError(Exception):
    """A form field that is missing, too long or unreadable; the page is shown again with the message."""


def text_field(form: dict[str, str], name: str, max_len: int, *, required: bool = False, label: str = "") -> str:
    """A trimmed text field: at most `max_len` characters, no NUL (PostgreSQL refuses it). Pure."""
    v = (form.get(name) or "").strip()
    if "\x00" in v or len(v) > max_len:
        raise FormError(f"{label or name}: 过长或含非法字符 too long or invalid")
    if required and not v:
        raise FormError(f"{label or name}: 必填 required")
    return v


def cst_instant(value: str, label: str) -> float:
    """A date and time typed in the bureau's clock (`YYYY-MM-DDTHH:MM`, as a datetime-local input sends it). Pure."""
    v = value.strip().replace(" ", "T")
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            t = datetime.strptime(v, fmt)
        except ValueError:
            continue
        if not 2000 <= t.year <= 2100:
            break
        return t.replace(tzinfo=CST).timestamp()
    raise FormError(f"{label}: 日期时间无法识别 not a date and time (YYYY-MM-DD HH:MM)")


def optional_id(value: str | None, label: str) -> int | None:
    """An optional positive 64-bit id from a form. Pure."""
    v = (value or "").strip().lstrip("#")
    if not v:
        return None
    if not v.isdigit() or not 1 <= int(v) <= MAX_ID:
        raise FormError(f"{label}: 编号无效 not a valid number")
    return int(v)


def content_disposition(zh_name: str, ascii_name: str) -> str:
    """An attachment header with a Chinese file name (RFC 5987 `filename*`) and a plain ASCII fallback."""
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(zh_name, safe='')}"


def year_arg(value: str | None, default: int) -> int:
    """A year from a query (2000..2100, like the API), or a refusal."""
    try:
        y = int(value) if value else default
    except ValueError as exc:
        raise Refused(422, "年份无效 Not a valid year (2000-2100)") from exc
    if not 2000 <= y <= 2100:
        raise Refused(422, "年份无效 Not a valid year (2000-2100)")
    return y


def month_arg(value: str | None, default: int) -> int:
    try:
        m = int(value) if value else default
    except ValueError as exc:
        raise Refused(422, "月份无效 Not a valid month (1-12)") from exc
    if not 1 <= m <= 12:
        raise Refused(422, "月份无效 Not a valid month (1-12)")
    return m


def register(app: FastAPI, face: Face) -> None:
    """Add the notifications, interviews, reports and self-report pages to the console app.

    Must be called before the ledger's pages: `/hazards/new` would otherwise be taken for a ticket id."""
    ctx, render, url, audit = face.ctx, face.render, face.url, face.audit

    def gettext(request: Request) -> Callable[[str], str]:
        return face.gettext_for(request)

    def bureau_only(viewer: Viewer, request: Request) -> None:
        if viewer.actor.role not in workflow.BUREAU:
            raise Refused(403, gettext(request)("This page is for the bureau."))

    def now_cst() -> datetime:
        return datetime.fromtimestamp(ctx.clock.now(), CST)

    def offset_arg(value: str | None) -> int:
        try:
            return max(0, min(int(value or 0), 1_000_000))
        except ValueError:
            return 0

    # --- notifications ------------------------------------------------------------------------------

    @app.get("/notifications", response_class=HTMLResponse)
    def notifications(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        bureau_only(viewer, request)
        status = "dead" if request.query_params.get("status") == "dead" else "all"
        before = optional_before(request.query_params.get("before"))
        rows = alert_store.list_notifications(conn, scope=viewer.scope, status=None if status == "all" else "dead",
                                              limit=NOTIFICATION_PAGE, before_id=before)
        items = [{"n": visibility.notification_for(n, viewer.scope), "address": visibility.mask_address(n.address),
                  "deliveries": [visibility.delivery_for(d, viewer.scope) for d in alert_store.deliveries(conn, n.id)]}
                 for n in rows]
        older = rows[-1].id if len(rows) == NOTIFICATION_PAGE else None
        return render(request, "notifications.html", viewer=viewer, page="notifications", items=items,
                      shown=status, older=older, kind_keys=KIND_KEYS, status_keys=NOTE_STATUS_KEYS)

    def optional_before(value: str | None) -> int | None:
        try:
            return optional_id(value, "before")
        except FormError:
            return None

    @app.post("/notifications/{notification_id}/retry")
    async def retry_notification(notification_id: int, request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _retry(request, viewer, conn, form, notification_id))

    def _retry(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str], nid: int) -> Response:
        check_csrf(viewer, request, form)
        _ = gettext(request)
        if not 1 <= nid <= MAX_ID:
            raise Refused(404, _("No such notification."))
        outcome = visibility.retry(conn, nid, viewer.scope, viewer.actor.role, ctx.clock.now())
        if outcome is visibility.RetryOutcome.NOT_FOUND:
            raise Refused(404, _("No such notification."))
        if outcome is visibility.RetryOutcome.FORBIDDEN:
            raise Refused(403, _("This page is for the bureau."))
        if outcome is visibility.RetryOutcome.NOT_DEAD:
            raise Refused(409, _("Only a dead notification can be retried."))
        audit(conn, request, 303, viewer=viewer, changes={"action": "notification_retry", "notification_id": nid})
        back = "?status=dead" if form.get("back") == "dead" else ""
        return RedirectResponse(url("/notifications" + back), status_code=303)

    # --- interviews (约谈) --------------------------------------------------------------------------

    def _interviews_page(request: Request, viewer: Viewer, conn: psycopg.Connection, status: int = 200,
                         error: str | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
        q = request.query_params
        ent = q.get("enterprise") if q.get("enterprise") and IDENT.match(q.get("enterprise") or "") else None
        try:
            hazard = optional_id(q.get("hazard"), "hazard")
        except FormError:
            hazard = None
        offset = offset_arg(q.get("offset"))
        rows, total = hstore.list_interviews(conn, viewer.scope, enterprise_id=ent, hazard_id=hazard,
                                             limit=PAGE_SIZE, offset=offset)
        names = qm.enterprise_names(conn, [r.enterprise_id for r in rows], viewer.scope)
        bureau = viewer.actor.role in workflow.BUREAU
        return render(request, "interviews.html", status, viewer=viewer, page="interviews", rows=rows, total=total,
                      names=names, bureau=bureau, error=error, form=form or {}, offset=offset, page_size=PAGE_SIZE,
                      enterprises=wq.enterprises_in_scope(conn, viewer.scope), q={"enterprise": ent or "",
                                                                                   "hazard": hazard or ""},
                      default_held=now_cst().strftime("%Y-%m-%dT%H:%M"))

    @app.get("/interviews", response_class=HTMLResponse)
    def interviews(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _interviews_page(request, viewer, conn)

    @app.post("/interviews")
    async def record_interview(request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _record_interview(request, viewer, conn, form))

    def _parse_interview(form: dict[str, str], _: Callable[[str], str]) -> hstore.NewInterview:
        ent = (form.get("enterprise_id") or "").strip()
        if not IDENT.match(ent):
            raise FormError(_("Choose the enterprise."))
        return hstore.NewInterview(
            enterprise_id=ent, held_at=cst_instant(form.get("held_at") or "", _("Held at")),
            interviewer=text_field(form, "interviewer", 200, required=True, label=_("Interviewer")),
            interviewees=text_field(form, "interviewees", 200, required=True, label=_("Interviewees")),
            reason=text_field(form, "reason", 4000, required=True, label=_("Reason")),
            summary=text_field(form, "summary", 4000, label=_("Outcome")),
            follow_up=text_field(form, "follow_up", 4000, label=_("Follow-up")),
            hazard_id=optional_id(form.get("hazard_id"), _("Linked hazard")))

    def _record_interview(request: Request, viewer: Viewer, conn: psycopg.Connection,
                          form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        _ = gettext(request)
        bureau_only(viewer, request)
        try:
            new = _parse_interview(form, _)
            rec = ledger.record_interview(conn, new, viewer.actor, ctx.clock.now())
        except (FormError, InvalidAction, ReferenceNotFound, TicketNotFound) as exc:
            audit(conn, request, 422, viewer=viewer, changes={"action": "interview_record", "refused": str(exc)[:500]})
            return _interviews_page(request, viewer, conn, 422, error=str(exc), form=form)
        except ActionForbidden as exc:
            raise Refused(403, str(exc)) from exc
        audit(conn, request, 303, viewer=viewer, changes={"action": "interview_record", "interview_id": rec.id,
                                                          "enterprise_id": rec.enterprise_id,
                                                          "hazard_id": rec.hazard_id})
        return RedirectResponse(url(f"/interviews/{rec.id}"), status_code=303)

    def interview_or_404(conn: psycopg.Connection, iid: int, viewer: Viewer, request: Request
                         ) -> hstore.InterviewRecord:
        try:
            if not 1 <= iid <= MAX_ID:
                raise ReferenceNotFound("out of range")
            return ledger.get_interview(conn, iid, viewer.actor)
        except ReferenceNotFound as exc:
            raise Refused(404, gettext(request)("No such interview.")) from exc

    @app.get("/interviews/{interview_id}", response_class=HTMLResponse)
    def interview(interview_id: int, request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        rec = interview_or_404(conn, interview_id, viewer, request)
        hazard = None
        if rec.hazard_id is not None:
            try:
                hazard = ledger.get(conn, rec.hazard_id, viewer.actor)
            except TicketNotFound:
                hazard = None
        names = qm.enterprise_names(conn, [rec.enterprise_id], viewer.scope)
        return render(request, "interview.html", viewer=viewer, page="interviews", i=rec, hazard=hazard,
                      enterprise_name=names.get(rec.enterprise_id, rec.enterprise_id))

    @app.get("/hazards/{hazard_id}/interviews", response_class=HTMLResponse)
    def hazard_interviews(hazard_id: int, request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        """The ticket page's 约谈 section (loaded by htmx; the page links the full list without it)."""
        try:
            if not 1 <= hazard_id <= MAX_ID:
                raise TicketNotFound("out of range")
            rec = ledger.get(conn, hazard_id, viewer.actor)
        except TicketNotFound as exc:
            raise Refused(404, gettext(request)("No such hazard.")) from exc
        rows, total = hstore.list_interviews(conn, viewer.scope, hazard_id=rec.id, limit=PAGE_SIZE)
        return render(request, "_interviews.html", viewer=viewer, rows=rows, total=total, hazard_id=rec.id)

    # --- reports ------------------------------------------------------------------------------------

    @app.get("/reports", response_class=HTMLResponse)
    def reports_page(request: Request, viewer: Signed) -> HTMLResponse:
        t = now_cst()
        return render(request, "reports.html", viewer=viewer, page="reports", year=t.year, month=t.month,
                      years=list(range(t.year, 2019, -1)))

    def xlsx(body: bytes, zh_name: str, ascii_name: str) -> Response:
        return Response(body, media_type=XLSX, headers={
            "Content-Disposition": content_disposition(zh_name, ascii_name), "Cache-Control": "no-store"})

    def _export(request: Request, viewer: Viewer, conn: psycopg.Connection, report: str, **period: int) -> None:
        audit(conn, request, 200, viewer=viewer, changes={"action": "report_export", "report": report, **period})

    @app.get("/reports/monthly.xlsx")
    def monthly_xlsx(request: Request, viewer: Signed, conn: Conn) -> Response:
        t = now_cst()
        y, m = year_arg(request.query_params.get("year"), t.year), month_arg(request.query_params.get("month"), t.month)
        s = reports.period_summary(conn, "monthly", y, m, viewer.scope, ctx.clock.now())
        _export(request, viewer, conn, "monthly", year=y, month=m)
        return xlsx(export.to_xlsx(s), f"隐患月度汇总-{y}-{m:02d}.xlsx", f"hazards-monthly-{y}-{m:02d}.xlsx")

    @app.get("/reports/annual.xlsx")
    def annual_xlsx(request: Request, viewer: Signed, conn: Conn) -> Response:
        y = year_arg(request.query_params.get("year"), now_cst().year)
        s = reports.period_summary(conn, "annual", y, None, viewer.scope, ctx.clock.now())
        _export(request, viewer, conn, "annual", year=y)
        return xlsx(export.to_xlsx(s), f"隐患年度汇总-{y}.xlsx", f"hazards-annual-{y}.xlsx")

    @app.get("/reports/summary.xlsx")
    def summary_xlsx(request: Request, viewer: Signed, conn: Conn) -> Response:
        y = year_arg(request.query_params.get("year"), now_cst().year)
        ev = evaluation.annual(conn, y, ctx.clock.now(), viewer.scope)
        _export(request, viewer, conn, "records_annual", year=y)
        return xlsx(records_export.to_xlsx(ev), f"年度工作总结-{y}.xlsx", f"annual-{y}.xlsx")

    @app.get("/reports/evaluation.xlsx")
    def evaluation_xlsx(request: Request, viewer: Signed, conn: Conn) -> Response:
        ev = evaluation.three_year(conn, ctx.clock.now(), viewer.scope)
        _export(request, viewer, conn, "evaluation")
        return xlsx(records_export.to_xlsx(ev), "三年行动评估-2024-2026.xlsx", "evaluation-2024-2026.xlsx")

    # --- self-report (企业自查上报) ---------------------------------------------------------------------

    def enterprise_only(viewer: Viewer, request: Request) -> str:
        if viewer.actor.role != "enterprise" or viewer.scope is None:
            raise Refused(403, gettext(request)("Self-reports are filed by the enterprise's own users."))
        return viewer.scope

    def _new_page(request: Request, viewer: Viewer, conn: psycopg.Connection, status: int = 200,
                  error: str | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
        return render(request, "hazard_new.html", status, viewer=viewer, page="hazards", error=error,
                      form=form or {"detected_at": now_cst().strftime("%Y-%m-%dT%H:%M")},
                      plants=qm.plants_in_scope(conn, viewer.scope))

    @app.get("/hazards/new", response_class=HTMLResponse)
    def new_hazard(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        enterprise_only(viewer, request)
        return _new_page(request, viewer, conn)

    @app.post("/hazards/new")
    async def self_report(request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _self_report(request, viewer, conn, form))

    def _parse_report(form: dict[str, str], enterprise_id: str, plants: set[str], now: float,
                      _: Callable[[str], str]) -> ledger.NewTicket:
        plant = (form.get("plant_id") or "").strip() or None
        if plant is not None and plant not in plants:
            raise Refused(404, _("No such plant."))
        detected = cst_instant(form["detected_at"], _("Found at")) if (form.get("detected_at") or "").strip() else now
        if detected > now + 3600:
            raise FormError(_("Found at") + ": " + _("must not be in the future"))
        return ledger.NewTicket(
            source=Source.SELF_REPORT, enterprise_id=enterprise_id,
            title=text_field(form, "title", 200, required=True, label=_("Hazard title")),
            description=text_field(form, "description", 4000, label=_("What was found")),
            basis=text_field(form, "basis", 200, label=_("Basis")) or None,
            location=text_field(form, "location", 200, label=_("Where exactly")) or None,
            plant_id=plant, detected_at=detected, comment=text_field(form, "comment", 4000, label=_("Comment")))

    def _self_report(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        enterprise_id = enterprise_only(viewer, request)
        _ = gettext(request)
        now = ctx.clock.now()
        plants = {p for p, _name in qm.plants_in_scope(conn, viewer.scope)}
        try:
            new = _parse_report(form, enterprise_id, plants, now, _)
            tid = ledger.open_ticket(conn, new, viewer.actor, now)
        except (FormError, InvalidAction) as exc:
            return _new_page(request, viewer, conn, 422, error=str(exc), form=form)
        except ReferenceNotFound as exc:  # a plant that left the enterprise meanwhile: as if absent
            raise Refused(404, _("No such plant.")) from exc
        audit(conn, request, 303, viewer=viewer, changes={"action": "hazard_self_report", "hazard_id": tid,
                                                          "plant_id": new.plant_id, "title": new.title[:200]})
        return RedirectResponse(url(f"/hazards/{tid}"), status_code=303)


__all__ = ["MESSAGE_IDS", "content_disposition", "cst_instant", "optional_id", "register", "text_field"]
