"""Registry resources: enterprises, plants, gateways (and their credentials), devices, points.

The Update schemas carry every field a PATCH may name; which of them an enterprise may change itself and
which become a change request for the bureau is decided in `api.supervision`, not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from api.http.schemas.common import Ident, Int32Id, Name, PublicSchema, Reason, Schema, Short
from core.registry import GATEWAY_ID_PATTERN

Industry = Literal["cement", "lime", "refractory", "foundry", "machinery"]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00\s]+$")]
Setpoints = dict[Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]*$")],
                 Annotated[float, Field(allow_inf_nan=False)]]
States = dict[Annotated[str, StringConstraints(pattern=r"^-?[0-9]{1,9}$")], Short]


class Contact(Schema):
    name: Name
    phone: Short | None = None
    email: Short | None = None


class ContactPublic(PublicSchema):
    name: str | None
    phone: str | None
    email: str | None


RoutineContacts = Annotated[list[Contact], Field(max_length=50, description=(
    "日常联系人 the enterprise's own contacts for routine notices; the enterprise edits them itself"))]
ChangeReason = Annotated[Reason | None, Field(description=(
    "变更理由 why: kept with the change request when the PATCH touches a field only the bureau may change"))]


# --- enterprises ------------------------------------------------------------------------------


class EnterpriseCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "qsl-cement", "name": "青石岭水泥有限公司", "credit_code": "91330000MA2XXXXXX1",
        "address": "某县工业园区1号", "principal": {"name": "陈建国", "phone": "13800000001"},
        "controller": {"name": "陈建国", "phone": "13800000001"}}]})

    id: Ident
    name: Name
    credit_code: Short | None = Field(default=None, description="统一社会信用代码")
    address: Short | None = None
    principal: Contact = Field(description="主要负责人 principal responsible person")
    controller: Contact = Field(description="实际控制人 actual controller")
    routine_contacts: RoutineContacts = []


class EnterpriseUpdate(Schema):
    """An enterprise changes its name, address and routine contacts itself; its credit code, principal and
    actual controller of record change only with the bureau's approval (a change request, 202)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "principal": {"name": "陈建国", "phone": "13800000009"}, "change_reason": "负责人更换手机号"}]})

    name: Name | None = None
    credit_code: Short | None = None
    address: Short | None = None
    principal: Contact | None = None
    controller: Contact | None = None
    routine_contacts: RoutineContacts | None = None
    change_reason: ChangeReason = None


class EnterprisePublic(PublicSchema):
    id: str
    name: str
    credit_code: str | None
    address: str | None
    principal: ContactPublic
    controller: ContactPublic
    routine_contacts: list[ContactPublic]
    plants: int
    created_at: datetime
    updated_at: datetime


# --- plants -----------------------------------------------------------------------------------


class PlantCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "qsl-p1", "enterprise_id": "qsl-cement", "name": "青石岭一号线", "industry": "cement"}]})

    id: Ident
    enterprise_id: Ident
    name: Name
    industry: Industry
    address: Short | None = None


class PlantUpdate(Schema):
    """`industry` decides which catalog rules bind: an enterprise's change to it waits for the bureau."""

    name: Name | None = None
    industry: Industry | None = None
    address: Short | None = None
    change_reason: ChangeReason = None


class PlantPublic(PublicSchema):
    id: str
    enterprise_id: str
    name: str
    industry: str
    address: str | None
    created_at: datetime
    updated_at: datetime


# --- gateways ---------------------------------------------------------------------------------


#: Checked by the handler with `core.registry.check_gateway_id`, so a reserved name answers 422 `reserved-id`
#: and bad syntax `invalid-id`, each saying why, rather than a bare pattern mismatch.
GatewayIdText = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$"), Field(
    description="网关编号 = MQTT 用户名与客户端标识 the MQTT username and client id: 1-64 letters, digits, `_ . -`, "
                "starting with a letter or digit; ids starting with `riskwatch` (any case) are reserved",
    json_schema_extra={"pattern": GATEWAY_ID_PATTERN})]


class GatewayCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "gw-cem-03", "plant_id": "qsl-p1", "name": "包装车间网关"}]})

    id: GatewayIdText
    plant_id: Ident
    name: Short | None = None
    enabled: bool = True


class GatewayUpdate(Schema):
    name: Short | None = None


class GatewayDisable(Schema):
    reason: ChangeReason = None


class GatewayPublic(PublicSchema):
    id: str
    plant_id: str
    enterprise_id: str
    name: str | None
    enabled: bool
    has_credentials: bool
    credential_issued_at: datetime | None
    online: bool | None
    status_at: datetime | None
    last_seen: datetime | None
    created_at: datetime


class GatewayCredentials(PublicSchema):
    """Shown once: only a hash is stored. Use as MQTT username/password."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "gateway_id": "gw-cem-03", "username": "gw-cem-03", "password": "Jx3…(shown once)",
        "telemetry_topic": "rw/v1/gw-cem-03/telemetry", "status_topic": "rw/v1/gw-cem-03/status",
        "issued_at": "2026-11-30T08:00:00Z"}]})

    gateway_id: str
    username: str
    password: str
    telemetry_topic: str
    status_topic: str
    issued_at: datetime


# --- devices ----------------------------------------------------------------------------------


class DeviceCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "plant_id": "qsl-p1", "code": "coal-bf", "name": "煤磨袋收尘器", "kind": "bag_filter"}]})

    plant_id: Ident
    code: Ident
    name: Name
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class DeviceUpdate(Schema):
    """`kind` decides which catalog rules bind: an enterprise's change to it waits for the bureau."""

    name: Name | None = None
    kind: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    change_reason: ChangeReason = None


class DevicePublic(PublicSchema):
    id: int
    plant_id: str
    enterprise_id: str
    code: str
    name: str
    kind: str
    created_at: datetime


# --- points -----------------------------------------------------------------------------------


class PointCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "device_id": 1, "gateway_id": "gw-cem-01", "tag": "TT-101", "name": "袋收尘器入口温度",
        "quantity": "temperature", "unit": "degC", "kind": "analog", "required": True, "interval_s": 1,
        "setpoints": {"bm.coal.temp.hi": 75}}]})

    device_id: Int32Id
    gateway_id: Ident
    tag: Tag
    name: Short | None = None
    quantity: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    role: Annotated[str, StringConstraints(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    unit: Short = ""
    kind: Literal["analog", "boolean", "enum"] = "analog"
    required: bool = False
    interval_s: float = Field(default=1.0, gt=0, le=86400)
    states: States | None = None
    setpoints: Setpoints | None = None


class PointUpdate(Schema):
    """`required`, `interval_s`, `states` and `setpoints` are how the point is supervised: an enterprise's
    change to them waits for the bureau (202, a change request); `name` and `unit` apply at once."""

    name: Short | None = None
    unit: Short | None = None
    required: bool | None = None
    interval_s: float | None = Field(default=None, gt=0, le=86400)
    states: States | None = None
    setpoints: Setpoints | None = None
    change_reason: ChangeReason = None


class PointPublic(PublicSchema):
    id: int
    device_id: int
    plant_id: str
    enterprise_id: str
    gateway_id: str
    tag: str
    name: str | None
    quantity: str
    role: str | None
    unit: str
    kind: str
    required: bool
    interval_s: float
    states: dict[str, str] | None
    setpoints: dict[str, float] | None
    baseline: float | None
    created_at: datetime
