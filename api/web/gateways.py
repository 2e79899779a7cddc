"""The console's gateway and point pages: attach a gateway, its credentials shown once, rotate, enable and
disable; points with their live values.

One policy, two faces: a gateway is registered, checked and disabled through `core.gateways` and its
credentials issued through `core.registry.issue_credentials` — the functions the HTTP API's router calls —
and the broker's password file and ACL are regenerated through the host app's `broker_sync`, as the API does.
An enterprise's request to disable a gateway that feeds a required point is filed as a change request
(变更申请) for the bureau, exactly as the API files it, and the page says so.

Secrets: the password exists only in the answer to the POST that issued it (`Cache-Control: no-store`); it
is never put in a URL, a log line, the audit row or the session, and no GET shows it again (the hash is all
that is stored). Reads are scoped in SQL (`api.web.queries_registry`): another enterprise's gateway, plant or
point is 404 in every page, fragment and form, and a forged plant id cannot attach a gateway to it.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.web import queries as wq
from api.web import queries_registry as rq
from api.web.ledger import Face
from api.web.session import Conn, Refused, Signed, Viewer, check_csrf, read_form
from core import gateways as shared
from core import registry
from core.settings import MqttUrl, Settings

log = logging.getLogger("riskwatch.web.gateways")

#: A gateway heard from within this long, and not reported offline, shows as online.
ONLINE_WINDOW_S = 300.0
#: A point's latest reading older than this many reporting intervals (at least STALE_MIN_S) is stale.
STALE_INTERVALS = 3.0
STALE_MIN_S = 60.0
POLL_S = 5
EXAMPLE_TAG = "TT-101"
_SAFE_TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
GATEWAY_STATUS_KEYS = {"online": "Online", "offline": "Offline", "never": "Never connected",
                       "disabled": "Disabled"}
POINT_STATUS_KEYS = {"ok": "Live", "stale": "Stale", "none": "No data yet", "bad": "Bad quality",
                     "uncertain": "Uncertain quality"}
#: Message ids held in the dicts above (tests check the catalogs hold them).
MESSAGE_IDS = (*GATEWAY_STATUS_KEYS.values(), *POINT_STATUS_KEYS.values())


@dataclass(frozen=True)
class Broker:
    """Where gateways connect: the operator's public address (RISKWATCH_MQTT_PUBLIC_URL) or, by default, the
    host and port of the collector's own broker URL — never its credentials."""

    scheme: str
    host: str
    port: int
    tls: bool
    cafile: Path | None


def broker_of(settings: Settings) -> Broker | None:
    """The broker address to tell a gateway, or None when none is configured."""
    url = settings.mqtt_public_url or settings.mqtt_url
    if not url:
        return None
    pub = MqttUrl.parse(url)
    own = MqttUrl.parse(settings.mqtt_url) if settings.mqtt_url else None
    ca = pub.cafile or (own.cafile if own is not None else None)
    return Broker(pub.scheme, pub.host, pub.port, pub.tls, Path(ca) if ca else None)


def example_body(tag: str, value: float = 21.5) -> dict[str, Any]:
    """A JSON v1 telemetry message (README, gateway contract): the message's `ts` in epoch milliseconds."""
    return {"ts": 1764460800123, "seq": 1, "readings": [{"tag": tag, "v": value}]}


def pub_snippet(broker: Broker | None, gateway_id: str, secret: str, tag: str = EXAMPLE_TAG) -> str:
    """A `mosquitto_pub` line a shell runs as is (with the CA saved as ca.crt beside it): client id = username =
    gateway id, QoS 1, the gateway's telemetry topic, a JSON v1 body stamped with the current time."""
    tag = tag if _SAFE_TAG.fullmatch(tag) else EXAMPLE_TAG
    host, port = (broker.host, broker.port) if broker else ("<broker-host>", 8883)
    parts = ["mosquitto_pub", "-h", shlex.quote(host), "-p", str(port)]
    if broker is None or broker.tls:
        parts += ["--cafile", "ca.crt"]
    parts += ["-i", shlex.quote(gateway_id), "-u", shlex.quote(gateway_id), "-P", shlex.quote(secret),
              "-q", "1", "-t", shlex.quote(f"rw/v1/{gateway_id}/telemetry")]
    body = '\'{"ts": \'"$(date +%s%3N)"\', "readings": [{"tag": "' + tag + '", "v": 21.5}]}\''
    return " ".join(parts) + " -m " + body


def mtls_snippet(host: str, port: int, gateway_id: str, tag: str = EXAMPLE_TAG) -> str:
    """The same message over the mutual-TLS listener: no password, the certificate's CN is the username (saved as
    ca.crt, <gateway>.crt and <gateway>.key beside the shell)."""
    tag = tag if _SAFE_TAG.fullmatch(tag) else EXAMPLE_TAG
    gw = shlex.quote(gateway_id)
    parts = ["mosquitto_pub", "-h", shlex.quote(host), "-p", str(port), "--cafile", "ca.crt",
             "--cert", shlex.quote(f"{gateway_id}.crt"), "--key", shlex.quote(f"{gateway_id}.key"), "-i", gw,
             "-q", "1", "-t", shlex.quote(f"rw/v1/{gateway_id}/telemetry")]
    body = '\'{"ts": \'"$(date +%s%3N)"\', "readings": [{"tag": "' + tag + '", "v": 21.5}]}\''
    return " ".join(parts) + " -m " + body


def gateway_status(row: dict[str, Any], now: float) -> str:
    """online | offline | never | disabled, from the enabled flag, the gateway's retained status, the engine's
    offline state and the time of its last live message."""
    if not row["enabled"]:
        return "disabled"
    seen = row.get("last_seen")
    if seen is None:
        return "never"
    if row.get("reported_online") is False or row.get("engine_online") is False:
        return "offline"
    return "online" if now - seen.timestamp() <= ONLINE_WINDOW_S else "offline"


def point_status(row: dict[str, Any], now: float) -> str:
    """ok | stale | none | bad | uncertain for a point's latest reading."""
    t = row.get("reading_time")
    if t is None:
        return "none"
    if now - t.timestamp() > max(STALE_INTERVALS * float(row.get("interval_s") or 1.0), STALE_MIN_S):
        return "stale"
    return {2: "bad", 1: "uncertain"}.get(int(row.get("quality") or 0), "ok")


def limits_text(setpoints: Any) -> str:
    """A point's own limits (setpoint overrides), e.g. `hi 80 · hihi 95`; empty when it has none."""
    if not isinstance(setpoints, dict):
        return ""
    return " · ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in sorted(setpoints.items()))


def _field(form: dict[str, str], name: str, max_len: int = 200) -> str:
    """A short text field: trimmed; NUL refused (PostgreSQL text cannot hold it) and over-long text refused."""
    v = (form.get(name) or "").strip()
    if "\x00" in v or len(v) > max_len:
        raise Refused(422, f"字段 {name} 过长或含非法字符。 The field {name} is too long or holds a NUL.")
    return v


def register(app: FastAPI, face: Face) -> None:
    """Add the gateway and point pages to the console app."""
    ctx, render, url, audit = face.ctx, face.render, face.url, face.audit

    def _(request: Request, msg: str) -> str:
        return face.gettext_for(request)(msg)

    def gateway_or_404(conn: psycopg.Connection, gateway_id: str, viewer: Viewer, request: Request) -> dict[str, Any]:
        gw = rq.get_gateway(conn, gateway_id[:200], viewer.scope)
        if gw is None:  # missing, or another enterprise's: the same answer
            raise Refused(404, _(request, "No such gateway."))
        return gw

    def sync(conn: psycopg.Connection) -> None:
        if ctx.broker_sync is not None:
            ctx.broker_sync(conn)

    def view(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = ctx.clock.now()
        labels = {st: _(request, key) for st, key in GATEWAY_STATUS_KEYS.items()}  # once per page, not per row
        out = []
        for r in rows:
            st = gateway_status(r, now)
            out.append({**r, "status": st, "status_key": GATEWAY_STATUS_KEYS[st], "status_label": labels[st]})
        return out

    # --- gateways ---------------------------------------------------------------------------------------

    def _list_page(request: Request, viewer: Viewer, conn: psycopg.Connection, status: int = 200,
                   error: str | None = None, form: dict[str, str] | None = None) -> HTMLResponse:
        q = request.query_params
        enterprise = (q.get("enterprise") or None) if viewer.scope is None else None
        plant = q.get("plant") or None
        if plant is not None and rq.get_plant(conn, plant[:200], viewer.scope) is None:
            raise Refused(404, _(request, "No such plant."))
        rows = view(request, rq.list_gateways(conn, viewer.scope, enterprise[:200] if enterprise else None, plant))
        return render(request, "gateways.html", status, viewer=viewer, page="gateways", rows=rows, q=dict(q),
                      plants=rq.plants_in_scope(conn, viewer.scope), error=error, form=form or {},
                      enterprises=wq.enterprises_in_scope(conn, viewer.scope))

    @app.get("/gateways", response_class=HTMLResponse)
    def gateways(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _list_page(request, viewer, conn)

    def _client_cert(gateway_id: str) -> dict[str, Any] | None:
        """With the mutual-TLS listener on, a client certificate (CN = the gateway id) and its key, signed now by the
        private CA and shown once on the same page as the password: neither is kept anywhere."""
        certs = ctx.client_certs
        if certs is None:
            return None
        issued = certs.issue(gateway_id)
        broker = broker_of(ctx.settings)
        return {"cert": issued.cert_pem.decode(), "key": issued.key_pem.decode(), "port": certs.port,
                "snippet": mtls_snippet(broker.host if broker else "<broker-host>", certs.port, gateway_id)}

    def _secret_page(request: Request, viewer: Viewer, conn: psycopg.Connection, gateway_id: str, secret: str,
                     status: int, rotated: bool) -> HTMLResponse:
        gw = view(request, [gateway_or_404(conn, gateway_id, viewer, request)])[0]
        mtls = _client_cert(gateway_id)
        points = rq.list_points(conn, viewer.scope, gateway_id=gateway_id, limit=1)
        tag = str(points[0]["tag"]) if points else EXAMPLE_TAG
        broker = broker_of(ctx.settings)
        resp = render(request, "gateway_secret.html", status, viewer=viewer, page="gateways", gw=gw, secret=secret,
                      broker=broker, rotated=rotated, snippet=pub_snippet(broker, gateway_id, secret, tag),
                      topic=f"rw/v1/{gateway_id}/telemetry", status_topic=f"rw/v1/{gateway_id}/status",
                      body=json.dumps(example_body(tag), ensure_ascii=False, indent=2), mtls=mtls)
        resp.headers["Cache-Control"] = "no-store, max-age=0"
        resp.headers["Pragma"] = "no-cache"
        return resp

    @app.post("/gateways")
    async def attach(request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _attach(request, viewer, conn, form))

    def _attach(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str]) -> Response:
        check_csrf(viewer, request, form)
        gateway_id, name, plant_id = _field(form, "id"), _field(form, "name") or None, _field(form, "plant_id")
        if rq.get_plant(conn, plant_id, viewer.scope) is None:  # another enterprise's plant: as if absent
            raise Refused(404, _(request, "No such plant."))
        keep = {"id": gateway_id, "name": name or "", "plant_id": plant_id}
        try:
            with conn.transaction():
                shared.create_gateway(conn, {"id": gateway_id, "plant_id": plant_id, "name": name})
                secret = registry.issue_credentials(conn, gateway_id)
        except shared.GatewayIdRefused as exc:
            audit(conn, request, 422, viewer=viewer, changes={"action": "gateway_attach", "refused": exc.refusal.code,
                                                              "gateway_id": gateway_id[:64]})
            return _list_page(request, viewer, conn, 422, error=str(exc), form=keep)
        except psycopg.errors.UniqueViolation:
            audit(conn, request, 409, viewer=viewer, changes={"action": "gateway_attach", "refused": "exists",
                                                              "gateway_id": gateway_id})
            return _list_page(request, viewer, conn, 409, form=keep,
                              error=_(request, "A gateway with this id exists already; choose another id."))
        sync(conn)
        audit(conn, request, 201, viewer=viewer, changes={"action": "gateway_attach", "gateway_id": gateway_id,
                                                          "plant_id": plant_id, "credentials": "issued"})
        log.info("gateway %s attached to plant %s by %s (credentials issued)", gateway_id, plant_id,
                 viewer.user.username)
        return _secret_page(request, viewer, conn, gateway_id, secret, 201, rotated=False)

    def _detail(request: Request, viewer: Viewer, conn: psycopg.Connection, gateway_id: str, status: int = 200,
                notice: str | None = None) -> HTMLResponse:
        gw = view(request, [gateway_or_404(conn, gateway_id, viewer, request)])[0]
        points = _points_view(request, rq.list_points(conn, viewer.scope, gateway_id=gateway_id))
        return render(request, "gateway.html", status, viewer=viewer, page="gateways", gw=gw, rows=points,
                      notice=notice, feeds_required=shared.feeds_required_point(conn, gateway_id),
                      point_status_keys=POINT_STATUS_KEYS)

    @app.get("/gateways/{gateway_id}", response_class=HTMLResponse)
    def gateway(gateway_id: str, request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return _detail(request, viewer, conn, gateway_id)

    @app.post("/gateways/{gateway_id}/credentials")
    async def rotate(gateway_id: str, request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _rotate(request, viewer, conn, form, gateway_id))

    def _rotate(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str],
                gateway_id: str) -> Response:
        check_csrf(viewer, request, form)
        gateway_or_404(conn, gateway_id, viewer, request)
        try:
            shared.refuse_bad_id(gateway_id)  # a row from before ids were checked: never a credential for it
        except shared.GatewayIdRefused as exc:
            raise Refused(422, str(exc)) from exc
        secret = registry.issue_credentials(conn, gateway_id)
        sync(conn)
        audit(conn, request, 201, viewer=viewer, changes={"action": "gateway_rotate", "gateway_id": gateway_id,
                                                          "credentials": "rotated"})
        log.info("gateway %s credentials rotated by %s", gateway_id, viewer.user.username)
        return _secret_page(request, viewer, conn, gateway_id, secret, 201, rotated=True)

    @app.post("/gateways/{gateway_id}/{action}")
    async def toggle(gateway_id: str, action: str, request: Request, viewer: Signed, conn: Conn) -> Response:
        form = await read_form(request)
        return await anyio.to_thread.run_sync(lambda: _toggle(request, viewer, conn, form, gateway_id, action))

    def _toggle(request: Request, viewer: Viewer, conn: psycopg.Connection, form: dict[str, str], gateway_id: str,
                action: str) -> Response:
        check_csrf(viewer, request, form)
        if action not in ("enable", "disable"):
            raise Refused(404, _(request, "No such action."))
        gw = gateway_or_404(conn, gateway_id, viewer, request)
        enabled = action == "enable"
        if not enabled and viewer.actor.role == "enterprise" and shared.disable_needs_approval(
                gw["enabled"], shared.feeds_required_point(conn, gateway_id)):
            reason = _field(form, "reason", 4000) or None
            with conn.transaction():
                row = shared.file_change_request(conn, gw["enterprise_id"], "gateway", gateway_id, {"enabled": False},
                                                 {"enabled": True}, reason, shared.Requester(viewer.actor.name),
                                                 ctx.clock.now())
            audit(conn, request, 202, viewer=viewer, changes={
                "action": "gateway_disable", "object": {"kind": "gateway", "id": gateway_id},
                "change_request": {"id": row["id"], "status": "pending",
                                   "fields": {"enabled": {"old": True, "new": False}}}})
            notice = _(request, "This gateway feeds a required point: disabling it needs the bureau's approval. "
                                "Change request filed:") + f" #{row['id']}"
            return _detail(request, viewer, conn, gateway_id, 202, notice=notice)
        registry.set_gateway_enabled(conn, gateway_id, enabled)
        sync(conn)
        audit(conn, request, 303, viewer=viewer, changes={
            "action": f"gateway_{action}", "object": {"kind": "gateway", "id": gateway_id},
            "applied": {"enabled": {"old": gw["enabled"], "new": enabled}} if gw["enabled"] != enabled else {}})
        return RedirectResponse(url(f"/gateways/{gateway_id}"), status_code=303)

    @app.get("/broker/ca.crt")
    def broker_ca(request: Request, viewer: Signed) -> Response:
        """The CA certificate that signed the broker's (public: what a gateway verifies the broker with)."""
        broker = broker_of(ctx.settings)
        pem = broker.cafile.read_bytes() if broker and broker.cafile and broker.cafile.is_file() else b""
        if not pem.startswith(b"-----BEGIN CERTIFICATE-----") or b"PRIVATE KEY" in pem:  # never a key by mistake
            raise Refused(404, _(request, "No CA certificate is configured for the broker."))
        return Response(pem, media_type="application/x-pem-file",
                        headers={"Content-Disposition": 'attachment; filename="ca.crt"', "Cache-Control": "no-store"})

    # --- points -----------------------------------------------------------------------------------------

    def _points_view(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = ctx.clock.now()
        labels = {st: _(request, key) for st, key in POINT_STATUS_KEYS.items()}  # once per page, not per row
        out = []
        for r in rows:
            st = point_status(r, now)
            out.append({**r, "status": st, "status_key": POINT_STATUS_KEYS[st], "status_label": labels[st],
                        "limits": limits_text(r["setpoints"])})
        return out

    def _filters(request: Request, viewer: Viewer, conn: psycopg.Connection) -> tuple[str | None, str | None]:
        q = request.query_params
        plant, gateway_id = (q.get("plant") or None), (q.get("gateway") or None)
        if plant is not None and rq.get_plant(conn, plant[:200], viewer.scope) is None:
            raise Refused(404, _(request, "No such plant."))
        if gateway_id is not None:
            gateway_or_404(conn, gateway_id, viewer, request)
        return plant, gateway_id

    @app.get("/points", response_class=HTMLResponse)
    def points(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        plant, gateway_id = _filters(request, viewer, conn)
        rows = _points_view(request, rq.list_points(conn, viewer.scope, plant, gateway_id))
        return render(request, "points.html", viewer=viewer, page="points", rows=rows, plant=plant or "",
                      gateway=gateway_id or "", plants=rq.plants_in_scope(conn, viewer.scope),
                      gateways=rq.list_gateways(conn, viewer.scope, None, plant), poll_s=POLL_S,
                      rows_params={k: v for k, v in (("plant", plant), ("gateway", gateway_id)) if v})

    @app.get("/points/rows", response_class=HTMLResponse)
    def points_rows(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        plant, gateway_id = _filters(request, viewer, conn)
        return render(request, "_points_rows.html", viewer=viewer,
                      rows=_points_view(request, rq.list_points(conn, viewer.scope, plant, gateway_id)))
