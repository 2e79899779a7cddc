"""测点 Points: what a gateway's tag means, and per-point setpoint overrides.

Setpoints, `required`, `interval_s` and `states` are how the bureau supervises a point: an enterprise's
change to them is filed as a change request (202) and applied only when the bureau approves it. Creating a
point stays open to the enterprise: it adds supervision, never removes it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from api.http.deps import ALL, Auth, Conn, Now, Page, require
from api.http.problems import ApiProblem, not_found
from api.http.queries import registry as q
from api.http.routers import _supervised
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, FILED, NOT_FOUND, AuditNote, Int32Path, page
from api.http.schemas.common import Ident, Int32Id
from api.http.schemas.common import Page as PageOf
from api.http.schemas.registry import PointCreate, PointPublic, PointUpdate

router = APIRouter(prefix=API_PREFIX + "/points", tags=["points"], responses=AUTH)


def _get(conn: Conn, point_id: int, who: Auth) -> PointPublic:
    row = q.get_point(conn, point_id, who.scope)
    if row is None:
        raise not_found("测点", "Point", point_id)
    return PointPublic.model_validate(row)


@router.get("", summary="测点列表 List points")
def list_points(who: Auth, conn: Conn, p: Page, device_id: Annotated[Int32Id | None, Query()] = None,
                gateway_id: Annotated[Ident | None, Query()] = None,
                plant_id: Annotated[Ident | None, Query()] = None) -> PageOf[PointPublic]:
    rows, total = q.list_points(conn, who.scope, device_id, gateway_id, plant_id, p.limit, p.offset)
    return PageOf[PointPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("", status_code=status.HTTP_201_CREATED, responses={**CONFLICT, **NOT_FOUND},
             summary="登记测点 Register a point")
def create_point(body: PointCreate, who: Auth, conn: Conn) -> PointPublic:
    device = q.get_device(conn, body.device_id, who.scope)
    if device is None:
        raise not_found("设备", "Device", body.device_id)
    gw = q.get_gateway(conn, body.gateway_id, who.scope)
    if gw is None:
        raise not_found("网关", "Gateway", body.gateway_id)
    require(who, *ALL)
    if gw["plant_id"] != device["plant_id"]:
        raise ApiProblem(422, "gateway-not-in-plant", "请求不完整 Invalid request",
                         f"网关 {body.gateway_id} 不属于设备所在厂区 {device['plant_id']}。 "
                         f"Gateway {body.gateway_id} is not in the device's plant {device['plant_id']}.")
    with conn.transaction():
        point_id = q.create_point(conn, body.model_dump())
    return _get(conn, point_id, who)


@router.get("/{point_id}", responses=NOT_FOUND, summary="测点详情 Get a point")
def get_point(point_id: Int32Path, who: Auth, conn: Conn) -> PointPublic:
    return _get(conn, point_id, who)


@router.patch("/{point_id}", response_model=PointPublic, responses={**NOT_FOUND, **FILED},
              summary="修改测点 Update a point (setpoints, interval, ...; an enterprise's change to supervised "
                      "fields waits for the bureau)")
def update_point(point_id: Int32Path, body: PointUpdate, who: Auth, conn: Conn, now: Now, note: AuditNote) -> Any:
    current = _get(conn, point_id, who)
    require(who, *ALL)
    filed = _supervised.patch(conn, who, now, note, "point", str(point_id), current.enterprise_id,
                              body.model_dump(exclude_unset=True), current.model_dump())
    return filed or _get(conn, point_id, who)
