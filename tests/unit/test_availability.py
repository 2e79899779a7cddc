"""The pure core of data availability: calendar buckets in Beijing time, expected readings, capped shares and
the gateway online seconds reconstructed from offline-alarm transitions. Values are computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import availability as av


def utc(*a: int) -> float:
    return datetime(*a, tzinfo=UTC).timestamp()


def test_expected_readings_from_interval() -> None:
    assert av.expected_readings(10, 0, 3600) == 360
    assert av.expected_readings(60, 0, 3599) == 59  # a partial interval is not yet expected
    assert av.expected_readings(1, 100, 100) == 0
    assert av.expected_readings(1, 200, 100) == 0  # point registered after the bucket ended


def test_share_is_capped_and_null_when_nothing_expected() -> None:
    assert av.share(270, 360) == 0.75
    assert av.share(900, 360) == 1.0  # a point reporting faster than its interval cannot exceed 100 %
    assert av.share(0, 0) is None
    assert av.share(5, 0) is None


def test_day_buckets_follow_beijing_midnight() -> None:
    # 23:00 CST on 29 Nov to 01:00 CST on 30 Nov: two days, split at 16:00 UTC
    b = av.bucket_bounds(utc(2025, 11, 29, 15), utc(2025, 11, 29, 17), "day")
    assert b == [(utc(2025, 11, 29, 15), utc(2025, 11, 29, 16)), (utc(2025, 11, 29, 16), utc(2025, 11, 29, 17))]


def test_hour_buckets_are_clipped_to_the_window() -> None:
    b = av.bucket_bounds(utc(2025, 11, 29, 10, 30), utc(2025, 11, 29, 12, 15), "hour")
    assert b == [(utc(2025, 11, 29, 10, 30), utc(2025, 11, 29, 11)), (utc(2025, 11, 29, 11), utc(2025, 11, 29, 12)),
                 (utc(2025, 11, 29, 12), utc(2025, 11, 29, 12, 15))]


def test_month_buckets_across_a_year_end_and_february() -> None:
    # Beijing months: 1 Dec 00:00 CST is 30 Nov 16:00 UTC
    b = av.bucket_bounds(utc(2024, 11, 30, 16), utc(2025, 2, 28, 16), "month")
    assert b == [(utc(2024, 11, 30, 16), utc(2024, 12, 31, 16)), (utc(2024, 12, 31, 16), utc(2025, 1, 31, 16)),
                 (utc(2025, 1, 31, 16), utc(2025, 2, 28, 16))]
    assert b[2][1] - b[2][0] == 28 * 86400


def test_empty_and_oversized_windows() -> None:
    assert av.bucket_bounds(100, 100, "hour") == []
    assert av.bucket_bounds(200, 100, "hour") == []
    assert len(av.bucket_bounds(0, av.MAX_BUCKETS * 3600, "hour")) == av.MAX_BUCKETS
    with pytest.raises(ValueError, match="buckets"):
        av.bucket_bounds(0, 2 * 365 * 86400, "hour")
    with pytest.raises(ValueError):
        av.bucket_bounds(utc(1, 1, 8), utc(9999, 12, 24), "day")


def test_online_seconds_from_transitions() -> None:
    # offline 600 s inside the window, online at start
    assert av.online_seconds([(1000.0, True), (1600.0, False)], False, 0, 3600) == 3000
    # offline at the start (alarm activated before the window), clears at 1800
    assert av.online_seconds([(1800.0, False)], True, 0, 3600) == 1800
    # goes offline at 3300 and stays offline to the end
    assert av.online_seconds([(3300.0, True)], False, 0, 3600) == 3300
    # transitions before the window only set the state at its start; later ones are ignored
    assert av.online_seconds([(-50.0, True), (-10.0, False), (4000.0, True)], True, 0, 3600) == 3600
    assert av.online_seconds([(-50.0, True)], False, 0, 3600) == 0
    # a repeated activate does not restart the outage
    assert av.online_seconds([(100.0, True), (200.0, True), (700.0, False)], False, 0, 1000) == 400
    assert av.online_seconds([], False, 10, 10) == 0


def test_series_total_sums_cells() -> None:
    s = av.Series("1", "ent-a", "plant-a", "gw-a1", "TT-101",
                  cells=[av.Cell(0, 3600, 360, 270), av.Cell(3600, 7200, 360, 360)])
    assert (s.total.expected, s.total.received, s.total.share) == (720, 630, 0.875)
    g = av.Cell(0, 3600, online_s=3000, observed_s=3600)
    assert g.online_rate == pytest.approx(5 / 6)
    assert av.Cell(0, 0).online_rate is None
