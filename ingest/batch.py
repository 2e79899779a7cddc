"""A batch of decoded messages, as arrays, ready for one transaction.

Readings accumulate in flat lists and become numpy arrays once per batch; the
batch also carries what goes to dead_letters and unmapped_points, gateway
status and last-seen times, and the MQTT message ids to acknowledge after the
commit, in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(slots=True)
class DeadLetter:
    gateway_id: str | None
    topic: str
    reason: str
    detail: str
    reading_index: int | None
    payload: bytes | None


@dataclass(slots=True)
class Unmapped:
    first_us: int
    last_us: int
    count: int
    last_value: float


@dataclass(slots=True)
class Readings:
    """Column arrays of a batch's readings (time in epoch microseconds)."""

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


@dataclass
class Batch:
    point_ids: list[int] = field(default_factory=list)
    times_us: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    qualities: list[int] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    unmapped: dict[tuple[str, str], Unmapped] = field(default_factory=dict)
    status: dict[str, tuple[bool, float]] = field(default_factory=dict)
    # Retained statuses the broker replayed at subscribe time: (online, the message's own 'ts' or None). Old news:
    # not written to `gateways` nor counted as traffic; the rule engine decides what they mean.
    replayed: dict[str, tuple[bool, float | None]] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    # Highest JSON v1 `seq` per gateway in this batch: raised in gateway_stored_seq, then published as `stored`.
    seqs: dict[str, int] = field(default_factory=dict)
    # Retained messages handled for the first time (topic, payload digest), and topics whose retained message
    # was cleared: recorded in retained_seen so that the broker's replays are not handled again.
    retained_new: list[tuple[str, bytes]] = field(default_factory=list)
    retained_cleared: list[str] = field(default_factory=list)
    messages: int = 0
    _readings: Readings | None = field(default=None, repr=False)

    def add_seq(self, gateway_id: str, seq: int) -> None:
        if seq > self.seqs.get(gateway_id, -1):
            self.seqs[gateway_id] = seq

    def add_unmapped(self, gateway_id: str, tag: str, t_us: int, value: float) -> None:
        u = self.unmapped.get((gateway_id, tag))
        if u is None:
            self.unmapped[(gateway_id, tag)] = Unmapped(t_us, t_us, 1, value)
        else:
            u.first_us = min(u.first_us, t_us)
            if t_us >= u.last_us:
                u.last_us, u.last_value = t_us, value
            u.count += 1

    @property
    def received(self) -> int:
        return len(self.point_ids)

    def readings(self) -> Readings:
        """The batch's readings as arrays, duplicates (same point and time) removed; built once."""
        if self._readings is None:
            self._readings = Readings(
                np.fromiter(self.point_ids, dtype=np.int32, count=len(self.point_ids)),
                np.fromiter(self.times_us, dtype=np.int64, count=len(self.times_us)),
                np.fromiter(self.values, dtype=np.float64, count=len(self.values)),
                np.fromiter(self.qualities, dtype=np.int16, count=len(self.qualities)),
            ).dedup()
        return self._readings
