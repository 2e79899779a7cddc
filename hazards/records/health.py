"""Alarm-system health of one operator position (ISA-18.2 / IEC 62682, EEMUA 191): a pure function.

Input is the position's alarm history for a period (from `alarm_events`) and
each alarm's state when the period began; output is the figures the
standards use to tell whether an alarm system helps operators or buries them.
No database here: `records.store.alarm_history` reads the events.

Definitions (documented in docs/records.md with their sources):

- An *alarm* is an annunciated activation (`event = 'activate' AND annunciate`)
  at or above the position's minimum severity: what reached the operator.
  Activations suppressed by shelving, out-of-service, maintenance or chatter
  holding are not alarms to the operator, but they are the alarm's own
  behaviour, so chattering counts all activations.
- Rates: alarms per 10 minutes and per day, averaged over the period.
  Benchmarks: ISA-18.2 (2016) Table 16.2 — ~150 alarms/day (~1 per 10 min)
  very likely acceptable, ~300/day (~2 per 10 min) maximum manageable;
  EEMUA 191 — long-term average under 1 per 10 min very likely acceptable,
  1 per 5 min manageable, 1 per 2 min likely over-demanding, over 1 per minute
  very likely unacceptable.
- Flood: a fixed 10-minute interval (aligned to the clock) with more than 10
  alarms (ISA-18.2; EEMUA 191's "under 10 in the 10 minutes after an upset
  should be manageable"). % time in flood = flood intervals / intervals; the
  ISA target is under ~1 %.
- Standing: active at the period's end and active for more than 24 hours.
  Stale: standing and still unacknowledged (nobody has acknowledged it since it
  activated). ISA-18.2 target: fewer than 5 stale alarms present on any day.
- Shelved: shelved at the period's end; shelve actions taken in the period.
- Chattering: an alarm with ≥ 3 activations within 60 s (the same rule as the
  lifecycle's chatter detection, `rules.lifecycle.CHATTER_COUNT/WINDOW_S`):
  counted as distinct alarms and as episodes (non-overlapping bursts).
  Target: none.
- Bad actors: the 10 alarms (rule × subject) with the most alarms, with their
  share of the total; ISA-18.2 target: the top 10 make up ~1 % to 5 % at most.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

INTERVAL_S = 600.0
DAY_S = 86_400.0
HOUR_S = 3_600.0
FLOOD_ABOVE = 10  # alarms in a 10-minute interval
HOUR_ABOVE = 30  # ISA-18.2: % of hours with more than 30 alarms, target under ~1 %
STANDING_AFTER_S = 24 * HOUR_S
CHATTER_COUNT = 3
CHATTER_WINDOW_S = 60.0
TOP_N = 10
SEVERITY_RANK = {"medium": 0, "high": 1, "urgent": 2}

AlarmKey = tuple[str, str]  # (rule_id, subject)
Verdict = Literal["acceptable", "manageable", "over_demanding", "unacceptable"]
VERDICT_ZH: dict[str, str] = {"acceptable": "很可能可接受", "manageable": "可管理", "over_demanding": "负担过重",
                              "unacceptable": "很可能不可接受"}


@dataclass(frozen=True)
class HistoryEvent:
    time: float
    rule_id: str
    subject: str
    event: str  # activate, clear, ack, shelve, unshelve, ...
    annunciate: bool
    severity: str


@dataclass(frozen=True)
class StartState:
    """An alarm's state when the period began (from its last events before it)."""

    active_since: float | None = None  # None: not active
    acked: bool = False
    shelved: bool = False


@dataclass(frozen=True)
class BadActor:
    rule_id: str
    subject: str
    count: int
    share: float  # of all alarms in the period, 0..1


@dataclass(frozen=True)
class StandingAlarm:
    rule_id: str
    subject: str
    active_since: float
    acked: bool


@dataclass
class Health:
    start: float
    end: float
    alarms: int
    intervals: int
    days: float
    per_10min: float
    per_day: float
    max_10min: int
    max_day: int
    flood_intervals: int
    flood_minutes: float
    pct_time_in_flood: float
    hours_over_30: int
    pct_hours_over_30: float
    standing: list[StandingAlarm]
    stale: int
    shelved_at_end: int
    shelve_actions: int
    chattering_alarms: int
    chatter_episodes: int
    top: list[BadActor]
    top_share: float
    verdict_10min: Verdict
    verdict_day: Verdict
    by_day: list[int] = field(default_factory=list)

    @property
    def flooding(self) -> bool:
        return self.flood_intervals > 0


def verdict_per_10min(rate: float) -> Verdict:
    """EEMUA 191's long-term average rate bands, per 10 minutes."""
    if rate <= 1.0:
        return "acceptable"
    if rate <= 2.0:
        return "manageable"
    if rate <= 10.0:
        return "over_demanding"
    return "unacceptable"


def verdict_per_day(rate: float) -> Verdict:
    """ISA-18.2's alarms per day per operating position (~150 acceptable, ~300 maximum manageable)."""
    if rate <= 150.0:
        return "acceptable"
    if rate <= 300.0:
        return "manageable"
    if rate <= 1440.0:  # 10 per 10 minutes all day long
        return "over_demanding"
    return "unacceptable"


def chatter_episodes(times: list[float]) -> int:
    """Non-overlapping bursts of ≥ CHATTER_COUNT activations each spanning less than CHATTER_WINDOW_S."""
    n, i = 0, 0
    ts = sorted(times)
    while i + CHATTER_COUNT - 1 < len(ts):
        if ts[i + CHATTER_COUNT - 1] - ts[i] < CHATTER_WINDOW_S:
            n += 1
            j = i + CHATTER_COUNT
            while j < len(ts) and ts[j] - ts[j - 1] < CHATTER_WINDOW_S:
                j += 1  # the burst goes on while activations keep coming within the window
            i = j
        else:
            i += 1
    return n


def compute(events: Iterable[HistoryEvent], start: float, end: float,
            initial: Mapping[AlarmKey, StartState] | None = None, min_severity: str = "medium") -> Health:
    """The figures of one position over [start, end); `start` should be aligned to 10 minutes."""
    if end <= start:
        raise ValueError("end must be after start")
    floor = SEVERITY_RANK.get(min_severity, 0)
    intervals = int(-(-(end - start) // INTERVAL_S))
    hours = int(-(-(end - start) // HOUR_S))
    ndays = int(-(-(end - start) // DAY_S))
    per_interval: Counter[int] = Counter()
    per_hour: Counter[int] = Counter()
    per_day: Counter[int] = Counter()
    per_alarm: Counter[AlarmKey] = Counter()
    activations: dict[AlarmKey, list[float]] = defaultdict(list)
    state: dict[AlarmKey, StartState] = dict(initial or {})
    shelve_actions = 0
    total = 0
    for e in sorted(events, key=lambda x: x.time):
        if not start <= e.time < end or SEVERITY_RANK.get(e.severity, 0) < floor:
            continue
        key = (e.rule_id, e.subject)
        s = state.get(key, StartState())
        if e.event == "activate":
            activations[key].append(e.time)
            state[key] = StartState(e.time if s.active_since is None else s.active_since, False, s.shelved)
            if e.annunciate:
                total += 1
                per_alarm[key] += 1
                per_interval[int((e.time - start) // INTERVAL_S)] += 1
                per_hour[int((e.time - start) // HOUR_S)] += 1
                per_day[int((e.time - start) // DAY_S)] += 1
        elif e.event == "clear":
            state[key] = StartState(None, s.acked, s.shelved)
        elif e.event == "ack":
            state[key] = StartState(s.active_since, True, s.shelved)
        elif e.event == "shelve":
            shelve_actions += 1
            state[key] = StartState(s.active_since, s.acked, True)
        elif e.event == "unshelve":
            state[key] = StartState(s.active_since, s.acked, False)
    standing = sorted((StandingAlarm(k[0], k[1], s.active_since, s.acked) for k, s in state.items()
                       if s.active_since is not None and end - s.active_since > STANDING_AFTER_S),
                      key=lambda a: (a.active_since, a.rule_id, a.subject))
    flood = sum(1 for c in per_interval.values() if c > FLOOD_ABOVE)
    over30 = sum(1 for c in per_hour.values() if c > HOUR_ABOVE)
    chattering = {k: chatter_episodes(v) for k, v in activations.items()}
    ranked = sorted(per_alarm.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
    top = [BadActor(k[0], k[1], c, c / total) for k, c in ranked]
    days = (end - start) / DAY_S
    r10 = total / intervals
    rday = total / days
    return Health(
        start=start, end=end, alarms=total, intervals=intervals, days=days, per_10min=r10, per_day=rday,
        max_10min=max(per_interval.values(), default=0), max_day=max(per_day.values(), default=0),
        flood_intervals=flood, flood_minutes=flood * INTERVAL_S / 60.0, pct_time_in_flood=100.0 * flood / intervals,
        hours_over_30=over30, pct_hours_over_30=100.0 * over30 / hours,
        standing=standing, stale=sum(1 for a in standing if not a.acked),
        shelved_at_end=sum(1 for s in state.values() if s.shelved), shelve_actions=shelve_actions,
        chattering_alarms=sum(1 for n in chattering.values() if n > 0), chatter_episodes=sum(chattering.values()),
        top=top, top_share=sum(b.count for b in top) / total if total else 0.0,
        verdict_10min=verdict_per_10min(r10), verdict_day=verdict_per_day(rday),
        by_day=[per_day.get(i, 0) for i in range(ndays)],
    )
