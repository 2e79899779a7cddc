"""A batch of decoded messages, as arrays, ready for one transaction.

Readings accumulate in flat lists and become numpy arrays once per batch; the
batch also carries what goes to dead_letters and unmapped_points, gateway
status and last-seen times, what Sparkplug devices' messages say of them
(alive, dead), and the MQTT message ids to acknowledge after the commit, in
arrival order. The arrays type itself (`Readings`) lives in
`core.readings`, since the rules read it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.readings import Readings

__all__ = ["Batch", "DeadLetter", "Readings", "Unmapped"]


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


@dataclass
class Batch:
    point_ids: list[int] = field(default_factory=list)
    times_us: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    qualities: list[int] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    unmapped: dict[tuple[str, str], Unmapped] = field(default_factory=dict)
    # The unmapped readings themselves, (gateway, tag, time us, value, quality): kept in quarantined_readings
    # so that mapping the tag later backfills them (ingest/quarantine.py). Only unmapped tags land here.
    quarantine: list[tuple[str, str, int, float, int]] = field(default_factory=list)
    status: dict[str, tuple[bool, float]] = field(default_factory=dict)
    # Retained statuses the broker replayed at subscribe time: (online, the message's own 'ts' or None). Old news:
    # not written to `gateways` nor counted as traffic; the rule engine decides what they mean.
    replayed: dict[str, tuple[bool, float | None]] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    # Per Sparkplug device (gateway, device id): (alive, arrival time) as its newest message in the batch shows it
    # (ingest.sparkplug.host `Outcome.device`); the rule engine records the changes with the readings.
    devices: dict[tuple[str, str], tuple[bool, float]] = field(default_factory=dict)
    # Highest JSON v1 `seq` per gateway in this batch: raised in gateway_stored_seq, then published as `stored`.
    seqs: dict[str, int] = field(default_factory=dict)
    # Per gateway: how far its clock is ahead of ours (s): the newest live message's own ts minus its arrival,
    # kept even when every reading was dead-lettered as from the future; the clock_skew rule reads it (issue 14).
    skew: dict[str, float] = field(default_factory=dict)
    # Retained messages handled for the first time (topic, payload digest), and topics whose retained message
    # was cleared: recorded in retained_seen so that the broker's replays are not handled again.
    retained_new: list[tuple[str, bytes]] = field(default_factory=list)
    retained_cleared: list[str] = field(default_factory=list)
    messages: int = 0
    _readings: Readings | None = field(default=None, repr=False)

    def add_seq(self, gateway_id: str, seq: int) -> None:
        if seq > self.seqs.get(gateway_id, -1):
            self.seqs[gateway_id] = seq

    def add_unmapped(self, gateway_id: str, tag: str, t_us: int, value: float, quality: int = 0) -> None:
        self.quarantine.append((gateway_id, tag, t_us, value, quality))
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
