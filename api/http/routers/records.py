"""记录 Records of the action plan (issue 17): self-inspections (自查) and their findings, drills (应急演练),
training (安全培训) and headcount, monthly analysis meetings (月度分析会), cadence compliance, the annual
summary and the 2024-2026 three-year evaluation, and alarm-system health per operator position.

Handlers translate requests into `records.service` / `records.store` calls; scoping is theirs: an
enterprise token reads and writes its own enterprise only, and another's record answers 404. The records'
errors derive from the ledger's, so the existing problem handlers answer 404 / 403 / 422 for them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse, Response

from api.http.auth import Principal
from api.http.deps import BUREAU, Auth, Conn, Now, Page, require
from api.http.problems import ApiProblem, not_found
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND, IdentPath, Int64Path, page
from api.http.schemas.common import Ident, Timestamp
from api.http.schemas.common import Page as PageOf
from api.http.schemas.records import (
    CadenceRowPublic,
    DrillCreate,
    DrillPublic,
    EvaluationPublic,
    FindingCreate,
    FindingPublic,
    HeadcountSet,
    HealthPublic,
    InspectionCreate,
    InspectionPublic,
    LevelName,
    MeetingCreate,
    MeetingPublic,
    OpenHazard,
    PositionDefine,
    PositionPublic,
    TrainingCreate,
    TrainingPublic,
)
from hazards.records import evaluation, export, service, store
from hazards.records.service import NewFinding

router = APIRouter(prefix=API_PREFIX + "/records", tags=["records"], responses=AUTH)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Year = Annotated[int, Query(ge=2000, le=2100)]
YearPath = Annotated[int, Path(ge=2000, le=2100)]
PositionPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
#: The longest alarm-health window one request computes (a year and a month).
MAX_HEALTH_S = 400 * 86_400.0
_EXPORT: dict[int | str, dict[str, Any]] = {200: {
    "description": "JSON, or an XLSX download with `format=xlsx`",
    "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}}}}
_CREATED = {"status_code": status.HTTP_201_CREATED, "responses": NOT_FOUND}


def _enterprise(body_enterprise: str | None, who: Principal) -> str:
    ent = body_enterprise or who.scope
    if ent is None:
        raise ApiProblem(422, "enterprise-required", "请求不完整 Invalid request",
                         "请指明企业 enterprise_id。 enterprise_id is required.")
    if not who.sees(ent):
        raise not_found("企业", "Enterprise", ent)
    return ent


def _findings(items: list[FindingCreate]) -> list[NewFinding]:
    return [NewFinding(f.description, f.location, f.open_hazard, f.hazard_title) for f in items]




# --- self-inspections and findings ------------------------------------------------------------------


@router.get("/inspections", summary="自查记录 List self-inspections")
def list_inspections(who: Auth, conn: Conn, p: Page, enterprise_id: Annotated[Ident | None, Query()] = None,
                     level: Annotated[LevelName | None, Query()] = None,
                     from_: Annotated[date | None, Query(alias="from", description="on or after (CST day)")] = None,
                     to: Annotated[date | None, Query(description="before (CST day)")] = None
                     ) -> PageOf[InspectionPublic]:
    rows, total = store.list_inspections(conn, who.scope, enterprise_id=enterprise_id, level=level, frm=from_, to=to,
                                         limit=p.limit, offset=p.offset)
    return PageOf[InspectionPublic].model_validate(page(rows, total, p.limit, p.offset), from_attributes=True)


@router.post("/inspections", **_CREATED,  # type: ignore[arg-type]
             summary="记录自查 Record a self-inspection (findings may open self-reports at once)")
def create_inspection(body: InspectionCreate, who: Auth, conn: Conn, now: Now) -> InspectionPublic:
    ent = _enterprise(body.enterprise_id, who)
    rec = service.record_inspection(conn, store.NewInspection(ent, body.level, body.inspected_on, body.inspector,
                                                              body.scope, body.summary, body.plant_id),
                                    _findings(body.findings), who.actor(), now)
    return get_inspection(rec.id, who, conn)


@router.get("/inspections/{inspection_id}", responses=NOT_FOUND, summary="自查详情 Get a self-inspection")
def get_inspection(inspection_id: Int64Path, who: Auth, conn: Conn) -> InspectionPublic:
    rec = store.get_inspection(conn, inspection_id, who.scope)
    if rec is None:
        raise not_found("自查记录", "Self-inspection", inspection_id)
    out = InspectionPublic.model_validate(rec, from_attributes=True)
    out.findings = [FindingPublic.model_validate(f, from_attributes=True)
                    for f in store.findings(conn, who.scope, inspection_id=inspection_id)]
    return out


@router.post("/findings/{finding_id}/hazard", status_code=status.HTTP_201_CREATED, responses=NOT_FOUND,
             summary="由发现项登记自查隐患 Open the self-report hazard of a finding (idempotent)")
def open_finding_hazard(finding_id: Int64Path, who: Auth, conn: Conn, now: Now,
                        body: OpenHazard | None = None) -> FindingPublic:
    f = service.open_hazard(conn, finding_id, who.actor(), now, body.title if body else None)
    return FindingPublic.model_validate(f, from_attributes=True)


@router.get("/findings/by-hazard/{hazard_id}", responses=NOT_FOUND,
            summary="隐患来源发现项 The finding a hazard was opened from")
def finding_of_hazard(hazard_id: Int64Path, who: Auth, conn: Conn) -> FindingPublic:
    f = store.finding_for_hazard(conn, hazard_id, who.scope)
    if f is None:
        raise not_found("发现项", "Finding of hazard", hazard_id)
    return FindingPublic.model_validate(f, from_attributes=True)


@router.get("/compliance", summary="自查频次执行情况 Cadence compliance per enterprise and level")
def compliance(who: Auth, conn: Conn, now: Now, year: Year) -> list[CadenceRowPublic]:
    fig = evaluation.year_figures(conn, year, now, who.scope)
    return [CadenceRowPublic.model_validate(r, from_attributes=True) for r in fig.cadence]


# --- drills, training, headcount ---------------------------------------------------------------------


@router.get("/drills", summary="应急演练 List drills")
def list_drills(who: Auth, conn: Conn, p: Page, enterprise_id: Annotated[Ident | None, Query()] = None,
                year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> PageOf[DrillPublic]:
    rows, total = store.list_drills(conn, who.scope, enterprise_id=enterprise_id, year=year, limit=p.limit,
                                    offset=p.offset)
    return PageOf[DrillPublic].model_validate(page(rows, total, p.limit, p.offset), from_attributes=True)


@router.post("/drills", **_CREATED, summary="记录演练 Record a drill")  # type: ignore[arg-type]
def create_drill(body: DrillCreate, who: Auth, conn: Conn, now: Now) -> DrillPublic:
    ent = _enterprise(body.enterprise_id, who)
    rec = service.record_drill(conn, store.NewDrill(ent, body.held_on, body.scenario, body.participants,
                                                    body.participant_names, body.summary, body.plant_id),
                               _findings(body.findings), who.actor(), now)
    return get_drill(rec.id, who, conn)


@router.get("/drills/{drill_id}", responses=NOT_FOUND, summary="演练详情 Get a drill")
def get_drill(drill_id: Int64Path, who: Auth, conn: Conn) -> DrillPublic:
    rec = store.get_drill(conn, drill_id, who.scope)
    if rec is None:
        raise not_found("演练记录", "Drill", drill_id)
    out = DrillPublic.model_validate(rec, from_attributes=True)
    out.findings = [FindingPublic.model_validate(f, from_attributes=True)
                    for f in store.findings(conn, who.scope, drill_id=drill_id)]
    return out


@router.get("/trainings", summary="安全培训 List trainings")
def list_trainings(who: Auth, conn: Conn, p: Page, enterprise_id: Annotated[Ident | None, Query()] = None,
                   year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> PageOf[TrainingPublic]:
    rows, total = store.list_trainings(conn, who.scope, enterprise_id=enterprise_id, year=year, limit=p.limit,
                                       offset=p.offset)
    return PageOf[TrainingPublic].model_validate(page(rows, total, p.limit, p.offset), from_attributes=True)


@router.post("/trainings", **_CREATED, summary="记录培训 Record a training")  # type: ignore[arg-type]
def create_training(body: TrainingCreate, who: Auth, conn: Conn, now: Now) -> TrainingPublic:
    ent = _enterprise(body.enterprise_id, who)
    tid = service.record_training(conn, store.NewTraining(
        ent, body.held_on, body.course, [store.Attendee(a.person_key, a.name) for a in body.attendees], body.hours,
        body.trainer), who.actor(), now)
    return get_training(tid, who, conn)


@router.get("/trainings/{training_id}", responses=NOT_FOUND, summary="培训详情 Get a training")
def get_training(training_id: Int64Path, who: Auth, conn: Conn) -> TrainingPublic:
    rec = store.get_training(conn, training_id, who.scope)
    if rec is None:
        raise not_found("培训记录", "Training", training_id)
    return TrainingPublic.model_validate(rec, from_attributes=True)


@router.put("/headcounts/{enterprise_id}/{year}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND,
            summary="职工人数 Set an enterprise's headcount for a year (training coverage)")
def set_headcount(enterprise_id: IdentPath, year: YearPath, body: HeadcountSet, who: Auth, conn: Conn,
                  now: Now) -> Response:
    service.set_headcount(conn, enterprise_id, year, body.headcount, who.actor(), now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- monthly analysis meetings -----------------------------------------------------------------------


@router.get("/meetings", summary="月度分析会 List monthly analysis meetings")
def list_meetings(who: Auth, conn: Conn, p: Page, enterprise_id: Annotated[Ident | None, Query()] = None,
                  year: Annotated[int | None, Query(ge=2000, le=2100)] = None) -> PageOf[MeetingPublic]:
    rows, total = store.list_meetings(conn, who.scope, enterprise_id=enterprise_id, year=year, limit=p.limit,
                                      offset=p.offset)
    return PageOf[MeetingPublic].model_validate(page(rows, total, p.limit, p.offset), from_attributes=True)


@router.post("/meetings", **_CREATED,  # type: ignore[arg-type]
             summary="记录分析会 Record a meeting (an enterprise's, or the bureau's county meeting)")
def create_meeting(body: MeetingCreate, who: Auth, conn: Conn, now: Now) -> MeetingPublic:
    ent = body.enterprise_id or who.scope
    if ent is not None and not who.sees(ent):
        raise not_found("企业", "Enterprise", ent)
    rec = service.record_meeting(conn, store.NewMeeting(ent, body.held_on, body.attendees, body.decisions, body.chair,
                                                        body.summary), who.actor(), now)
    return MeetingPublic.model_validate(rec, from_attributes=True)


@router.get("/meetings/{meeting_id}", responses=NOT_FOUND, summary="分析会详情 Get a meeting")
def get_meeting(meeting_id: Int64Path, who: Auth, conn: Conn) -> MeetingPublic:
    rec = store.get_meeting(conn, meeting_id, who.scope)
    if rec is None:
        raise not_found("分析会记录", "Meeting", meeting_id)
    return MeetingPublic.model_validate(rec, from_attributes=True)


# --- reports: annual summary and three-year evaluation ------------------------------------------------


def _evaluation(ev: evaluation.Evaluation, fmt: Literal["json", "xlsx"], name: str, who: Principal) -> Any:
    if fmt == "xlsx":
        return Response(export.to_xlsx(ev), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    body = EvaluationPublic.model_validate(ev, from_attributes=True)
    # an enterprise's answer has no whistle-blower figures at all (not even a null)
    exclude = None if who.scope is None else {"years": {"__all__": {"public_tips", "rewards_approved_yuan"}}}
    return JSONResponse(body.model_dump(mode="json", exclude=exclude))


@router.get("/reports/annual", responses=_EXPORT, response_model=EvaluationPublic,
            summary="年度总结 Annual summary of the action plan (JSON or XLSX); years in CST")
def annual(who: Auth, conn: Conn, now: Now, year: Year,
           format: Annotated[Literal["json", "xlsx"], Query()] = "json") -> Any:
    return _evaluation(evaluation.annual(conn, year, now, who.scope), format, f"annual-{year}", who)


@router.get("/reports/evaluation", responses=_EXPORT, response_model=EvaluationPublic,
            summary="三年行动评估 Three-year evaluation 2024-2026 (JSON or XLSX)")
def three_year(who: Auth, conn: Conn, now: Now,
               format: Annotated[Literal["json", "xlsx"], Query()] = "json") -> Any:
    return _evaluation(evaluation.three_year(conn, now, who.scope), format, "evaluation-2024-2026", who)


# --- alarm-system health -------------------------------------------------------------------------------


@router.get("/alarm-health/positions", summary="操作岗位 Operator positions (control rooms, bureau desk)")
def list_positions(who: Auth, conn: Conn) -> list[PositionPublic]:
    return [PositionPublic.model_validate(p, from_attributes=True) for p in store.positions(conn, who.scope)]


@router.put("/alarm-health/positions/{position_id}", responses=NOT_FOUND,
            summary="定义中控室 Define a control room shared by plants of one enterprise (bureau)")
def define_position(position_id: PositionPath, body: PositionDefine, who: Auth, conn: Conn) -> PositionPublic:
    if not who.sees(body.enterprise_id):
        raise not_found("企业", "Enterprise", body.enterprise_id)
    require(who, *BUREAU)
    p = service.define_position(conn, position_id, body.name, body.enterprise_id, body.plant_ids, who.actor(),
                                body.min_severity)
    return PositionPublic.model_validate(p, from_attributes=True)


def _window(from_: datetime, to: datetime | None, now: float) -> tuple[float, float]:
    start = from_.timestamp() // 600 * 600  # aligned to 10 minutes: flood intervals are clock intervals
    end = min(to.timestamp() if to else now, now)
    if end <= start or end - start > MAX_HEALTH_S:
        raise ApiProblem(422, "invalid-window", "请求不完整 Invalid request",
                         "时间窗须在当前时间之前且不超过400天。 The window must end after it starts, "
                         "not in the future, and span at most 400 days.")
    return start, end


@router.get("/alarm-health/report", responses=_EXPORT,
            summary="报警系统健康报表 Alarm-system health of every visible position (JSON or XLSX)")
def health_report(who: Auth, conn: Conn, now: Now, from_: Annotated[Timestamp, Query(alias="from")],
                  to: Annotated[Timestamp | None, Query()] = None,
                  format: Annotated[Literal["json", "xlsx"], Query()] = "json") -> Any:
    start, end = _window(from_, to, now)
    rows = [service.position_health(conn, p.id, start, end, who.scope) for p in store.positions(conn, who.scope)]
    if format == "xlsx":
        return Response(export.health_to_xlsx(rows), media_type=XLSX,
                        headers={"Content-Disposition": 'attachment; filename="alarm-health.xlsx"'})
    return [_health(p, h) for p, h in rows]


def _health(p: store.Position, h: Any) -> HealthPublic:
    data = {k: getattr(h, k) for k in HealthPublic.model_fields if k != "position"}
    return HealthPublic.model_validate({**data, "position": PositionPublic.model_validate(p, from_attributes=True),
                                        "standing": [vars(s) for s in h.standing], "top": [vars(b) for b in h.top]})


@router.get("/alarm-health/{position_id}", responses=NOT_FOUND,
            summary="报警系统健康 Alarm-system health of one position (ISA-18.2 / EEMUA 191)")
def position_health(position_id: PositionPath, who: Auth, conn: Conn, now: Now,
                    from_: Annotated[Timestamp, Query(alias="from")],
                    to: Annotated[Timestamp | None, Query()] = None) -> HealthPublic:
    start, end = _window(from_, to, now)
    p, h = service.position_health(conn, position_id, start, end, who.scope)
    return _health(p, h)
