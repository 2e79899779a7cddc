"""The annual summary and the three-year evaluation as XLSX workbooks.

One sheet per block of figures; the three-year evaluation has the same sheets
with a 年度 year column, plus the totals. Names typed by enterprises end up in
cells, so every text cell goes through the hazard export's neutralisation
(`hazards.export._cell`: control characters dropped, a leading = + - @ tab CR
quoted, stored as a string, never a formula). Whistle-blower figures appear
only in the bureau's workbook.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet

from hazards.export import _append
from hazards.model import SOURCE_ZH, Source
from hazards.records.cadence import LEVEL_ZH, Level
from hazards.records.evaluation import Evaluation, YearFigures
from hazards.records.health import VERDICT_ZH, Health
from hazards.records.store import Position
from hazards.reports import INDUSTRY_ZH

SUMMARY_HEADERS = ["年度 year", "新增隐患 hazards found", "销号 hazards closed", "县级挂牌 county listings",
                   "市级挂牌 city listings", "约谈 interviews", "月度分析会 meetings", "自查漏检 missed cadences",
                   "开展演练企业 enterprises with a drill", "企业数 enterprises", "培训覆盖率 training coverage",
                   "数据完整率 data availability"]
BUREAU_HEADERS = ["群众举报 public tips", "举报奖励(元) rewards approved"]
HAZARD_HEADERS = ["年度 year", "来源 source", "行业 industry", "新增 found", "销号 closed"]
ZERO_HEADERS = ["年度 year", "月份 month", "未销号重大隐患 confirmed open at month end"]
CADENCE_HEADERS = ["年度 year", "企业编号 enterprise id", "企业 enterprise", "层级 level", "频次 frequency",
                   "应查 due", "已查 done", "漏查 missed", "进行中 open", "漏查期间 missed periods"]
TRAINING_HEADERS = ["年度 year", "企业编号 enterprise id", "企业 enterprise", "职工人数 headcount",
                    "参训人数 trained", "覆盖率 coverage", "培训场次 courses", "演练次数 drills",
                    "演练参与人次 drill participants", "分析会月数 months with a meeting"]
AVAIL_HEADERS = ["年度 year", "企业编号 enterprise id", "企业 enterprise", "测点数 points", "应收 expected",
                 "实收 received", "完整率 availability"]


def _ratio(v: float | None) -> object:
    return "" if v is None else v


def summary_row(y: YearFigures) -> list[object]:
    row: list[object] = [y.year, y.hazards_found, y.hazards_closed, y.supervision_county, y.supervision_city,
                         y.interviews, y.meetings, y.missed_cadences, y.enterprises_with_drill, y.enterprises,
                         _ratio(y.training_coverage), _ratio(y.availability_total)]
    if y.public_tips is not None:
        row += [y.public_tips, float(y.rewards_approved_yuan or 0)]
    return row


def _sheet(wb: Workbook, title: str, headers: list[str], rows: Iterable[list[object]],
           first: bool = False) -> Worksheet:
    ws = wb.active if first else wb.create_sheet(title)
    assert ws is not None
    ws.title = title
    _append(ws, [*headers])
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    for r in rows:
        _append(ws, r)
    for col in ws.columns:
        width = max((len(str(c.value)) for c in col if c.value is not None), default=8)
        ws.column_dimensions[col[0].column_letter].width = min(50, max(10, width + 2))
    return ws


def title(ev: Evaluation) -> str:
    if ev.kind == "annual":
        return f"{ev.years[0].year}年度安全生产工作总结 annual summary {ev.years[0].year}"
    return "2024-2026 三年行动评估 three-year evaluation"


def to_xlsx(ev: Evaluation) -> bytes:
    wb = Workbook()
    bureau = ev.scope is None
    headers = SUMMARY_HEADERS + (BUREAU_HEADERS if bureau else [])
    rows = [summary_row(y) for y in ev.years]
    if ev.kind == "evaluation":
        total: list[object] = ["合计 total", ev.totals["hazards_found"], ev.totals["hazards_closed"],
                               ev.totals["supervision_county"], ev.totals["supervision_city"], ev.totals["interviews"],
                               ev.totals["meetings"], ev.totals["missed_cadences"], "", "", "", ""]
        if bureau:
            total += [ev.totals.get("public_tips", 0),
                      float(sum((y.rewards_approved_yuan or 0) for y in ev.years))]
        rows.append(total)
    ws = _sheet(wb, "汇总 summary", headers, rows, first=True)
    ws.insert_rows(1)
    ws["A1"] = title(ev)
    ws["A1"].font = Font(bold=True, size=13)
    _sheet(wb, "隐患 hazards", HAZARD_HEADERS, (
        [y.year, f"{SOURCE_ZH[Source(c.source)]} {c.source}",
         (INDUSTRY_ZH.get(c.industry, "未关联厂区 no plant") + (f" {c.industry}" if c.industry else "")),
         c.found, c.closed] for y in ev.years for c in y.hazards))
    _sheet(wb, "动态清零 zero", ZERO_HEADERS, ([y.year, m, n] for y in ev.years for m, n in y.zero_progress))
    _sheet(wb, "自查 cadence", CADENCE_HEADERS, (
        [y.year, r.enterprise_id, r.enterprise_name, f"{LEVEL_ZH[Level(r.level)]} {r.level}", r.frequency, r.due,
         r.done, r.missed, r.open, " ".join(r.missed_periods)] for y in ev.years for r in y.cadence))
    _sheet(wb, "演练培训 training", TRAINING_HEADERS, (
        [y.year, t.enterprise_id, t.enterprise_name, t.headcount if t.headcount is not None else "", t.trained,
         _ratio(t.coverage), t.courses, t.drills, t.drill_participants, t.meetings]
        for y in ev.years for t in y.training))
    _sheet(wb, "数据完整率 availability", AVAIL_HEADERS, (
        [y.year, a.enterprise_id, a.enterprise_name, a.points, a.expected, a.received, _ratio(a.availability)]
        for y in ev.years for a in y.availability))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


HEALTH_HEADERS = ["岗位 position", "名称 name", "报警数 alarms", "每10分钟 per 10 min", "每日 per day",
                  "10分钟峰值 max in 10 min", "泛滥区间 flood intervals", "泛滥分钟 flood minutes",
                  "泛滥时间占比% time in flood", "长期报警 standing (>24 h)", "陈旧未确认 stale", "搁置 shelved",
                  "搁置操作 shelve actions", "振荡报警 chattering", "振荡次数 chatter episodes",
                  "前10占比 top-10 share", "评价(10分钟) verdict per 10 min", "评价(日) verdict per day"]
BAD_ACTOR_HEADERS = ["岗位 position", "名次 rank", "规则 rule", "对象 subject", "次数 count", "占比 share"]


def health_to_xlsx(rows: Iterable[tuple[Position, Health]]) -> bytes:
    """Alarm-system health of each position (ISA-18.2 / EEMUA 191), with its bad actors on a second sheet."""
    items = list(rows)
    wb = Workbook()
    _sheet(wb, "报警系统健康 alarm health", HEALTH_HEADERS, (
        [p.id, p.name, h.alarms, h.per_10min, h.per_day, h.max_10min, h.flood_intervals, h.flood_minutes,
         h.pct_time_in_flood, len(h.standing), h.stale, h.shelved_at_end, h.shelve_actions, h.chattering_alarms,
         h.chatter_episodes, h.top_share, f"{VERDICT_ZH[h.verdict_10min]} {h.verdict_10min}",
         f"{VERDICT_ZH[h.verdict_day]} {h.verdict_day}"] for p, h in items), first=True)
    _sheet(wb, "频发报警 bad actors", BAD_ACTOR_HEADERS, (
        [p.id, i + 1, b.rule_id, b.subject, b.count, b.share] for p, h in items for i, b in enumerate(h.top)))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
