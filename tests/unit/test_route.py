"""Routing decisions: the tree walk, inheritance, group keys, and the contacts a receiver stands for."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alerting.channels.base import Contact
from alerting.config import AlertingConfig, EscalationStep, Timing, load_config
from alerting.route import EnterpriseContacts, Event, Resolved, contacts_for, group_key, route

TEXT = """\
version: 1
defaults: {group_by: [plant], group_wait: 10s, group_interval: 2m, repeat_interval: 30m}
channels:
  email: {type: smtp, host: 127.0.0.1, sender: "rw <rw@example.gov.cn>"}
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
people:
  zhangwei: {name: 张伟, email: zhangwei@example.gov.cn, phone: "13800000001"}
  lina: {name: 李娜, phone: "13800000003"}
  chenjie: {name: 陈杰, email: chenjie@example.gov.cn}
rosters:
  duty:
    handover: 15m
    shifts:
      - {days: [mon, tue, wed, thu, fri], from: "08:30", to: "17:30", people: [zhangwei]}
      - {days: [mon, tue, wed, thu, fri, sat, sun], from: "17:30", to: "08:30", people: [lina]}
    fallback: [chenjie]
  mondays:
    shifts: [{days: [mon], from: "08:00", to: "18:00", people: [zhangwei]}]
receivers:
  duty: {to: [{roster: duty}], via: [email]}
  chief: {to: [{person: chenjie}], via: [email]}
  leaders: {to: [{enterprise: principal}, {enterprise: controller}], via: [email]}
  everyone: {to: [{person: zhangwei}, {roster: duty}, {person: chenjie}, {enterprise: principal}], via: [email]}
  monday-duty: {to: [{roster: mondays}], via: [email]}
  ops: {via: [hook]}
routes:
  receiver: duty
  escalation: [{after: 15m, receiver: chief}]
  routes:
    - match: {kind: hazard, event: confirmed}           # root.0
      receiver: [duty, leaders]
      group_by: [enterprise, hazard]
    - match: {severity: [urgent, high]}                 # root.1
      group_wait: 0s
      continue: true
    - match: {industry: foundry}                        # root.2
      receiver: [duty, ops]
      repeat_interval: 0
      routes:
        - match: {rule: foundry.dust.high}              # root.2.0
          escalation: []
          group_interval: 5m
        - match: {plant: [P1, P2]}                      # root.2.1
          receiver: chief
    - match: {industry: foundry, severity: low}         # root.3: never reached, root.2 takes foundry first
      receiver: chief
"""

SHANGHAI = ZoneInfo("Asia/Shanghai")
ESCALATE = (EscalationStep(after=900, receiver="chief"),)


@pytest.fixture(scope="module")
def cfg() -> AlertingConfig:
    return load_config("alerting.yaml", TEXT)


def at(when: str) -> float:
    return datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI).timestamp()


def alarm(severity: str = "medium", industry: str = "cement", **labels: str) -> Event:
    return Event(kind="alarm", event="firing", severity=severity, industry=industry, **labels)


# --- the tree walk ------------------------------------------------------------------------------


@pytest.mark.parametrize(("ev", "expected"), [
    pytest.param(alarm(), [("root", ("duty",), "matched root (no more specific route)")],
                 id="nothing specific: the root"),
    pytest.param(alarm("high"), [("root.1", ("duty",), "matched root.1 (severity=high)")],
                 id="a continue child that matched alone is the only result"),
    pytest.param(alarm("urgent", "foundry"), [
        ("root.1", ("duty",), "matched root.1 (severity=urgent)"),
        ("root.2", ("duty", "ops"), "matched root.2 (industry=foundry)"),
    ], id="continue: the next sibling is tried too"),
    pytest.param(alarm("low", "foundry"), [("root.2", ("duty", "ops"), "matched root.2 (industry=foundry)")],
                 id="first match stops: root.3 also matches but is not reached"),
    pytest.param(alarm("low", "foundry", rule="foundry.dust.high", plant="P1"), [
        ("root.2.0", ("duty", "ops"), "matched root.2 (industry=foundry) > root.2.0 (rule=foundry.dust.high)"),
    ], id="nested: the first matching grandchild"),
    pytest.param(alarm("low", "foundry", plant="P2"), [
        ("root.2.1", ("chief",), "matched root.2 (industry=foundry) > root.2.1 (plant=P2)"),
    ], id="nested: list value is any-of"),
    pytest.param(alarm("low", "foundry", plant="P3"),
                 [("root.2", ("duty", "ops"), "matched root.2 (industry=foundry)")],
                 id="nested: no grandchild matched, the child is the result"),
    pytest.param(Event("hazard", "confirmed", severity="urgent", industry="foundry"), [
        ("root.0", ("duty", "leaders"), "matched root.0 (kind=hazard, event=confirmed)"),
    ], id="confirmed hazard stops before the severity route"),
    pytest.param(Event("hazard", "candidate", severity="high"),
                 [("root.1", ("duty",), "matched root.1 (severity=high)")],
                 id="other hazard events route by severity"),
    pytest.param(Event("alarm", "firing"), [("root", ("duty",), "matched root (no more specific route)")],
                 id="a missing label matches nothing"),
])
def test_route(cfg: AlertingConfig, ev: Event, expected: list[tuple[str, tuple[str, ...], str]]) -> None:
    assert [(m.path, m.receivers, m.reason) for m in route(cfg, ev)] == expected


@pytest.mark.parametrize(("path", "timing"), [
    ("root", Timing(("plant",), 10, 120, 1800, ESCALATE)),
    ("root.0", Timing(("enterprise", "hazard"), 10, 120, 1800, ESCALATE)),
    ("root.1", Timing(("plant",), 0, 120, 1800, ESCALATE)),
    ("root.2", Timing(("plant",), 10, 120, 0, ESCALATE)),
    ("root.2.0", Timing(("plant",), 10, 300, 0, ())),  # overrides escalation to none, inherits root.2's repeat
    ("root.2.1", Timing(("plant",), 10, 120, 0, ESCALATE)),
])
def test_inheritance(cfg: AlertingConfig, path: str, timing: Timing) -> None:
    node = cfg.routes
    for i in path.split(".")[1:]:
        node = node.routes[int(i)]
    assert node.path == path
    assert node.timing == timing


def test_match_carries_the_node_timing(cfg: AlertingConfig) -> None:
    [m] = route(cfg, alarm("low", "foundry", rule="foundry.dust.high"))
    assert m.timing == Timing(("plant",), 10, 300, 0, ())


def test_root_with_no_receivers() -> None:
    empty = load_config("(built-in)", "version: 1\nroutes: {receiver: []}\n")
    [m] = route(empty, alarm("urgent"))
    assert (m.path, m.receivers) == ("root", ())


# --- group keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("group_by", "ev", "key"), [
    (("plant",), alarm(plant="P1"), "plant=P1"),
    (("plant",), alarm(), "plant="),
    (("enterprise", "plant"), alarm(enterprise="E1", plant="P1"), "enterprise=E1,plant=P1"),
    (("plant", "enterprise"), alarm(enterprise="E1", plant="P1"), "plant=P1,enterprise=E1"),
    (("kind", "severity", "rule"), alarm("high", rule="kiln.co"), "kind=alarm,severity=high,rule=kiln.co"),
    ((), alarm(plant="P1"), ""),
])
def test_group_key(group_by: tuple[str, ...], ev: Event, key: str) -> None:
    assert group_key(Timing(group_by, 0, 0, 0), ev) == key


def test_unknown_label() -> None:
    with pytest.raises(KeyError):
        alarm().label("colour")


# --- contacts -----------------------------------------------------------------------------------

ZHANGWEI = Contact("zhangwei", "张伟", "zhangwei@example.gov.cn", "13800000001")
LINA = Contact("lina", "李娜", None, "13800000003")
CHENJIE = Contact("chenjie", "陈杰", "chenjie@example.gov.cn", None)
BOSS = Contact("reg-17", "周总", None, "13900000001")
OWNER = Contact("reg-18", "吴董", "wu@plant.example.com", None)
E1 = EnterpriseContacts("E1", principal=BOSS, controller=OWNER)
E1_PRINCIPAL = Contact("enterprise:E1:principal", "周总", None, "13900000001")
E1_CONTROLLER = Contact("enterprise:E1:controller", "吴董", "wu@plant.example.com", None)


@pytest.mark.parametrize(("receiver", "when", "enterprise", "expected"), [
    pytest.param("duty", "2024-06-03 12:00", None, Resolved((ZHANGWEI,), ()), id="roster: day shift"),
    pytest.param("duty", "2024-06-04 02:00", None, Resolved((LINA,), ()), id="roster: night shift"),
    pytest.param("duty", "2024-06-03 17:35", None, Resolved((LINA, ZHANGWEI), ()), id="roster: handover"),
    pytest.param("chief", "2024-06-03 12:00", E1, Resolved((CHENJIE,), ()), id="person"),
    pytest.param("leaders", "2024-06-03 12:00", E1, Resolved((E1_PRINCIPAL, E1_CONTROLLER), ()),
                 id="enterprise leaders"),
    pytest.param("leaders", "2024-06-03 12:00", EnterpriseContacts("E1", BOSS, None),
                 Resolved((E1_PRINCIPAL,), ("企业 E1 未登记实际控制人 no actual controller on record",)),
                 id="no controller on record"),
    pytest.param("leaders", "2024-06-03 12:00", EnterpriseContacts("E2", Contact("x", "郑总"), None),
                 Resolved((), ("企业 E2 的主要负责人 郑总 无电话和邮箱 principal responsible person has no phone"
                               " or e-mail", "企业 E2 未登记实际控制人 no actual controller on record")),
                 id="a leader with no address"),
    pytest.param("leaders", "2024-06-03 12:00", None,
                 Resolved((), ("未指明企业，无法通知主要负责人 no enterprise given, cannot reach its principal"
                               " responsible person",
                               "未指明企业，无法通知实际控制人 no enterprise given, cannot reach its actual"
                               " controller")),
                 id="no enterprise"),
    pytest.param("everyone", "2024-06-03 12:00", E1, Resolved((ZHANGWEI, CHENJIE, E1_PRINCIPAL), ()),
                 id="deduplicated by id, in order"),
    pytest.param("everyone", "2024-06-08 03:00", E1, Resolved((ZHANGWEI, LINA, CHENJIE, E1_PRINCIPAL), ()),
                 id="the roster adds the night officer"),
    pytest.param("monday-duty", "2024-06-04 12:00", None,
                 Resolved((), ("值班表 mondays 此时无人值班 nobody on duty (nobody: no shift covers Tue 12:00 and"
                               " there is no fallback)",)),
                 id="roster with nobody on duty"),
    pytest.param("ops", "2024-06-03 12:00", E1, Resolved((), ()), id="a system receiver has no contacts"),
])
def test_contacts_for(cfg: AlertingConfig, receiver: str, when: str, enterprise: EnterpriseContacts | None,
                      expected: Resolved) -> None:
    assert contacts_for(cfg, receiver, at(when), enterprise) == expected
