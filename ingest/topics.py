"""MQTT topic layout of the gateway contract: rw/v1/{gateway_id}/{telemetry|status}."""

from __future__ import annotations

from typing import Literal

PREFIX = "rw/v1/"
TELEMETRY_FILTER = "rw/v1/+/telemetry"
STATUS_FILTER = "rw/v1/+/status"

Kind = Literal["telemetry", "status"]


def telemetry(gateway_id: str) -> str:
    return f"{PREFIX}{gateway_id}/telemetry"


def status(gateway_id: str) -> str:
    return f"{PREFIX}{gateway_id}/status"


def parse(topic: str) -> tuple[str, Kind] | None:
    """(gateway_id, kind) for a contract topic, else None."""
    if not topic.startswith(PREFIX):
        return None
    rest = topic[len(PREFIX):].split("/")
    if len(rest) != 2 or not rest[0]:
        return None
    if rest[1] == "telemetry":
        return rest[0], "telemetry"
    if rest[1] == "status":
        return rest[0], "status"
    return None
