"""Hazard tickets: opening from each source, workflow actions, evidence, history, interviews."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from api.http.auth import Principal
from api.http.schemas.common import Ident, Int32Id, Int64Id, Name, PublicSchema, Reason, Schema, Short, Text, Timestamp
from hazards import workflow
from hazards.model import LEVEL_ZH, SOURCE_ZH, STATUS_ZH, Level, Source, Status
from hazards.store import EventRecord, EvidenceRecord, TicketRecord

Money = Annotated[Decimal, Field(ge=0, le=Decimal("9999999999999.99"), max_digits=15, decimal_places=2)]
SourceName = Literal["sensor", "self_report", "inspection", "public_tip"]
StatusName = Literal["candidate", "confirmed", "dismissed", "plan_filed", "rectifying", "submitted", "closed"]

# --- opening ----------------------------------------------------------------------------------


class _HazardCreate(Schema):
    enterprise_id: Ident | None = Field(default=None, description="Required for admin and bureau; an enterprise "
                                        "token may omit it (its own enterprise is used)")
    title: Name
    description: Text = ""
    basis: Short | None = Field(default=None, description="法律依据 legal basis, e.g. 判定标准第六条第（一）项")
    location: Short | None = None
    plant_id: Ident | None = None
    device_id: Int32Id | None = None
    point_id: Int32Id | None = None
    detected_at: Timestamp | None = Field(default=None, description="default: now")
    comment: Text = ""


class SelfReportCreate(_HazardCreate):
    """企业自查 — an enterprise's own finding, for the bureau to confirm."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "title": "煤粉仓CO监测探头失效 coal bin CO detector not working", "plant_id": "qsl-p1",
        "description": "月度自查发现CO-102无读数。", "basis": "判定标准第六条第（一）项"}]})


class InspectionCreate(_HazardCreate):
    """督导检查 — found by bureau inspectors; opens already confirmed."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "enterprise_id": "dy-foundry", "title": "中频炉冷却水未与电源联锁 cooling water not interlocked",
        "plant_id": "dy-p1", "inspection_team": "县工信局第二检查组", "basis": "判定标准第七条第（四）项"}]})

    inspection_team: Name


class PublicTipCreate(_HazardCreate):
    """群众举报 — a tip received by the bureau; the reporter is never shown to the enterprise."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "enterprise_id": "hx-refractory", "title": "燃气切断阀被短接 gas ESV bypassed",
        "reporter_name": "匿名", "reporter_internal": True}]})

    reporter_name: Short | None = None
    reporter_contact: Short | None = None
    reporter_internal: bool = Field(default=False, description="内部人员举报 an employee of the enterprise")


# --- workflow actions -------------------------------------------------------------------------


class ConfirmRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "comment": "经核实，冷却水回水流量异常且未联锁断电 verified"}]})

    comment: Text = ""


class DismissRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "reason": "流量计检修期间数据异常，非真实泄漏 meter maintenance, no leak"}]})

    reason: Reason


class PlanRequest(Schema):
    """五落实: responsible person, measures, funds, deadline, contingency plan."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "responsible_person": "王强（设备部经理）", "responsible_phone": "13900000003",
        "measures": "更换回水管路，加装流量差联锁断电装置", "funds_yuan": "85000.00",
        "deadline": "2026-12-31T00:00:00+08:00", "contingency_plan": "整改期间停用1#中频炉，安排专人值守"}]})

    responsible_person: Name
    responsible_phone: Short | None = None
    measures: Reason
    funds_yuan: Money
    deadline: Timestamp
    contingency_plan: Reason
    comment: Text = ""


class CommentOnly(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"comment": "已安排施工队进场"}]})

    comment: Text = ""


class SubmitRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "comment": "已更换回水管路并完成联锁调试，附调试记录 rectified; interlock tested"}]})

    comment: Reason = Field(description="整改完成情况 what was done")


class SendBackRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "reason": "联锁调试记录缺少断电时间 interlock test record incomplete"}]})

    reason: Reason


class SuperviseRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "level": "county", "reason": "整改进度滞后 rectification behind schedule"}]})

    level: Literal["county", "city"]
    reason: Reason


class CommentRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "已电话督促企业负责人"}]})

    text: Reason


class RewardRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "status": "approved", "amount_yuan": "2000.00", "note": "经局务会研究同意"}]})

    status: Literal["approved", "declined", "paid"]
    amount_yuan: Money | None = None
    note: Text = ""


# --- evidence ---------------------------------------------------------------------------------


class AlarmEvidenceCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "alarm", "rule_id": "mach.cooling.diff:hi", "subject": "p:42"}]})

    kind: Literal["alarm"]
    rule_id: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    subject: Annotated[str, Field(pattern=r"^(p:[0-9]{1,10}|g:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]
    alarm_event_id: Int64Id | None = None
    note: Text = ""


class ReadingsEvidenceCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "readings", "point_ids": [41, 42], "window_from": "2026-11-30T08:00:00+08:00",
        "window_to": "2026-11-30T08:10:00+08:00"}]})

    kind: Literal["readings"]
    point_ids: list[Int32Id] = Field(min_length=1, max_length=20)
    window_from: Timestamp
    window_to: Timestamp
    note: Text = ""


class AttachmentEvidenceCreate(Schema):
    """Metadata of a file kept elsewhere (document system, object store); the API stores no file bodies."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "attachment", "filename": "整改前照片.jpg", "content_type": "image/jpeg", "size_bytes": 284113,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "uri": "dms://hazards/2026/001.jpg"}]})

    kind: Literal["attachment"]
    filename: Name
    content_type: Short = "application/octet-stream"
    size_bytes: int = Field(default=0, ge=0, le=2**53)
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    uri: Short | None = None
    note: Text = ""


EvidenceCreate = Annotated[AlarmEvidenceCreate | ReadingsEvidenceCreate | AttachmentEvidenceCreate,
                           Field(discriminator="kind")]


class EvidencePublic(PublicSchema):
    id: int
    hazard_id: int
    kind: str
    added_at: datetime
    added_by: str
    candidate_id: int | None
    alarm_rule_id: str | None
    alarm_subject: str | None
    alarm_event_id: int | None
    alarm_time: datetime | None
    point_ids: list[int] | None
    window_from: datetime | None
    window_to: datetime | None
    readings_count: int
    readings: list[dict[str, Any]] | None = Field(default=None, description="only with include_readings=true")
    attachment: dict[str, Any] | None
    note: str

    @classmethod
    def of(cls, e: EvidenceRecord) -> EvidencePublic:
        return cls.model_validate(e, from_attributes=True)


# --- tickets and history ----------------------------------------------------------------------


class PlanPublic(PublicSchema):
    responsible_person: str
    responsible_phone: str | None
    measures: str
    funds_yuan: Decimal
    deadline: datetime
    contingency_plan: str
    filed_at: datetime | None


class SupervisionPublic(PublicSchema):
    level: str
    label: str
    since: datetime
    by: str
    reason: str
    active: bool
    lifted_at: datetime | None


class TipPublic(PublicSchema):
    reporter_name: str | None
    reporter_contact: str | None
    internal: bool | None
    reward_status: str | None
    reward_amount_yuan: Decimal | None
    reward_note: str | None


class HazardPublic(PublicSchema):
    id: int
    enterprise_id: str
    enterprise_name: str
    plant_id: str | None
    plant_name: str | None
    industry: str | None
    device_id: int | None
    point_id: int | None
    point_tag: str | None
    gateway_id: str | None
    rule_id: str | None
    subject: str | None
    source: SourceName
    source_label: str
    status: StatusName
    status_label: str
    title: str
    description: str
    basis: str | None
    location: str | None
    detected_at: datetime
    created_at: datetime
    created_by: str
    updated_at: datetime
    confirmed_at: datetime | None
    confirmed_by: str | None
    dismissed_at: datetime | None
    dismissed_reason: str | None
    plan: PlanPublic | None
    submitted_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    sent_back_count: int
    supervision: SupervisionPublic | None
    inspection_team: str | None
    tip: TipPublic | None = Field(description="public tips only; never shown to the enterprise")
    occurrences: int = Field(description="detections attached to this ticket (sensor repeats)")
    evidence_count: int
    last_evidence_at: datetime | None
    overdue: bool
    next_actions: list[str] = Field(description="actions the caller may take now")

    @classmethod
    def of(cls, r: TicketRecord, who: Principal, now: float) -> HazardPublic:
        t = r.ticket()
        plan = None
        if r.plan_deadline is not None:
            plan = PlanPublic(responsible_person=r.plan_responsible or "", responsible_phone=r.plan_responsible_phone,
                              measures=r.plan_measures or "", funds_yuan=r.plan_funds_yuan or Decimal(0),
                              deadline=r.plan_deadline, contingency_plan=r.plan_contingency or "",
                              filed_at=r.plan_filed_at)
        sup = None
        if r.supervision_level is not None and r.supervised_at is not None:
            sup = SupervisionPublic(level=r.supervision_level, label=LEVEL_ZH[Level(r.supervision_level)],
                                    since=r.supervised_at, by=r.supervised_by or "", reason=r.supervision_reason or "",
                                    active=r.supervision_lifted_at is None, lifted_at=r.supervision_lifted_at)
        tip = None
        if r.source == Source.PUBLIC_TIP.value and who.scope is None:
            tip = TipPublic(reporter_name=r.tip_reporter_name, reporter_contact=r.tip_reporter_contact,
                            internal=r.tip_internal, reward_status=r.reward_status,
                            reward_amount_yuan=r.reward_amount_yuan, reward_note=r.reward_note)
        return cls(
            id=r.id, enterprise_id=r.enterprise_id, enterprise_name=r.enterprise_name, plant_id=r.plant_id,
            plant_name=r.plant_name, industry=r.industry, device_id=r.device_id, point_id=r.point_id,
            point_tag=r.point_tag, gateway_id=r.gateway_id, rule_id=r.rule_id, subject=r.subject,
            source=r.source,
            source_label=SOURCE_ZH[Source(r.source)],
            status=r.status,
            status_label=STATUS_ZH[Status(r.status)], title=r.title,
            description=r.description, basis=r.basis, location=r.location, detected_at=r.detected_at,
            created_at=r.created_at, created_by=r.created_by, updated_at=r.updated_at, confirmed_at=r.confirmed_at,
            confirmed_by=r.confirmed_by, dismissed_at=r.dismissed_at, dismissed_reason=r.dismissed_reason,
            plan=plan, submitted_at=r.submitted_at, closed_at=r.closed_at, closed_by=r.closed_by,
            sent_back_count=r.sent_back_count, supervision=sup, inspection_team=r.inspection_team, tip=tip,
            occurrences=r.occurrences, evidence_count=r.evidence_count, last_evidence_at=r.last_evidence_at,
            overdue=t.overdue(now), next_actions=workflow.allowed_actions(t, who.actor()),
        )


class EventPublic(PublicSchema):
    id: int | None = None
    time: datetime
    action: str
    action_label: str
    from_status: str
    to_status: str
    actor: str
    actor_role: str
    actor_enterprise_id: str | None
    comment: str
    data: dict[str, Any]

    @classmethod
    def of(cls, e: EventRecord) -> EventPublic:
        return cls(id=e.id, time=e.time, action=e.action, action_label=workflow.ACTION_ZH.get(e.action, e.action),
                   from_status=e.from_status, to_status=e.to_status, actor=e.actor, actor_role=e.actor_role,
                   actor_enterprise_id=e.actor_enterprise_id, comment=e.comment, data=e.data)


class TransitionResult(PublicSchema):
    hazard: HazardPublic
    event: EventPublic


# --- interviews (约谈) ---------------------------------------------------------------------------


class InterviewCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "enterprise_id": "dy-foundry", "hazard_id": 1, "held_at": "2026-12-05T09:30:00+08:00",
        "interviewer": "县工信局 李局长", "interviewees": "主要负责人 赵德明；实际控制人 赵德明",
        "reason": "重大事故隐患逾期未整改", "summary": "责令10日内完成整改并书面报告",
        "follow_up": "12月15日复查"}]})

    enterprise_id: Ident
    hazard_id: Int64Id | None = None
    held_at: Timestamp
    interviewer: Name
    interviewees: Name
    reason: Reason
    summary: Text = ""
    follow_up: Text = ""


class InterviewPublic(PublicSchema):
    id: int
    enterprise_id: str
    hazard_id: int | None
    held_at: datetime
    interviewer: str
    interviewees: str
    reason: str
    summary: str
    follow_up: str
    recorded_by: str
    recorded_at: datetime

