"""厂区 Plants of an enterprise.

A plant's `industry` decides which catalog (一行业一清单) binds: an enterprise's change to it is filed as a
change request (202) for the bureau; name and address are the enterprise's to change.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from api.http.deps import ALL, BUREAU, Auth, Conn, Now, Page, require
from api.http.problems import not_found
from api.http.queries import registry as q
from api.http.routers import _supervised
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, FILED, NOT_FOUND, AuditNote, IdentPath, page
from api.http.schemas.common import Ident
from api.http.schemas.common import Page as PageOf
from api.http.schemas.registry import Industry, PlantCreate, PlantPublic, PlantUpdate

router = APIRouter(prefix=API_PREFIX + "/plants", tags=["plants"], responses=AUTH)


def _get(conn: Conn, plant_id: str, who: Auth) -> PlantPublic:
    row = q.get_plant(conn, plant_id, who.scope)
    if row is None:
        raise not_found("厂区", "Plant", plant_id)
    return PlantPublic.model_validate(row)


@router.get("", summary="厂区列表 List plants")
def list_plants(who: Auth, conn: Conn, p: Page, enterprise_id: Annotated[Ident | None, Query()] = None,
                industry: Annotated[Industry | None, Query()] = None) -> PageOf[PlantPublic]:
    rows, total = q.list_plants(conn, who.scope, enterprise_id, industry, p.limit, p.offset)
    return PageOf[PlantPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("", status_code=status.HTTP_201_CREATED, responses={**CONFLICT, **NOT_FOUND},
             summary="登记厂区 Register a plant")
def create_plant(body: PlantCreate, who: Auth, conn: Conn) -> PlantPublic:
    if q.get_enterprise(conn, body.enterprise_id, who.scope) is None:
        raise not_found("企业", "Enterprise", body.enterprise_id)
    require(who, *BUREAU)
    with conn.transaction():
        q.create_plant(conn, body.model_dump())
    return _get(conn, body.id, who)


@router.get("/{plant_id}", responses=NOT_FOUND, summary="厂区详情 Get a plant")
def get_plant(plant_id: IdentPath, who: Auth, conn: Conn) -> PlantPublic:
    return _get(conn, plant_id, who)


@router.patch("/{plant_id}", response_model=PlantPublic, responses={**NOT_FOUND, **FILED},
              summary="修改厂区 Update a plant (an enterprise's change of industry waits for the bureau)")
def update_plant(plant_id: IdentPath, body: PlantUpdate, who: Auth, conn: Conn, now: Now, note: AuditNote) -> Any:
    current = _get(conn, plant_id, who)
    require(who, *ALL)
    filed = _supervised.patch(conn, who, now, note, "plant", plant_id, current.enterprise_id,
                              body.model_dump(exclude_unset=True), current.model_dump())
    return filed or _get(conn, plant_id, who)
