"""Who is on duty: day and night shifts, midnight, weekends, handover, fallback — by moving the time, not sleeping."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alerting.config import Roster, Shift
from alerting.roster import OnDuty, on_duty

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS = (0, 1, 2, 3, 4)

#: 2024-06-03 is a Monday.
ROSTER = Roster(
    shifts=(
        Shift(WEEKDAYS, 8 * 60 + 30, 17 * 60 + 30, ("zhangwei",)),  # 白班 mon–fri 08:30–17:30
        Shift(WEEKDAYS, 17 * 60 + 30, 8 * 60 + 30, ("lina",)),  # 夜班 mon–fri 17:30 → next day 08:30
        Shift((5,), 9 * 60, 18 * 60, ("zhaolei",)),  # sat 09:00–18:00
    ),
    handover=15 * 60,
    fallback=("wangqiang",),
)


def at(when: str, tz: ZoneInfo = SHANGHAI) -> float:
    return datetime.strptime(when, "%Y-%m-%d %H:%M:%S" if when.count(":") == 2 else "%Y-%m-%d %H:%M"
                             ).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize(("when", "people", "reason"), [
    # plain shifts
    ("2024-06-03 12:00", ("zhangwei",), "shift mon 08:30–17:30"),
    ("2024-06-05 08:30", ("zhangwei", "lina"), "shift wed 08:30–17:30; handover from lina (until 08:45)"),
    ("2024-06-05 17:29", ("zhangwei",), "shift wed 08:30–17:30"),
    # crossing midnight: the night shift belongs to the day it starts
    ("2024-06-03 23:59", ("lina",), "shift mon 17:30–08:30"),
    ("2024-06-04 00:00", ("lina",), "shift mon 17:30–08:30"),
    ("2024-06-04 03:00", ("lina",), "shift mon 17:30–08:30"),
    ("2024-06-04 08:29", ("lina",), "shift mon 17:30–08:30"),
    # weekend: Friday's night shift runs into Saturday; Saturday night and Sunday have no shift
    ("2024-06-08 03:00", ("lina",), "shift fri 17:30–08:30"),
    ("2024-06-08 12:00", ("zhaolei",), "shift sat 09:00–18:00"),
    ("2024-06-09 03:00", ("wangqiang",), "fallback: no shift covers Sun 03:00"),
    ("2024-06-08 20:00", ("wangqiang",), "fallback: no shift covers Sat 20:00"),
])
def test_on_duty(when: str, people: tuple[str, ...], reason: str) -> None:
    assert on_duty(ROSTER, at(when), SHANGHAI) == OnDuty(people, reason)


@pytest.mark.parametrize(("when", "people", "reason"), [
    # Both the outgoing and the incoming officer for 15 minutes after the change, end exclusive.
    ("2024-06-03 17:30", ("lina", "zhangwei"), "shift mon 17:30–08:30; handover from zhangwei (until 17:45)"),
    ("2024-06-03 17:44:59", ("lina", "zhangwei"), "shift mon 17:30–08:30; handover from zhangwei (until 17:45)"),
    ("2024-06-03 17:45", ("lina",), "shift mon 17:30–08:30"),
    ("2024-06-04 08:40", ("zhangwei", "lina"), "shift tue 08:30–17:30; handover from lina (until 08:45)"),
    # Into a gap: the fallback takes over, the outgoing officer still hears for the handover.
    ("2024-06-08 08:40", ("wangqiang", "lina"),
     "fallback: no shift covers Sat 08:40; handover from lina (until 08:45)"),
    ("2024-06-08 18:10", ("wangqiang", "zhaolei"),
     "fallback: no shift covers Sat 18:10; handover from zhaolei (until 18:15)"),
    # Out of a gap: the fallback is not a shift and hands nothing over.
    ("2024-06-08 09:05", ("zhaolei",), "shift sat 09:00–18:00"),
    # Monday morning after a weekend without a Sunday night shift: nobody to hand over.
    ("2024-06-10 08:35", ("zhangwei",), "shift mon 08:30–17:30"),
])
def test_handover(when: str, people: tuple[str, ...], reason: str) -> None:
    assert on_duty(ROSTER, at(when), SHANGHAI) == OnDuty(people, reason)


def test_no_handover_configured() -> None:
    roster = Roster(ROSTER.shifts, handover=0, fallback=ROSTER.fallback)
    assert on_duty(roster, at("2024-06-03 17:31"), SHANGHAI) == OnDuty(("lina",), "shift mon 17:30–08:30")


@pytest.mark.parametrize(("when", "people", "reason"), [
    ("2024-06-01 08:00", ("zhaolei",), "shift sat 08:00–08:00"),  # 24-hour shift: from == to
    ("2024-06-02 07:59", ("zhaolei",), "shift sat 08:00–08:00"),
    ("2024-06-02 08:00", ("lina", "zhaolei"), "shift sun 08:00–08:00; handover from zhaolei (until 08:10)"),
    ("2024-06-03 07:00", ("lina",), "shift sun 08:00–08:00"),
    ("2024-06-03 09:00", (), "nobody: no shift covers Mon 09:00 and there is no fallback"),
    ("2024-06-03 08:05", ("lina",), "nobody: no shift covers Mon 08:05 and there is no fallback; "
                                    "handover from lina (until 08:10)"),
])
def test_weekend_24h_shifts_without_fallback(when: str, people: tuple[str, ...], reason: str) -> None:
    roster = Roster((Shift((5,), 480, 480, ("zhaolei",)), Shift((6,), 480, 480, ("lina",))), handover=600)
    assert on_duty(roster, at(when), SHANGHAI) == OnDuty(people, reason)


def test_overlapping_shifts_and_the_same_officer_twice() -> None:
    roster = Roster((
        Shift(WEEKDAYS, 480, 1080, ("zhangwei", "liuyang")),
        Shift(WEEKDAYS, 720, 840, ("liuyang", "chenjie")),  # lunch cover overlaps the day shift
        Shift(WEEKDAYS, 1080, 480, ("zhangwei",)),  # zhangwei stays on for the night: no handover to himself
    ), handover=900)
    assert on_duty(roster, at("2024-06-03 12:30"), SHANGHAI) == OnDuty(
        ("zhangwei", "liuyang", "chenjie"), "shift mon 08:00–18:00; shift mon 12:00–14:00")
    assert on_duty(roster, at("2024-06-03 18:05"), SHANGHAI) == OnDuty(
        ("zhangwei", "liuyang"), "shift mon 18:00–08:00; handover from liuyang (until 18:15)")


def test_read_in_the_given_time_zone() -> None:
    t = at("2024-06-03 12:00", ZoneInfo("UTC"))  # 20:00 in Shanghai
    assert on_duty(ROSTER, t, SHANGHAI).people == ("lina",)
    assert on_duty(ROSTER, t, ZoneInfo("UTC")).people == ("zhangwei",)
