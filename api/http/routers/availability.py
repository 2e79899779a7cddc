"""数据完整率与接入完整性 Data availability, gateway online rate and missing mandatory points (issue 14).

The definitions live in `core.availability` and are repeated in each route's description, so a reader of
the OpenAPI document knows exactly what a share means. An enterprise token sees only its own points,
gateways and enterprise; naming another enterprise or its gateway answers 404, as if it did not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from api.http.deps import Auth, Conn, Now, Page
from api.http.problems import ApiProblem, not_found
from api.http.queries import registry as qr
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND
from api.http.schemas.availability import (
    CellPublic,
    EnterpriseAvailability,
    EnterpriseAvailabilityList,
    EnterpriseMandatory,
    GatewayAvailability,
    GatewayAvailabilityList,
    GatewayCellPublic,
    Granularity,
    MandatoryMissingList,
    MissingPointPublic,
    PointAvailability,
    PointAvailabilityPage,
)
from api.http.schemas.common import Ident, Timestamp
from core import availability as av
from core.mandatory import missing_mandatory

router = APIRouter(prefix=API_PREFIX, tags=["availability"], responses={**AUTH, **NOT_FOUND})

SHARE_DOC = (
    "完整率 = 实收 / 应收。Buckets are calendar hours, days or months in Beijing time (UTC+8), clipped to "
    "[from, to). Expected readings of a point in a bucket: floor(seconds / interval_s) over the part of the "
    "bucket after the point was registered and before now. Received: the 1-minute rollup's counts "
    "(readings_1m) in the bucket, capped at expected per point and bucket. A gateway's or enterprise's share "
    "sums expected and received over its points. `share` is null when nothing was expected.")
ONLINE_DOC = (
    " 在线率 Online rate: the share of the observed time (bucket clipped to the gateway's registration and "
    "now) during which the gateway's `common.gateway.offline` alarm was not active, from that alarm's "
    "activate/clear events (the state at `from` is its last such event before `from`). The alarm activates "
    "`silent_s` (30 s) after the gateway reports itself offline or goes quiet, so shorter outages do not count "
    "and an outage counts from its detection. A disabled gateway has no such alarm: its rate reads 1.0 beside "
    "`enabled: false`. An enterprise's rate: online seconds over observed seconds summed over its gateways.")

DEFAULT_SPAN = {"hour": timedelta(days=1), "day": timedelta(days=30), "month": timedelta(days=365)}

FromQ = Annotated[Timestamp | None, Query(alias="from", description="default: `to` - 1 day / 30 days / 365 days")]
ToQ = Annotated[Timestamp | None, Query(description="default: now")]
GranQ = Annotated[Granularity, Query(description="hour | day | month (Beijing time)")]
EntQ = Annotated[Ident | None, Query()]
GwQ = Annotated[Ident | None, Query()]


def _window(frm: datetime | None, to: datetime | None, now: float, g: Granularity) -> tuple[float, float]:
    end = to or datetime.fromtimestamp(now, UTC)
    start = frm or end - DEFAULT_SPAN[g]
    if end <= start:
        raise ApiProblem(422, "bad-window", "请求不完整 Invalid request",
                         "to 必须晚于 from。 `to` must be after `from`.")
    try:
        av.bucket_bounds(start.timestamp(), end.timestamp(), g)
    except ValueError:
        raise ApiProblem(422, "too-many-buckets", "请求不完整 Invalid request",
                         f"时段过多（最多 {av.MAX_BUCKETS}）。 Too many buckets (at most {av.MAX_BUCKETS}); "
                         "use a coarser granularity or a shorter window.") from None
    return start.timestamp(), end.timestamp()


def _check_scope(conn: Conn, who: Auth, enterprise_id: str | None, gateway_id: str | None) -> None:
    """404 for an enterprise or gateway that does not exist or is not the caller's."""
    if enterprise_id is not None and qr.get_enterprise(conn, enterprise_id, who.scope) is None:
        raise not_found("企业", "Enterprise", enterprise_id)
    if gateway_id is not None and qr.get_gateway(conn, gateway_id, who.scope) is None:
        raise not_found("网关", "Gateway", gateway_id)


def _report(conn: Conn, s: float, e: float, now: float, g: Granularity, who: Auth, enterprise_id: str | None,
            gateway_id: str | None) -> av.Report:
    try:
        return av.report(conn, s, e, now, g, scope=who.scope, enterprise_id=enterprise_id, gateway_id=gateway_id)
    except av.TooLarge:
        raise ApiProblem(422, "too-much-data", "请求不完整 Invalid request",
                         f"测点数 × 时段数超过 {av.MAX_CELLS}，请缩短时间窗、改用更粗的粒度或按企业/网关筛选。 "
                         f"Points x buckets exceeds {av.MAX_CELLS}: shorten the window, use a coarser "
                         "granularity or filter by enterprise or gateway.") from None


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _cell(c: av.Cell) -> CellPublic:
    return CellPublic(start=_dt(c.start), end=_dt(c.end), expected=c.expected, received=c.received, share=c.share)


def _gcell(c: av.Cell) -> GatewayCellPublic:
    return GatewayCellPublic(start=_dt(c.start), end=_dt(c.end), expected=c.expected, received=c.received,
                             share=c.share, online_rate=c.online_rate)


@router.get("/availability/points", summary="测点数据完整率 Per point: share of expected readings received",
            description=SHARE_DOC)
def points(who: Auth, conn: Conn, now: Now, p: Page, granularity: GranQ = "hour", from_: FromQ = None,
           to: ToQ = None, enterprise_id: EntQ = None, gateway_id: GwQ = None) -> PointAvailabilityPage:
    _check_scope(conn, who, enterprise_id, gateway_id)
    s, e = _window(from_, to, now, granularity)
    rows, total = av.points_page(conn, s, e, now, granularity, scope=who.scope, enterprise_id=enterprise_id,
                                 gateway_id=gateway_id, limit=p.limit, offset=p.offset)
    items = [PointAvailability(point_id=int(r.key), tag=r.label, gateway_id=str(r.gateway_id),
                               plant_id=str(r.plant_id), enterprise_id=r.enterprise_id,
                               interval_s=float(r.interval_s or 0), total=_cell(r.total),
                               buckets=[_cell(c) for c in r.cells]) for r in rows]
    return PointAvailabilityPage(granularity=granularity, start=_dt(s), end=_dt(e), items=items, total=total,
                                 limit=p.limit, offset=p.offset)


@router.get("/availability/gateways", summary="网关数据完整率与在线率 Per gateway: data share and online rate",
            description=SHARE_DOC + ONLINE_DOC)
def gateways(who: Auth, conn: Conn, now: Now, granularity: GranQ = "day", from_: FromQ = None, to: ToQ = None,
             enterprise_id: EntQ = None, gateway_id: GwQ = None) -> GatewayAvailabilityList:
    _check_scope(conn, who, enterprise_id, gateway_id)
    s, e = _window(from_, to, now, granularity)
    rep = _report(conn, s, e, now, granularity, who, enterprise_id, gateway_id)
    items = [GatewayAvailability(gateway_id=g.key, name=g.label, plant_id=str(g.plant_id),
                                 enterprise_id=g.enterprise_id, enabled=bool(g.enabled), points=g.points,
                                 total=_gcell(g.total), buckets=[_gcell(c) for c in g.cells]) for g in rep.gateways]
    return GatewayAvailabilityList(granularity=granularity, start=_dt(s), end=_dt(e), items=items)


@router.get("/availability/enterprises", summary="企业数据完整率与在线率 Per enterprise: data share and online rate",
            description=SHARE_DOC + ONLINE_DOC)
def enterprises(who: Auth, conn: Conn, now: Now, granularity: GranQ = "month", from_: FromQ = None,
                to: ToQ = None, enterprise_id: EntQ = None) -> EnterpriseAvailabilityList:
    _check_scope(conn, who, enterprise_id, None)
    s, e = _window(from_, to, now, granularity)
    rep = _report(conn, s, e, now, granularity, who, enterprise_id, None)
    items = [EnterpriseAvailability(enterprise_id=x.key, name=x.label, points=x.points, total=_gcell(x.total),
                                    buckets=[_gcell(c) for c in x.cells]) for x in rep.enterprises]
    return EnterpriseAvailabilityList(granularity=granularity, start=_dt(s), end=_dt(e), items=items)


@router.get("/registry/mandatory-missing",
            summary="必接测点缺失 Per enterprise and dust collector: the mandatory points not registered",
            description="《工贸行业粉尘涉爆企业安全生产风险监测预警系统数据接入规范》: dry dust collectors must "
                        "report hopper temperature, inlet/outlet pressure difference and airlock fault; wet ones "
                        "tank level and circulation flow. Every enterprise in scope is listed, with 0 when "
                        "nothing is missing (the same check as `riskwatch registry check`).")
def mandatory_missing(who: Auth, conn: Conn, enterprise_id: EntQ = None) -> MandatoryMissingList:
    _check_scope(conn, who, enterprise_id, None)
    names = qr.enterprise_names(conn, who.scope, enterprise_id)
    missing: dict[str, list[MissingPointPublic]] = {str(k): [] for k in names}
    for m in missing_mandatory(conn):
        if m.enterprise in missing:
            missing[m.enterprise].append(MissingPointPublic(plant_id=m.plant, device_code=m.device,
                                                            device_name=m.device_name, role=m.role, zh=m.zh,
                                                            en=m.en))
    return MandatoryMissingList(items=[EnterpriseMandatory(enterprise_id=k, name=str(names[k]),
                                                           missing_count=len(v), missing=v)
                                       for k, v in missing.items()])
