"""Readings and alarms."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from api.http.schemas.common import PublicSchema, Reason, Schema, Text


class ReadingPublic(PublicSchema):
    time: datetime
    value: float
    quality: int = Field(description="0 good, 1 uncertain, 2 bad")


class ReadingsPublic(PublicSchema):
    point_id: int
    tag: str
    unit: str
    items: list[ReadingPublic]


class BucketPublic(PublicSchema):
    bucket: datetime
    min: float
    max: float
    avg: float
    last: float
    count: int


class BucketsPublic(PublicSchema):
    point_id: int
    tag: str
    unit: str
    bucket_s: int
    items: list[BucketPublic]


class AlarmPublic(PublicSchema):
    rule_id: str
    subject: str = Field(description="'p:<point id>', 'g:<gateway id>' or 'd:<gateway id>/<Sparkplug device id>'")
    plant_id: str
    enterprise_id: str
    point_id: int | None
    gateway_id: str | None
    tag: str | None
    state: str = Field(description="ISA-18.2: normal, unack, ack, rtn_unack")
    active: bool
    severity: str
    candidate: bool = Field(description="the rule opens a candidate major hazard")
    activated_at: datetime | None
    cleared_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None
    ack_comment: str | None
    value: float | None
    reason: str | None
    shelved_until: datetime | None
    shelved_by: str | None
    shelve_reason: str | None
    chattering: bool
    out_of_service: bool
    catalog_version: str


class AlarmEventPublic(PublicSchema):
    id: int
    time: datetime
    event: str
    from_state: str
    to_state: str
    annunciate: bool
    actor: str
    reason: str | None
    value: float | None


class AckRequest(Schema):
    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"comment": "已通知现场 field informed"}]})

    comment: Text = ""


class ShelveRequest(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "minutes": 30, "reason": "传感器校准 sensor calibration"}]})

    minutes: float = Field(gt=0, le=7 * 24 * 60, description="at most 7 days")
    reason: Reason


class AlarmTransitionPublic(PublicSchema):
    time: datetime
    event: str
    from_state: str
    to_state: str
    annunciate: bool
    actor: str
    reason: str


class AlarmActionResult(PublicSchema):
    alarm: AlarmPublic
    events: list[AlarmTransitionPublic]
