"""统计报表 Reports: by dimension, the 动态清零 count, the overdue list, monthly and annual summaries.

An enterprise token sees its own figures only; the bureau sees the county.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.http.deps import Auth, Conn, Now, Page
from api.http.routers._common import API_PREFIX, AUTH, page
from api.http.schemas.admin import (
    DisposalStatsPublic,
    OpenMajorPublic,
    PeriodRowPublic,
    PeriodSummaryPublic,
    SummaryRowPublic,
)
from api.http.schemas.common import Page as PageOf
from api.http.schemas.common import Timestamp
from api.http.schemas.hazards import HazardPublic
from hazards import export, reports

router = APIRouter(prefix=API_PREFIX + "/reports", tags=["reports"], responses=AUTH)
# Monthly and annual periods are calendar months and years in China Standard Time (UTC+8).

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
Format = Literal["json", "csv", "xlsx"]
Year = Annotated[int, Query(ge=2000, le=2100)]
_EXPORT: dict[int | str, dict[str, Any]] = {200: {
    "description": "JSON, or a CSV / XLSX download with `format`",
    "content": {"text/csv": {"schema": {"type": "string"}},
                XLSX: {"schema": {"type": "string", "format": "binary"}}}}}


@router.get("/summary", summary="分类统计 Counts by industry, enterprise, status or source")
def summary(who: Auth, conn: Conn, now: Now,
            group_by: Annotated[Literal["industry", "enterprise", "status", "source"], Query()] = "status",
            from_: Annotated[Timestamp | None, Query(alias="from", description="created at or after")] = None,
            to: Annotated[Timestamp | None, Query(description="created before")] = None) -> list[SummaryRowPublic]:
    rows = reports.summary(conn, group_by, who.scope, now, from_.timestamp() if from_ else None,
                           to.timestamp() if to else None)
    return [SummaryRowPublic.model_validate(r, from_attributes=True) for r in rows]


@router.get("/open-major", summary="动态清零 Open confirmed major hazards (the figure driven to zero)")
def open_major(who: Auth, conn: Conn, now: Now) -> OpenMajorPublic:
    return OpenMajorPublic.model_validate(reports.open_major(conn, who.scope, now), from_attributes=True)


@router.get("/overdue", summary="逾期清单 Tickets past their rectification deadline")
def overdue(who: Auth, conn: Conn, now: Now, p: Page) -> PageOf[HazardPublic]:
    rows, total = reports.overdue(conn, who.scope, now, p.limit, p.offset)
    return PageOf[HazardPublic].model_validate(
        page([HazardPublic.of(r, who, now) for r in rows], total, p.limit, p.offset))


def _render(s: reports.PeriodSummary, fmt: Format) -> Any:
    if fmt == "csv":
        return Response(export.to_csv(s), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="hazards-{s.kind}-{s.period}.csv"'})
    if fmt == "xlsx":
        return Response(export.to_xlsx(s), media_type=XLSX,
                        headers={"Content-Disposition": f'attachment; filename="hazards-{s.kind}-{s.period}.xlsx"'})
    row = PeriodRowPublic.model_validate
    return PeriodSummaryPublic(
        kind=s.kind, period=s.period, start=s.start, end=s.end, totals=row(s.totals, from_attributes=True),
        by_industry=[row(r, from_attributes=True) for r in s.by_industry],
        by_enterprise=[row(r, from_attributes=True) for r in s.by_enterprise],
        by_source=[row(r, from_attributes=True) for r in s.by_source], interviews=s.interviews,
        rewards_approved_yuan=s.rewards_approved_yuan, tickets=len(s.tickets),
        disposal=[DisposalStatsPublic(enterprise_name=name, **asdict(st)) for name, st in s.disposal])


# exclude_none: an enterprise's summary has no `rewards_approved_yuan` at all (not even a null)
@router.get("/monthly", responses=_EXPORT, response_model=PeriodSummaryPublic, response_model_exclude_none=True,
            summary="月度汇总 Monthly summary (JSON, CSV or XLSX); months in China Standard Time")
def monthly(who: Auth, conn: Conn, now: Now, year: Year, month: Annotated[int, Query(ge=1, le=12)],
            format: Annotated[Format, Query()] = "json") -> Any:
    return _render(reports.period_summary(conn, "monthly", year, month, who.scope, now), format)


@router.get("/annual", responses=_EXPORT, response_model=PeriodSummaryPublic, response_model_exclude_none=True,
            summary="年度汇总 Annual summary (JSON, CSV or XLSX); years in China Standard Time")
def annual(who: Auth, conn: Conn, now: Now, year: Year, format: Annotated[Format, Query()] = "json") -> Any:
    return _render(reports.period_summary(conn, "annual", year, None, who.scope, now), format)
