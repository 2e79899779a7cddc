"""The console's disposal pages: 处置反馈 (warning feedback), 停产报备 (production stops) and the board's point trends.

One policy, two faces: every decision is the stage's own, the one `api/http/routers/disposal.py` and
`api/http/routers/stops.py` reach — `rules.store_disposal.feedback` (cause from the policy's fixed list,
measures, who handled it; 409 the second time), `rules.store_stops.file_stop` / `decide` (the filing and
decision rules of `rules.stops`). Reads are scoped by the viewer's enterprise in SQL, so another
enterprise's disposal, stop or alarm trend is simply not found (404). As in the API, the bureau sees all
and may feed back on an enterprise's behalf (the timeline names who did); only the bureau (admin or any
bureau role, the API's `BUREAU`) approves or rejects a stop; the filer's enterprise or the bureau withdraws.

The board's trend of an alarm's point is a fragment (`/alarms/trend`) each row fetches when it scrolls into
view (htmx `intersect once`), so the board itself stays one query however many rows it has, and each chart
is one bounded range scan of the point's readings (averaged into at most 240 buckets). A limit on a
difference of two points (the cooling-water Δ: `difference` rules, `diff:` conditions) is drawn on the
difference itself, a − b computed in SQL on aligned time buckets: a difference rule's chart is that Δ line
with its limits (what the rule judges, read at a glance; the tooltip gives both meters' values), and an
interlock or composite with a Δ condition shows the Δ on a right-hand axis beside its subject point.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.web import queries as wq
from api.web import queries_disposal as qd
from api.web.charts import TrendLimits, bind_aliases, bound_deltas, trend_chart, trend_limits
from api.web.charts import subject_limits as subject_limits  # re-exported: tests import it from here
from api.web.ledger import Face
from api.web.session import Conn, Refused, Signed, Viewer, check_csrf, read_form
from rules import disposal, store_disposal, store_stops
from rules.stops import StopAction, StopError

log = logging.getLogger("riskwatch.web.disposal")

CST = timezone(timedelta(hours=8), "CST")
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">, read as the bureau's clock (CST)
DISPOSAL_STATUSES = ("pending", "overdue", "answered", "all")
STOP_STATUSES = ("filed", "approved", "rejected", "withdrawn")
STOP_ACTIONS: tuple[StopAction, ...] = ("approve", "reject", "withdraw")
MAX_ROWS = 100


def N_(message: str) -> str:
    """Marks a message id for the catalog without translating it here (the template translates it)."""
    return message


DISPOSAL_STATUS_KEYS = {"pending": N_("Awaiting feedback"), "overdue": N_("Overdue"),
                        "answered": N_("Answered"), "all": N_("All")}
TIER_KEYS = {"principal": N_("Enterprise principal"), "duty_officer": N_("Bureau duty officer"),
             "section_chief": N_("Section chief"), "leader": N_("Bureau leader in charge")}
STOP_STATUS_KEYS = {"filed": N_("Filed, awaiting decision"), "approved": N_("Approved"),
                    "rejected": N_("Rejected"), "withdrawn": N_("Withdrawn")}
STOP_EVENT_KEYS = {"file": N_("Filed"), "approve": N_("Approved"), "reject": N_("Rejected"),
                   "withdraw": N_("Withdrawn")}
STOP_KIND_KEYS = {"stop": N_("Production stop"), "maintenance": N_("Maintenance")}
#: Message ids the dicts above hold (the catalog test reads them through N_, this keeps them listed in one place).
MESSAGE_IDS = (*DISPOSAL_STATUS_KEYS.values(), *TIER_KEYS.values(), *STOP_STATUS_KEYS.values(),
               *STOP_EVENT_KEYS.values(), *STOP_KIND_KEYS.values())


def _cst(t: float | None) -> str:
    return datetime.fromtimestamp(t, CST).strftime("%Y-%m-%d %H:%M") if t is not None else ""


def parse_local(value: str) -> float | None:
    """A datetime-local field (CST) as epoch seconds; None when empty or unreadable. Pure."""
    try:
        return datetime.strptime(value.strip(), LOCAL_FORMAT).replace(tzinfo=CST).timestamp()
    except ValueError:
        return None


def form_text(value: str | None, limit: int) -> str:
    """A form field as the stores take it: trimmed, cut to `limit`, NUL refused (PostgreSQL would)."""
    v = (value or "").strip()
    if "\x00" in v:
        raise ValueError("NUL in form text")
    return v[:limit]


def actor_name(viewer: Viewer) -> str:
    """How the console names a person on a timeline: the display name and the unique username."""
    return f"{viewer.user.display_name}（{viewer.user.username}）"


def is_bureau(viewer: Viewer) -> bool:
    """The API's BUREAU: admin, or any bureau role (leader, section chief, duty officer)."""
    return viewer.user.api_role in ("admin", "bureau")


def register(app: FastAPI, face: Face) -> None:
    """Add the disposal, stop and trend pages to the console app."""
    ctx, render, url, audit = face.ctx, face.render, face.url, face.audit
    cache: dict[str, Any] = {}

    def policy() -> disposal.Policy:
        if "policy" not in cache:
            cache["policy"] = disposal.load_policy()
        pol: disposal.Policy = cache["policy"]
        return pol

    def rules() -> dict[str, Any]:
        if "rules" not in cache:
            from rules.model import load_catalog
            try:
                cache["rules"] = {rid: r for rid, (_, r) in load_catalog(face.catalog).rules.items()}
            except Exception as exc:  # noqa: BLE001 - pages show rule ids and charts without limits instead
                log.error("rule catalog not loaded for the disposal pages (%s)", exc)
                cache["rules"] = {}
        found: dict[str, Any] = cache["rules"]
        return found

    def rule_of(rule_id: str) -> Any:
        # a rule's levels are alarms of their own ("bm.gas.pressure:hi"): named by the rule
        return rules().get(rule_id) or rules().get(rule_id.split(":", 1)[0])

    def title_of(rule_id: str) -> str:
        r = rule_of(rule_id)
        return str(r.title.zh) if r is not None else rule_id

    # --- the board's point trend ---------------------------------------------------------------------

    @app.get("/alarms/trend", response_class=HTMLResponse)
    def trend(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        q = request.query_params
        _ = face.gettext_for(request)
        alarm = wq.get_alarm(conn, (q.get("rule_id") or "")[:200], (q.get("subject") or "")[:200], viewer.scope)
        if alarm is None:  # another enterprise's, or none: as if absent
            raise Refused(404, _("No such alarm."))
        chart = None
        if alarm["point_id"] is not None:
            act = alarm["activated_at"].timestamp() if alarm["activated_at"] else None
            clr = alarm["cleared_at"].timestamp() if alarm["cleared_at"] else None
            now = ctx.clock.now()
            start, end = qd.trend_window(act if act is not None else now, clr, now)
            pid = int(alarm["point_id"])
            rule = rule_of(alarm["rule_id"])
            device = qd.device_points(conn, pid, viewer.scope) if rule is not None else []
            subject = next((p for p in device if int(p["id"]) == pid), None)
            lim = trend_limits(rule, subject["setpoints"] if subject else None) if rule is not None else TrendLimits()
            bound = bind_aliases(rule, pid, device) if lim.deltas else {}
            deltas, other = bound_deltas(lim, bound, lambda pa, pb: qd.difference_trend(
                conn, int(pa["id"]), int(pb["id"]), start, end,
                min_bucket_s=max(float(pa["interval_s"]), float(pb["interval_s"]))))
            delta_only = lim.delta_only and bool(deltas)
            points = [] if delta_only else qd.point_trend(conn, pid, start, end)
            if points or delta_only:
                chart = json.dumps(trend_chart(alarm["tag"] or str(pid), points, act, clr, lim.own, other,
                                               {"activated": _("Activated"), "cleared": _("Cleared")},
                                               deltas=deltas, delta_only=delta_only), ensure_ascii=False)
        return render(request, "_trend.html", viewer=viewer, chart=chart, alarm=alarm)

    # --- 处置反馈 ---------------------------------------------------------------------------------------

    def disposal_view(rec: store_disposal.DisposalRecord, names: dict[str, tuple[str, str]], now: float
                      ) -> dict[str, Any]:
        pol = policy()
        plant, ent = names.get(rec.plant_id, (rec.plant_id, rec.enterprise_id))
        ladder = [{"tier": tier, "at": rec.due_at + after, "reached": k < rec.tier_reached}
                  for k, (tier, after) in enumerate(pol.ladder)]
        late = (rec.feedback_at is None and now > rec.due_at) or (rec.feedback_at is not None
                                                                   and rec.feedback_at > rec.due_at)
        return {"d": rec, "title": title_of(rec.rule_id), "plant": plant, "enterprise": ent, "late": late,
                "tier": pol.ladder[rec.tier_reached - 1][0] if 0 < rec.tier_reached <= len(pol.ladder) else None,
                "ladder": ladder, "cause_label": pol.causes.get(rec.cause or "", rec.cause)}

    @app.get("/disposal", response_class=HTMLResponse)
    def disposals(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        status = request.query_params.get("status") or "pending"
        status = status if status in DISPOSAL_STATUSES else "pending"
        now = ctx.clock.now()
        recs, total = store_disposal.list_disposals(conn, viewer.scope, status=status, now=now, limit=MAX_ROWS)
        names = qd.plant_names(conn, (r.plant_id for r in recs))
        stats = None
        if viewer.scope is None:  # the bureau's table: every enterprise's response over the last 30 days
            got = disposal.response_stats(store_disposal.outcomes(conn, None, now - 30 * 86400, now), now)
            ents = dict(wq.enterprises_in_scope(conn, None))
            stats = [(ents.get(eid, eid), s) for eid, s in got.items()]
        return render(request, "disposal.html", viewer=viewer, page="disposal", current=status, total=total,
                      rows=[disposal_view(r, names, now) for r in recs], statuses=DISPOSAL_STATUS_KEYS,
                      tier_keys=TIER_KEYS, stats=stats, fmt=_cst)

    def disposal_or_404(conn: psycopg.Connection, disposal_id: int, viewer: Viewer,
                        request: Request) -> store_disposal.DisposalRecord:
        rec = store_disposal.get(conn, disposal_id, viewer.scope)
        if rec is None:
            _ = face.gettext_for(request)
            raise Refused(404, _("No such disposal."))
        return rec

    def _disposal_page(request: Request, viewer: Viewer, conn: psycopg.Connection, disposal_id: int,
                       status: int = 200, error: str | None = None, form: dict[str, str] | None = None
                       ) -> HTMLResponse:
        rec = disposal_or_404(conn, disposal_id, viewer, request)
        now = ctx.clock.now()
        view = disposal_view(rec, qd.plant_names(conn, [rec.plant_id]), now)
        events = qd.disposal_events(conn, rec.rule_id, rec.subject, rec.activated_at)
        return render(request, "disposal_detail.html", status, viewer=viewer, page="disposal", v=view,
                      causes=policy().causes, tier_keys=TIER_KEYS, events=events, error=error, form=form or {},
                      fmt=_cst, on_behalf=viewer.scope is None)

    @app.get("/disposal/{disposal_id}", response_class=HTMLResponse)
    def disposal_page(disposal_id: int, request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _disposal_page(request, viewer, conn, disposal_id)

    @app.post("/disposal/{disposal_id}/feedback")
    async def feedback(disposal_id: int, request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _feedback(request, viewer, conn, form, disposal_id))

    def _feedback(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str],
                  disposal_id: int) -> Response:
        check_csrf(viewer, request, form)
        disposal_or_404(conn, disposal_id, viewer, request)
        kept = {k: form.get(k, "")[:4000] for k in ("cause", "measures", "handled_by")}
        _ = face.gettext_for(request)
        try:
            rec = store_disposal.feedback(
                conn, policy(), disposal_id, cause=form_text(form.get("cause"), 40),
                measures=form_text(form.get("measures"), disposal.MAX_TEXT + 1),
                handled_by=form_text(form.get("handled_by"), 201), actor=actor_name(viewer), scope=viewer.scope,
                now=ctx.clock.now())
        except store_disposal.DisposalNotFound as exc:
            raise Refused(404, _("No such disposal.")) from exc
        except store_disposal.AlreadyAnswered as exc:
            return _disposal_page(request, viewer, conn, disposal_id, 409, error=str(exc))
        except disposal.DisposalError as exc:
            audit(conn, request, 422, viewer=viewer, changes={"action": "disposal_feedback", "refused": str(exc),
                                                              "disposal_id": disposal_id})
            return _disposal_page(request, viewer, conn, disposal_id, 422, error=str(exc), form=kept)
        except ValueError:
            return _disposal_page(request, viewer, conn, disposal_id, 422, form=kept,
                                  error=_("The form holds characters that cannot be stored."))
        audit(conn, request, 303, viewer=viewer, changes={
            "action": "disposal_feedback", "disposal_id": disposal_id, "cause": rec.cause,
            "late": rec.feedback_at is not None and rec.feedback_at > rec.due_at})
        return RedirectResponse(url(f"/disposal/{disposal_id}"), status_code=303)

    # --- 停产报备 ---------------------------------------------------------------------------------------

    def _stops_page(request: Request, viewer: Viewer, conn: psycopg.Connection, status: int = 200,
                    error: str | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
        want = request.query_params.get("status") or ""
        recs, total = store_stops.list_stops(conn, viewer.scope, status=want if want in STOP_STATUSES else None,
                                             limit=MAX_ROWS)
        now = ctx.clock.now()
        defaults = {"starts_at": datetime.fromtimestamp(now, CST).strftime(LOCAL_FORMAT),
                    "ends_at": datetime.fromtimestamp(now + 86400, CST).strftime(LOCAL_FORMAT), "kind": "stop"}
        plants = qd.plants_in_scope(conn, viewer.scope)
        form = {**defaults, **(form or {})}
        # the device picker offers the devices of the plant the form shows (the kept one, else the first)
        chosen = next((str(p["id"]) for p in plants if p["id"] == form.get("plant_id")),
                      str(plants[0]["id"]) if plants else None)
        devices = qd.devices_of_plant(conn, chosen, viewer.scope) if chosen is not None else []
        return render(request, "stops.html", status, viewer=viewer, page="stops", rows=recs, total=total,
                      names=qd.plant_names(conn, (r.plant_id for r in recs)), want=want,
                      statuses=STOP_STATUS_KEYS, kinds=STOP_KIND_KEYS, plants=plants, devices=devices,
                      device_plant=chosen, error=error, form=form, fmt=_cst)

    @app.get("/stops", response_class=HTMLResponse)
    def stops(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _stops_page(request, viewer, conn)

    @app.get("/stops/devices", response_class=HTMLResponse)
    def stop_devices(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        """The device picker of the stop form for one plant (htmx, on a change of plant). No plant: only "the
        whole plant"; another enterprise's or an unknown plant: 404, as the filing itself answers."""
        plant_id = (request.query_params.get("plant_id") or "")[:200]
        devices: list[dict[str, Any]] = []
        if plant_id:
            owner = store_stops.plant_enterprise(conn, plant_id)
            if owner is None or (viewer.scope is not None and owner != viewer.scope):
                raise Refused(404, face.gettext_for(request)("No such plant."))
            devices = qd.devices_of_plant(conn, plant_id, viewer.scope)
        return render(request, "_stop_devices.html", viewer=viewer, devices=devices, device_plant=plant_id,
                      form={})

    @app.post("/stops")
    async def file_stop(request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _file_stop(request, viewer, conn, form))

    def _file_stop(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        _ = face.gettext_for(request)
        plant_id = (form.get("plant_id") or "")[:200]
        owner = store_stops.plant_enterprise(conn, plant_id)
        if owner is None or (viewer.scope is not None and owner != viewer.scope):  # as the API: another's is 404
            raise Refused(404, _("No such plant."))
        kept = {k: form.get(k, "")[:600] for k in ("plant_id", "device_code", "kind", "reason", "starts_at",
                                                    "ends_at")}
        starts, ends = parse_local(form.get("starts_at", "")), parse_local(form.get("ends_at", ""))
        kind = form.get("kind") or "stop"

        def again(message: str) -> HTMLResponse:
            audit(conn, request, 422, viewer=viewer, changes={"action": "stop_file", "refused": message,
                                                              "plant_id": plant_id})
            return _stops_page(request, viewer, conn, 422, error=message, form=kept)

        if starts is None or ends is None:
            return again(_("Give the start and the expected end of the stop."))
        if kind not in STOP_KIND_KEYS:
            return again(_("Choose a production stop or maintenance."))
        code = (form.get("device_code") or "").strip()
        if code and code not in {str(d["code"]) for d in qd.devices_of_plant(conn, plant_id, viewer.scope)}:
            # a code the picker never offered (typed by hand, another plant's or another enterprise's device)
            return again(_("%(code)s is not a device of this plant: choose the device from the list.") % {
                "code": code[:200]})
        try:
            sid = store_stops.file_stop(conn, plant_id=plant_id, device_code=form_text(form.get("device_code"), 200)
                                        or None, kind=kind, reason=form_text(form.get("reason"), 4000),
                                        starts=starts, ends=ends, actor=actor_name(viewer),
                                        filer_enterprise=viewer.scope, now=ctx.clock.now())
        except (StopError, store_stops.UnknownTarget) as exc:
            return again(str(exc))
        except ValueError:
            return again(_("The form holds characters that cannot be stored."))
        audit(conn, request, 303, viewer=viewer, changes={"action": "stop_file", "stop_id": sid, "plant_id": plant_id})
        return RedirectResponse(url(f"/stops/{sid}"), status_code=303)

    def stop_or_404(conn: psycopg.Connection, stop_id: int, viewer: Viewer, request: Request
                    ) -> store_stops.StopRecord:
        rec = store_stops.get_stop(conn, stop_id, viewer.scope)
        if rec is None:
            _ = face.gettext_for(request)
            raise Refused(404, _("No such stop filing."))
        return rec

    def _stop_page(request: Request, viewer: Viewer, conn: psycopg.Connection, stop_id: int, status: int = 200,
                   error: str | None = None) -> HTMLResponse:
        rec = stop_or_404(conn, stop_id, viewer, request)
        now = ctx.clock.now()
        allowed = [a for a in STOP_ACTIONS if _may(viewer, rec, a, now)]
        return render(request, "stop.html", status, viewer=viewer, page="stops", s=rec,
                      names=qd.plant_names(conn, [rec.plant_id]), events=store_stops.stop_events(conn, rec.id),
                      device=qd.device_label(conn, rec.device_id) if rec.device_id is not None else None,
                      statuses=STOP_STATUS_KEYS, kinds=STOP_KIND_KEYS, event_keys=STOP_EVENT_KEYS, allowed=allowed,
                      error=error, fmt=_cst)

    @app.get("/stops/{stop_id}", response_class=HTMLResponse)
    def stop(stop_id: int, request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _stop_page(request, viewer, conn, stop_id)

    @app.post("/stops/{stop_id}/{action}")
    async def decide(stop_id: int, action: str, request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _decide(request, viewer, conn, form, stop_id, action))

    def _decide(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str], stop_id: int,
                action: str) -> Response:
        check_csrf(viewer, request, form)
        _ = face.gettext_for(request)
        stop_or_404(conn, stop_id, viewer, request)  # as the API: not visible is 404 before any role check
        act = next((a for a in STOP_ACTIONS if a == action), None)
        if act is None:
            raise Refused(404, _("No such action."))
        if act != "withdraw" and not is_bureau(viewer):
            raise Refused(403, _("Only the bureau approves or rejects a stop filing."))
        try:
            comment = form_text(form.get("comment"), 200 if act != "reject" else 4000)
            if act == "reject" and not comment:  # the store's own rule, answered as a form error (422)
                return _stop_page(request, viewer, conn, stop_id, 422, error=_("A rejection needs a comment."))
            rec = store_stops.decide(conn, stop_id, act, actor=actor_name(viewer), comment=comment,
                                     by_enterprise=viewer.scope, now=ctx.clock.now())
        except store_stops.StopNotFound as exc:
            raise Refused(404, _("No such stop filing.")) from exc
        except StopError as exc:
            audit(conn, request, 409, viewer=viewer, changes={"action": f"stop_{act}", "refused": str(exc),
                                                              "stop_id": stop_id})
            return _stop_page(request, viewer, conn, stop_id, 409, error=str(exc))
        except ValueError:
            return _stop_page(request, viewer, conn, stop_id, 422,
                              error=_("The form holds characters that cannot be stored."))
        audit(conn, request, 303, viewer=viewer, changes={"action": f"stop_{act}", "stop_id": stop_id,
                                                          "status": rec.status})
        return RedirectResponse(url(f"/stops/{stop_id}"), status_code=303)


def _may(viewer: Viewer, rec: store_stops.StopRecord, action: StopAction, now: float) -> bool:
    """Whether to offer a button: the decision itself stays the store's (`rules.stops.act`), a forged one is
    refused there; this only hides what would be refused."""
    if action in ("approve", "reject"):
        return is_bureau(viewer) and rec.status == "filed"
    mine = viewer.scope is None or viewer.scope == rec.enterprise_id
    return mine and (rec.status == "filed" or (rec.status == "approved" and now < rec.ends_at))
