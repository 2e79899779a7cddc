"""重大事故隐患 Hazard ledger: open from each source, take workflow actions, comment, attach evidence.

Handlers translate requests into `hazards.ledger` calls; the workflow's own
refusals become problem documents (403 role, 409 status, 422 incomplete).
Every action answers with the ticket after it and the event appended.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from api.http.auth import Principal
from api.http.deps import BUREAU, Auth, Conn, Ctx, Now, Page, require
from api.http.problems import ApiProblem, not_found
from api.http.queries import telemetry as tq
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND, TRANSITION, Int64Path, page
from api.http.schemas.common import Ident, Short, Timestamp
from api.http.schemas.common import Page as PageOf
from api.http.schemas.hazards import (
    AlarmEvidenceCreate,
    AttachmentEvidenceCreate,
    CommentOnly,
    CommentRequest,
    ConfirmRequest,
    DismissRequest,
    EventPublic,
    EvidenceCreate,
    EvidencePublic,
    HazardPublic,
    InspectionCreate,
    PlanRequest,
    PublicTipCreate,
    ReadingsEvidenceCreate,
    RewardRequest,
    SelfReportCreate,
    SendBackRequest,
    SourceName,
    StatusName,
    SubmitRequest,
    SuperviseRequest,
    TransitionResult,
)
from hazards import intake, ledger, store, workflow
from hazards.errors import HazardError
from hazards.model import BUREAU_ONLY_ACTIONS, Level, Plan, RewardStatus, Source

router = APIRouter(prefix=API_PREFIX + "/hazards", tags=["hazards"], responses=AUTH)

Order = Literal["-created_at", "created_at", "-detected_at", "detected_at", "deadline", "-deadline", "id", "-id",
                "-updated_at"]


def _public(rec: store.TicketRecord, who: Principal, now: float) -> HazardPublic:
    return HazardPublic.of(rec, who, now)


@router.get("", summary="隐患台账 List hazards (filters, pagination)")
def list_hazards(
    who: Auth, conn: Conn, now: Now, p: Page,
    status_: Annotated[list[StatusName] | None, Query(alias="status")] = None,
    source: Annotated[list[SourceName] | None, Query()] = None,
    enterprise_id: Annotated[Ident | None, Query()] = None,
    plant_id: Annotated[Ident | None, Query()] = None,
    industry: Annotated[Literal["cement", "lime", "refractory", "foundry", "machinery"] | None, Query()] = None,
    rule_id: Annotated[Short | None, Query()] = None,
    open_: Annotated[bool | None, Query(alias="open", description="not closed or dismissed")] = None,
    supervised: Annotated[bool | None, Query(description="listed for supervision now")] = None,
    overdue: Annotated[bool | None, Query(description="past the plan's deadline")] = None,
    created_from: Annotated[Timestamp | None, Query()] = None,
    created_to: Annotated[Timestamp | None, Query()] = None,
    q: Annotated[Short | None, Query(description="text in title or description")] = None,
    order: Annotated[Order, Query()] = "-created_at",
) -> PageOf[HazardPublic]:
    f = store.Filters(status=list(status_ or []), source=list(source or []), enterprise_id=enterprise_id,
                      plant_id=plant_id, industry=industry, rule_id=rule_id, supervised=supervised, overdue=overdue,
                      open=open_, created_from=created_from.timestamp() if created_from else None,
                      created_to=created_to.timestamp() if created_to else None, q=q)
    rows, total = store.list_tickets(conn, f, who.scope, now, limit=p.limit, offset=p.offset, order=order)
    return PageOf[HazardPublic].model_validate(page([_public(r, who, now) for r in rows], total, p.limit, p.offset))


def _open(body: SelfReportCreate | InspectionCreate | PublicTipCreate, source: Source, who: Principal, conn: Conn,
          now: float) -> HazardPublic:
    enterprise_id = body.enterprise_id or who.scope
    if enterprise_id is None:
        raise ApiProblem(422, "enterprise-required", "请求不完整 Invalid request",
                         "请指明企业 enterprise_id。 enterprise_id is required.")
    new = ledger.NewTicket(
        source=source, enterprise_id=enterprise_id, title=body.title, description=body.description,
        basis=body.basis, location=body.location, plant_id=body.plant_id, device_id=body.device_id,
        point_id=body.point_id, detected_at=body.detected_at.timestamp() if body.detected_at else None,
        inspection_team=getattr(body, "inspection_team", None), reporter_name=getattr(body, "reporter_name", None),
        reporter_contact=getattr(body, "reporter_contact", None),
        reporter_internal=getattr(body, "reporter_internal", None), comment=body.comment)
    tid = ledger.open_ticket(conn, new, who.actor(), now)
    return _public(ledger.get(conn, tid, who.actor()), who, now)


_CREATED = {"status_code": status.HTTP_201_CREATED, "responses": NOT_FOUND}


@router.post("/self-reports", **_CREATED, summary="企业自查上报 Enterprise self-report")  # type: ignore[arg-type]
def create_self_report(body: SelfReportCreate, who: Auth, conn: Conn, now: Now) -> HazardPublic:
    return _open(body, Source.SELF_REPORT, who, conn, now)


@router.post("/inspections", **_CREATED,  # type: ignore[arg-type]
             summary="督导检查发现 Inspection finding (opens confirmed)")
def create_inspection(body: InspectionCreate, who: Auth, conn: Conn, now: Now) -> HazardPublic:
    return _open(body, Source.INSPECTION, who, conn, now)


@router.post("/public-tips", **_CREATED, summary="群众举报 Public tip")  # type: ignore[arg-type]
def create_public_tip(body: PublicTipCreate, who: Auth, conn: Conn, now: Now) -> HazardPublic:
    return _open(body, Source.PUBLIC_TIP, who, conn, now)


@router.post("/from-candidate/{candidate_id}", responses=NOT_FOUND,
             summary="从候选隐患登记 Take up a rule's hazard candidate (opens or attaches to the open ticket)")
def take_up_candidate(candidate_id: Int64Path, who: Auth, conn: Conn, now: Now) -> HazardPublic:
    owner = tq.candidate_enterprise(conn, candidate_id)
    if owner is None or not who.sees(owner):
        raise not_found("候选隐患", "Hazard candidate", candidate_id)
    require(who, *BUREAU)
    with conn.transaction():
        tid = intake.take_up(conn, candidate_id)
    return _public(ledger.get(conn, tid, who.actor()), who, now)


@router.get("/{hazard_id}", responses=NOT_FOUND, summary="隐患详情 Get a hazard")
def get_hazard(hazard_id: Int64Path, who: Auth, conn: Conn, now: Now) -> HazardPublic:
    return _public(ledger.get(conn, hazard_id, who.actor()), who, now)


@router.get("/{hazard_id}/events", responses=NOT_FOUND, summary="处置记录 History: every step with its actor")
def hazard_events(hazard_id: Int64Path, who: Auth, conn: Conn) -> list[EventPublic]:
    ledger.get(conn, hazard_id, who.actor())
    hidden = BUREAU_ONLY_ACTIONS if who.scope is not None else frozenset()
    return [EventPublic.of(e) for e in store.events(conn, hazard_id) if e.action not in hidden]


@router.get("/{hazard_id}/evidence", responses=NOT_FOUND, summary="证据 Evidence attached to a hazard")
def hazard_evidence(hazard_id: Int64Path, who: Auth, conn: Conn,
                    include_readings: Annotated[bool, Query()] = False) -> list[EvidencePublic]:
    ledger.get(conn, hazard_id, who.actor())
    return [EvidencePublic.of(e) for e in store.evidence(conn, hazard_id, with_readings=include_readings)]


@router.post("/{hazard_id}/evidence", status_code=status.HTTP_201_CREATED, responses={**NOT_FOUND, **TRANSITION},
             summary="补充证据 Attach evidence: an alarm, a window of readings, or an attachment's metadata")
def add_evidence(hazard_id: Int64Path, body: EvidenceCreate, who: Auth, conn: Conn, now: Now) -> EvidencePublic:
    match body:
        case AlarmEvidenceCreate():
            ev = ledger.EvidenceInput("alarm", body.note, alarm_rule_id=body.rule_id, alarm_subject=body.subject,
                                      alarm_event_id=body.alarm_event_id)
        case ReadingsEvidenceCreate():
            ev = ledger.EvidenceInput("readings", body.note, point_ids=body.point_ids,
                                      window_from=body.window_from.timestamp(), window_to=body.window_to.timestamp())
        case AttachmentEvidenceCreate():
            ev = ledger.EvidenceInput("attachment", body.note, attachment=body.model_dump(
                include={"filename", "content_type", "size_bytes", "sha256", "uri"}))
    return EvidencePublic.of(ledger.add_evidence(conn, hazard_id, ev, who.actor(), now))


def _act(ctx: Ctx, conn: Conn, hazard_id: int, action: workflow.Action, who: Principal,
         now: float) -> TransitionResult:
    try:
        rec, event = ledger.act(conn, hazard_id, action, who.actor(), now)
    except HazardError as exc:
        ctx.metrics.hazard_refusals.labels(exc.code).inc()
        raise
    ctx.metrics.hazard_actions.labels(action.name).inc()
    return TransitionResult(hazard=_public(rec, who, now), event=EventPublic.of(event))


_ACTION = {"responses": {**NOT_FOUND, **TRANSITION}}


@router.post("/{hazard_id}/comments", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND,
             summary="备注 Comment (any status)")
def comment(hazard_id: Int64Path, body: CommentRequest, who: Auth, conn: Conn, ctx: Ctx, now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.Comment(body.text), who, now)


@router.post("/{hazard_id}/confirm", **_ACTION,  # type: ignore[arg-type]
             summary="确认为重大事故隐患 Confirm (bureau; candidate → confirmed)")
def confirm(hazard_id: Int64Path, body: ConfirmRequest, who: Auth, conn: Conn, ctx: Ctx, now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.Confirm(body.comment), who, now)


@router.post("/{hazard_id}/dismiss", **_ACTION,  # type: ignore[arg-type]
             summary="排除 Dismiss with a reason (bureau; candidate → dismissed)")
def dismiss(hazard_id: Int64Path, body: DismissRequest, who: Auth, conn: Conn, ctx: Ctx, now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.Dismiss(body.reason), who, now)


@router.post("/{hazard_id}/plan", **_ACTION,  # type: ignore[arg-type]
             summary="报送整改方案（五落实） File the rectification plan (enterprise; confirmed → plan_filed)")
def file_plan(hazard_id: Int64Path, body: PlanRequest, who: Auth, conn: Conn, ctx: Ctx, now: Now) -> TransitionResult:
    plan = Plan(body.responsible_person, body.measures, body.funds_yuan, body.deadline.timestamp(),
                body.contingency_plan, body.responsible_phone)
    return _act(ctx, conn, hazard_id, workflow.FilePlan(plan, body.comment), who, now)


@router.post("/{hazard_id}/start", **_ACTION,  # type: ignore[arg-type]
             summary="开始整改 Start rectifying (enterprise; plan_filed → rectifying)")
def start_rectification(hazard_id: Int64Path, body: CommentOnly, who: Auth, conn: Conn, ctx: Ctx,
                        now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.StartRectification(body.comment), who, now)


@router.post("/{hazard_id}/submit", **_ACTION,  # type: ignore[arg-type]
             summary="提交验收 Submit for verification (enterprise; rectifying → submitted)")
def submit(hazard_id: Int64Path, body: SubmitRequest, who: Auth, conn: Conn, ctx: Ctx, now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.Submit(body.comment), who, now)


@router.post("/{hazard_id}/verify", **_ACTION,  # type: ignore[arg-type]
             summary="验收销号 Verify and close (bureau; submitted → closed)")
def verify(hazard_id: Int64Path, body: CommentOnly, who: Auth, conn: Conn, ctx: Ctx, now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.Verify(body.comment), who, now)


@router.post("/{hazard_id}/send-back", **_ACTION,  # type: ignore[arg-type]
             summary="退回整改 Send back with a reason (bureau; submitted → rectifying)")
def send_back(hazard_id: Int64Path, body: SendBackRequest, who: Auth, conn: Conn, ctx: Ctx,
              now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.SendBack(body.reason), who, now)


@router.post("/{hazard_id}/supervise", **_ACTION,  # type: ignore[arg-type]
             summary="挂牌督办 List for supervision at county or city level (bureau)")
def supervise(hazard_id: Int64Path, body: SuperviseRequest, who: Auth, conn: Conn, ctx: Ctx,
              now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.Supervise(Level(body.level), body.reason), who, now)


@router.post("/{hazard_id}/reward", **_ACTION,  # type: ignore[arg-type]
             summary="举报奖励 Whistle-blower reward of a public tip (bureau): approve, decline, mark paid")
def set_reward(hazard_id: Int64Path, body: RewardRequest, who: Auth, conn: Conn, ctx: Ctx,
               now: Now) -> TransitionResult:
    return _act(ctx, conn, hazard_id, workflow.SetReward(RewardStatus(body.status), body.amount_yuan, body.note),
                who, now)

