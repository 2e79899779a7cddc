"""预警处置 Warning disposal: the enterprise's feedback on a warning, what is pending or overdue, and how fast each
enterprise answers.

Which alarms need feedback, by when, and whom an unanswered one escalates to are decided in `rules.disposal`
(policy `rules/disposal.yaml`; the engine's tick escalates). An enterprise sees and answers only its own
warnings (another's is 404, as if it did not exist); the bureau sees all and may answer on an enterprise's
behalf (the timeline names who did).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.http.deps import Auth, Conn, Now, Page
from api.http.problems import ApiProblem, not_found
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, NOT_FOUND, AuditNote, Int64Path, page
from api.http.schemas.common import Page as PageOf
from api.http.schemas.common import Timestamp
from api.http.schemas.disposal import (
    CausePublic,
    DisposalPublic,
    DisposalStatus,
    FeedbackRequest,
    PolicyPublic,
    ResponseStatsPublic,
)
from rules import disposal, store_disposal

router = APIRouter(prefix=API_PREFIX + "/disposals", tags=["disposals"], responses=AUTH)


def _policy(request: Request) -> disposal.Policy:
    """The shipped policy, read once per app (not at import: nothing reads a file then)."""
    got = getattr(request.app.state, "disposal_policy", None)
    if got is None:
        got = request.app.state.disposal_policy = disposal.load_policy()
    assert isinstance(got, disposal.Policy)
    return got


def _public(r: store_disposal.DisposalRecord, now: float) -> DisposalPublic:
    late = (r.feedback_at is None and now > r.due_at) or (r.feedback_at is not None and r.feedback_at > r.due_at)
    return DisposalPublic(
        id=r.id, rule_id=r.rule_id, subject=r.subject, plant_id=r.plant_id, enterprise_id=r.enterprise_id,
        severity=r.severity, activated_at=datetime.fromtimestamp(r.activated_at, UTC),
        due_at=datetime.fromtimestamp(r.due_at, UTC), tier_reached=r.tier_reached,
        next_at=None if r.next_at is None else datetime.fromtimestamp(r.next_at, UTC), cause=r.cause,
        measures=r.measures, handled_by=r.handled_by,
        feedback_at=None if r.feedback_at is None else datetime.fromtimestamp(r.feedback_at, UTC),
        feedback_actor=r.feedback_actor, overdue=late)


@router.get("", summary="预警处置列表 Warnings awaiting feedback (default), overdue, answered or all (scoped)")
def list_disposals(who: Auth, conn: Conn, p: Page, now: Now,
                   status: Annotated[DisposalStatus, Query()] = "pending") -> PageOf[DisposalPublic]:
    rows, total = store_disposal.list_disposals(conn, who.scope, status=status, now=now, limit=p.limit,
                                                offset=p.offset)
    return PageOf[DisposalPublic].model_validate(page([_public(r, now) for r in rows], total, p.limit, p.offset))


@router.get("/policy", summary="处置规则 The disposal policy: severities, time limits, cause categories, ladder")
def disposal_policy(who: Auth, request: Request) -> PolicyPublic:
    pol = _policy(request)
    return PolicyPublic(min_severity=pol.min_severity, limits_s=pol.limits,
                        causes=[CausePublic(code=k, label=v) for k, v in pol.causes.items()],
                        ladder=list(pol.ladder))


@router.get("/stats", summary="处置时效 Per enterprise: response times and the share handled in time (scoped)")
def disposal_stats(who: Auth, conn: Conn, now: Now,
                   since: Annotated[Timestamp | None, Query(description="default: 30 days ago")] = None,
                   until: Annotated[Timestamp | None, Query(description="default: now")] = None,
                   ) -> list[ResponseStatsPublic]:
    end = until.timestamp() if until else now
    start = since.timestamp() if since else end - timedelta(days=30).total_seconds()
    stats = disposal.response_stats(store_disposal.outcomes(conn, who.scope, start, end), now)
    return [ResponseStatsPublic.model_validate(s) for s in stats.values()]


@router.get("/{disposal_id}", responses=NOT_FOUND, summary="预警处置详情 One warning's disposal")
def get_disposal(disposal_id: Int64Path, who: Auth, conn: Conn, now: Now) -> DisposalPublic:
    r = store_disposal.get(conn, disposal_id, who.scope)
    if r is None:
        raise not_found("预警处置", "Disposal", disposal_id)
    return _public(r, now)


@router.post("/{disposal_id}/feedback", responses={**NOT_FOUND, **CONFLICT},
             summary="反馈处置情况 Feed back how the warning was handled: escalation stops")
def give_feedback(disposal_id: Int64Path, body: FeedbackRequest, who: Auth, conn: Conn, now: Now,
                  request: Request, note: AuditNote) -> DisposalPublic:
    try:
        r = store_disposal.feedback(conn, _policy(request), disposal_id, cause=body.cause, measures=body.measures,
                                    handled_by=body.handled_by, actor=f"{who.name}（{who.role}）", scope=who.scope,
                                    now=now)
    except store_disposal.DisposalNotFound:
        raise not_found("预警处置", "Disposal", disposal_id) from None
    except store_disposal.AlreadyAnswered as exc:
        raise ApiProblem(409, "disposal-answered", "已反馈 Already answered", str(exc)) from None
    except disposal.DisposalError as exc:
        raise ApiProblem(422, "disposal-invalid", "反馈不完整 Invalid feedback", str(exc)) from None
    note.update(disposal={"id": disposal_id, "cause": body.cause, "late": r.feedback_at is not None
                          and r.feedback_at > r.due_at})
    return _public(r, now)
