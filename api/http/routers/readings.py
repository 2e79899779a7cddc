"""读数 Readings of a point: raw, or bucketed with TimescaleDB's time_bucket."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.http.deps import Auth, Conn, Now
from api.http.problems import ApiProblem, not_found
from api.http.queries import registry as qr
from api.http.queries import telemetry as q
from api.http.routers._common import API_PREFIX, AUTH, NOT_FOUND
from api.http.schemas.common import Int32Id, Timestamp
from api.http.schemas.telemetry import BucketPublic, BucketsPublic, ReadingPublic, ReadingsPublic

router = APIRouter(prefix=API_PREFIX + "/readings", tags=["readings"], responses={**AUTH, **NOT_FOUND})

MAX_RAW_SPAN = timedelta(days=31)
MAX_BUCKETS = 100_000


def _window(frm: datetime | None, to: datetime | None, now: float, default: timedelta,
            limit_span: timedelta | None) -> tuple[datetime, datetime]:
    end = to or datetime.fromtimestamp(now, UTC)
    start = frm or end - default
    if end <= start:
        raise ApiProblem(422, "bad-window", "请求不完整 Invalid request",
                         "to 必须晚于 from。 `to` must be after `from`.")
    if limit_span is not None and end - start > limit_span:
        raise ApiProblem(422, "window-too-long", "请求不完整 Invalid request",
                         f"时间窗最长 {limit_span.days} 天。 The window may span at most {limit_span.days} days.")
    return start, end


def _point(conn: Conn, point_id: int, who: Auth) -> dict[str, object]:
    p = qr.get_point(conn, point_id, who.scope)
    if p is None:
        raise not_found("测点", "Point", point_id)
    return p


@router.get("", summary="原始读数 Raw readings of a point")
def raw(who: Auth, conn: Conn, now: Now, point_id: Annotated[Int32Id, Query()],
        from_: Annotated[Timestamp | None, Query(alias="from", description="default: `to` - 1 h")] = None,
        to: Annotated[Timestamp | None, Query(description="default: now")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
        order: Annotated[Literal["asc", "desc"], Query()] = "asc") -> ReadingsPublic:
    p = _point(conn, point_id, who)
    start, end = _window(from_, to, now, timedelta(hours=1), MAX_RAW_SPAN)
    rows = q.raw_readings(conn, point_id, start, end, limit, order == "desc")
    return ReadingsPublic(point_id=point_id, tag=str(p["tag"]), unit=str(p["unit"]),
                          items=[ReadingPublic.model_validate(r) for r in rows])


@router.get("/buckets", summary="分时段统计 Readings bucketed by time (min, max, avg, last, count)")
def buckets(who: Auth, conn: Conn, now: Now, point_id: Annotated[Int32Id, Query()],
            bucket_s: Annotated[int, Query(ge=1, le=31 * 86400, description="bucket width in seconds")] = 60,
            from_: Annotated[Timestamp | None, Query(alias="from", description="default: `to` - 24 h")] = None,
            to: Annotated[Timestamp | None, Query(description="default: now")] = None,
            include_bad: Annotated[bool, Query(description="include readings of bad quality")] = False,
            ) -> BucketsPublic:
    p = _point(conn, point_id, who)
    start, end = _window(from_, to, now, timedelta(hours=24), None)
    if (end - start).total_seconds() / bucket_s > MAX_BUCKETS:
        raise ApiProblem(422, "too-many-buckets", "请求不完整 Invalid request",
                         f"时段过多（最多 {MAX_BUCKETS}）。 Too many buckets (at most {MAX_BUCKETS}); widen bucket_s.")
    rows = q.bucketed_readings(conn, point_id, start, end, bucket_s, include_bad)
    return BucketsPublic(point_id=point_id, tag=str(p["tag"]), unit=str(p["unit"]), bucket_s=bucket_s,
                         items=[BucketPublic.model_validate(r) for r in rows])
