"""Data availability (数据完整率), gateway online rate (网关在线率) and missing mandatory points (接入完整性)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from api.http.schemas.common import PublicSchema


class CellPublic(PublicSchema):
    start: datetime
    end: datetime
    expected: int = Field(description="应收条数 readings expected from the interval")
    received: int = Field(description="实收条数 readings received, capped at expected")
    share: float | None = Field(description="完整率 received / expected; null when nothing was expected")


class GatewayCellPublic(CellPublic):
    online_rate: float | None = Field(description="在线率 share of the observed time the gateway was online")


class PointAvailability(PublicSchema):
    point_id: int
    tag: str
    gateway_id: str
    plant_id: str
    enterprise_id: str
    interval_s: float
    total: CellPublic
    buckets: list[CellPublic]


class GatewayAvailability(PublicSchema):
    gateway_id: str
    name: str
    plant_id: str
    enterprise_id: str
    enabled: bool
    points: int
    total: GatewayCellPublic
    buckets: list[GatewayCellPublic]


class EnterpriseAvailability(PublicSchema):
    enterprise_id: str
    name: str
    points: int
    total: GatewayCellPublic
    buckets: list[GatewayCellPublic]


Granularity = Literal["hour", "day", "month"]


class PointAvailabilityPage(PublicSchema):
    granularity: Granularity
    start: datetime
    end: datetime
    items: list[PointAvailability]
    total: int
    limit: int
    offset: int


class GatewayAvailabilityList(PublicSchema):
    granularity: Granularity
    start: datetime
    end: datetime
    items: list[GatewayAvailability]


class EnterpriseAvailabilityList(PublicSchema):
    granularity: Granularity
    start: datetime
    end: datetime
    items: list[EnterpriseAvailability]


class MissingPointPublic(PublicSchema):
    plant_id: str
    device_code: str
    device_name: str
    role: str = Field(description="必接测点 mandatory role, e.g. hopper_temperature")
    zh: str
    en: str


class EnterpriseMandatory(PublicSchema):
    enterprise_id: str
    name: str
    missing_count: int
    missing: list[MissingPointPublic]


class MandatoryMissingList(PublicSchema):
    items: list[EnterpriseMandatory]
