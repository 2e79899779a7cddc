"""The readings arrays ingest hands to the rules: the one boundary type of the hot path.

The collector decodes a batch to these columns once (`ingest.batch.Batch.readings`); the writer
COPYs them, the rollup aggregates them, the rule evaluator steps through them. `BatchView` is what
the rule engine reads of a batch besides the readings (gateway traffic and status), so `rules`
depends on this module and not on `ingest`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["BatchView", "Readings"]


@dataclass(slots=True)
class Readings:
    """Column arrays of a batch's readings (time in epoch microseconds, see core.timeconst)."""

    point_id: npt.NDArray[np.int32]
    time_us: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    quality: npt.NDArray[np.int16]

    def __len__(self) -> int:
        return int(self.point_id.shape[0])

    def dedup(self) -> Readings:
        """Drop repeated (point, time) pairs inside the batch, keeping the first."""
        if len(self) < 2:
            return self
        key = (self.point_id.astype(np.int64) << 44) ^ (self.time_us - self.time_us.min())
        # The xor key is exact while the batch spans < 2^44 us (~200 days), which
        # the timestamp limits guarantee.
        _, first = np.unique(key, return_index=True)
        if first.shape[0] == len(self):
            return self
        first.sort()
        return Readings(self.point_id[first], self.time_us[first], self.value[first], self.quality[first])


class BatchView(Protocol):
    """What the rule engine reads of one collector batch (ingest.batch.Batch is one)."""

    @property
    def last_seen(self) -> Mapping[str, float]:
        """Gateway id -> arrival time (epoch s) of its newest message in the batch."""
        ...

    @property
    def status(self) -> Mapping[str, tuple[bool, float]]:
        """Gateway id -> (online, time) of a live status message."""
        ...

    @property
    def replayed(self) -> Mapping[str, tuple[bool, float | None]]:
        """Gateway id -> (online, the message's own ts) of a retained status the broker replayed."""
        ...

    @property
    def devices(self) -> Mapping[tuple[str, str], tuple[bool, float]]:
        """(gateway id, Sparkplug device id) -> (alive, arrival time) that the batch's messages prove: a DBIRTH or
        DDATA alive, a DDEATH of the current session dead (ingest.sparkplug.host)."""
        ...

    @property
    def skew(self) -> Mapping[str, float]:
        """Gateway id -> its clock ahead of the collector's (s), from its newest live message's own ts."""
        ...

    def readings(self) -> Readings:
        ...
