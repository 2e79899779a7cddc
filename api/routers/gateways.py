"""网关 Gateways: registration, MQTT credentials (issue / rotate, shown once), enable / disable.

Credentials and the enabled flag are what the broker's password file and ACL
are generated from, so each change here re-syncs the broker when the service
runs its private one (`AppContext.broker_sync`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.deps import ALL, Auth, Conn, Ctx, Page, require
from api.problems import not_found
from api.queries import registry as q
from api.routers._common import API_PREFIX, AUTH, CONFLICT, NOT_FOUND, IdentPath, page
from api.schemas.common import Ident
from api.schemas.common import Page as PageOf
from api.schemas.registry import GatewayCreate, GatewayCredentials, GatewayPublic, GatewayUpdate
from core import registry

router = APIRouter(prefix=API_PREFIX + "/gateways", tags=["gateways"], responses=AUTH)


def _get(conn: Conn, gateway_id: str, who: Auth) -> GatewayPublic:
    row = q.get_gateway(conn, gateway_id, who.scope)
    if row is None:
        raise not_found("网关", "Gateway", gateway_id)
    return GatewayPublic.model_validate(row)


def _sync(ctx: Ctx, conn: Conn) -> None:
    if ctx.broker_sync is not None:
        ctx.broker_sync(conn)


@router.get("", summary="网关列表 List gateways")
def list_gateways(who: Auth, conn: Conn, p: Page, plant_id: Annotated[Ident | None, Query()] = None,
                  enterprise_id: Annotated[Ident | None, Query()] = None,
                  enabled: Annotated[bool | None, Query()] = None) -> PageOf[GatewayPublic]:
    rows, total = q.list_gateways(conn, who.scope, plant_id, enterprise_id, enabled, p.limit, p.offset)
    return PageOf[GatewayPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("", status_code=status.HTTP_201_CREATED, responses={**CONFLICT, **NOT_FOUND},
             summary="登记网关 Register a gateway")
def create_gateway(body: GatewayCreate, who: Auth, conn: Conn) -> GatewayPublic:
    if q.get_plant(conn, body.plant_id, who.scope) is None:
        raise not_found("厂区", "Plant", body.plant_id)
    require(who, *ALL)
    with conn.transaction():
        q.create_gateway(conn, body.model_dump())
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
    secret = registry.issue_credentials(conn, gateway_id)
    _sync(ctx, conn)
    gw = _get(conn, gateway_id, who)
    return GatewayCredentials(gateway_id=gateway_id, username=gateway_id, password=secret,
                              telemetry_topic=f"rw/v1/{gateway_id}/telemetry",
                              status_topic=f"rw/v1/{gateway_id}/status",
                              issued_at=gw.credential_issued_at or datetime.now(UTC))


def _set_enabled(gateway_id: str, enabled: bool, who: Auth, conn: Conn, ctx: Ctx) -> GatewayPublic:
    _get(conn, gateway_id, who)
    require(who, *ALL)
    registry.set_gateway_enabled(conn, gateway_id, enabled)
    _sync(ctx, conn)
    return _get(conn, gateway_id, who)


@router.post("/{gateway_id}/disable", responses=NOT_FOUND,
             summary="停用网关 Disable a gateway (the broker refuses it, the collector dead-letters it)")
def disable_gateway(gateway_id: IdentPath, who: Auth, conn: Conn, ctx: Ctx) -> GatewayPublic:
    return _set_enabled(gateway_id, False, who, conn, ctx)


@router.post("/{gateway_id}/enable", responses=NOT_FOUND, summary="启用网关 Enable a gateway")
def enable_gateway(gateway_id: IdentPath, who: Auth, conn: Conn, ctx: Ctx) -> GatewayPublic:
    return _set_enabled(gateway_id, True, who, conn, ctx)
