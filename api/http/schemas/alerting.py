"""通知 Notifications: what was sent to whom, every delivery attempt, and dead ones."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.http.schemas.common import PublicSchema

NotificationStatus = Literal["pending", "sent", "dead"]


class NotificationPublic(PublicSchema):
    id: int
    idempotency_key: str
    group_id: int
    kind: Literal["firing", "reminder", "escalation", "resolved"]
    reason: str
    receiver: str
    channel: str
    contact_id: str | None
    address: str | None
    enterprise_id: str | None
    items: list[str]
    subject: str
    status: NotificationStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None = Field(description="the last failure (URLs redacted); never shown to an enterprise")
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None


class DeliveryPublic(PublicSchema):
    attempt: int
    started_at: datetime
    finished_at: datetime
    ok: bool
    transient: bool | None
    detail: str = Field(description="the far end's answer (URLs redacted); empty for an enterprise")


class NotificationDetail(NotificationPublic):
    deliveries: list[DeliveryPublic]
