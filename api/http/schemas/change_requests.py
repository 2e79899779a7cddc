"""Change requests (变更申请): an enterprise's change to a supervised field, waiting for the bureau."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from api.http.schemas.common import PublicSchema, Reason, Schema

ChangeStatus = Literal["pending", "approved", "rejected"]
ObjectKind = Literal["enterprise", "plant", "gateway", "device", "point"]


class ChangeRequestPublic(PublicSchema):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": 7, "enterprise_id": "qsl-cement", "object_kind": "point", "object_id": "12",
        "changes": {"setpoints": {"bm.coal.co.hi": 100000.0}}, "old_values": {"setpoints": {"bm.coal.co.hi": 30.0}},
        "reason": "传感器更换 sensor replaced", "status": "pending", "requested_by": "青石岭安全员",
        "requested_at": "2026-11-30T08:00:00Z", "decided_by": None, "decided_at": None,
        "decision_comment": None}]})

    id: int
    enterprise_id: str
    object_kind: ObjectKind
    object_id: str
    changes: dict[str, Any] = Field(description="要求的新值 the requested values of supervised fields")
    old_values: dict[str, Any] = Field(description="申请时的原值 the values when the request was filed")
    reason: str | None
    status: ChangeStatus
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str | None


class ChangeRequestFiled(ChangeRequestPublic):
    """Answer (202) to an enterprise's change that touched supervised fields: those wait for the bureau;
    the free fields of the same request (`applied`) took effect at once."""

    applied: dict[str, Any] = Field(default_factory=dict, description="已直接生效的字段 fields applied at once")
    message: str


class Approve(Schema):
    comment: Reason | None = Field(default=None, description="审批意见 the decision's comment")


class Reject(Schema):
    comment: Reason = Field(description="驳回理由 why the request is rejected")
