"""Warning disposal (预警处置闭环): the enterprise's feedback on a warning, and its response statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.http.schemas.common import Name, PublicSchema, Reason, Schema, Short

DisposalStatus = Literal["pending", "overdue", "answered", "all"]


class DisposalPublic(PublicSchema):
    id: int
    rule_id: str
    subject: str
    plant_id: str
    enterprise_id: str
    severity: str
    activated_at: datetime
    due_at: datetime = Field(description="反馈时限 feedback is due by then")
    tier_reached: int = Field(description="已升级的层级数 escalation tiers told so far")
    next_at: datetime | None = Field(description="下一级升级时间 when the next tier is due (none: stopped or done)")
    cause: str | None
    measures: str | None
    handled_by: str | None
    feedback_at: datetime | None
    feedback_actor: str | None
    overdue: bool = Field(description="超过时限仍未反馈，或超时反馈 past its limit without feedback, or answered late")


class FeedbackRequest(Schema):
    cause: Short = Field(description="原因类别 a cause category code from GET /api/v1/disposals/causes")
    measures: Reason = Field(description="已采取的处置措施 what was done")
    handled_by: Name = Field(description="处置人 who handled it")


class CausePublic(PublicSchema):
    code: str
    label: str


class PolicyPublic(PublicSchema):
    min_severity: str = Field(description="需反馈的最低报警级别 the lowest severity that needs feedback")
    limits_s: dict[str, float] = Field(description="各级别反馈时限（秒） feedback time limit per severity, seconds")
    causes: list[CausePublic]
    ladder: list[tuple[str, float]] = Field(description="升级层级与超时后秒数 (tier, seconds after the limit)")


class ResponseStatsPublic(PublicSchema):
    enterprise_id: str
    total: int
    answered: int
    in_time: int
    overdue_open: int
    share_in_time: float | None = Field(description="按时处置率 share handled in time")
    mean_response_s: float | None
    median_response_s: float | None
