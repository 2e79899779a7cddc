"""MQTT topic layout of the gateway contract, below rw/v1/{gateway_id}/.

Gateways publish `telemetry` and (retained) `status`; the collector publishes the retained end-to-end
confirmation `stored`; `cmd/...` is the service's downlink to a gateway. The collector subscribes to the
whole `rw/v1/#` tree so that anything else published there is dead-lettered (`bad_topic`) instead of
vanishing unseen.
"""

from __future__ import annotations

from typing import Literal

PREFIX = "rw/v1/"
ALL_FILTER = "rw/v1/#"
# The filters of collectors before issue 15; unsubscribed on connect so an upgraded persistent session does not
# receive every message twice (once per overlapping subscription).
TELEMETRY_FILTER = "rw/v1/+/telemetry"
STATUS_FILTER = "rw/v1/+/status"

Kind = Literal["telemetry", "status"]
Route = Literal["telemetry", "status", "stored", "cmd"]


def telemetry(gateway_id: str) -> str:
    return f"{PREFIX}{gateway_id}/telemetry"


def status(gateway_id: str) -> str:
    return f"{PREFIX}{gateway_id}/status"


def stored(gateway_id: str) -> str:
    """The collector's retained confirmation: the highest `seq` of this gateway durably stored."""
    return f"{PREFIX}{gateway_id}/stored"


def parse(topic: str) -> tuple[str, Kind] | None:
    """(gateway_id, kind) for a topic a gateway publishes data on, else None."""
    r = route(topic)
    if r is None or r[1] not in ("telemetry", "status"):
        return None
    return r[0], r[1]


def route(topic: str) -> tuple[str, Route] | None:
    """(gateway_id, route) for every topic of the contract, None for anything else (a dead letter).

    `stored` is the collector's own output and `cmd` (with any sub-topics) the service's downlink: both are
    traffic the collector sees on `rw/v1/#` and must leave alone, not data from a gateway.
    """
    if not topic.startswith(PREFIX):
        return None
    rest = topic[len(PREFIX):].split("/")
    if len(rest) < 2 or not rest[0]:
        return None
    if rest[1] == "cmd":
        return rest[0], "cmd"
    if len(rest) != 2:
        return None
    if rest[1] in ("telemetry", "status", "stored"):
        return rest[0], rest[1]  # type: ignore[return-value]
    return None


def gateway_of(topic: str) -> str | None:
    """The gateway segment of a topic under rw/v1/ (the broker only lets a gateway write its own), for logs."""
    if not topic.startswith(PREFIX):
        return None
    gw = topic[len(PREFIX):].split("/", 1)[0]
    return gw[:64] or None
