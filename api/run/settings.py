"""The start-up values every process builds first: its settings (from the environment, once) and its clock.

Light on purpose (no stage is imported), so the CLI builds its settings without loading the pipeline.
"""

from __future__ import annotations

from core.clock import Clock, SystemClock
from core.settings import Settings

__all__ = ["build_clock", "load_settings"]


def load_settings() -> Settings:
    """Settings from the environment, read once at start-up and passed down."""
    return Settings.from_env()


def build_clock() -> Clock:
    """The wall clock every part of one process shares (tests pass a FakeClock instead)."""
    return SystemClock()
