"""How buffered readings become MQTT messages: the seam between the buffer and a wire format.

The buffer stores encoded messages (so a re-send is byte-identical, same `seq`, same per-reading times, which
the collector's unique key (point, time) absorbs). JSON v1 is the riskwatch contract; a Sparkplug B format would
implement the same `Format` protocol (topic for DDATA, payload with `seq` mapped onto the Sparkplug sequence
plus a riskwatch metric for the 64-bit buffer seq) and need births on connect, hence `on_connect_messages`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson

from ingest import topics

QUALITY_NAMES = ("good", "uncertain", "bad")


@dataclass(frozen=True, slots=True)
class Reading:
    """One sampled value: `q` is 0 good, 1 uncertain, 2 bad (JSON v1's `q`)."""

    tag: str
    ts_ms: int
    v: float
    q: int = 0


class Format(Protocol):
    name: str

    def telemetry_topic(self, gateway: str) -> str: ...

    def encode(self, seq: int, ts_ms: int, readings: Sequence[Reading]) -> bytes: ...

    def on_connect_messages(self, gateway: str) -> list[tuple[str, bytes, bool]]: ...


class JsonV1:
    """DESIGN.md "MQTT contract": `{"ts", "seq", "readings": [{"tag", "v", "ts", "q"?}]}`."""

    name = "json_v1"

    def telemetry_topic(self, gateway: str) -> str:
        return topics.telemetry(gateway)

    def encode(self, seq: int, ts_ms: int, readings: Sequence[Reading]) -> bytes:
        out = []
        for r in readings:
            d: dict[str, object] = {"tag": r.tag, "v": r.v, "ts": r.ts_ms}
            if r.q:
                d["q"] = QUALITY_NAMES[r.q]
            out.append(d)
        return orjson.dumps({"ts": ts_ms, "seq": seq, "readings": out})

    def on_connect_messages(self, gateway: str) -> list[tuple[str, bytes, bool]]:
        return []


def make_format(name: str) -> Format:
    if name == "json_v1":
        return JsonV1()
    raise ValueError(f"publish format {name!r} is not implemented (json_v1)")


__all__ = ["Format", "JsonV1", "Reading", "make_format"]
