"""停产报备 Production stops: an enterprise files a stop or maintenance period for a plant or a device; the bureau
approves or rejects it (audited with actor and comment); the enterprise may withdraw it.

While an approved stop holds, silence rules open no candidates and alarms in its scope are recorded as not
annunciated (`rules.stops`, `rules.engine`). An enterprise files only for its own plants (another's plant is
404) and never decides a filing, its own included (403).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.http.deps import BUREAU, Auth, Conn, Now, Page, require
from api.http.problems import ApiProblem, not_found
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND, TRANSITION, AuditNote, Int64Path, page
from api.http.schemas.common import Ident
from api.http.schemas.common import Page as PageOf
from api.http.schemas.stops import StopCreate, StopDecision, StopEventPublic, StopPublic, StopReject, StopStatus
from rules import store_stops
from rules.stops import StopAction, StopError

router = APIRouter(prefix=API_PREFIX + "/stops", tags=["stops"], responses=AUTH)


def _public(conn: Conn, r: store_stops.StopRecord, *, events: bool = False) -> StopPublic:
    def t(x: float | None) -> datetime | None:
        return None if x is None else datetime.fromtimestamp(x, UTC)

    evs = [StopEventPublic(time=datetime.fromtimestamp(e[0], UTC), action=e[1], actor=e[2], comment=e[3])
           for e in store_stops.stop_events(conn, r.id)] if events else []
    return StopPublic(id=r.id, enterprise_id=r.enterprise_id, plant_id=r.plant_id, device_id=r.device_id,
                      kind=r.kind, reason=r.reason, starts_at=datetime.fromtimestamp(r.starts_at, UTC),
                      ends_at=datetime.fromtimestamp(r.ends_at, UTC), status=r.status,
                      filed_by=r.filed_by, filed_at=datetime.fromtimestamp(r.filed_at, UTC), decided_by=r.decided_by,
                      decided_at=t(r.decided_at), decision_comment=r.decision_comment, events=evs)


def _refused(exc: StopError) -> ApiProblem:
    return ApiProblem(409, "stop-refused", "不允许的操作 Not allowed", str(exc))


@router.get("", summary="停产报备列表 List stop filings (an enterprise sees its own)")
def list_stops(who: Auth, conn: Conn, p: Page, status: Annotated[StopStatus | None, Query()] = None,
               plant_id: Annotated[Ident | None, Query()] = None) -> PageOf[StopPublic]:
    rows, total = store_stops.list_stops(conn, who.scope, status=status, plant_id=plant_id, limit=p.limit,
                                         offset=p.offset)
    return PageOf[StopPublic].model_validate(page([_public(conn, r) for r in rows], total, p.limit, p.offset))


@router.post("", status_code=201, responses={**NOT_FOUND, 409: TRANSITION[409]},
             summary="停产报备 File a stop or maintenance period for a plant or a device")
def file_stop(body: StopCreate, who: Auth, conn: Conn, now: Now, note: AuditNote) -> StopPublic:
    owner = store_stops.plant_enterprise(conn, body.plant_id)
    if owner is None or (who.scope is not None and owner != who.scope):
        raise not_found("厂区", "Plant", body.plant_id)
    try:
        sid = store_stops.file_stop(conn, plant_id=body.plant_id, device_code=body.device_code, kind=body.kind,
                                    reason=body.reason, starts=body.starts_at.timestamp(),
                                    ends=body.ends_at.timestamp(), actor=f"{who.name}（{who.role}）",
                                    filer_enterprise=who.scope, now=now)
    except store_stops.UnknownTarget as exc:
        raise ApiProblem(404, "not-found", "资源不存在 Not found", str(exc)) from None
    except StopError as exc:
        raise ApiProblem(422, "stop-invalid", "报备不完整 Invalid filing", str(exc)) from None
    rec = store_stops.get_stop(conn, sid)
    assert rec is not None
    note.update(stop={"id": sid, "plant_id": body.plant_id, "status": rec.status})
    return _public(conn, rec, events=True)


@router.get("/{stop_id}", responses=NOT_FOUND, summary="停产报备详情 A stop filing with its audit trail")
def get_stop(stop_id: Int64Path, who: Auth, conn: Conn) -> StopPublic:
    rec = store_stops.get_stop(conn, stop_id, who.scope)
    if rec is None:
        raise not_found("停产报备", "Stop filing", stop_id)
    return _public(conn, rec, events=True)


def _decide(conn: Conn, stop_id: int, action: StopAction, who: Auth, comment: str, now: float,
            note: dict[str, object]) -> StopPublic:
    if store_stops.get_stop(conn, stop_id, who.scope) is None:
        raise not_found("停产报备", "Stop filing", stop_id)
    if action != "withdraw":
        require(who, *BUREAU)
    try:
        rec = store_stops.decide(conn, stop_id, action, actor=f"{who.name}（{who.role}）", comment=comment,
                                 by_enterprise=who.scope, now=now)
    except store_stops.StopNotFound:
        raise not_found("停产报备", "Stop filing", stop_id) from None
    except StopError as exc:
        raise _refused(exc) from None
    note.update(stop={"id": stop_id, "action": action, "status": rec.status})
    return _public(conn, rec, events=True)


@router.post("/{stop_id}/approve", responses={**NOT_FOUND, **TRANSITION},
             summary="批准停产报备 Approve a filed stop (bureau only)")
def approve_stop(stop_id: Int64Path, who: Auth, conn: Conn, now: Now, note: AuditNote,
                 body: StopDecision | None = None) -> StopPublic:
    return _decide(conn, stop_id, "approve", who, body.comment if body else "", now, note)


@router.post("/{stop_id}/reject", responses={**NOT_FOUND, **TRANSITION},
             summary="驳回停产报备 Reject a filed stop, with the reason (bureau only)")
def reject_stop(stop_id: Int64Path, body: StopReject, who: Auth, conn: Conn, now: Now, note: AuditNote) -> StopPublic:
    return _decide(conn, stop_id, "reject", who, body.comment, now, note)


@router.post("/{stop_id}/withdraw", responses={**NOT_FOUND, **TRANSITION},
             summary="撤回停产报备 Withdraw a filing, or end a running stop early (production resumed)")
def withdraw_stop(stop_id: Int64Path, who: Auth, conn: Conn, now: Now, note: AuditNote,
                  body: StopDecision | None = None) -> StopPublic:
    return _decide(conn, stop_id, "withdraw", who, body.comment if body else "", now, note)
