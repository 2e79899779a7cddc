"""Ledger statistics: by industry / enterprise / status / source, the "动态清零" count, the overdue
list, and monthly and annual summaries (the bureau's analysis meetings and the annual report).

Every query takes `scope` (the caller's enterprise, or None) and the injected
`now`, so "overdue" means the same in a report as in the tick that lists
tickets for supervision. Months and years are those of the bureau's calendar,
China Standard Time: a ticket opened at 07:00 on 1 December in the county
belongs to December, although it is still 30 November in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

from core.clock import ts
from hazards import store
from hazards.model import CONFIRMED_OPEN, DEADLINE_RUNNING, OPEN, SOURCE_ZH, STATUS_ZH, Source, Status
from rules import store_disposal
from rules.disposal import ResponseStats, response_stats

GroupBy = Literal["industry", "enterprise", "status", "source"]

#: China Standard Time, UTC+8 all year (no daylight saving), so a fixed offset is exact and needs no tz database.
CST = timezone(timedelta(hours=8), "CST")

INDUSTRY_ZH = {"cement": "水泥", "lime": "石灰", "refractory": "耐火材料", "foundry": "铸造", "machinery": "机械"}

_KEY = {
    "industry": ("coalesce(pl.industry, '')", "coalesce(pl.industry, '')"),
    "enterprise": ("h.enterprise_id", "min(e.name)"),
    "status": ("h.status", "h.status"),
    "source": ("h.source", "h.source"),
}


@dataclass
class SummaryRow:
    key: str
    label: str
    total: int
    candidate: int
    confirmed_open: int
    closed: int
    dismissed: int
    overdue: int
    supervised: int


def _label(group_by: str, key: str, label: str) -> str:
    if group_by == "industry":
        return INDUSTRY_ZH.get(key, "未关联厂区 no plant") + (f" {key}" if key else "")
    if group_by == "status":
        return f"{STATUS_ZH[Status(key)]} {key}"
    if group_by == "source":
        return f"{SOURCE_ZH[Source(key)]} {key}"
    return label


def _period(frm: float | None, to: float | None) -> tuple[str, list[Any]]:
    conds, args = [], []  # type: list[str], list[Any]
    if frm is not None:
        conds.append("h.created_at >= %s")
        args.append(ts(frm))
    if to is not None:
        conds.append("h.created_at < %s")
        args.append(ts(to))
    return "".join(f" AND {c}" for c in conds), args


def summary(conn: psycopg.Connection, group_by: GroupBy, scope: str | None, now: float,
            frm: float | None = None, to: float | None = None) -> list[SummaryRow]:
    """Tickets (created in the period, if given) counted by one dimension."""
    key, label = _KEY[group_by]
    period, pargs = _period(frm, to)
    scope_sql, sargs = ("", []) if scope is None else (" AND h.enterprise_id = %s", [scope])
    rows = conn.execute(
        f"""SELECT {key} AS k, {label} AS l, count(*),
                   count(*) FILTER (WHERE h.status = 'candidate'),
                   count(*) FILTER (WHERE h.status = ANY(%s)),
                   count(*) FILTER (WHERE h.status = 'closed'),
                   count(*) FILTER (WHERE h.status = 'dismissed'),
                   count(*) FILTER (WHERE h.status = ANY(%s) AND h.plan_deadline < %s),
                   count(*) FILTER (WHERE h.supervision_level IS NOT NULL AND h.supervision_lifted_at IS NULL)
            FROM hazards h JOIN enterprises e ON e.id = h.enterprise_id LEFT JOIN plants pl ON pl.id = h.plant_id
            WHERE true{scope_sql}{period}
            GROUP BY 1 ORDER BY 1""",
        [[s.value for s in CONFIRMED_OPEN], [s.value for s in DEADLINE_RUNNING], ts(now), *sargs, *pargs],
    ).fetchall()
    return [SummaryRow(str(r[0]), _label(group_by, str(r[0]), str(r[1])), *(int(x) for x in r[2:])) for r in rows]


@dataclass
class EnterpriseCount:
    enterprise_id: str
    enterprise_name: str
    count: int


@dataclass
class OpenMajor:
    """动态清零: confirmed major hazards not yet closed — the figure the bureau drives to zero."""

    count: int
    supervised: int
    overdue: int
    by_enterprise: list[EnterpriseCount] = field(default_factory=list)


def open_major(conn: psycopg.Connection, scope: str | None, now: float) -> OpenMajor:
    scope_sql, sargs = ("", []) if scope is None else (" AND h.enterprise_id = %s", [scope])
    rows = conn.execute(
        f"""SELECT h.enterprise_id, min(e.name), count(*),
                   count(*) FILTER (WHERE h.supervision_level IS NOT NULL AND h.supervision_lifted_at IS NULL),
                   count(*) FILTER (WHERE h.status = ANY(%s) AND h.plan_deadline < %s)
            FROM hazards h JOIN enterprises e ON e.id = h.enterprise_id
            WHERE h.status = ANY(%s){scope_sql} GROUP BY 1 ORDER BY 3 DESC, 1""",
        [[s.value for s in DEADLINE_RUNNING], ts(now), [s.value for s in CONFIRMED_OPEN], *sargs],
    ).fetchall()
    return OpenMajor(count=sum(int(r[2]) for r in rows), supervised=sum(int(r[3]) for r in rows),
                     overdue=sum(int(r[4]) for r in rows),
                     by_enterprise=[EnterpriseCount(r[0], r[1], int(r[2])) for r in rows])


def overdue(conn: psycopg.Connection, scope: str | None, now: float, limit: int = 500,
            offset: int = 0) -> tuple[list[store.TicketRecord], int]:
    return store.list_tickets(conn, store.Filters(overdue=True), scope, now, limit=limit, offset=offset,
                              order="deadline")


# --- period summaries -------------------------------------------------------------------------


@dataclass
class PeriodRow:
    """One line of a period summary: what happened in the period, and where things stood at its end."""

    key: str
    label: str
    new: int = 0
    confirmed: int = 0
    dismissed: int = 0
    closed: int = 0
    open_at_end: int = 0
    overdue_at_end: int = 0
    supervised: int = 0
    funds_yuan: Decimal = Decimal(0)


@dataclass
class PeriodSummary:
    kind: Literal["monthly", "annual"]
    period: str  # "2026-11" or "2026"
    start: datetime
    end: datetime
    totals: PeriodRow
    by_industry: list[PeriodRow]
    by_enterprise: list[PeriodRow]
    by_source: list[PeriodRow]
    interviews: int
    #: None in an enterprise's summary: of a tip, the enterprise learns only that a verified one exists
    #: (its ticket); rewards, reporters and their contacts are the bureau's (the whistle-blower's safety).
    rewards_approved_yuan: Decimal | None
    tickets: list[store.TicketRecord]
    #: 预警处置: per enterprise, the warnings activated in the period that needed feedback, how many were
    #: answered and in time, and the response times (rules.disposal.response_stats), with the enterprise's name
    disposal: list[tuple[str, ResponseStats]] = field(default_factory=list)


def _period_rows(conn: psycopg.Connection, key: str, label: str, start: float, end: float, now: float,
                 scope: str | None) -> list[PeriodRow]:
    scope_sql = "" if scope is None else " AND h.enterprise_id = %(scope)s"
    s, e, cut = ts(start), ts(end), ts(min(end, now))
    rows = conn.execute(
        f"""SELECT {key}, {label},
                   count(*) FILTER (WHERE h.created_at >= %(s)s AND h.created_at < %(e)s),
                   count(*) FILTER (WHERE h.confirmed_at >= %(s)s AND h.confirmed_at < %(e)s),
                   count(*) FILTER (WHERE h.dismissed_at >= %(s)s AND h.dismissed_at < %(e)s),
                   count(*) FILTER (WHERE h.closed_at >= %(s)s AND h.closed_at < %(e)s),
                   count(*) FILTER (WHERE h.confirmed_at < %(e)s AND (h.closed_at IS NULL OR h.closed_at >= %(e)s)),
                   count(*) FILTER (WHERE h.plan_deadline < %(cut)s
                                      AND (h.submitted_at IS NULL OR h.submitted_at > h.plan_deadline)
                                      AND (h.closed_at IS NULL OR h.closed_at >= %(e)s)),
                   count(*) FILTER (WHERE h.supervised_at >= %(s)s AND h.supervised_at < %(e)s),
                   coalesce(sum(h.plan_funds_yuan) FILTER (WHERE h.plan_filed_at >= %(s)s
                                                            AND h.plan_filed_at < %(e)s), 0)
            FROM hazards h JOIN enterprises e ON e.id = h.enterprise_id LEFT JOIN plants pl ON pl.id = h.plant_id
            WHERE h.created_at < %(e)s{scope_sql}
            GROUP BY 1 ORDER BY 1""",
        {"s": s, "e": e, "cut": cut, "scope": scope},
    ).fetchall()
    return [PeriodRow(key=str(r[0]), label=str(r[1]), new=int(r[2]), confirmed=int(r[3]), dismissed=int(r[4]),
                      closed=int(r[5]), open_at_end=int(r[6]), overdue_at_end=int(r[7]), supervised=int(r[8]),
                      funds_yuan=Decimal(r[9])) for r in rows]


def period_summary(conn: psycopg.Connection, kind: Literal["monthly", "annual"], year: int, month: int | None,
                   scope: str | None, now: float) -> PeriodSummary:
    if kind == "monthly":
        assert month is not None
        start = datetime(year, month, 1, tzinfo=CST)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=CST)
        name = f"{year:04d}-{month:02d}"
    else:
        start, end, name = datetime(year, 1, 1, tzinfo=CST), datetime(year + 1, 1, 1, tzinfo=CST), f"{year:04d}"
    s, e = start.timestamp(), end.timestamp()
    totals = _period_rows(conn, "''", "'合计 total'", s, e, now, scope)
    by_industry = _period_rows(conn, "coalesce(pl.industry, '')", "''", s, e, now, scope)
    for r in by_industry:
        r.label = _label("industry", r.key, r.label)
    by_source = _period_rows(conn, "h.source", "''", s, e, now, scope)
    for r in by_source:
        r.label = _label("source", r.key, r.label)
    scope_sql, sargs = ("", []) if scope is None else (" AND enterprise_id = %s", [scope])
    interviews = conn.execute(f"SELECT count(*) FROM hazard_interviews WHERE held_at >= %s AND held_at < %s"
                              f"{scope_sql}", [start, end, *sargs]).fetchone()
    # rewards approved in the period, from the history: the ticket row only keeps the latest reward state.
    # Bureau and admin only (scope None): an enterprise summary carries no reward figure at all.
    rewards = None if scope is not None else conn.execute(
        "SELECT coalesce(sum((ev.data->>'amount_yuan')::numeric), 0) FROM hazard_events ev"
        " JOIN hazards h ON h.id = ev.hazard_id WHERE ev.action = 'set_reward'"
        " AND ev.data->>'reward_status' = 'approved' AND ev.time >= %s AND ev.time < %s",
        [start, end]).fetchone()
    tickets = _period_tickets(conn, start, end, scope)
    stats = response_stats(store_disposal.outcomes(conn, scope, s, e), now)
    names: dict[str, str] = dict(conn.execute("SELECT id, name FROM enterprises WHERE id = ANY(%s)",
                                              [list(stats)]).fetchall())
    return PeriodSummary(
        kind=kind, period=name, start=start, end=end,
        totals=totals[0] if totals else PeriodRow("", "合计 total"),
        by_industry=by_industry,
        by_enterprise=_period_rows(conn, "h.enterprise_id", "min(e.name)", s, e, now, scope),
        by_source=by_source,
        interviews=int(interviews[0]) if interviews else 0,
        rewards_approved_yuan=None if scope is not None
        else Decimal(rewards[0] if rewards else 0).quantize(Decimal("0.01")),
        tickets=tickets,
        disposal=[(str(names.get(eid, eid)), st) for eid, st in stats.items()],
    )


def _period_tickets(conn: psycopg.Connection, start: datetime, end: datetime,
                    scope: str | None) -> list[store.TicketRecord]:
    """Tickets that were open at some time in the period (the ledger sheet of the export)."""
    scope_sql, sargs = ("", []) if scope is None else (" AND h.enterprise_id = %s", [scope])
    with conn.cursor(row_factory=class_row(store.TicketRecord)) as cur:
        rows = cur.execute(
            store._SELECT + f""" WHERE h.created_at < %s
                 AND (h.status = ANY(%s) OR coalesce(h.closed_at, h.dismissed_at) >= %s){scope_sql}
               ORDER BY h.created_at, h.id LIMIT 20000""",
            [end, [s.value for s in OPEN], start, *sargs]).fetchall()
    return rows if scope is None else [without_tip(t) for t in rows]


def without_tip(t: store.TicketRecord) -> store.TicketRecord:
    """The ticket as an enterprise may see it: a public tip's reporter and reward removed."""
    return replace(t, tip_reporter_name=None, tip_reporter_contact=None, tip_internal=None, reward_status=None,
                   reward_amount_yuan=None, reward_note=None)
