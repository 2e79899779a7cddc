"""The disposal decision and its policy file, table-driven: pure, no database."""

from __future__ import annotations

import pytest

from core.errors import SourceError
from rules import disposal
from rules.disposal import Disposal, Outcome, decide, load_policy, requires_feedback, response_stats

POLICY = disposal.Policy("high", {"urgent": 1800.0, "high": 7200.0}, {"equipment_fault": "设备故障", "other": "其他"},
                         (("principal", 0.0), ("duty_officer", 1800.0), ("section_chief", 3600.0),
                          ("leader", 7200.0)))
T = 1_000_000.0


def test_the_shipped_policy_loads_with_the_documented_defaults() -> None:
    p = load_policy()
    assert p.min_severity == "high"
    assert p.limits == {"urgent": 1800.0, "high": 7200.0}  # urgent 30 min, high 2 h (docs/disposal.md)
    assert [t for t, _ in p.ladder] == ["principal", "duty_officer", "section_chief", "leader"]
    assert "false_alarm" in p.causes and p.causes["equipment_fault"] == "设备故障"


@pytest.mark.parametrize("severity, needs", [("urgent", True), ("high", True), ("medium", False), ("low", False),
                                             ("bogus", False)])
def test_which_alarms_need_feedback(severity: str, needs: bool) -> None:
    assert requires_feedback(POLICY, severity) is needs


@pytest.mark.parametrize("now_after_activation, tiers, next_in", [
    (7199, [], 7200),                       # within the 2 h limit: nothing
    (7200, ["principal"], 9000),            # the limit ran out: the enterprise principal
    (8999, ["principal"], 9000),
    (9000, ["principal", "duty_officer"], 10800),
    (14400, ["principal", "duty_officer", "section_chief", "leader"], None),  # a late tick takes each once
    (10 ** 7, ["principal", "duty_officer", "section_chief", "leader"], None),
])
def test_the_ladder_from_nothing(now_after_activation: float, tiers: list[str], next_in: float | None) -> None:
    d = Disposal(1, "high", T, T + 7200)
    got = decide(d, POLICY, T + now_after_activation)
    assert [s.tier for s in got.steps] == tiers
    assert got.tier_reached == len(tiers)
    assert got.next_at == (None if next_in is None else T + next_in)
    assert all(s.scheduled <= T + now_after_activation for s in got.steps)


def test_tiers_already_told_are_not_told_again_and_feedback_stops_everything() -> None:
    d = Disposal(1, "high", T, T + 7200, tier_reached=2)
    assert [s.tier for s in decide(d, POLICY, T + 10800).steps] == ["section_chief"]
    assert decide(d, POLICY, T + 9500).steps == ()
    answered = Disposal(1, "high", T, T + 7200, tier_reached=1, feedback_at=T + 7300)
    got = decide(answered, POLICY, T + 10 ** 6)
    assert got.steps == () and got.next_at is None and "feedback" in got.reason


def test_an_escalation_step_says_why_in_chinese_first() -> None:
    step = decide(Disposal(1, "urgent", T, T + 1800), POLICY, T + 1800).steps[0]
    assert step.reason.startswith("预警30分钟未反馈处置情况，升级通知企业主要负责人")


@pytest.mark.parametrize("cause, measures, by, ok", [
    ("equipment_fault", "更换滤袋", "张三", True),
    ("aliens", "更换滤袋", "张三", False),         # not in the fixed list
    ("equipment_fault", "   ", "张三", False),    # nothing said about the measures
    ("equipment_fault", "更换滤袋", "", False),
    ("equipment_fault", "x" * 2001, "张三", False),
])
def test_feedback_form(cause: str, measures: str, by: str, ok: bool) -> None:
    if ok:
        assert disposal.check_feedback(POLICY, cause, measures, by).measures == measures.strip()
    else:
        with pytest.raises(disposal.DisposalError):
            disposal.check_feedback(POLICY, cause, measures, by)


def test_response_statistics_per_enterprise() -> None:
    rows = [Outcome("e1", T, T + 100, T + 50), Outcome("e1", T, T + 100, T + 150), Outcome("e1", T, T + 100, None),
            Outcome("e2", T, T + 100, None), Outcome("e3", T, T + 10 ** 6, None)]
    s = response_stats(rows, T + 200)
    assert (s["e1"].total, s["e1"].answered, s["e1"].in_time, s["e1"].overdue_open) == (3, 2, 1, 1)
    assert s["e1"].share_in_time == pytest.approx(1 / 3)
    assert s["e1"].mean_response_s == 100 and s["e1"].median_response_s == 100
    assert s["e2"].share_in_time == 0.0 and s["e2"].mean_response_s is None
    assert s["e3"].overdue_open == 0  # still within its limit: neither in time nor overdue yet


@pytest.mark.parametrize("text, where, says", [
    ("version: 1\nlimits: {urgent: 30m}\ncauses: {x: 其他}\nescalation: [{tier: principal, after: 0s}]\n",
     2, "missing: high"),
    ("version: 1\nlimits: {urgent: 30m, high: 2h}\ncauses: {x: 其他}\nescalation:\n"
     "  - {tier: principal, after: 0s}\n  - {tier: mayor, after: 1h}\n", 6, "tier"),
    ("version: 1\nlimits: {urgent: 30m, high: 2 hours}\ncauses: {x: 其他}\n"
     "escalation: [{tier: principal, after: 0s}]\n", 2, "invalid duration"),
    ("version: 1\nlimits: {urgent: 30m, high: 2h}\ncauses: {x: 其他}\nescalation:\n"
     "  - {tier: duty_officer, after: 1h}\n  - {tier: principal, after: 2h}\n", None, "go up in the order"),
    ("version: 1\nlimits: {urgent: 30m, high: 2h}\ncauses: {x: 其他}\nescalation:\n"
     "  - {tier: principal, after: 1h}\n  - {tier: leader, after: 1h}\n", None, "strictly after"),
])
def test_a_bad_policy_file_is_refused_with_file_and_line(text: str, where: int | None, says: str) -> None:
    with pytest.raises(SourceError) as exc:
        load_policy("disposal.yaml", text)
    msg = str(exc.value)
    assert says in msg, msg
    assert "disposal.yaml" in msg
    if where is not None:
        assert f"disposal.yaml:{where}" in msg, msg


# --- the routing file's `disposal:` section (alerting names the receivers of each tier) -----------------

ROUTING = """version: 1
channels:
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
  email: {type: smtp, host: 127.0.0.1, port: 2525, sender: "县工信局 <riskwatch@example.gov.cn>"}
receivers:
  duty: {via: [hook]}
  bosses: {to: [{enterprise: principal}, {enterprise: controller}], via: [email]}
routes:
  receiver: [duty, bosses]
"""
ENTRY = ROUTING.count("\n") + 2  # the line of the first entry under `disposal:`


def test_the_routing_file_names_the_receivers_of_each_tier_and_check_warns_about_missing_ones() -> None:
    from alerting.config import disposal_gaps, load_config

    cfg = load_config("alerting.yaml", ROUTING + "disposal:\n  principal: bosses\n  duty_officer: [duty]\n")
    assert cfg.disposal == {"principal": ("bosses",), "duty_officer": ("duty",)}
    gaps = disposal_gaps(cfg)
    assert [g.split(":")[0] for g in gaps] == ["disposal.section_chief", "disposal.leader"]
    wrong = load_config("alerting.yaml", ROUTING + "disposal:\n  principal: duty\n  duty_officer: duty\n"
                        "  section_chief: duty\n  leader: duty\n")
    assert [g.split(":")[0] for g in disposal_gaps(wrong)] == ["disposal.principal"]  # reaches no principal


@pytest.mark.parametrize("section, line, says", [
    ("disposal:\n  principal: nobody\n", ENTRY, "unknown receiver 'nobody'"),
    ("disposal:\n  mayor: duty\n", ENTRY, "mayor"),
    ("disposal:\n  leader: [duty, ghost]\n", ENTRY, "unknown receiver 'ghost'"),
])
def test_a_bad_disposal_section_is_refused_with_file_and_line(section: str, line: int, says: str) -> None:
    from alerting.config import load_config

    with pytest.raises(SourceError) as exc:
        load_config("alerting.yaml", ROUTING + section)
    assert f"alerting.yaml:{line}" in str(exc.value) and says in str(exc.value), str(exc.value)


def test_disposal_items_are_one_string_form() -> None:
    from core.keys import DisposalItem, KeyFormatError, parse_item

    item = DisposalItem(42, "duty_officer")
    assert item.format() == "disposal:42:duty_officer" and parse_item(item.format()) == item
    for bad in ("disposal:x:leader", "disposal:42", "disposal::leader", "disposal:42:"):
        with pytest.raises(KeyFormatError):
            parse_item(bad)
