"""网关 Gateways: registration, MQTT credentials (issue / rotate, shown once), enable / disable.

Credentials and the enabled flag are what the broker's password file and ACL
are generated from, so each change here re-syncs the broker when the service
runs its private one (`AppContext.broker_sync`).

A gateway id is the gateway's MQTT username and client id, so a reserved id (the collector's
`riskwatch-collector`, anything starting with `riskwatch` or `$`) is refused at registration (422
`reserved-id`), and no credential is ever issued for one. Disabling a gateway that feeds a required point
silences what the bureau requires to hear: an enterprise's request to do so is filed as a change request
(202) for the bureau; disabling any other gateway, and enabling, stay the enterprise's own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from pydantic import BaseModel, Field

from api.http import supervision
from api.http.deps import ALL, Auth, Conn, Ctx, Now, Page, require
from api.http.problems import ApiProblem, not_found
from api.http.queries import registry as q
from api.http.routers import _supervised
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, FILED, NOT_FOUND, AuditNote, IdentPath, page
from api.http.schemas.common import Ident
from api.http.schemas.common import Page as PageOf
from api.http.schemas.registry import GatewayCreate, GatewayCredentials, GatewayDisable, GatewayPublic, GatewayUpdate
from core import gateways as shared
from core import registry
from core.tokens import issue_gateway_token

router = APIRouter(prefix=API_PREFIX + "/gateways", tags=["gateways"], responses=AUTH)


def _get(conn: Conn, gateway_id: str, who: Auth) -> GatewayPublic:
    row = q.get_gateway(conn, gateway_id, who.scope)
    if row is None:
        raise not_found("网关", "Gateway", gateway_id)
    return GatewayPublic.model_validate(row)


def _sync(ctx: Ctx, conn: Conn) -> None:
    if ctx.broker_sync is not None:
        ctx.broker_sync(conn)


def refuse_bad_id(gateway_id: str) -> None:
    """422 with the reason (`reserved-id` or `invalid-id`) for an id no gateway may have."""
    refusal = registry.check_gateway_id(gateway_id)
    if refusal is not None:
        raise ApiProblem(422, refusal.code, "网关编号不可用 Gateway id not allowed", f"{refusal.zh} {refusal.en}.",
                         gateway_id=gateway_id)


@router.get("", summary="网关列表 List gateways")
def list_gateways(who: Auth, conn: Conn, p: Page, plant_id: Annotated[Ident | None, Query()] = None,
                  enterprise_id: Annotated[Ident | None, Query()] = None,
                  enabled: Annotated[bool | None, Query()] = None) -> PageOf[GatewayPublic]:
    rows, total = q.list_gateways(conn, who.scope, plant_id, enterprise_id, enabled, p.limit, p.offset)
    return PageOf[GatewayPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("", status_code=status.HTTP_201_CREATED, responses={**CONFLICT, **NOT_FOUND},
             summary="登记网关 Register a gateway (reserved ids answer 422 reserved-id)")
def create_gateway(body: GatewayCreate, who: Auth, conn: Conn) -> GatewayPublic:
    if q.get_plant(conn, body.plant_id, who.scope) is None:
        raise not_found("厂区", "Plant", body.plant_id)
    require(who, *ALL)
    refuse_bad_id(body.id)
    with conn.transaction():
        q.create_gateway(conn, body.model_dump())  # core.gateways.create_gateway: the console's too
    return _get(conn, body.id, who)


@router.get("/{gateway_id}", responses=NOT_FOUND, summary="网关详情 Get a gateway")
def get_gateway(gateway_id: IdentPath, who: Auth, conn: Conn) -> GatewayPublic:
    return _get(conn, gateway_id, who)


@router.patch("/{gateway_id}", responses=NOT_FOUND, summary="修改网关 Update a gateway")
def update_gateway(gateway_id: IdentPath, body: GatewayUpdate, who: Auth, conn: Conn) -> GatewayPublic:
    _get(conn, gateway_id, who)
    require(who, *ALL)
    with conn.transaction():
        q.update_gateway(conn, gateway_id, body.model_dump(exclude_unset=True))
    return _get(conn, gateway_id, who)


@router.post("/{gateway_id}/credentials", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND,
             summary="签发或轮换网关凭据 Issue or rotate MQTT credentials (shown once)")
def issue_credentials(gateway_id: IdentPath, who: Auth, conn: Conn, ctx: Ctx) -> GatewayCredentials:
    _get(conn, gateway_id, who)
    require(who, *ALL)
    refuse_bad_id(gateway_id)  # a row from before ids were checked: never a credential for it
    secret = registry.issue_credentials(conn, gateway_id)
    _sync(ctx, conn)
    gw = _get(conn, gateway_id, who)
    return GatewayCredentials(gateway_id=gateway_id, username=gateway_id, password=secret,
                              telemetry_topic=f"rw/v1/{gateway_id}/telemetry",
                              status_topic=f"rw/v1/{gateway_id}/status",
                              issued_at=gw.credential_issued_at or datetime.now(UTC))


class GatewayHttpToken(BaseModel):
    """A gateway's HTTP ingest token (issue 18): shown once, stored hashed; issuing again rotates it."""

    gateway_id: str
    token: str = Field(description="Authorization: Bearer <token> on POST /api/v1/ingest; shown once")
    prefix: str
    ingest_url: str = "/api/v1/ingest"


@router.post("/{gateway_id}/http-token", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND,
             summary="签发或轮换 HTTP 接入令牌 Issue or rotate the gateway's HTTP ingest token (shown once)")
def issue_http_token(gateway_id: IdentPath, who: Auth, conn: Conn, note: AuditNote) -> GatewayHttpToken:
    _get(conn, gateway_id, who)
    require(who, *ALL)
    refuse_bad_id(gateway_id)  # a row from before ids were checked: never a token for it
    token, prefix = issue_gateway_token(conn, gateway_id, who.name)
    note["object"] = {"kind": "gateway", "id": gateway_id}
    return GatewayHttpToken(gateway_id=gateway_id, token=token, prefix=prefix)


def _set_enabled(gateway_id: str, enabled: bool, who: Auth, conn: Conn, ctx: Ctx,
                 note: dict[str, Any]) -> GatewayPublic:
    was = _get(conn, gateway_id, who).enabled
    registry.set_gateway_enabled(conn, gateway_id, enabled)
    _sync(ctx, conn)
    note["object"] = {"kind": "gateway", "id": gateway_id}
    note["applied"] = supervision.diff({"enabled": was}, {"enabled": enabled}) if was != enabled else {}
    return _get(conn, gateway_id, who)


@router.post("/{gateway_id}/disable", response_model=GatewayPublic, responses={**NOT_FOUND, **FILED},
             summary="停用网关 Disable a gateway (the broker refuses it, the collector dead-letters it; an "
                     "enterprise's request for a gateway feeding a required point waits for the bureau)")
def disable_gateway(gateway_id: IdentPath, who: Auth, conn: Conn, ctx: Ctx, now: Now, note: AuditNote,
                    body: Annotated[GatewayDisable | None, Body()] = None) -> Any:
    gw = _get(conn, gateway_id, who)
    require(who, *ALL)
    if who.role == "enterprise" and shared.disable_needs_approval(gw.enabled,
                                                                  shared.feeds_required_point(conn, gateway_id)):
        with conn.transaction():
            row = _supervised.file_request(conn, who, now, note, "gateway", gateway_id, gw.enterprise_id,
                                           {"enabled": False}, {"enabled": True}, body.reason if body else None)
        note["object"] = {"kind": "gateway", "id": gateway_id}
        return _supervised.filed_response(row, {})
    return _set_enabled(gateway_id, False, who, conn, ctx, note)


@router.post("/{gateway_id}/enable", responses=NOT_FOUND, summary="启用网关 Enable a gateway")
def enable_gateway(gateway_id: IdentPath, who: Auth, conn: Conn, ctx: Ctx, note: AuditNote) -> GatewayPublic:
    _get(conn, gateway_id, who)
    require(who, *ALL)
    return _set_enabled(gateway_id, True, who, conn, ctx, note)
