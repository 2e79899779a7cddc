"""Production-stop filing (停产报备): an enterprise's stop or maintenance period and the bureau's decision."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.http.schemas.common import Ident, PublicSchema, Reason, Schema, Short, Timestamp

StopStatus = Literal["filed", "approved", "rejected", "withdrawn"]
StopKind = Literal["stop", "maintenance"]


class StopCreate(Schema):
    plant_id: Ident
    device_code: Short | None = Field(None, description="设备编码，不填为整个厂区 a device code, or the whole plant")
    kind: StopKind = "stop"
    reason: Reason
    starts_at: Timestamp
    ends_at: Timestamp = Field(description="预计结束 expected end")


class StopDecision(Schema):
    comment: Short = ""


class StopReject(Schema):
    comment: Reason = Field(description="驳回理由 why it is rejected")


class StopEventPublic(PublicSchema):
    time: datetime
    action: str
    actor: str
    comment: str


class StopPublic(PublicSchema):
    id: int
    enterprise_id: str
    plant_id: str
    device_id: int | None
    kind: str
    reason: str
    starts_at: datetime
    ends_at: datetime
    status: StopStatus
    filed_by: str
    filed_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str | None
    events: list[StopEventPublic] = []
