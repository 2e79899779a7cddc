"""Retention: drop raw readings past their age, keep the 1-minute rollup much longer.

The Apache build of TimescaleDB has no retention policies, so riskwatch runs
this job itself (`riskwatch retention run`, e.g. daily from a systemd timer or
cron). It removes whole chunks with `drop_chunks`: no DELETE, no bloat, no
vacuum debt. A chunk is dropped only once all of it is older than the cut-off
(readings: 1-day chunks; readings_1m: 30-day chunks), so data is kept at
least as long as asked and at most one chunk longer.

Why the rollup outlives the raw data: Grafana answers long ranges from
`readings_1m`, and falls back to it for any range whose raw data is gone;
the collector keeps the rollup complete in the same transaction as the raw
readings, so dropping raw chunks never loses a minute of the long-range view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from core.errors import ConfigError
from core.retention_operational import OperationalRetention, purge_operational

DEFAULT_RAW_DAYS = 30.0
#: What `run_retention` does, in order (each reported to `on_step`).
RETENTION_STEPS = ("readings", "readings_1m", "operational tables")
DEFAULT_ROLLUP_DAYS = 400.0  # more than a year: the same month last year stays comparable


@dataclass(frozen=True)
class RetentionPolicy:
    raw_days: float = DEFAULT_RAW_DAYS
    rollup_days: float = DEFAULT_ROLLUP_DAYS
    #: outbox, notifications + deliveries, dead letters (core/retention_operational.py)
    operational: OperationalRetention = field(default_factory=OperationalRetention)

    def __post_init__(self) -> None:
        if not self.raw_days > 0:
            raise ConfigError(f"raw retention must be positive (got {self.raw_days:g} days)")
        if self.rollup_days < self.raw_days:
            raise ConfigError(f"the rollup must be kept at least as long as raw data "
                              f"(rollup {self.rollup_days:g} days < raw {self.raw_days:g} days)")


@dataclass(frozen=True)
class RetentionResult:
    raw_cutoff: datetime
    rollup_cutoff: datetime
    raw_chunks: list[str]  # dropped (or, in a dry run, that would be dropped)
    rollup_chunks: list[str]
    dry_run: bool = False
    rows: dict[str, int] = field(default_factory=dict)  # deleted (dry run: would be) per operational table


def run_retention(conn: psycopg.Connection, policy: RetentionPolicy, now: datetime | None = None,
                  dry_run: bool = False, on_step: Callable[[str], None] | None = None) -> RetentionResult:
    """Drop chunks older than the policy's ages, in one transaction; return what went. `on_step(name)` is told
    as each of the RETENTION_STEPS is done (a progress bar's step)."""
    step = on_step or (lambda _name: None)
    now = now or datetime.now(UTC)
    raw_cut = now - timedelta(days=policy.raw_days)
    rollup_cut = now - timedelta(days=policy.rollup_days)
    fn = "show_chunks" if dry_run else "drop_chunks"
    with conn.transaction():
        raw = [str(r[0]) for r in conn.execute(
            f"SELECT {fn}('readings', older_than => %s::timestamptz)", (raw_cut,))]
        step("readings")
        rollup = [str(r[0]) for r in conn.execute(
            f"SELECT {fn}('readings_1m', older_than => %s::timestamptz)", (rollup_cut,))]
        step("readings_1m")
        rows = purge_operational(conn, policy.operational, now, dry_run)
        step("operational tables")
    return RetentionResult(raw_cut, rollup_cut, raw, rollup, dry_run, rows)
