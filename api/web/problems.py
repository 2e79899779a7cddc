"""The console's 数据问题 (data problems) page: dead letters in plain Chinese, unmapped tags, map a tag to a point.

One policy, two faces: the lists are `ingest.quarantine.dead_letters` / `unmapped` and the map is
`ingest.quarantine.map_tag` — what the HTTP API's `/api/v1/dead-letters`, `/api/v1/unmapped` and
`.../map` call — each with the viewer's scope, so an enterprise sees and maps only its own gateways' tags
(another's, or a forged gateway id, is 404 as if absent) and never another's payload. A payload is shown as
a cut text preview (undecodable bytes as \\xNN), escaped by Jinja like every value. Mapping creates the
point and backfills the tag's quarantined readings into `readings` in one transaction with its audit row;
the page then says how many readings were backfilled.
"""

from __future__ import annotations

from typing import Any

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from api.web import queries_problems as pq
from api.web.ledger import Face
from api.web.session import Conn, Refused, Signed, Viewer, check_csrf, read_form
from ingest import quarantine
from ingest.reasons import explain

PAGE_DEAD = 50
PAGE_UNMAPPED = 200


def _text(form: dict[str, str], name: str, max_len: int = 200) -> str:
    v = (form.get(name) or "").strip()
    if "\x00" in v or len(v) > max_len:
        raise quarantine.MapError(422, f"字段 {name} 过长或含非法字符。 The field {name} is too long or holds a NUL.")
    return v


def spec_of(form: dict[str, str]) -> quarantine.PointSpec:
    """The point a map form describes; MapError(422) for a field that is not acceptable. Pure."""
    try:
        device_id = int(_text(form, "device_id", 12) or "0")
        interval = float(_text(form, "interval_s", 20) or "1")
    except ValueError as exc:
        raise quarantine.MapError(422, "请选择设备并填写有效的上报周期。 "
                                       "Choose a device and a valid interval.") from exc
    return quarantine.PointSpec(device_id, _text(form, "quantity", 64), _text(form, "unit"),
                                _text(form, "kind", 16) or "analog", _text(form, "name") or None, interval,
                                quarantine.parse_setpoints(_text(form, "setpoints", 4000)))


def register(app: FastAPI, face: Face) -> None:
    """Add the data-problems page and its map action to the console app."""
    ctx, render, url, audit = face.ctx, face.render, face.url, face.audit

    def _page(request: Request, viewer: Viewer, conn: psycopg.Connection, status: int = 200,
              notice: str | None = None, error: str | None = None, failed: tuple[str, str] | None = None,
              form: dict[str, str] | None = None) -> HTMLResponse:
        try:
            offset = max(0, min(int(request.query_params.get("offset") or 0), 1_000_000))
        except ValueError:
            offset = 0
        dead, dead_total = quarantine.dead_letters(conn, viewer.scope, PAGE_DEAD, offset)
        for d in dead:
            d["why"] = explain(str(d["reason"]))
        tags, tags_total = quarantine.unmapped(conn, viewer.scope, PAGE_UNMAPPED)
        devices = pq.devices_by_plant(conn, [str(t["plant_id"]) for t in tags if t["plant_id"]], viewer.scope)
        return render(request, "problems.html", status, viewer=viewer, page="problems", dead=dead,
                      dead_total=dead_total, offset=offset, page_size=PAGE_DEAD, tags=tags, tags_total=tags_total,
                      devices=devices, notice=notice, error=error, failed=failed, form=form or {})

    @app.get("/data-problems", response_class=HTMLResponse)
    def problems(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _page(request, viewer, conn)

    @app.post("/data-problems/map")
    async def map_tag(request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _map(request, viewer, conn, form))

    def _map(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        _ = face.gettext_for(request)
        gateway_id, tag = (form.get("gateway_id") or "")[:64], (form.get("tag") or "")[:64]
        changes: dict[str, Any] = {"action": "map_tag", "gateway_id": gateway_id, "tag": tag}

        def audited(c: psycopg.Connection, res: quarantine.MapResult) -> None:
            audit(c, request, 200, viewer=viewer, changes={**changes, "point_id": res.point_id,
                                                           "backfilled": res.backfilled})

        try:
            res = quarantine.map_tag(conn, gateway_id, tag, spec_of(form), viewer.scope, audit=audited)
        except quarantine.MapError as exc:
            if exc.status == 404:
                raise Refused(404, _("No such unmapped tag.")) from exc
            audit(conn, request, exc.status, viewer=viewer, changes={**changes, "refused": exc.message})
            return _page(request, viewer, conn, exc.status, error=exc.message, failed=(gateway_id, tag), form=form)
        notice = _("Mapped {tag} of {gateway} to a point; readings backfilled: {n}.").format(
            tag=tag, gateway=gateway_id, n=res.backfilled)
        return _page(request, viewer, conn, notice=notice)

    _ = (ctx, url)  # the page needs neither directly: render() carries url() into the template
