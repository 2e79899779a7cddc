"""审计日志 The audit log of mutating calls (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.http.deps import Auth, Conn, Page, require
from api.http.queries import telemetry as q
from api.http.routers._common import API_PREFIX, AUTH, page
from api.http.schemas.admin import AuditPublic
from api.http.schemas.common import Int32Id
from api.http.schemas.common import Page as PageOf

router = APIRouter(prefix=API_PREFIX + "/audit", tags=["audit"], responses=AUTH)


@router.get("", summary="审计日志 Audit log, newest first (admin)")
def list_audit(who: Auth, conn: Conn, p: Page,
               token_id: Annotated[Int32Id | None, Query()] = None) -> PageOf[AuditPublic]:
    require(who, "admin")
    rows, total = q.list_audit(conn, p.limit, p.offset, token_id)
    return PageOf[AuditPublic].model_validate(page(rows, total, p.limit, p.offset))
