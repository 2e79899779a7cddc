"""Time units, once. Readings and rule times are epoch microseconds (int64 arrays); everything
between a transition and a notification is epoch seconds (float); SQL parameters are aware
datetimes (`core.clock.ts`/`secs` at the store boundary, and nowhere else)."""

from __future__ import annotations

from typing import Final

__all__ = ["MS_PER_S", "S_PER_DAY", "S_PER_H", "S_PER_MIN", "US_PER_MS", "US_PER_S"]

US_PER_S: Final = 1_000_000
US_PER_MS: Final = 1_000
MS_PER_S: Final = 1_000
S_PER_MIN: Final = 60
S_PER_H: Final = 3_600
S_PER_DAY: Final = 86_400
