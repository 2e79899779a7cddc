"""What a duty officer reads: subjects and bodies of each kind of notice, Chinese first."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from alerting.render import ItemInfo, render

TZ = ZoneInfo("Asia/Shanghai")
T = 1_764_460_800.0  # 2025-11-30 08:00 Beijing


def alarm(n: int = 1, **kw: object) -> ItemInfo:
    base = dict(item=f"alarm:bm.coal.co:hi|p:{n}", kind="alarm", title="煤粉仓CO浓度高", severity="urgent",
                enterprise="甲水泥有限公司", plant="甲一号线", where=f"CO-10{n} 出口CO", value="35 ppm", since=T,
                detail="CO 35 ppm > 24 ppm", basis="《工贸企业重大事故隐患判定标准》第六条第（一）项")
    return ItemInfo(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "items", "resolved", "subject"), [
    ("firing", [alarm()], [], "【紧急报警】煤粉仓CO浓度高 · 甲一号线"),
    ("firing", [alarm(1), alarm(2)], [], "【紧急报警】煤粉仓CO浓度高 等2条 · 甲一号线"),
    ("reminder", [alarm()], [], "【提醒·未确认】煤粉仓CO浓度高仍未确认 · 甲一号线"),
    ("resolved", [], [alarm(status="resolved")], "【恢复】煤粉仓CO浓度高已恢复正常 · 甲一号线"),
    ("resolved", [], [alarm(status="resolved", announced=False)],
     "【报警后已恢复】煤粉仓CO浓度高曾越限、通知前已恢复 · 甲一号线"),
    ("firing", [alarm(kind="hazard", item="hazard:7:confirmed", title="#7 煤粉制备系统未设置CO监测", event="confirmed",
                      value=None)], [], "【重大事故隐患】确认为重大事故隐患：#7 煤粉制备系统未设置CO监测 · 甲一号线"),
])
def test_subjects(kind: str, items: list[ItemInfo], resolved: list[ItemInfo], subject: str) -> None:
    m = render(kind, "rw-1-1-email-duty", items, resolved, reason="r", ack_url=None, tz=TZ)
    assert m.subject == subject


def test_escalation_subject_says_how_long() -> None:
    m = render("escalation", "k", [alarm()], [], reason="r", ack_url=None, tz=TZ, escalation_after=900)
    assert m.subject == "【升级】报警15分钟未确认：煤粉仓CO浓度高 · 甲一号线"


def test_body_has_place_value_time_basis_and_link_in_every_format() -> None:
    m = render("firing", "rw-1-1-email-duty", [alarm()], [], reason="group_wait 0s", ack_url="https://rw/ack/tok",
               tz=TZ)
    for body in (m.text, m.html, m.markdown):
        assert "甲水泥有限公司" in body and "CO-101 出口CO" in body and "35 ppm" in body
        assert "https://rw/ack/tok" in body
    assert "11-30 08:00:00" in m.text  # Beijing time
    assert "第六条第（一）项" in m.text
    assert "rw-1-1-email-duty" in m.text
    assert m.short.startswith("【紧急报警】") and m.short.endswith("https://rw/ack/tok")
    assert m.data["items"][0]["item"] == "alarm:bm.coal.co:hi|p:1" and m.data["reason"] == "group_wait 0s"


def test_html_is_escaped() -> None:
    m = render("firing", "k", [alarm(title="<script>x</script>")], [], reason="r", ack_url=None, tz=TZ)
    assert "<script>" not in m.html and "&lt;script&gt;" in m.html
