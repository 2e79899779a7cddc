"""Self-inspection cadence (自查频次) and compliance: pure functions of records, cadence and period.

The action plan asks enterprises to inspect at four levels on a cadence
(company quarterly, plant monthly, workshop weekly, team daily). The cadence
is configurable per industry in a YAML file validated at load (file:line for
each problem). Compliance is counted per calendar period of the cadence, in
China Standard Time (the bureau's calendar):

- done:    at least one inspection of that level fell inside the period;
- missed:  the period has ended and none did;
- open:    the period is running now and none has been recorded yet (not missed yet);
- periods that start after today are not due and are not counted.

A period belongs to the report range when it starts inside it; an inspection
counts for the period it falls in, even when that period straddles the range's
edge (a week from 29 December to 4 January belongs to the year it starts in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core import yamlsrc


class Level(StrEnum):
    COMPANY = "company"
    PLANT = "plant"
    WORKSHOP = "workshop"
    TEAM = "team"


LEVEL_ZH: dict[Level, str] = {Level.COMPANY: "公司级", Level.PLANT: "厂级", Level.WORKSHOP: "车间级",
                              Level.TEAM: "班组级"}

Frequency = Literal["daily", "weekly", "monthly", "quarterly", "yearly"]
FREQUENCY_ZH: dict[str, str] = {"daily": "每日", "weekly": "每周", "monthly": "每月", "quarterly": "每季度",
                                "yearly": "每年"}
#: Shorter is stricter; an enterprise whose plants are in two industries follows the stricter cadence.
_RANK: dict[str, int] = {"daily": 0, "weekly": 1, "monthly": 2, "quarterly": 3, "yearly": 4}

DEFAULT_FILE = Path(__file__).with_name("cadence.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LevelCadence(_Strict):
    company: Frequency | None = None
    plant: Frequency | None = None
    workshop: Frequency | None = None
    team: Frequency | None = None


class _Defaults(_Strict):
    company: Frequency = "quarterly"
    plant: Frequency = "monthly"
    workshop: Frequency = "weekly"
    team: Frequency = "daily"


IndustryName = Literal["cement", "lime", "refractory", "foundry", "machinery"]


class CadenceFile(_Strict):
    version: Literal[1]
    default: _Defaults = Field(default_factory=_Defaults)
    industries: dict[IndustryName, LevelCadence] = Field(default_factory=dict)


@dataclass(frozen=True)
class Cadence:
    """Frequency per level, for each industry (and the default for any other)."""

    default: dict[Level, Frequency]
    industries: dict[str, dict[Level, Frequency]]

    def for_industry(self, industry: str | None) -> dict[Level, Frequency]:
        return self.industries.get(industry or "", self.default)

    def for_industries(self, industries: Iterable[str]) -> dict[Level, Frequency]:
        """The strictest frequency per level over an enterprise's industries (the default when it has none)."""
        found = [self.for_industry(i) for i in industries]
        if not found:
            return dict(self.default)
        return {lv: min((f[lv] for f in found), key=_RANK.__getitem__) for lv in Level}


def _build(f: CadenceFile) -> Cadence:
    default: dict[Level, Frequency] = {lv: getattr(f.default, lv.value) for lv in Level}
    inds: dict[str, dict[Level, Frequency]] = {}
    for name, c in f.industries.items():
        given: dict[Level, Frequency | None] = {lv: getattr(c, lv.value) for lv in Level}
        inds[str(name)] = {lv: given[lv] or default[lv] for lv in Level}
    return Cadence(default, inds)


DEFAULT = _build(CadenceFile(version=1))


def load(path: str | Path = DEFAULT_FILE, text: str | None = None) -> Cadence:
    """Read and validate a cadence file; a SourceError names file:line of each problem."""
    f, _lines = yamlsrc.validate(path, CadenceFile, text)
    return _build(f)


# --- periods -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    key: str  # 2026-03-02 | 2026-W10 | 2026-03 | 2026-Q1 | 2026
    start: date
    end: date  # exclusive


def period_of(d: date, freq: Frequency) -> Period:
    if freq == "daily":
        return Period(d.isoformat(), d, d + timedelta(days=1))
    if freq == "weekly":
        monday = d - timedelta(days=d.weekday())
        y, w, _ = monday.isocalendar()
        return Period(f"{y:04d}-W{w:02d}", monday, monday + timedelta(days=7))
    if freq == "monthly":
        start = d.replace(day=1)
        end = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        return Period(f"{d.year:04d}-{d.month:02d}", start, end)
    if freq == "quarterly":
        q = (d.month - 1) // 3
        start = date(d.year, 3 * q + 1, 1)
        end = date(d.year + (q == 3), (3 * q + 3) % 12 + 1, 1)
        return Period(f"{d.year:04d}-Q{q + 1}", start, end)
    return Period(f"{d.year:04d}", date(d.year, 1, 1), date(d.year + 1, 1, 1))


def periods(freq: Frequency, start: date, end: date) -> list[Period]:
    """The periods of a frequency that start in [start, end)."""
    out: list[Period] = []
    p = period_of(start, freq)
    if p.start < start:
        p = period_of(p.end, freq)
    while p.start < end:
        out.append(p)
        p = period_of(p.end, freq)
    return out


PeriodStatus = Literal["done", "missed", "open"]


@dataclass(frozen=True)
class Compliance:
    """One enterprise, one level, one report range."""

    level: Level
    frequency: Frequency
    due: int  # periods that have started by today (done + missed + open)
    done: int
    missed: int
    open: int
    missed_periods: tuple[str, ...] = ()
    statuses: tuple[tuple[str, PeriodStatus], ...] = ()

    @property
    def met(self) -> bool:
        return self.missed == 0

    @property
    def rate(self) -> float | None:
        """Share of decided periods (done, or ended without an inspection) that were done."""
        decided = self.done + self.missed
        return None if decided == 0 else self.done / decided


def compliance(level: Level, freq: Frequency, inspected_on: Iterable[date], start: date, end: date,
               today: date) -> Compliance:
    """Periods due, done and missed for one level: a pure function of the inspection dates."""
    done_keys = {period_of(d, freq).key for d in inspected_on}
    statuses: list[tuple[str, PeriodStatus]] = []
    for p in periods(freq, start, end):
        if p.start > today:
            break
        if p.key in done_keys:
            statuses.append((p.key, "done"))
        elif p.end <= today:
            statuses.append((p.key, "missed"))
        else:
            statuses.append((p.key, "open"))
    missed = tuple(k for k, s in statuses if s == "missed")
    done = sum(1 for _k, s in statuses if s == "done")
    return Compliance(level, freq, due=len(statuses), done=done, missed=len(missed),
                      open=sum(1 for _k, s in statuses if s == "open"), missed_periods=missed,
                      statuses=tuple(statuses))
