"""设备 Devices of a plant.

A device's `kind` decides which catalog rules bind to its points: an enterprise's change to it is filed as a
change request (202) for the bureau; its name is the enterprise's to change.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from api.http.deps import ALL, Auth, Conn, Now, Page, require
from api.http.problems import not_found
from api.http.queries import registry as q
from api.http.routers import _supervised
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, FILED, NOT_FOUND, AuditNote, Int32Path, page
from api.http.schemas.common import Ident, Short
from api.http.schemas.common import Page as PageOf
from api.http.schemas.registry import DeviceCreate, DevicePublic, DeviceUpdate

router = APIRouter(prefix=API_PREFIX + "/devices", tags=["devices"], responses=AUTH)


def _get(conn: Conn, device_id: int, who: Auth) -> DevicePublic:
    row = q.get_device(conn, device_id, who.scope)
    if row is None:
        raise not_found("设备", "Device", device_id)
    return DevicePublic.model_validate(row)


@router.get("", summary="设备列表 List devices")
def list_devices(who: Auth, conn: Conn, p: Page, plant_id: Annotated[Ident | None, Query()] = None,
                 kind: Annotated[Short | None, Query()] = None) -> PageOf[DevicePublic]:
    rows, total = q.list_devices(conn, who.scope, plant_id, kind, p.limit, p.offset)
    return PageOf[DevicePublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("", status_code=status.HTTP_201_CREATED, responses={**CONFLICT, **NOT_FOUND},
             summary="登记设备 Register a device")
def create_device(body: DeviceCreate, who: Auth, conn: Conn) -> DevicePublic:
    if q.get_plant(conn, body.plant_id, who.scope) is None:
        raise not_found("厂区", "Plant", body.plant_id)
    require(who, *ALL)
    with conn.transaction():
        device_id = q.create_device(conn, body.model_dump())
    return _get(conn, device_id, who)


@router.get("/{device_id}", responses=NOT_FOUND, summary="设备详情 Get a device")
def get_device(device_id: Int32Path, who: Auth, conn: Conn) -> DevicePublic:
    return _get(conn, device_id, who)


@router.patch("/{device_id}", response_model=DevicePublic, responses={**NOT_FOUND, **FILED},
              summary="修改设备 Update a device (an enterprise's change of kind waits for the bureau)")
def update_device(device_id: Int32Path, body: DeviceUpdate, who: Auth, conn: Conn, now: Now,
                  note: AuditNote) -> Any:
    current = _get(conn, device_id, who)
    require(who, *ALL)
    filed = _supervised.patch(conn, who, now, note, "device", str(device_id), current.enterprise_id,
                              body.model_dump(exclude_unset=True), current.model_dump())
    return filed or _get(conn, device_id, who)
