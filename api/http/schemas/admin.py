"""Reports, tokens, the audit log and health."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field

from api.http.schemas.common import Ident, Name, PublicSchema, Schema, Timestamp

# --- reports ----------------------------------------------------------------------------------


class SummaryRowPublic(PublicSchema):
    key: str
    label: str
    total: int
    candidate: int
    confirmed_open: int = Field(description="confirmed and not yet closed")
    closed: int
    dismissed: int
    overdue: int
    supervised: int


class EnterpriseCountPublic(PublicSchema):
    enterprise_id: str
    enterprise_name: str
    count: int


class OpenMajorPublic(PublicSchema):
    """动态清零: confirmed major hazards not yet closed."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "count": 2, "supervised": 1, "overdue": 1,
        "by_enterprise": [{"enterprise_id": "dy-foundry", "enterprise_name": "东岳铸造有限公司", "count": 2}]}]})

    count: int
    supervised: int
    overdue: int
    by_enterprise: list[EnterpriseCountPublic]


class PeriodRowPublic(PublicSchema):
    key: str
    label: str
    new: int
    confirmed: int
    dismissed: int
    closed: int
    open_at_end: int
    overdue_at_end: int
    supervised: int
    funds_yuan: Decimal


class DisposalStatsPublic(PublicSchema):
    """预警处置 One enterprise's feedback on the warnings of a period (rules.disposal.response_stats)."""

    enterprise_id: str
    enterprise_name: str
    total: int = Field(description="warnings that needed feedback")
    answered: int
    in_time: int = Field(description="answered within their time limit")
    overdue_open: int = Field(description="past the limit, no feedback yet")
    share_in_time: float | None = Field(description="按时处置率 in_time / total (none needed feedback: null)")
    mean_response_s: float | None
    median_response_s: float | None


class PeriodSummaryPublic(PublicSchema):
    kind: Literal["monthly", "annual"]
    period: str
    start: datetime
    end: datetime
    totals: PeriodRowPublic
    by_industry: list[PeriodRowPublic]
    by_enterprise: list[PeriodRowPublic]
    by_source: list[PeriodRowPublic]
    interviews: int
    rewards_approved_yuan: Decimal | None = Field(
        default=None, description="举报奖励 whistle-blower rewards approved in the period; bureau and admin only")
    tickets: int = Field(description="tickets open at some time in the period (rows of the ledger sheet)")
    disposal: list[DisposalStatsPublic] = Field(
        default_factory=list, description="预警处置 per enterprise: warnings of the period that needed feedback, "
                                          "answered, in time, response times")


# --- tokens -----------------------------------------------------------------------------------


class TokenCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "县工信局值班室 duty office", "role": "bureau"},
        {"name": "东岳铸造 安全科", "role": "enterprise", "enterprise_id": "dy-foundry"}]})

    name: Name
    role: Literal["admin", "bureau", "enterprise"]
    enterprise_id: Ident | None = Field(default=None, description="required for, and only for, role enterprise")
    expires_at: Timestamp | None = None


class TokenPublic(PublicSchema):
    id: int
    name: str
    role: str
    enterprise_id: str | None
    prefix: str = Field(description="first characters of the token, to recognise it")
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="the bearer token; shown once, only its SHA-256 is stored")


class WhoAmI(PublicSchema):
    token_id: int
    name: str
    role: str
    enterprise_id: str | None


# --- audit ------------------------------------------------------------------------------------


class AuditPublic(PublicSchema):
    id: int
    time: datetime
    token_id: int | None
    actor: str
    role: str | None
    enterprise_id: str | None
    method: str
    path: str
    route: str | None
    query: str | None
    status: int
    duration_ms: float | None
    client: str | None
    changes: dict[str, object] | None = Field(default=None, description=(
        "改了什么 what the call changed: fields old → new, a change request filed or decided"))


# --- health -----------------------------------------------------------------------------------


class CheckPublic(PublicSchema):
    ok: bool
    latency_ms: float | None = None
    detail: str | None = None


class HealthPublic(PublicSchema):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "status": "ok", "checks": {"database": {"ok": True, "latency_ms": 0.8},
                                   "broker": {"ok": True, "latency_ms": 1.9, "detail": "CONNACK accepted"}}}]})

    status: Literal["ok", "degraded"]
    checks: dict[str, CheckPublic]

