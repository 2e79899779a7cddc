"""警示约谈 Warning interviews: recorded by the bureau, visible to the enterprise concerned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from api.http.deps import Auth, Conn, Now, Page
from api.http.problems import not_found
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND, Int64Path, page
from api.http.schemas.common import Ident, Int64Id
from api.http.schemas.common import Page as PageOf
from api.http.schemas.hazards import InterviewCreate, InterviewPublic
from hazards import ledger, store

router = APIRouter(prefix=API_PREFIX + "/interviews", tags=["interviews"], responses=AUTH)


@router.get("", summary="约谈记录 List interviews")
def list_interviews(who: Auth, conn: Conn, p: Page, enterprise_id: Annotated[Ident | None, Query()] = None,
                    hazard_id: Annotated[Int64Id | None, Query()] = None) -> PageOf[InterviewPublic]:
    rows, total = store.list_interviews(conn, who.scope, enterprise_id=enterprise_id, hazard_id=hazard_id,
                                        limit=p.limit, offset=p.offset)
    return PageOf[InterviewPublic].model_validate(page(rows, total, p.limit, p.offset), from_attributes=True)


@router.post("", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND,
             summary="记录约谈 Record an interview (bureau)")
def create_interview(body: InterviewCreate, who: Auth, conn: Conn, now: Now) -> InterviewPublic:
    new = store.NewInterview(enterprise_id=body.enterprise_id, held_at=body.held_at.timestamp(),
                             interviewer=body.interviewer, interviewees=body.interviewees, reason=body.reason,
                             summary=body.summary, follow_up=body.follow_up, hazard_id=body.hazard_id)
    if who.scope is not None and body.enterprise_id != who.scope:
        raise not_found("企业", "Enterprise", body.enterprise_id)
    return InterviewPublic.model_validate(ledger.record_interview(conn, new, who.actor(), now), from_attributes=True)


@router.get("/{interview_id}", responses=NOT_FOUND, summary="约谈详情 Get an interview")
def get_interview(interview_id: Int64Path, who: Auth, conn: Conn) -> InterviewPublic:
    return InterviewPublic.model_validate(ledger.get_interview(conn, interview_id, who.actor()), from_attributes=True)
