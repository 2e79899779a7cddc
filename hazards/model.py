"""The ticket as the workflow sees it, and the words used for it.

Times are seconds since the epoch (UTC), like the alarm lifecycle's; the store
converts at the database boundary. Money is Decimal: funds and rewards are
reported to the yuan and must add up exactly in the annual summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from core.vocab import Source as Source  # re-exported: the ledger speaks of sources


class Status(StrEnum):
    CANDIDATE = "candidate"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    PLAN_FILED = "plan_filed"
    RECTIFYING = "rectifying"
    SUBMITTED = "submitted"
    CLOSED = "closed"


class Level(StrEnum):
    COUNTY = "county"
    CITY = "city"


#: Ticket steps only the bureau sees in a timeline: a public tip's reward is the bureau's business (the
#: whistle-blower's safety); an enterprise learns that a verified tip exists, not what it earned.
BUREAU_ONLY_ACTIONS = frozenset({"set_reward"})


class RewardStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    PAID = "paid"


Role = Literal["admin", "bureau", "enterprise", "system"]

#: Not yet closed or dismissed: at most one such ticket per (rule, point).
OPEN: frozenset[Status] = frozenset({Status.CANDIDATE, Status.CONFIRMED, Status.PLAN_FILED, Status.RECTIFYING,
                                     Status.SUBMITTED})
#: Open and confirmed as a major hazard: what "动态清零" counts down to zero.
CONFIRMED_OPEN: frozenset[Status] = OPEN - {Status.CANDIDATE}
#: The enterprise is working to a plan deadline; past it, the ticket is overdue. A submitted ticket
#: waits for the bureau, not the enterprise, so it is not overdue.
DEADLINE_RUNNING: frozenset[Status] = frozenset({Status.PLAN_FILED, Status.RECTIFYING})

STATUS_ZH: dict[Status, str] = {
    Status.CANDIDATE: "待判定",
    Status.CONFIRMED: "已确认",
    Status.DISMISSED: "已排除",
    Status.PLAN_FILED: "已报整改方案",
    Status.RECTIFYING: "整改中",
    Status.SUBMITTED: "已提交验收",
    Status.CLOSED: "已销号",
}
SOURCE_ZH: dict[Source, str] = {
    Source.SENSOR: "监测预警",
    Source.SELF_REPORT: "企业自查",
    Source.INSPECTION: "督导检查",
    Source.PUBLIC_TIP: "群众举报",
}
LEVEL_ZH: dict[Level, str] = {Level.COUNTY: "县级挂牌督办", Level.CITY: "市级挂牌督办"}
ROLE_ZH: dict[str, str] = {"admin": "管理员", "bureau": "监管部门", "enterprise": "企业", "system": "系统"}


@dataclass(frozen=True)
class Actor:
    """Who acts: a token's holder, or the system (intake, overdue tick)."""

    name: str
    role: Role
    enterprise_id: str | None = None
    #: May verify/close (销号) and set supervision levels. A console user has a finer role than the API's
    #: (only a section chief or leader may); a bearer token has none, so it keeps its API role's rights.
    may_verify: bool = True


SYSTEM = Actor("system", "system")


@dataclass(frozen=True)
class Plan:
    """五落实: responsibility, measures, funds, deadline, contingency plan."""

    responsible_person: str
    measures: str
    funds_yuan: Decimal
    deadline: float
    contingency_plan: str
    responsible_phone: str | None = None

    def as_data(self) -> dict[str, Any]:
        return {"responsible_person": self.responsible_person, "responsible_phone": self.responsible_phone,
                "measures": self.measures, "funds_yuan": str(self.funds_yuan), "deadline": self.deadline,
                "contingency_plan": self.contingency_plan}


@dataclass(frozen=True)
class Supervision:
    """挂牌督办: set by hand or by the overdue tick; lifted (摘牌) when the ticket is closed."""

    level: Level
    since: float
    by: str
    reason: str
    lifted_at: float | None = None

    @property
    def active(self) -> bool:
        return self.lifted_at is None


@dataclass(frozen=True)
class Reward:
    """Whistle-blower reward of a public tip (举报奖励)."""

    status: RewardStatus = RewardStatus.PENDING
    amount_yuan: Decimal | None = None
    note: str = ""


@dataclass(frozen=True)
class Ticket:
    id: int
    enterprise_id: str
    source: Source
    status: Status
    plan: Plan | None = None
    supervision: Supervision | None = None
    reward: Reward | None = None
    confirmed_at: float | None = None
    confirmed_by: str | None = None
    dismissed_at: float | None = None
    dismissed_reason: str | None = None
    plan_filed_at: float | None = None
    submitted_at: float | None = None
    closed_at: float | None = None
    closed_by: str | None = None
    sent_back_count: int = 0

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def overdue(self, now: float) -> bool:
        return self.status in DEADLINE_RUNNING and self.plan is not None and now > self.plan.deadline


@dataclass(frozen=True)
class Event:
    """One line of a ticket's history: every transition, comment and attachment is one."""

    action: str
    from_status: Status
    to_status: Status
    actor: str
    role: Role
    time: float
    comment: str = ""
    enterprise_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
