"""Alarm-system health (ISA-18.2 / EEMUA 191) on a generated history, against hand-computed figures."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hazards.records.health import (
    HistoryEvent,
    StartState,
    chatter_episodes,
    compute,
    verdict_per_10min,
    verdict_per_day,
)

CST = timezone(timedelta(hours=8))
START = datetime(2026, 3, 1, tzinfo=CST).timestamp()
END = START + 86_400.0
H, M = 3600.0, 60.0


def act(t: float, rule: str, subject: str, annunciate: bool = True, severity: str = "high") -> HistoryEvent:
    return HistoryEvent(START + t, rule, subject, "activate", annunciate, severity)


def ev(t: float, rule: str, subject: str, event: str) -> HistoryEvent:
    return HistoryEvent(START + t, rule, subject, event, False, "high")


def generated_day() -> tuple[list[HistoryEvent], dict[tuple[str, str], StartState]]:
    e: list[HistoryEvent] = []
    # 01:00-01:10: 12 distinct alarms -> a flood interval (more than 10)
    e += [act(1 * H + 40 * i, "r-flood", f"p:{100 + i}") for i in range(12)]
    # 01:10-01:20: exactly 10 -> not a flood
    e += [act(1 * H + 10 * M + 50 * i, "r-ten", f"p:{200 + i}") for i in range(10)]
    # 05:00-05:10: the bad actor, 15 activations 40 s apart (3 span 80 s: not chattering) -> a second flood interval
    for i in range(15):
        e += [act(5 * H + 40 * i, "r-bad", "p:1"), ev(5 * H + 40 * i + 20, "r-bad", "p:1", "clear")]
    # chattering: two bursts of activations 10-15 s apart; the lifecycle annunciates only the first of each
    for j, t in enumerate([10 * H, 10 * H + 10, 10 * H + 20]):
        e += [act(t, "r-chat", "p:7", annunciate=j == 0), ev(t + 5, "r-chat", "p:7", "clear")]
    for j, t in enumerate([12 * H, 12 * H + 15, 12 * H + 30, 12 * H + 45]):
        e += [act(t, "r-chat", "p:7", annunciate=j == 0), ev(t + 5, "r-chat", "p:7", "clear")]
    # three alarms hours apart
    for t in (2 * H, 8 * H, 20 * H):
        e += [act(t, "r-two", "p:2"), ev(t + 60, "r-two", "p:2", "clear")]
    # activated during the day and still active at its end: 14 h, not standing
    e.append(act(10 * H, "r-new", "p:11"))
    # was active when the day began, clears during it
    e.append(ev(1 * H, "r-cleared", "p:12", "clear"))
    # shelving: one shelved to the end, one shelved and unshelved
    e += [ev(6 * H, "r-bad", "p:1", "shelve"), ev(7 * H, "r-two", "p:2", "shelve"),
          ev(9 * H, "r-two", "p:2", "unshelve")]
    # outside the period: ignored
    e += [act(-10.0, "r-bad", "p:1"), act(86_400.0, "r-bad", "p:1")]
    initial = {
        ("r-stand", "p:9"): StartState(active_since=START - 2 * 86_400.0, acked=False),  # standing and stale
        ("r-stand-ack", "p:10"): StartState(active_since=START - 30 * H, acked=True),  # standing, acknowledged
        ("r-cleared", "p:12"): StartState(active_since=START - 3 * 86_400.0, acked=False),
    }
    return e, initial


def test_generated_history_matches_hand_computed_figures() -> None:
    events, initial = generated_day()
    h = compute(events, START, END, initial)
    total = 12 + 10 + 15 + 2 + 3 + 1  # flood, ten, bad actor, chatter (annunciated), r-two, r-new
    assert h.alarms == total == 43
    assert h.intervals == 144
    assert h.flood_intervals == 2 and h.flood_minutes == 20.0
    assert h.pct_time_in_flood == pytest.approx(100 * 2 / 144)
    assert h.max_10min == 15 and h.max_day == 43
    assert h.per_10min == pytest.approx(43 / 144) and h.per_day == pytest.approx(43.0)
    assert h.hours_over_30 == 0
    assert [(a.rule_id, a.subject, a.acked) for a in h.standing] == [("r-stand", "p:9", False),
                                                                     ("r-stand-ack", "p:10", True)]
    assert h.stale == 1
    assert h.shelved_at_end == 1 and h.shelve_actions == 2
    assert h.chattering_alarms == 1 and h.chatter_episodes == 2
    expected_top = [("r-bad", "p:1", 15), ("r-two", "p:2", 3), ("r-chat", "p:7", 2)] + [
        ("r-flood", f"p:{100 + i}", 1) for i in range(7)]
    assert [(b.rule_id, b.subject, b.count) for b in h.top] == expected_top
    assert [b.share for b in h.top] == pytest.approx([c / 43 for _r, _s, c in expected_top])
    assert h.top_share == pytest.approx(27 / 43)
    assert h.flooding
    assert h.by_day == [43]


def test_quiet_history_reports_no_flood() -> None:
    events = [act(i * H + 7 * M, "r-q", f"p:{i % 3}") for i in range(24)]
    h = compute(events, START, END)
    assert h.alarms == 24 and h.flood_intervals == 0 and h.flood_minutes == 0 and h.pct_time_in_flood == 0
    assert not h.flooding and h.max_10min == 1 and h.chattering_alarms == 0 and h.standing == []
    assert h.verdict_10min == "acceptable" and h.verdict_day == "acceptable"


def test_min_severity_drops_lower_alarms() -> None:
    events = [act(10.0 * i, "r", f"p:{i}", severity="medium") for i in range(20)] + [act(500.0, "u", "p:1",
                                                                                      severity="urgent")]
    assert compute(events, START, END).flood_intervals == 1
    h = compute(events, START, END, min_severity="urgent")
    assert h.alarms == 1 and h.flood_intervals == 0


@pytest.mark.parametrize(("times", "episodes"), [
    ([0, 10, 20], 1), ([0, 30, 60], 0), ([0, 30, 59.9], 1), ([0, 10, 20, 30, 40], 1),
    ([0, 10, 20, 200, 210, 220], 2), ([0, 10], 0), ([], 0)])
def test_chatter_episodes(times: list[float], episodes: int) -> None:
    assert chatter_episodes(times) == episodes


@pytest.mark.parametrize(("rate", "verdict"), [(0.5, "acceptable"), (1.0, "acceptable"), (1.5, "manageable"),
                                               (5.0, "over_demanding"), (11.0, "unacceptable")])
def test_eemua_bands(rate: float, verdict: str) -> None:
    assert verdict_per_10min(rate) == verdict


def test_isa_daily_bands() -> None:
    assert [verdict_per_day(x) for x in (150, 151, 300, 301, 2000)] == [
        "acceptable", "manageable", "manageable", "over_demanding", "unacceptable"]


def test_empty_period_is_refused() -> None:
    with pytest.raises(ValueError):
        compute([], START, START)
