"""企业 Enterprises: bureau registers them; an enterprise sees and updates only itself.

The principal responsible person (主要负责人) and actual controller (实际控制人) of record are whom a
confirmed major hazard must reach, and the credit code is who the enterprise is in law: an enterprise's
change to them is filed as a change request (202) for the bureau. Name, address and the routine contacts
are the enterprise's to change.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from api.http.deps import ALL, BUREAU, Auth, Conn, Now, Page, require
from api.http.problems import not_found
from api.http.queries import registry as q
from api.http.routers import _supervised
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, FILED, NOT_FOUND, AuditNote, IdentPath, page
from api.http.schemas.common import Page as PageOf
from api.http.schemas.registry import EnterpriseCreate, EnterprisePublic, EnterpriseUpdate

router = APIRouter(prefix=API_PREFIX + "/enterprises", tags=["enterprises"], responses=AUTH)


def _get(conn: Conn, enterprise_id: str, who: Auth) -> EnterprisePublic:
    row = q.get_enterprise(conn, enterprise_id, who.scope)
    if row is None:
        raise not_found("企业", "Enterprise", enterprise_id)
    return EnterprisePublic.model_validate(row)


@router.get("", summary="企业列表 List enterprises")
def list_enterprises(who: Auth, conn: Conn, p: Page) -> PageOf[EnterprisePublic]:
    rows, total = q.list_enterprises(conn, who.scope, p.limit, p.offset)
    return PageOf[EnterprisePublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("", status_code=status.HTTP_201_CREATED, responses=CONFLICT, summary="登记企业 Register an enterprise")
def create_enterprise(body: EnterpriseCreate, who: Auth, conn: Conn) -> EnterprisePublic:
    require(who, *BUREAU)
    with conn.transaction():
        q.create_enterprise(conn, body.model_dump())
    return _get(conn, body.id, who)


@router.get("/{enterprise_id}", responses=NOT_FOUND, summary="企业详情 Get an enterprise")
def get_enterprise(enterprise_id: IdentPath, who: Auth, conn: Conn) -> EnterprisePublic:
    return _get(conn, enterprise_id, who)


@router.patch("/{enterprise_id}", response_model=EnterprisePublic, responses={**NOT_FOUND, **FILED},
              summary="修改企业信息 Update an enterprise (an enterprise's change to its principal, controller "
                      "or credit code waits for the bureau)")
def update_enterprise(enterprise_id: IdentPath, body: EnterpriseUpdate, who: Auth, conn: Conn, now: Now,
                      note: AuditNote) -> Any:
    current = _get(conn, enterprise_id, who)
    require(who, *ALL)
    filed = _supervised.patch(conn, who, now, note, "enterprise", enterprise_id, enterprise_id,
                              body.model_dump(exclude_unset=True), current.model_dump())
    return filed or _get(conn, enterprise_id, who)
