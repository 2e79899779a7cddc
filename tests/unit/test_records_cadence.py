"""Self-inspection cadence: the YAML is validated with file:line, periods and compliance are pure."""

from __future__ import annotations

from datetime import date

import pytest

from core.errors import SourceError
from hazards.records import cadence as cad
from hazards.records.cadence import Level


def test_default_file_loads_with_the_plan_defaults() -> None:
    c = cad.load()
    assert c.for_industry("cement") == {Level.COMPANY: "quarterly", Level.PLANT: "monthly",
                                        Level.WORKSHOP: "weekly", Level.TEAM: "daily"}
    assert c.for_industry("unknown") == c.default == cad.DEFAULT.default


def test_industry_override_and_strictest_of_two_industries() -> None:
    c = cad.load("x.yaml", "version: 1\nindustries:\n  foundry:\n    plant: weekly\n  cement:\n    company: monthly\n")
    assert c.for_industry("foundry")[Level.PLANT] == "weekly"
    assert c.for_industry("foundry")[Level.COMPANY] == "quarterly"
    both = c.for_industries(["cement", "foundry"])
    assert both[Level.PLANT] == "weekly" and both[Level.COMPANY] == "monthly"


@pytest.mark.parametrize(("text", "line", "needle"), [
    ("version: 1\ndefault:\n  plant: fortnightly\n", 3, "default.plant"),
    ("version: 1\nindustries:\n  steel: {}\n", 3, "industries.steel"),
    ("version: 1\ndefault:\n  kitchen: daily\n", 3, "kitchen"),
    ("version: 2\n", 1, "version"),
])
def test_bad_file_points_at_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(SourceError) as err:
        cad.load("cadence.yaml", text)
    p = err.value.problems[0]
    assert p.line == line and needle in p.message, err.value


def test_periods_of_each_frequency() -> None:
    y = (date(2026, 1, 1), date(2027, 1, 1))
    assert len(cad.periods("daily", *y)) == 365
    assert len(cad.periods("monthly", *y)) == 12
    assert [p.key for p in cad.periods("quarterly", *y)] == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    weeks = cad.periods("weekly", *y)
    assert weeks[0].key == "2026-W02" and weeks[0].start == date(2026, 1, 5) and len(weeks) == 52
    assert cad.period_of(date(2026, 1, 1), "weekly").key == "2026-W01"  # started on Monday 29 December 2025
    assert cad.period_of(date(2026, 12, 31), "quarterly").end == date(2027, 1, 1)


def test_two_skipped_months_are_exactly_the_missed_ones() -> None:
    done = [date(2026, m, 5) for m in range(1, 13) if m not in (3, 7)]
    c = cad.compliance(Level.PLANT, "monthly", done, date(2026, 1, 1), date(2027, 1, 1), date(2027, 1, 1))
    assert (c.due, c.done, c.missed, c.open) == (12, 10, 2, 0)
    assert c.missed_periods == ("2026-03", "2026-07") and c.rate == pytest.approx(10 / 12) and not c.met


def test_running_period_is_open_not_missed_and_future_is_not_due() -> None:
    c = cad.compliance(Level.PLANT, "monthly", [date(2026, 1, 9)], date(2026, 1, 1), date(2027, 1, 1),
                       date(2026, 3, 15))
    assert (c.due, c.done, c.missed, c.open) == (3, 1, 1, 1) and c.missed_periods == ("2026-02",)
    q = cad.compliance(Level.COMPANY, "quarterly", [], date(2026, 1, 1), date(2027, 1, 1), date(2026, 1, 1))
    assert (q.due, q.open, q.missed) == (1, 1, 0)
