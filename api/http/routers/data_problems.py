"""数据问题 Data problems: dead letters with their plain-Chinese reasons, unmapped tags, mapping a tag to a point.

Scoped like every other read: an enterprise sees the dead letters and unmapped tags of its own gateways only
(a dead letter from an unregistered gateway is the bureau's), and never another's payload; payloads are
shown as a cut, escaped text preview, never as raw bytes. Mapping a tag (`ingest.quarantine.map_tag`, the
operation the console uses too) creates the point and backfills the tag's quarantined readings into
`readings` in one transaction; another enterprise's gateway is 404, as if it did not exist. Adding a point
adds supervision, so an enterprise may map its own tags.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field

from api.http.deps import ALL, Auth, Conn, Page, require
from api.http.problems import ApiProblem
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, NOT_FOUND, AuditNote, IdentPath, page
from api.http.schemas.common import Int32Id, Short
from api.http.schemas.common import Page as PageOf
from api.http.schemas.registry import Setpoints
from ingest import quarantine
from ingest.reasons import explain

router = APIRouter(prefix=API_PREFIX, tags=["data-problems"], responses=AUTH)

TagPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[^\x00\s]+$")]
ReasonCode = Annotated[str, Query(pattern=r"^[a-z_]{1,64}$")]


class DeadLetterPublic(BaseModel):
    id: int
    received_at: datetime
    gateway_id: str | None
    topic: str
    reason: str
    reason_zh: str = Field(description="原因与处理建议 What happened and what to do, in plain Chinese")
    reason_en: str
    detail: str | None
    reading_index: int | None
    payload_preview: str | None = Field(description="消息内容节选 At most 300 characters, bytes escaped")
    payload_bytes: int | None
    enterprise_id: str | None = Field(description="网关所属企业 The gateway's enterprise (none: unregistered)")


class UnmappedPublic(BaseModel):
    gateway_id: str
    tag: str
    plant_id: str | None
    enterprise_id: str | None
    first_seen: datetime
    last_seen: datetime
    count: int = Field(description="收到的读数条数 Readings received (redeliveries included)")
    last_value: float | None
    quarantined: int = Field(description="暂存待回填的读数 Readings held for the backfill")


class MapBody(BaseModel):
    model_config = {"extra": "forbid"}

    device_id: Int32Id
    quantity: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
    unit: Short = ""
    name: Short | None = None
    kind: Annotated[str, Field(pattern=r"^(analog|boolean|enum)$")] = "analog"
    interval_s: float = Field(default=1.0, gt=0, le=86400)
    setpoints: Setpoints | None = None


class MapResultPublic(BaseModel):
    point_id: int
    gateway_id: str
    tag: str
    backfilled: int = Field(description="回填到 readings 的读数 Quarantined readings moved into readings")
    duplicates: int


@router.get("/dead-letters", summary="死信列表 List dead letters (with plain-Chinese reasons)")
def list_dead_letters(who: Auth, conn: Conn, p: Page,
                      reason: ReasonCode | None = None) -> PageOf[DeadLetterPublic]:
    rows, total = quarantine.dead_letters(conn, who.scope, p.limit, p.offset, reason)
    for r in rows:
        text = explain(r["reason"])
        r["reason_zh"], r["reason_en"] = text.zh, text.en
    return PageOf[DeadLetterPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.get("/unmapped", summary="未映射标签 List unmapped tags")
def list_unmapped(who: Auth, conn: Conn, p: Page) -> PageOf[UnmappedPublic]:
    rows, total = quarantine.unmapped(conn, who.scope, p.limit, p.offset)
    return PageOf[UnmappedPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.post("/unmapped/{gateway_id}/{tag:path}/map", status_code=status.HTTP_201_CREATED,
             responses={**NOT_FOUND, **CONFLICT},
             summary="映射为测点 Map an unmapped tag to a new point and backfill its quarantined readings")
def map_unmapped(gateway_id: IdentPath, tag: TagPath, body: MapBody, who: Auth, conn: Conn,
                 note: AuditNote) -> MapResultPublic:
    require(who, *ALL)
    spec = quarantine.PointSpec(body.device_id, body.quantity, body.unit, body.kind, body.name, body.interval_s,
                                dict(body.setpoints or {}))
    try:
        res = quarantine.map_tag(conn, gateway_id, tag, spec, who.scope)
    except quarantine.MapError as exc:
        code = {404: "not-found", 409: "conflict"}.get(exc.status, "invalid-request")
        raise ApiProblem(exc.status, code, "无法映射 Cannot map the tag", exc.message) from exc
    note.update({"action": "map_tag", "gateway_id": gateway_id, "tag": tag, "point_id": res.point_id,
                 "backfilled": res.backfilled})
    return MapResultPublic(point_id=res.point_id, gateway_id=gateway_id, tag=tag, backfilled=res.backfilled,
                           duplicates=res.duplicates)
