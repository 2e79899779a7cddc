"""The hazard workflow, as pure functions of (ticket, action, actor, now).

    candidate ──confirm──▶ confirmed ──file_plan (五落实)──▶ plan_filed ──start_rectification──▶ rectifying
        │                                                                                       ▲      │
        └──dismiss (reason)──▶ dismissed                                    send_back (reason) │   submit
                                                                                                │      ▼
                                                   closed (销号) ◀──verify── submitted ─────────┘

Overlays that keep the status: supervision (挂牌督办, county or city level; by
hand, or by `tick` once the plan's deadline has passed, county first and city
after CITY_AFTER_S more; lifted when the ticket is closed), comments, evidence
notes, interview notes and the whistle-blower reward of a public tip.

`apply` returns the new ticket and the event to append, or raises:
ActionForbidden (the role may not do this), TransitionRefused (the status
does not allow it; the message says what is allowed) or InvalidAction (the
action lacks a reason, a complete plan, ...). Nothing here reads a clock or a
database, so every transition is tested as a table.

Separation of duties: the bureau judges (confirm, dismiss, verify, send back,
supervise); the enterprise rectifies (plan, start, submit). Admin, who runs
the service, may do both so a stuck ticket can always be moved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import ClassVar

from core.timeconst import S_PER_DAY
from hazards.errors import ActionForbidden, InvalidAction, TransitionRefused
from hazards.model import (
    CONFIRMED_OPEN,
    LEVEL_ZH,
    OPEN,
    ROLE_ZH,
    SOURCE_ZH,
    STATUS_ZH,
    SYSTEM,
    Actor,
    Event,
    Level,
    Plan,
    Reward,
    RewardStatus,
    Role,
    Source,
    Status,
    Supervision,
    Ticket,
)

#: Overdue this long past the county listing's trigger, the ticket is listed at city level.
CITY_AFTER_S = 30.0 * S_PER_DAY

BUREAU: frozenset[Role] = frozenset({"admin", "bureau"})
ENTERPRISE: frozenset[Role] = frozenset({"admin", "enterprise"})
ANYONE: frozenset[Role] = frozenset({"admin", "bureau", "enterprise", "system"})
ALL_STATUSES: frozenset[Status] = frozenset(Status)


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Confirm:
    comment: str = ""
    name: ClassVar[str] = "confirm"


@dataclass(frozen=True)
class Dismiss:
    reason: str
    name: ClassVar[str] = "dismiss"


@dataclass(frozen=True)
class FilePlan:
    plan: Plan
    comment: str = ""
    name: ClassVar[str] = "file_plan"


@dataclass(frozen=True)
class StartRectification:
    comment: str = ""
    name: ClassVar[str] = "start_rectification"


@dataclass(frozen=True)
class Submit:
    comment: str  # what was done; the bureau verifies against it
    name: ClassVar[str] = "submit"


@dataclass(frozen=True)
class Verify:
    comment: str = ""
    name: ClassVar[str] = "verify"


@dataclass(frozen=True)
class SendBack:
    reason: str
    name: ClassVar[str] = "send_back"


@dataclass(frozen=True)
class Supervise:
    level: Level
    reason: str
    name: ClassVar[str] = "supervise"


@dataclass(frozen=True)
class Comment:
    text: str
    name: ClassVar[str] = "comment"


@dataclass(frozen=True)
class NoteEvidence:
    summary: str
    name: ClassVar[str] = "add_evidence"


@dataclass(frozen=True)
class NoteInterview:
    summary: str
    name: ClassVar[str] = "interview"


@dataclass(frozen=True)
class SetReward:
    status: RewardStatus
    amount_yuan: Decimal | None = None
    note: str = ""
    name: ClassVar[str] = "set_reward"


Action = (Confirm | Dismiss | FilePlan | StartRectification | Submit | Verify | SendBack | Supervise | Comment
          | NoteEvidence | NoteInterview | SetReward)

ACTION_ZH: dict[str, str] = {
    "create": "登记",
    "confirm": "确认为重大事故隐患",
    "dismiss": "排除",
    "file_plan": "报送整改方案（五落实）",
    "start_rectification": "开始整改",
    "submit": "提交验收",
    "verify": "验收销号",
    "send_back": "退回整改",
    "supervise": "挂牌督办",
    "comment": "备注",
    "add_evidence": "补充证据",
    "interview": "约谈记录",
    "set_reward": "举报奖励",
}


@dataclass(frozen=True)
class Rule:
    from_: frozenset[Status]
    to: Status | None  # None: the status does not change
    roles: frozenset[Role]


RULES: dict[str, Rule] = {
    "confirm": Rule(frozenset({Status.CANDIDATE}), Status.CONFIRMED, BUREAU),
    "dismiss": Rule(frozenset({Status.CANDIDATE}), Status.DISMISSED, BUREAU),
    "file_plan": Rule(frozenset({Status.CONFIRMED}), Status.PLAN_FILED, ENTERPRISE),
    "start_rectification": Rule(frozenset({Status.PLAN_FILED}), Status.RECTIFYING, ENTERPRISE),
    "submit": Rule(frozenset({Status.RECTIFYING}), Status.SUBMITTED, ENTERPRISE),
    "verify": Rule(frozenset({Status.SUBMITTED}), Status.CLOSED, BUREAU),
    "send_back": Rule(frozenset({Status.SUBMITTED}), Status.RECTIFYING, BUREAU),
    "supervise": Rule(CONFIRMED_OPEN, None, BUREAU),
    "comment": Rule(ALL_STATUSES, None, ANYONE),
    "add_evidence": Rule(OPEN, None, ANYONE),
    "interview": Rule(ALL_STATUSES, None, BUREAU),
    "set_reward": Rule(ALL_STATUSES, None, BUREAU),
}

#: Who may open a ticket from each source.
CREATE_ROLES: dict[Source, frozenset[Role]] = {
    Source.SENSOR: frozenset({"system", "admin", "bureau"}),
    Source.SELF_REPORT: frozenset({"admin", "bureau", "enterprise"}),
    Source.INSPECTION: BUREAU,
    Source.PUBLIC_TIP: BUREAU,
}


def _s(status: Status) -> str:
    return f"「{STATUS_ZH[status]}」({status.value})"


def _need(text: str, zh: str, en: str) -> str:
    t = text.strip()
    if not t:
        raise InvalidAction(f"{zh} {en}")
    return t


#: Decisions reserved to those who may verify (`Actor.may_verify`: a section chief or leader in the console).
VERIFY_ACTIONS: frozenset[str] = frozenset({"verify", "supervise"})


def _check_actor(ticket: Ticket, action: str, actor: Actor, roles: frozenset[Role]) -> None:
    if actor.role not in roles:
        raise ActionForbidden(
            f"{ROLE_ZH[actor.role]}无权{ACTION_ZH[action]}。 Role {actor.role} may not {action}.",
            action=action, role=actor.role)
    if action in VERIFY_ACTIONS and not actor.may_verify:
        raise ActionForbidden(f"只有科长或局领导可以{ACTION_ZH[action]}。 "
                              f"Only a section chief or a bureau leader may {action}.", action=action, role=actor.role)
    if actor.role == "enterprise" and actor.enterprise_id != ticket.enterprise_id:
        raise ActionForbidden("只能处理本企业的隐患。 Only the ticket's own enterprise may act on it.",
                              action=action)


def allowed_actions(ticket: Ticket, actor: Actor) -> list[str]:
    """The actions this actor may take on the ticket now (for the API's `next_actions`)."""
    out = []
    for name, rule in RULES.items():
        if ticket.status not in rule.from_ or actor.role not in rule.roles:
            continue
        if actor.role == "enterprise" and actor.enterprise_id != ticket.enterprise_id:
            continue
        if name in VERIFY_ACTIONS and not actor.may_verify:
            continue
        if name == "set_reward" and ticket.source is not Source.PUBLIC_TIP:
            continue
        if name == "supervise" and ticket.supervision and ticket.supervision.active \
                and ticket.supervision.level is Level.CITY:
            continue
        out.append(name)
    return out


def apply(ticket: Ticket, action: Action, actor: Actor, now: float) -> tuple[Ticket, Event]:
    """Take one action; return the new ticket and the event to append to its history."""
    rule = RULES[action.name]
    _check_actor(ticket, action.name, actor, rule.roles)
    if ticket.status not in rule.from_:
        allowed = "、".join(STATUS_ZH[s] for s in sorted(rule.from_, key=list(Status).index))
        allowed_en = ", ".join(s.value for s in sorted(rule.from_, key=list(Status).index))
        raise TransitionRefused(
            f"不允许的操作：隐患 #{ticket.id} 当前为{_s(ticket.status)}，不能{ACTION_ZH[action.name]}"
            f"（仅限：{allowed}）。 Transition not allowed: hazard #{ticket.id} is {ticket.status.value}; "
            f"{action.name} is only allowed from {allowed_en}.",
            action=action.name, current_status=ticket.status.value, allowed_from=sorted(s.value for s in rule.from_))
    new, comment, data = _step(ticket, action, actor, now)
    event = Event(action.name, ticket.status, new.status, actor.name, actor.role, now, comment,
                  actor.enterprise_id, data)
    return new, event


def _step(t: Ticket, action: Action, actor: Actor, now: float) -> tuple[Ticket, str, dict[str, object]]:
    match action:
        case Confirm(comment=c):
            return replace(t, status=Status.CONFIRMED, confirmed_at=now, confirmed_by=actor.name), c.strip(), {}
        case Dismiss(reason=r):
            reason = _need(r, "排除需说明理由。", "Dismissing needs a reason.")
            return replace(t, status=Status.DISMISSED, dismissed_at=now, dismissed_reason=reason), reason, {}
        case FilePlan(plan=p, comment=c):
            plan = _check_plan(p, now)
            return (replace(t, status=Status.PLAN_FILED, plan=plan, plan_filed_at=now), c.strip(),
                    {"plan": plan.as_data()})
        case StartRectification(comment=c):
            return replace(t, status=Status.RECTIFYING), c.strip(), {}
        case Submit(comment=c):
            done = _need(c, "提交验收需说明整改完成情况。", "Submitting needs a description of what was done.")
            return replace(t, status=Status.SUBMITTED, submitted_at=now), done, {}
        case Verify(comment=c):
            sup = t.supervision
            data: dict[str, object] = {}
            if sup is not None and sup.active:
                sup = replace(sup, lifted_at=now)
                data["supervision_lifted"] = sup.level.value  # 销号即摘牌
            return (replace(t, status=Status.CLOSED, closed_at=now, closed_by=actor.name, supervision=sup),
                    c.strip(), data)
        case SendBack(reason=r):
            reason = _need(r, "退回需说明理由。", "Sending back needs a reason.")
            return replace(t, status=Status.RECTIFYING, sent_back_count=t.sent_back_count + 1), reason, {}
        case Supervise(level=level, reason=r):
            reason = _need(r, "挂牌督办需说明理由。", "Listing for supervision needs a reason.")
            return _supervise(t, Level(level), actor, now, reason), reason, {"level": Level(level).value}
        case Comment(text=text):
            return t, _need(text, "备注不能为空。", "A comment needs text."), {}
        case NoteEvidence(summary=s):
            return t, s.strip(), {}
        case NoteInterview(summary=s):
            return t, _need(s, "约谈记录不能为空。", "An interview record needs a summary."), {}
        case SetReward():
            return _reward(t, action), action.note.strip(), {
                "reward_status": action.status.value,
                "amount_yuan": None if action.amount_yuan is None else str(action.amount_yuan)}
    raise AssertionError(f"unhandled action {action!r}")  # pragma: no cover


def _check_plan(p: Plan, now: float) -> Plan:
    missing = [zh for zh, v in (("责任人 responsible person", p.responsible_person), ("整改措施 measures", p.measures),
                                ("应急预案 contingency plan", p.contingency_plan)) if not v.strip()]
    if missing:
        raise InvalidAction(f"整改方案（五落实）不完整，缺少：{'、'.join(missing)}。 "
                            "The rectification plan must name all five: responsible person, measures, funds, "
                            "deadline and contingency plan.", missing=missing)
    if not p.funds_yuan.is_finite() or p.funds_yuan < 0:
        raise InvalidAction("整改资金不能为负数。 Funds must be zero or more.")
    if p.deadline <= now:
        raise InvalidAction("整改期限必须晚于当前时间。 The deadline must be in the future.")
    return replace(p, responsible_person=p.responsible_person.strip(), measures=p.measures.strip(),
                   contingency_plan=p.contingency_plan.strip())


def _supervise(t: Ticket, level: Level, actor: Actor, now: float, reason: str) -> Ticket:
    cur = t.supervision
    if cur is not None and cur.active:
        if cur.level is Level.CITY or cur.level is level:
            raise TransitionRefused(
                f"隐患 #{t.id} 已{LEVEL_ZH[cur.level]}。 Hazard #{t.id} is already listed at {cur.level.value} level.",
                action="supervise", current_status=t.status.value)
    return replace(t, supervision=Supervision(level, now, actor.name, reason))


_REWARD_NEXT: dict[RewardStatus, frozenset[RewardStatus]] = {
    RewardStatus.PENDING: frozenset({RewardStatus.APPROVED, RewardStatus.DECLINED}),
    RewardStatus.APPROVED: frozenset({RewardStatus.PAID}),
    RewardStatus.DECLINED: frozenset(),
    RewardStatus.PAID: frozenset(),
}


def _reward(t: Ticket, a: SetReward) -> Ticket:
    if t.source is not Source.PUBLIC_TIP or t.reward is None:
        raise TransitionRefused(f"只有群众举报的隐患有举报奖励（本隐患来源：{SOURCE_ZH[t.source]}）。 "
                                f"Only a public tip carries a reward (this one is {t.source.value}).",
                                action="set_reward", current_status=t.status.value)
    cur = t.reward.status
    target = RewardStatus(a.status)
    if target not in _REWARD_NEXT[cur]:
        raise TransitionRefused(f"举报奖励不能从「{cur.value}」变为「{target.value}」。 "
                                f"Reward cannot go from {cur.value} to {target.value}.",
                                action="set_reward", current_status=t.status.value)
    if target is RewardStatus.APPROVED:
        if t.status not in CONFIRMED_OPEN | {Status.CLOSED}:
            raise TransitionRefused("举报尚未核实为重大事故隐患，不能批准奖励。 "
                                    "The tip has not been verified as a major hazard; no reward can be approved.",
                                    action="set_reward", current_status=t.status.value)
        if a.amount_yuan is None or not a.amount_yuan.is_finite() or a.amount_yuan <= 0:
            raise InvalidAction("批准奖励需填写金额。 Approving a reward needs an amount.")
    amount = a.amount_yuan if target is RewardStatus.APPROVED else t.reward.amount_yuan
    return replace(t, reward=Reward(target, amount, a.note.strip()))


# --- opening and the clock ----------------------------------------------------------------


def open_ticket(ticket: Ticket, actor: Actor, now: float, comment: str = "") -> tuple[Ticket, list[Event]]:
    """A new ticket from one of the four sources; `ticket` carries its source, enterprise and id.

    Sensor, self-report and public-tip tickets start as candidates for the bureau to judge. An
    inspection finding is the bureau's own judgement: it opens confirmed, with both events, so
    every confirmed ticket's history has a confirm step with its actor.
    """
    roles = CREATE_ROLES[ticket.source]
    if actor.role not in roles:
        raise ActionForbidden(f"{ROLE_ZH[actor.role]}不能登记来源为「{SOURCE_ZH[ticket.source]}」的隐患。 "
                              f"Role {actor.role} may not open a {ticket.source.value} ticket.")
    if actor.role == "enterprise" and actor.enterprise_id != ticket.enterprise_id:
        raise ActionForbidden("只能为本企业登记隐患。 An enterprise may only report its own hazards.")
    reward = Reward() if ticket.source is Source.PUBLIC_TIP else None
    t = replace(ticket, status=Status.CANDIDATE, reward=reward)
    events = [Event("create", Status.CANDIDATE, Status.CANDIDATE, actor.name, actor.role, now, comment.strip(),
                    actor.enterprise_id, {"source": ticket.source.value})]
    if ticket.source is Source.INSPECTION:
        t, ev = apply(t, Confirm("督导检查发现 found by inspection"), actor, now)
        events.append(ev)
    return t, events


def tick(t: Ticket, now: float, city_after_s: float = CITY_AFTER_S) -> tuple[Ticket, Event] | None:
    """Overdue tickets are listed for supervision: county level first, city level later."""
    if not t.overdue(now):
        return None
    assert t.plan is not None
    late = now - t.plan.deadline
    want = Level.CITY if late >= city_after_s else Level.COUNTY
    cur = t.supervision
    if cur is not None and cur.active and (cur.level is Level.CITY or cur.level is want):
        return None
    days = late / S_PER_DAY
    reason = f"整改逾期 {days:.1f} 天，自动{LEVEL_ZH[want]}。 Rectification overdue by {days:.1f} days."
    new = replace(t, supervision=Supervision(want, now, SYSTEM.name, reason))
    return new, Event("supervise", t.status, t.status, SYSTEM.name, SYSTEM.role, now, reason, None,
                      {"level": want.value, "automatic": True, "overdue_s": late})
