"""Injected clocks: production code takes a Clock, tests move a FakeClock."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


def ts(seconds: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (for SQL parameters)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def secs(d: datetime | None) -> float | None:
    """A datetime from the database as epoch seconds."""
    return None if d is None else d.timestamp()


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    def __init__(self, start: float = 1_764_460_800.0):
        self._t = start

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> None:
        self._t += seconds

    def set(self, t: float) -> None:
        self._t = t
