"""The console's ledger pages: candidate queue, hazard ledger and ticket, 五落实 plan, evidence files, 动态清零.

Every decision is the ledger's own (`hazards.ledger` around the pure `hazards.workflow`), taken as the
viewer's `Actor` — the same policy the API's tokens meet: the buttons a ticket shows are
`workflow.allowed_actions` for that actor, and a forged POST of any other action is refused by the same
workflow (403 role, 409 status). Reads are scoped by the viewer's enterprise (`hazards.ledger.get`,
`store.list_tickets(scope=…)`), so another enterprise's ticket, its evidence and its files are simply
not found (404). Only a section chief or a leader verifies and closes (销号) or sets a supervision level:
the console actor carries `may_verify` (`core.accounts.may_verify`), which the workflow checks.

Charts carry their data in a `data-chart` attribute (JSON, escaped by Jinja) and are drawn by
`static/charts.js` with the vendored ECharts: no inline script, as the CSP requires.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.web import charts, files
from api.web import queries as wq
from api.web import queries_disposal as qd
from api.web.session import Conn, ConsoleContext, Refused, Signed, Viewer, check_csrf, read_form
from hazards import ledger, store, workflow
from hazards.errors import ActionForbidden, InvalidAction, TicketNotFound, TransitionRefused
from hazards.model import (
    BUREAU_ONLY_ACTIONS,
    LEVEL_ZH,
    SOURCE_ZH,
    STATUS_ZH,
    Level,
    Plan,
    RewardStatus,
    Source,
    Status,
)

log = logging.getLogger("riskwatch.web.ledger")

#: The actions a ticket page offers as forms (interviews have their own pages: api/web/pages_more.py).
FORM_ACTIONS = ("confirm", "dismiss", "file_plan", "start_rectification", "submit", "verify", "send_back",
                "supervise", "set_reward", "comment")
#: The whistle-blower reward's decisions a form offers (pending is where a tip starts).
REWARD_ZH = {"approved": "批准奖励", "declined": "不予奖励", "paid": "已发放"}
#: The five fields of 五落实 (plus the optional phone), as the form names them, with their Chinese label.
PLAN_FIELDS = {"responsible_person": "责任人", "measures": "整改措施", "funds_yuan": "整改资金",
               "deadline": "整改期限", "contingency_plan": "应急预案"}
INDUSTRY_ZH = {"cement": "水泥", "lime": "石灰", "refractory": "耐火材料", "foundry": "铸造", "machinery": "机械"}
CST = timezone(timedelta(hours=8), "CST")
MAX_UPLOAD_BODY = files.MAX_BYTES + 64 * 1024


@dataclass(frozen=True)
class Face:
    """What the ledger pages need of `create_console`: its renderer, paths, audit and language."""

    ctx: ConsoleContext
    render: Callable[..., HTMLResponse]
    url: Callable[[str], str]
    audit: Callable[..., None]
    gettext_for: Callable[[Request], Callable[[str], str]]
    catalog: Path | None


def parse_plan(form: dict[str, str], now: float) -> tuple[Plan | None, list[str]]:
    """The 五落实 plan a form holds, or the fields it lacks (form names). Pure.

    The completeness rule is the workflow's (`hazards.workflow._check_plan`, the one the API's plan goes
    through); this only turns form text into the typed plan, so funds and the deadline can be reported
    missing or unreadable by name rather than as one error."""
    missing = [k for k in PLAN_FIELDS if not form.get(k, "").strip()]
    funds: Decimal | None = None
    deadline: float | None = None
    if "funds_yuan" not in missing:
        try:
            funds = Decimal(form["funds_yuan"].strip().replace(",", ""))
            if not funds.is_finite() or funds < 0 or funds > Decimal("1e12"):
                raise InvalidOperation
        except InvalidOperation:
            missing.append("funds_yuan")
    if "deadline" not in missing:
        try:  # a date in the bureau's time: the end of that day in China Standard Time
            day = datetime.strptime(form["deadline"].strip(), "%Y-%m-%d")
            deadline = (day.replace(tzinfo=CST) + timedelta(days=1) - timedelta(seconds=1)).timestamp()
        except ValueError:
            missing.append("deadline")
    if missing or funds is None or deadline is None:
        return None, missing
    return Plan(form["responsible_person"].strip()[:200], form["measures"].strip()[:4000], funds, deadline,
                form["contingency_plan"].strip()[:4000], (form.get("responsible_phone") or "").strip()[:40] or None), []


def _load_rules(catalog: Path | None) -> dict[str, Any]:
    from rules.model import load_catalog

    try:
        return {rid: r for rid, (_, r) in load_catalog(catalog).rules.items()}
    except Exception as exc:  # noqa: BLE001 - evidence shows without limits rather than not at all
        log.error("rule catalog not loaded for the ledger pages (%s): charts are drawn without limits", exc)
        return {}


def readings_chart(ev: store.EvidenceRecord, rule: Any, subject_id: int | None,
                   device_points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The chart of one readings-window evidence item, drawing what the rule judges, from the readings kept
    with the evidence (they outlive the readings' retention): as the board's trend does (`api.web.charts`),
    a difference rule's chart is the Δ of its two points with its limit, an interlock or composite with a
    Δ condition shows its subject point with its own limits and the Δ on a right-hand axis, and limits on
    another single point are named above the chart. The Δ is taken as the engine takes it, on the held
    values of both points at every reading time (`charts.held_difference`).

    `device_points` are the points of the subject's device within the viewer's scope (the rule's aliases are
    bound among them, as the compiler binds them). When the subject or an alias cannot be found in the
    window — a point left the registry, the rule left the catalog — every tag is drawn as it was recorded
    and a limit is drawn only where it is unambiguous (the rule's own limits on a one-tag window); the rest
    are named, never drawn on the wrong line."""
    raw: dict[str, list[tuple[float, float]]] = {}
    for r in ev.readings or []:
        got = charts.reading_at(r)
        if got is not None:
            raw.setdefault(str(r.get("tag") or r.get("point_id")), []).append(got)
    if rule is None:
        lim = charts.TrendLimits()
    else:
        subject = next((p for p in device_points if int(p["id"]) == subject_id), None)
        lim = charts.trend_limits(rule, subject["setpoints"] if subject is not None else None)
    bound = charts.bind_aliases(rule, subject_id, device_points) if rule is not None and subject_id is not None \
        else {}

    def of(p: Mapping[str, Any] | None, valid: bool) -> list[tuple[float, float]]:
        """The window's readings of one bound point: by point id where the snapshot has it, else by tag."""
        if p is None:
            return []
        read = charts.valid_reading if valid else charts.reading_at
        mine = (r for r in ev.readings or []
                if (int(r["point_id"]) == int(p["id"]) if r.get("point_id") is not None else r.get("tag") == p["tag"]))
        return [x for x in map(read, mine) if x is not None]

    # two bound points sharing a tag cannot be told apart in a snapshot without point ids: no Δ of them
    deltas, other = charts.bound_deltas(lim, bound, lambda pa, pb: charts.held_difference(
        of(pa, True), of(pb, True)) if pa["tag"] != pb["tag"] else [])
    delta_only = lim.delta_only and bool(deltas)
    subject_rows = [] if delta_only else of(bound.get("subject"), False)
    if delta_only or subject_rows:
        tag = str(bound["subject"]["tag"]) if "subject" in bound else ""
        return charts.trend_chart(tag, [(datetime.fromtimestamp(t, UTC), v) for t, v in subject_rows],
                                  None, None, lim.own, other, {}, deltas=deltas, delta_only=delta_only,
                                  compact=False)
    # the subject is not in the window (or not known): every tag as recorded
    own = lim.own if len(raw) == 1 else []
    notes = other + [x for x in lim.own if x not in own]
    return {"kind": "readings",
            "series": [{"name": k, "data": [[charts.cst_ms(t), v] for t, v in d]} for k, d in raw.items()],
            "limits": [{"name": x["kind"], "kind": x["kind"], "value": x["value"]} for x in own],
            "notes": [f"{x['name']} {x['value']:g}" for x in notes]}


def register(app: FastAPI, face: Face) -> None:
    """Add the ledger pages to the console app."""
    ctx, render, url, audit = face.ctx, face.render, face.url, face.audit
    rules_cache: dict[str, dict[str, Any]] = {}

    def rules() -> dict[str, Any]:
        if "r" not in rules_cache:
            rules_cache["r"] = _load_rules(face.catalog)
        return rules_cache["r"]

    def evidence_root() -> Path:
        return Path(ctx.settings.data_dir) / "evidence"

    def bureau_only(viewer: Viewer, request: Request) -> None:
        if viewer.actor.role not in workflow.BUREAU:
            _ = face.gettext_for(request)
            raise Refused(403, _("Only the bureau judges candidates."))

    def ticket_or_404(conn: psycopg.Connection, hazard_id: int, viewer: Viewer, request: Request) -> store.TicketRecord:
        try:
            return ledger.get(conn, hazard_id, viewer.actor)
        except TicketNotFound as exc:
            _ = face.gettext_for(request)
            raise Refused(404, _("No such hazard.")) from exc

    def evidence_view(conn: psycopg.Connection, viewer: Viewer, rec: store.TicketRecord,
                      items: list[store.EvidenceRecord]) -> list[dict[str, Any]]:
        # a rule's levels are alarms of their own ("bm.gas.pressure:hi"): their limits are the rule's
        rule_id = rec.rule_id or ""
        rule = rules().get(rule_id) or rules().get(rule_id.split(":", 1)[0])
        subject_id = rec.point_id
        device: list[dict[str, Any]] | None = None
        out = []
        for e in items:
            d: dict[str, Any] = {"e": e}
            if e.kind == "readings" and e.readings:
                if device is None:  # the subject's device, read within the viewer's scope, once per ticket
                    device = qd.device_points(conn, subject_id, viewer.scope) \
                        if rule is not None and subject_id is not None else []
                d["chart"] = json.dumps(readings_chart(e, rule, subject_id, device), ensure_ascii=False,
                                        default=str)
            if e.kind == "attachment" and str((e.attachment or {}).get("uri", "")).startswith(files.URI_PREFIX):
                d["href"] = url(f"/hazards/{rec.id}/files/{e.id}")
                d["is_image"] = str((e.attachment or {}).get("content_type", "")).startswith("image/")
            out.append(d)
        return out

    # --- candidate queue ---------------------------------------------------------------------------

    @app.get("/candidates", response_class=HTMLResponse)
    def candidates(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        bureau_only(viewer, request)
        now = ctx.clock.now()
        recs, total = store.list_tickets(conn, store.Filters(status=[Status.CANDIDATE.value]), viewer.scope, now,
                                         limit=50, order="-created_at")
        items = [{"t": r, "evidence": evidence_view(conn, viewer, r, store.evidence(conn, r.id))} for r in recs]
        return render(request, "candidates.html", viewer=viewer, items=items, total=total, page="candidates",
                      source_zh=SOURCE_ZH)

    # --- ledger ------------------------------------------------------------------------------------

    def _bool(v: str | None) -> bool | None:
        return {"1": True, "0": False}.get(v or "")

    @app.get("/hazards", response_class=HTMLResponse)
    def hazards(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        q = request.query_params
        now = ctx.clock.now()
        status = q.get("status") or ""
        source = q.get("source") or ""
        f = store.Filters(status=[status] if status in {s.value for s in Status} else [],
                          source=[source] if source in {s.value for s in Source} else [],
                          enterprise_id=(q.get("enterprise") or None) if viewer.scope is None else None,
                          industry=q.get("industry") if q.get("industry") in INDUSTRY_ZH else None,
                          supervised=_bool(q.get("supervised")), overdue=_bool(q.get("overdue")))
        try:
            offset = max(0, min(int(q.get("offset") or 0), 1_000_000))
        except ValueError:
            offset = 0
        recs, total = store.list_tickets(conn, f, viewer.scope, now, limit=50, offset=offset)
        return render(request, "hazards.html", viewer=viewer, rows=recs, total=total, page="hazards",
                      q=dict(q), now=now, statuses=list(Status), sources=list(Source), status_zh=STATUS_ZH,
                      source_zh=SOURCE_ZH, industries=[i for i in wq.industries(conn, viewer.scope)],
                      industry_zh=INDUSTRY_ZH, enterprises=wq.enterprises_in_scope(conn, viewer.scope))

    def _ticket_page(request: Request, viewer: Viewer, conn: psycopg.Connection, hazard_id: int,
                     status: int = 200, error: str | None = None, missing: list[str] | None = None,
                     form: dict[str, str] | None = None) -> HTMLResponse:
        rec = ticket_or_404(conn, hazard_id, viewer, request)
        now = ctx.clock.now()
        allowed = [a for a in workflow.allowed_actions(rec.ticket(), viewer.actor) if a in FORM_ACTIONS]
        return render(request, "hazard.html", status, viewer=viewer, t=rec, page="hazards",
                      events=[e for e in store.events(conn, hazard_id)
                              if viewer.scope is None or e.action not in BUREAU_ONLY_ACTIONS],
                      evidence=evidence_view(conn, viewer, rec, store.evidence(conn, rec.id)),
                      allowed=allowed, action_zh=workflow.ACTION_ZH, status_zh=STATUS_ZH, source_zh=SOURCE_ZH,
                      level_zh=LEVEL_ZH, overdue=rec.overdue(now), error=error, missing=missing or [],
                      plan_fields=PLAN_FIELDS, form=form or {}, reward_zh=REWARD_ZH,
                      # the reporter and the reward are the bureau's (whistle-blower safety): never an enterprise's
                      show_tip=viewer.scope is None and rec.source == Source.PUBLIC_TIP.value,
                      can_upload="add_evidence" in workflow.allowed_actions(rec.ticket(), viewer.actor),
                      accept=",".join(files.TYPES), max_mb=files.MAX_BYTES // (1024 * 1024))

    @app.get("/hazards/{hazard_id}", response_class=HTMLResponse)
    def hazard(hazard_id: int, request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _ticket_page(request, viewer, conn, hazard_id)

    def _action(name: str, form: dict[str, str], now: float) -> workflow.Action:
        text = (form.get("comment") or "").strip()[:4000]
        match name:
            case "confirm":
                return workflow.Confirm(text)
            case "dismiss":
                return workflow.Dismiss(text)
            case "start_rectification":
                return workflow.StartRectification(text)
            case "submit":
                return workflow.Submit(text)
            case "verify":
                return workflow.Verify(text)
            case "send_back":
                return workflow.SendBack(text)
            case "comment":
                return workflow.Comment(text)
            case "supervise":
                try:
                    return workflow.Supervise(Level(form.get("level", "")), text)
                except ValueError as exc:
                    raise InvalidAction("请选择督办级别。 Choose a supervision level.") from exc
            case "set_reward":
                try:
                    status = RewardStatus(form.get("status", ""))
                except ValueError as exc:
                    raise InvalidAction("请选择奖励决定。 Choose a reward decision.") from exc
                raw = (form.get("amount_yuan") or "").strip()
                try:
                    amount = Decimal(raw).quantize(Decimal("0.01")) if raw else None
                except InvalidOperation as exc:
                    raise InvalidAction("奖励金额须为数字（元）。 The amount is a number of yuan.") from exc
                if amount is not None and not (Decimal(0) < amount <= Decimal(10_000_000)):
                    raise InvalidAction("奖励金额须大于 0 且不超过 1000 万元。 The amount is out of range.")
                return workflow.SetReward(status, amount, text)
        raise Refused(404, "no such action")

    @app.post("/hazards/{hazard_id}/act/{name}")
    async def act(hazard_id: int, name: str, request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _act(request, viewer, conn, form, hazard_id, name))

    def _act(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str], hazard_id: int,
             name: str) -> Response:
        check_csrf(viewer, request, form)
        if name not in FORM_ACTIONS:
            _ = face.gettext_for(request)
            raise Refused(404, _("No such action."))
        now = ctx.clock.now()
        ticket_or_404(conn, hazard_id, viewer, request)
        try:
            if name == "file_plan":
                plan, missing = parse_plan(form, now)
                if plan is None:
                    _ = face.gettext_for(request)
                    names = "、".join(PLAN_FIELDS[m] for m in missing)
                    return _ticket_page(request, viewer, conn, hazard_id, 422, missing=missing, form=form,
                                        error=_("The 五落实 plan is incomplete; missing: ") + names)
                action: workflow.Action = workflow.FilePlan(plan, (form.get("comment") or "").strip()[:4000])
            else:
                action = _action(name, form, now)
            rec, ev = ledger.act(conn, hazard_id, action, viewer.actor, now)
        except ActionForbidden as exc:
            raise Refused(403, str(exc)) from exc
        except TransitionRefused as exc:
            raise Refused(409, str(exc)) from exc
        except InvalidAction as exc:
            named = exc.context.get("missing")  # the workflow's own list (Chinese labels) of blank plan fields
            named_list = [str(m) for m in named] if isinstance(named, list) else []
            missing = [k for k, zh in PLAN_FIELDS.items() if any(zh in m for m in named_list)] \
                if name == "file_plan" else []
            return _ticket_page(request, viewer, conn, hazard_id, 422, error=str(exc), missing=missing, form=form)
        except TicketNotFound as exc:
            raise Refused(404, str(exc)) from exc
        audit(conn, request, 303, viewer=viewer, changes={"action": f"hazard_{name}", "hazard_id": hazard_id,
                                                          "to_status": rec.status, "event_id": ev.id})
        back = form.get("back") or ""
        target = back if back in ("/candidates",) else f"/hazards/{hazard_id}"
        return RedirectResponse(url(target), status_code=303)

    # --- evidence files ------------------------------------------------------------------------------

    @app.post("/hazards/{hazard_id}/files")
    async def upload(hazard_id: int, request: Request, viewer: Signed, conn: Conn) -> Response:
        length = request.headers.get("content-length")
        if length is None or not length.isdigit() or int(length) > MAX_UPLOAD_BODY:
            raise Refused(413, f"文件过大或缺少长度（最大 {files.MAX_BYTES // (1024 * 1024)} MB）。 "
                               "The upload is too large or has no length.")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise Refused(415, "上传须为 multipart/form-data。 Uploads are multipart/form-data.")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_UPLOAD_BODY:
                raise Refused(413, f"文件超过 {files.MAX_BYTES // (1024 * 1024)} MB。 The file is too large.")
        try:
            fields, up = await anyio.to_thread.run_sync(lambda: files.parse_multipart(ctype, bytes(raw)))
        except ValueError as exc:
            raise Refused(400, "上传内容无法解析。 The upload cannot be read.") from exc
        if up is None:
            _ = face.gettext_for(request)
            raise Refused(422, _("Choose a file to upload."))
        filename, claimed, body = up
        return await anyio.to_thread.run_sync(
            lambda: _upload(request, viewer, conn, fields, hazard_id, body, filename, claimed))

    def _upload(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str], hazard_id: int,
                body: bytes, filename: str | None, claimed: str | None) -> Response:
        check_csrf(viewer, request, form)
        rec = ticket_or_404(conn, hazard_id, viewer, request)
        if "add_evidence" not in workflow.allowed_actions(rec.ticket(), viewer.actor):
            _ = face.gettext_for(request)
            raise Refused(409, _("Files can no longer be added to this hazard."))
        try:
            stored = files.check(body, claimed, filename)
        except files.FileRefused as exc:
            audit(conn, request, exc.status, viewer=viewer, changes={"action": "hazard_upload", "refused": str(exc),
                                                                     "hazard_id": hazard_id})
            return _ticket_page(request, viewer, conn, hazard_id, exc.status, error=str(exc))
        files.save(evidence_root(), body, stored)
        try:
            ev = ledger.add_evidence(conn, hazard_id, ledger.EvidenceInput(
                "attachment", note=(form.get("note") or "").strip()[:1000], attachment=stored.attachment()),
                viewer.actor, ctx.clock.now())
        except (ActionForbidden, TransitionRefused) as exc:
            raise Refused(409, str(exc)) from exc
        audit(conn, request, 303, viewer=viewer, changes={"action": "hazard_upload", "hazard_id": hazard_id,
                                                          "evidence_id": ev.id, "sha256": stored.sha256,
                                                          "size_bytes": stored.size_bytes,
                                                          "content_type": stored.content_type})
        return RedirectResponse(url(f"/hazards/{hazard_id}"), status_code=303)

    @app.get("/hazards/{hazard_id}/files/{evidence_id}")
    def file(hazard_id: int, evidence_id: int, request: Request, viewer: Signed, conn: Conn) -> Response:
        rec = ticket_or_404(conn, hazard_id, viewer, request)  # not visible: 404, like the ticket itself
        item = next((e for e in store.evidence(conn, rec.id, with_readings=False)
                     if e.id == evidence_id and e.kind == "attachment"), None)
        att = (item.attachment or {}) if item else {}
        uri = str(att.get("uri", ""))
        ctype = str(att.get("content_type", ""))
        body = files.read(evidence_root(), uri[len(files.URI_PREFIX):]) \
            if uri.startswith(files.URI_PREFIX) and ctype in files.TYPES else None
        if body is None:
            _ = face.gettext_for(request)
            raise Refused(404, _("No such file."))
        disposition = "inline" if ctype.startswith("image/") else "attachment"
        name = f"evidence-{evidence_id}{files.TYPES[ctype][1]}"  # never the uploader's name in a header
        return Response(body, media_type=ctype, headers={"Cache-Control": "private, no-store",
                                                         "Content-Disposition": f'{disposition}; filename="{name}"'})

    # --- 动态清零 ------------------------------------------------------------------------------------

    @app.get("/reports/clearance", response_class=HTMLResponse)
    def clearance(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        now = ctx.clock.now()
        rows = wq.clearance_trend(conn, viewer.scope, now)
        # the series always runs over the whole window (zero where nothing was open)
        window = [datetime.fromtimestamp(now - k * 86400, CST) for k in range(30, -1, -1)]

        def key(t: datetime) -> int:
            return int(t.timestamp())

        by_t: dict[int, int] = {}
        by_ind: dict[str, dict[int, int]] = {}
        by_ent: dict[str, dict[int, int]] = {}
        current_ent: dict[tuple[str, str], int] = {}
        current_ind: dict[str, int] = {}
        for r in rows:
            k, n = key(r["t"]), int(r["n"])
            ind = INDUSTRY_ZH.get(r["industry"], r["industry"] or "—")
            by_t[k] = by_t.get(k, 0) + n
            for series, name in ((by_ind, ind), (by_ent, r["enterprise_name"])):
                series.setdefault(name, {})[k] = series.get(name, {}).get(k, 0) + n
            if k == key(window[-1]):
                ent = (r["enterprise_id"], r["enterprise_name"])
                current_ent[ent] = current_ent.get(ent, 0) + n
                current_ind[ind] = current_ind.get(ind, 0) + n
        x = [t.isoformat() for t in window]
        _ = face.gettext_for(request)
        chart = {"kind": "trend", "x": x,
                 "series": [{"name": _("All"), "data": [by_t.get(key(t), 0) for t in window]}]
                 + [{"name": ind, "data": [v.get(key(t), 0) for t in window]} for ind, v in sorted(by_ind.items())]}
        # one line per enterprise: the ten with the most open now (then by name), so the chart stays legible
        top = sorted(by_ent.items(), key=lambda kv: (-kv[1].get(key(window[-1]), 0), kv[0]))[:10]
        ent_chart = {"kind": "trend", "x": x,
                     "series": [{"name": name, "data": [v.get(key(t), 0) for t in window]} for name, v in top]}
        return render(request, "clearance.html", viewer=viewer, page="clearance",
                      chart=json.dumps(chart, ensure_ascii=False), ent_chart=json.dumps(ent_chart, ensure_ascii=False),
                      now_count=by_t.get(key(window[-1]), 0),
                      by_enterprise=sorted(current_ent.items()), by_industry=sorted(current_ind.items()))
