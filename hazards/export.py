"""Period summaries as CSV and XLSX, for the bureau's monthly meetings and the annual report.

CSV is UTF-8 with a byte-order mark: Excel on a Chinese Windows desktop opens
a BOM-less UTF-8 file as GBK and shows mojibake. XLSX carries one sheet per
breakdown plus the ledger of tickets open during the period; the CSV has the
same ledger below the breakdown.

Titles, names and descriptions are typed by enterprises, and the bureau opens
these files in a spreadsheet: a cell starting with `=`, `+`, `-`, `@`, tab or
CR would run as a formula (`=HYPERLINK(...)`, DDE). Every text cell is
neutralised as OWASP's "CSV Injection" advice says — prefixed with a single
quote — and XLSX text cells are stored as strings, never formulas. Numbers
stay numbers. A reward figure appears only when the summary carries one (the
bureau's); an enterprise's summary has none.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet

from hazards.model import SOURCE_ZH, STATUS_ZH, Source, Status
from hazards.reports import CST, PeriodRow, PeriodSummary
from hazards.store import TicketRecord

ROW_HEADERS = ["维度 dimension", "键 key", "名称 label", "新增 new", "确认 confirmed", "排除 dismissed",
               "销号 closed", "期末未销号 open at end", "逾期 overdue", "挂牌督办 supervised", "整改资金(元) funds"]
TICKET_HEADERS = ["编号 id", "企业 enterprise", "厂区 plant", "行业 industry", "来源 source", "状态 status",
                  "标题 title", "依据 basis", "发现时间 detected", "确认时间 confirmed", "责任人 responsible",
                  "整改期限 deadline", "整改资金(元) funds", "督办 supervision", "销号时间 closed",
                  "触发次数 occurrences"]


DISPOSAL_HEADERS = ["企业 enterprise", "名称 name", "需反馈 needed feedback", "已反馈 answered", "按时 in time",
                    "按时率 share in time", "逾期未反馈 overdue open", "平均响应(分钟) mean response (min)",
                    "响应中位数(分钟) median response (min)"]


def _minutes(s: float | None) -> object:
    return "" if s is None else round(s / 60.0, 1)


def _disposal_rows(s: PeriodSummary) -> Iterable[list[object]]:
    for name, st in s.disposal:
        yield [st.enterprise_id, name, st.total, st.answered, st.in_time,
               "" if st.share_in_time is None else round(st.share_in_time, 4), st.overdue_open,
               _minutes(st.mean_response_s), _minutes(st.median_response_s)]


def _row(dim: str, r: PeriodRow) -> list[object]:
    return [dim, r.key, r.label, r.new, r.confirmed, r.dismissed, r.closed, r.open_at_end, r.overdue_at_end,
            r.supervised, r.funds_yuan]


def _rows(s: PeriodSummary) -> Iterable[list[object]]:
    yield _row("合计 total", s.totals)
    for dim, rows in (("行业 industry", s.by_industry), ("企业 enterprise", s.by_enterprise),
                      ("来源 source", s.by_source)):
        for r in rows:
            yield _row(dim, r)


def _dt(d: datetime | None) -> str:
    """Local (China Standard Time) wall-clock time, as the bureau reads it."""
    return "" if d is None else d.astimezone(CST).strftime("%Y-%m-%d %H:%M")


def _ticket(t: TicketRecord) -> list[object]:
    sup = "" if t.supervision_level is None else t.supervision_level + (" (lifted)" if t.supervision_lifted_at else "")
    return [t.id, t.enterprise_name, t.plant_name or "", t.industry or "", f"{SOURCE_ZH[Source(t.source)]}",
            f"{STATUS_ZH[Status(t.status)]}", t.title, t.basis or "", _dt(t.detected_at), _dt(t.confirmed_at),
            t.plan_responsible or "", _dt(t.plan_deadline), t.plan_funds_yuan if t.plan_funds_yuan is not None else "",
            sup, _dt(t.closed_at), t.occurrences]


def title(s: PeriodSummary) -> str:
    kind = "月度" if s.kind == "monthly" else "年度"
    return f"重大事故隐患{kind}汇总 {s.period} major-hazard {s.kind} summary"


#: First characters that make a spreadsheet read a cell as a formula (OWASP, CSV Injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(v: object) -> object:
    """A text cell that would start a formula gets a leading single quote; anything else is unchanged."""
    if isinstance(v, str) and v.startswith(FORMULA_START):
        return "'" + v
    return v


def _counts(s: PeriodSummary) -> list[object]:
    line: list[object] = ["约谈 interviews", s.interviews]
    if s.rewards_approved_yuan is not None:
        line += ["举报奖励(元) rewards approved", s.rewards_approved_yuan]
    return line


def to_csv(s: PeriodSummary) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([title(s)])
    w.writerow(_counts(s))
    w.writerow(ROW_HEADERS)
    for row in _rows(s):
        w.writerow([neutralise(v) for v in row])
    w.writerow([])
    w.writerow(["台账 ledger"])
    w.writerow(TICKET_HEADERS)
    for t in s.tickets:
        w.writerow([neutralise(v) for v in _ticket(t)])
    w.writerow([])
    w.writerow(["预警处置 warning disposal"])
    w.writerow(DISPOSAL_HEADERS)
    for row in _disposal_rows(s):
        w.writerow([neutralise(v) for v in row])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _cell(v: object) -> object:
    """XLSX cells cannot hold C0 control characters, which free-text fields may carry: drop them; then
    neutralise what would start a formula (after the drop: "\\x01=1" must not become "=1")."""
    if hasattr(v, "as_tuple"):  # Decimal
        return float(v)  # type: ignore[arg-type]
    if isinstance(v, str):
        return neutralise(ILLEGAL_CHARACTERS_RE.sub("", v))
    return v


def _append(ws: Worksheet, row: list[object]) -> None:
    """Append a row; text cells are strings (data_type "s") whatever openpyxl guessed from their content.

    The cells are made here rather than looked up after `ws.append`: `ws[ws.max_row]` scans every cell of the
    sheet, which made a 10,000-ticket annual export quadratic (minutes instead of seconds)."""
    cells: list[Cell] = []
    for v in row:
        cell = Cell(ws, value=_cell(v))
        if isinstance(cell.value, str):
            cell.data_type = "s"
        cells.append(cell)
    ws.append(cells)


def to_xlsx(s: PeriodSummary) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "汇总 summary"
    _append(ws, [title(s)])
    ws["A1"].font = Font(bold=True, size=13)
    _append(ws, ["期间 period", s.period, "起 from", _dt(s.start), "止 to", _dt(s.end)])
    _append(ws, _counts(s))
    ws.append([])
    _append(ws, list(ROW_HEADERS))
    for cell in ws[5]:
        cell.font = Font(bold=True)
    for row in _rows(s):
        _append(ws, row)
    lt = wb.create_sheet("台账 ledger")
    _append(lt, list(TICKET_HEADERS))
    for cell in lt[1]:
        cell.font = Font(bold=True)
    for t in s.tickets:
        _append(lt, _ticket(t))
    ds = wb.create_sheet("预警处置 disposal")
    _append(ds, list(DISPOSAL_HEADERS))
    for cell in ds[1]:
        cell.font = Font(bold=True)
    for row in _disposal_rows(s):
        _append(ds, row)
    for sheet in (ws, lt, ds):
        for col in sheet.columns:
            letter = col[0].column_letter
            width = max((len(str(c.value)) for c in col if c.value is not None), default=8)
            sheet.column_dimensions[letter].width = min(60, max(10, width + 2))
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
