"""The hazard workflow as a table: every (status, action) pair is either a transition with its event or a
refusal that says, in Chinese and English, what is allowed; every role outside an action's roles is refused."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from hazards import workflow as wf
from hazards.errors import ActionForbidden, InvalidAction, TransitionRefused
from hazards.model import (
    SYSTEM,
    Actor,
    Level,
    Plan,
    Reward,
    RewardStatus,
    Source,
    Status,
    Supervision,
    Ticket,
)

NOW = 1_764_460_800.0
DAY = 86400.0
ADMIN = Actor("管理员", "admin")
BUREAU = Actor("值班员 张", "bureau")
ENT_A = Actor("甲企业安全科", "enterprise", "ent-a")
ENT_B = Actor("乙企业安全科", "enterprise", "ent-b")
PLAN = Plan("王强", "更换回水管路", Decimal("85000.00"), NOW + 30 * DAY, "停用1#中频炉", "13900000003")


def ticket(status: Status, source: Source = Source.SENSOR, **kw: object) -> Ticket:
    plan = PLAN if status in (Status.PLAN_FILED, Status.RECTIFYING, Status.SUBMITTED, Status.CLOSED) else None
    reward = Reward() if source is Source.PUBLIC_TIP else None
    return replace(Ticket(7, "ent-a", source, status, plan=plan, reward=reward), **kw)  # type: ignore[arg-type]


def valid(name: str) -> wf.Action:
    """A complete action of each kind."""
    return {
        "confirm": wf.Confirm("核实属实"),
        "dismiss": wf.Dismiss("传感器检修 sensor maintenance"),
        "file_plan": wf.FilePlan(PLAN, "方案已报"),
        "start_rectification": wf.StartRectification("施工队进场"),
        "submit": wf.Submit("已更换管路并调试联锁"),
        "verify": wf.Verify("现场验收合格"),
        "send_back": wf.SendBack("调试记录不全"),
        "supervise": wf.Supervise(Level.COUNTY, "进度滞后"),
        "comment": wf.Comment("已电话督促"),
        "add_evidence": wf.NoteEvidence("照片"),
        "interview": wf.NoteInterview("约谈主要负责人"),
        "set_reward": wf.SetReward(RewardStatus.DECLINED, None, "不符合条件"),
    }[name]


#: (action, from status) -> status after; every pair not listed must be refused with 409.
EXPECTED: dict[tuple[str, Status], Status] = {
    ("confirm", Status.CANDIDATE): Status.CONFIRMED,
    ("dismiss", Status.CANDIDATE): Status.DISMISSED,
    ("file_plan", Status.CONFIRMED): Status.PLAN_FILED,
    ("start_rectification", Status.PLAN_FILED): Status.RECTIFYING,
    ("submit", Status.RECTIFYING): Status.SUBMITTED,
    ("verify", Status.SUBMITTED): Status.CLOSED,
    ("send_back", Status.SUBMITTED): Status.RECTIFYING,
    **{("supervise", s): s for s in (Status.CONFIRMED, Status.PLAN_FILED, Status.RECTIFYING, Status.SUBMITTED)},
    **{("comment", s): s for s in Status},
    **{("add_evidence", s): s for s in (Status.CANDIDATE, Status.CONFIRMED, Status.PLAN_FILED, Status.RECTIFYING,
                                        Status.SUBMITTED)},
    **{("interview", s): s for s in Status},
    **{("set_reward", s): s for s in Status},
}


def who_may(name: str) -> Actor:
    roles = wf.RULES[name].roles
    return BUREAU if "bureau" in roles else ENT_A


def test_the_table_covers_every_action() -> None:
    assert {a for a, _ in EXPECTED} == set(wf.RULES)


@pytest.mark.parametrize("name", sorted(wf.RULES))
@pytest.mark.parametrize("status", list(Status))
def test_every_status_action_pair(name: str, status: Status) -> None:
    t = ticket(status, Source.PUBLIC_TIP if name == "set_reward" else Source.SENSOR)
    actor = who_may(name)
    want = EXPECTED.get((name, status))
    if want is None:
        with pytest.raises(TransitionRefused) as exc:
            wf.apply(t, valid(name), actor, NOW)
        msg = exc.value.message
        assert "不允许的操作" in msg and "not allowed" in msg and status.value in msg
        assert exc.value.context["allowed_from"] == sorted(s.value for s in wf.RULES[name].from_)
        return
    new, event = wf.apply(t, valid(name), actor, NOW)
    assert new.status is want
    assert (event.action, event.from_status, event.to_status) == (name, status, want)
    assert (event.actor, event.role, event.time) == (actor.name, actor.role, NOW)
    assert event.comment  # every step says why or what


@pytest.mark.parametrize("name", sorted(wf.RULES))
@pytest.mark.parametrize("actor", [ADMIN, BUREAU, ENT_A, SYSTEM], ids=lambda a: a.role)
def test_roles(name: str, actor: Actor) -> None:
    status = next(s for (a, s) in EXPECTED if a == name)
    t = ticket(status, Source.PUBLIC_TIP if name == "set_reward" else Source.SENSOR)
    if actor.role in wf.RULES[name].roles:
        wf.apply(t, valid(name), actor, NOW)
    else:
        with pytest.raises(ActionForbidden, match="无权"):
            wf.apply(t, valid(name), actor, NOW)


def test_separation_of_duties() -> None:
    """The bureau judges and the enterprise rectifies; admin can move a stuck ticket either way."""
    judge = {"confirm", "dismiss", "verify", "send_back", "supervise", "interview", "set_reward"}
    rectify = {"file_plan", "start_rectification", "submit"}
    for name in judge:
        assert "enterprise" not in wf.RULES[name].roles and "admin" in wf.RULES[name].roles
    for name in rectify:
        assert "bureau" not in wf.RULES[name].roles and "admin" in wf.RULES[name].roles


def test_another_enterprise_is_refused() -> None:
    with pytest.raises(ActionForbidden, match="本企业"):
        wf.apply(ticket(Status.CONFIRMED), wf.FilePlan(PLAN), ENT_B, NOW)
    with pytest.raises(ActionForbidden):
        wf.apply(ticket(Status.CONFIRMED), wf.Comment("x"), ENT_B, NOW)


def test_the_whole_path_records_who_and_when() -> None:
    t = ticket(Status.CANDIDATE)
    steps = [(wf.Confirm(), BUREAU), (wf.FilePlan(PLAN), ENT_A), (wf.StartRectification(), ENT_A),
             (wf.Submit("done"), ENT_A), (wf.SendBack("incomplete"), BUREAU), (wf.Submit("done again"), ENT_A),
             (wf.Verify("ok"), BUREAU)]
    trail = []
    for i, (action, actor) in enumerate(steps):
        t, e = wf.apply(t, action, actor, NOW + i)
        trail.append((e.action, e.to_status.value, e.actor))
    assert t.status is Status.CLOSED and t.sent_back_count == 1
    assert (t.confirmed_by, t.confirmed_at, t.closed_by, t.closed_at) == (BUREAU.name, NOW, BUREAU.name, NOW + 6)
    assert t.plan == PLAN and t.plan_filed_at == NOW + 1 and t.submitted_at == NOW + 5
    assert trail[4] == ("send_back", "rectifying", BUREAU.name)


@pytest.mark.parametrize("action", [wf.Dismiss("  "), wf.Submit(""), wf.SendBack(" "), wf.Comment(""),
                                    wf.Supervise(Level.COUNTY, ""), wf.NoteInterview("")],
                         ids=lambda a: a.name)
def test_reasons_are_required(action: wf.Action) -> None:
    status = next(s for (a, s) in EXPECTED if a == action.name)
    with pytest.raises(InvalidAction):
        wf.apply(ticket(status), action, ADMIN, NOW)


@pytest.mark.parametrize("plan", [
    replace(PLAN, responsible_person=" "), replace(PLAN, measures=""), replace(PLAN, contingency_plan=""),
    replace(PLAN, funds_yuan=Decimal("-1")), replace(PLAN, deadline=NOW), replace(PLAN, deadline=NOW - DAY),
], ids=["person", "measures", "contingency", "funds", "deadline-now", "deadline-past"])
def test_the_plan_must_be_complete(plan: Plan) -> None:
    with pytest.raises(InvalidAction, match="五落实|资金|期限"):
        wf.apply(ticket(Status.CONFIRMED), wf.FilePlan(plan), ENT_A, NOW)


def test_supervision_levels() -> None:
    t, e = wf.apply(ticket(Status.RECTIFYING), wf.Supervise(Level.COUNTY, "滞后"), BUREAU, NOW)
    assert t.supervision == Supervision(Level.COUNTY, NOW, BUREAU.name, "滞后") and e.data == {"level": "county"}
    with pytest.raises(TransitionRefused, match="县级"):
        wf.apply(t, wf.Supervise(Level.COUNTY, "again"), BUREAU, NOW)
    t, _ = wf.apply(t, wf.Supervise(Level.CITY, "升级"), BUREAU, NOW + 1)
    assert t.supervision is not None and t.supervision.level is Level.CITY
    with pytest.raises(TransitionRefused, match="市级"):
        wf.apply(t, wf.Supervise(Level.COUNTY, "down"), BUREAU, NOW)
    assert "supervise" not in wf.allowed_actions(t, BUREAU)
    t, _ = wf.apply(t, wf.Submit("done"), ENT_A, NOW + 2)
    t, e = wf.apply(t, wf.Verify(), BUREAU, NOW + 3)
    assert t.supervision is not None and t.supervision.lifted_at == NOW + 3 and e.data["supervision_lifted"] == "city"


def test_tick_lists_overdue_tickets_county_then_city() -> None:
    t = ticket(Status.RECTIFYING)
    assert wf.tick(t, PLAN.deadline) is None  # due, not yet overdue
    t1, e1 = wf.tick(t, PLAN.deadline + DAY) or pytest.fail("not supervised")
    assert t1.supervision is not None and t1.supervision.level is Level.COUNTY and t1.supervision.by == "system"
    assert (e1.action, e1.role, e1.data["automatic"], e1.data["level"]) == ("supervise", "system", True, "county")
    assert "逾期 1.0 天" in e1.comment and "overdue" in e1.comment
    assert wf.tick(t1, PLAN.deadline + 2 * DAY) is None  # already county
    t2, e2 = wf.tick(t1, PLAN.deadline + wf.CITY_AFTER_S + DAY) or pytest.fail("not escalated")
    assert t2.supervision is not None and t2.supervision.level is Level.CITY
    assert wf.tick(t2, PLAN.deadline + 90 * DAY) is None


@pytest.mark.parametrize("status", [Status.CANDIDATE, Status.CONFIRMED, Status.SUBMITTED, Status.CLOSED,
                                    Status.DISMISSED])
def test_tick_leaves_tickets_without_a_running_deadline(status: Status) -> None:
    assert wf.tick(ticket(status), PLAN.deadline + 100 * DAY) is None


def test_tick_keeps_a_hand_set_city_listing() -> None:
    t = ticket(Status.PLAN_FILED, supervision=Supervision(Level.CITY, NOW, BUREAU.name, "重点"))
    assert wf.tick(t, PLAN.deadline + DAY) is None


@pytest.mark.parametrize(("source", "allowed"), [
    (Source.SENSOR, {"system", "admin", "bureau"}),
    (Source.SELF_REPORT, {"admin", "bureau", "enterprise"}),
    (Source.INSPECTION, {"admin", "bureau"}),
    (Source.PUBLIC_TIP, {"admin", "bureau"}),
])
def test_open_ticket_by_source(source: Source, allowed: set[str]) -> None:
    for actor in (ADMIN, BUREAU, ENT_A, SYSTEM):
        t0 = Ticket(0, "ent-a", source, Status.CANDIDATE)
        if actor.role not in allowed:
            with pytest.raises(ActionForbidden):
                wf.open_ticket(t0, actor, NOW)
            continue
        t, events = wf.open_ticket(t0, actor, NOW, "登记")
        assert events[0].action == "create" and events[0].data == {"source": source.value}
        if source is Source.INSPECTION:  # the inspectors' finding is the bureau's judgement
            assert t.status is Status.CONFIRMED and [e.action for e in events] == ["create", "confirm"]
        else:
            assert t.status is Status.CANDIDATE and len(events) == 1
        assert (t.reward is not None) == (source is Source.PUBLIC_TIP)
    with pytest.raises(ActionForbidden):
        wf.open_ticket(Ticket(0, "ent-a", Source.SELF_REPORT, Status.CANDIDATE), ENT_B, NOW)


def test_whistle_blower_reward() -> None:
    tip = ticket(Status.CANDIDATE, Source.PUBLIC_TIP)
    with pytest.raises(TransitionRefused, match="尚未核实"):
        wf.apply(tip, wf.SetReward(RewardStatus.APPROVED, Decimal(2000)), BUREAU, NOW)
    tip, _ = wf.apply(tip, wf.Confirm(), BUREAU, NOW)
    with pytest.raises(InvalidAction, match="金额"):
        wf.apply(tip, wf.SetReward(RewardStatus.APPROVED), BUREAU, NOW)
    with pytest.raises(TransitionRefused):
        wf.apply(tip, wf.SetReward(RewardStatus.PAID), BUREAU, NOW)
    tip, e = wf.apply(tip, wf.SetReward(RewardStatus.APPROVED, Decimal("2000.00"), "局务会同意"), BUREAU, NOW)
    assert tip.reward == Reward(RewardStatus.APPROVED, Decimal("2000.00"), "局务会同意")
    assert e.data == {"reward_status": "approved", "amount_yuan": "2000.00"}
    tip, _ = wf.apply(tip, wf.SetReward(RewardStatus.PAID), BUREAU, NOW)
    assert tip.reward is not None and tip.reward.status is RewardStatus.PAID and tip.reward.amount_yuan == 2000
    with pytest.raises(TransitionRefused):
        wf.apply(tip, wf.SetReward(RewardStatus.DECLINED), BUREAU, NOW)
    with pytest.raises(TransitionRefused, match="群众举报"):
        wf.apply(ticket(Status.CONFIRMED), wf.SetReward(RewardStatus.DECLINED), BUREAU, NOW)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("actor", [ADMIN, BUREAU, ENT_A, ENT_B], ids=lambda a: f"{a.role}-{a.enterprise_id}")
def test_allowed_actions_match_apply(status: Status, actor: Actor) -> None:
    t = ticket(status, Source.PUBLIC_TIP)
    listed = set(wf.allowed_actions(t, actor))
    for name in wf.RULES:
        try:
            wf.apply(t, valid(name), actor, NOW)
            ok = True
        except (ActionForbidden, TransitionRefused):
            ok = False
        assert ok == (name in listed), (name, status, actor)
