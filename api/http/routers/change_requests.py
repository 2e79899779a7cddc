"""变更申请 Change requests: an enterprise's change to a field that decides how it is supervised.

The enterprise files them (by PATCHing a supervised field, or disabling a gateway that feeds a required
point) and sees its own; the bureau sees all and approves or rejects each one. Approval applies the change
in the same transaction that records the decision, and re-syncs the broker when a gateway was turned off.
A request whose fields moved since it was filed (someone else changed them) cannot be approved: 409, file
it again. Decided requests never change again (a trigger refuses it).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.http import supervision
from api.http.deps import BUREAU, Auth, Conn, Ctx, Now, Page, require
from api.http.problems import ApiProblem, not_found
from api.http.queries import change_requests as cq
from api.http.queries import registry as q
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND, TRANSITION, AuditNote, Int64Path, page
from api.http.schemas.change_requests import Approve, ChangeRequestPublic, ChangeStatus, ObjectKind, Reject
from api.http.schemas.common import Ident
from api.http.schemas.common import Page as PageOf

router = APIRouter(prefix=API_PREFIX + "/change-requests", tags=["change-requests"], responses=AUTH)


def _get(conn: Conn, request_id: int, who: Auth, *, lock: bool = False) -> dict[str, Any]:
    row = cq.get(conn, request_id, who.scope, lock=lock)
    if row is None:
        raise not_found("变更申请", "Change request", request_id)
    return row


def _pending(row: dict[str, Any]) -> None:
    if row["status"] != "pending":
        raise ApiProblem(409, "change-request-decided", "不允许的状态变更 Transition not allowed",
                         f"变更申请 #{row['id']} 已{ {'approved': '批准', 'rejected': '驳回'}[row['status']] }，"
                         f"不能再次审批。 Change request #{row['id']} is already {row['status']}.")


@router.get("", summary="变更申请列表 List change requests (an enterprise sees its own)")
def list_change_requests(who: Auth, conn: Conn, p: Page,
                         status: Annotated[ChangeStatus | None, Query()] = None,
                         enterprise_id: Annotated[Ident | None, Query()] = None,
                         object_kind: Annotated[ObjectKind | None, Query()] = None) -> PageOf[ChangeRequestPublic]:
    rows, total = cq.list_requests(conn, who.scope, status, enterprise_id, object_kind, p.limit, p.offset)
    return PageOf[ChangeRequestPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.get("/{request_id}", responses=NOT_FOUND, summary="变更申请详情 Get a change request")
def get_change_request(request_id: Int64Path, who: Auth, conn: Conn) -> ChangeRequestPublic:
    return ChangeRequestPublic.model_validate(_get(conn, request_id, who))


@router.post("/{request_id}/approve", responses={**NOT_FOUND, **TRANSITION},
             summary="批准变更申请 Approve: the change applies now (bureau only)")
def approve_change_request(request_id: Int64Path, who: Auth, conn: Conn, ctx: Ctx, now: Now, note: AuditNote,
                           body: Approve | None = None) -> ChangeRequestPublic:
    with conn.transaction():
        row = _get(conn, request_id, who, lock=True)
        require(who, *BUREAU)
        _pending(row)
        kind, object_id = row["object_kind"], row["object_id"]
        current = q.get_object(conn, kind, object_id, None)
        if current is None:
            raise ApiProblem(409, "change-request-stale", "冲突 Conflict",
                             f"变更申请 #{request_id} 的对象已不存在。 The object of change request #{request_id} "
                             "no longer exists.")
        moved = supervision.stale_fields(row["old_values"], current)
        if moved:
            raise ApiProblem(409, "change-request-stale", "冲突 Conflict",
                             f"申请提交后这些字段已被修改：{', '.join(moved)}；请驳回并重新申请。 "
                             f"Since change request #{request_id} was filed, {', '.join(moved)} changed: "
                             "reject it and file a new one.", fields=moved)
        q.apply_changes(conn, kind, object_id, dict(row["changes"]))
        decided = cq.decide(conn, request_id, "approved", who, body.comment if body else None, now)
    if kind == "gateway" and "enabled" in row["changes"] and ctx.broker_sync is not None:
        ctx.broker_sync(conn)
    note.update(change_request={"id": request_id, "status": "approved"}, object={"kind": kind, "id": object_id},
                applied=supervision.diff(row["old_values"], row["changes"]))
    return ChangeRequestPublic.model_validate(decided)


@router.post("/{request_id}/reject", responses={**NOT_FOUND, **TRANSITION},
             summary="驳回变更申请 Reject, with the reason (bureau only); nothing changes")
def reject_change_request(request_id: Int64Path, body: Reject, who: Auth, conn: Conn, now: Now,
                          note: AuditNote) -> ChangeRequestPublic:
    with conn.transaction():
        row = _get(conn, request_id, who, lock=True)
        require(who, *BUREAU)
        _pending(row)
        decided = cq.decide(conn, request_id, "rejected", who, body.comment, now)
    note.update(change_request={"id": request_id, "status": "rejected",
                                "fields": supervision.diff(row["old_values"], row["changes"])},
                object={"kind": row["object_kind"], "id": row["object_id"]})
    return ChangeRequestPublic.model_validate(decided)
