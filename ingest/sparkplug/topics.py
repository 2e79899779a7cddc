"""Sparkplug B topics (namespace `spBv1.0`): what an edge node publishes, the host's commands and its STATE.

`spBv1.0/{group_id}/{message type}/{edge_node_id}[/{device_id}]`, and the primary host's
`spBv1.0/STATE/{host_id}`. In riskwatch the edge node id is the gateway id: the broker binds the edge node level to
the gateway's username (core.services.render_auth), so the topic names its sender as reliably as rw/v1/{gw}/ does.
Any group id is accepted; it is kept for the commands sent back and for logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

NAMESPACE = "spBv1.0"
PREFIX = NAMESPACE + "/"
ALL_FILTER = "spBv1.0/#"
# riskwatch's Sparkplug host application id: its STATE topic, and the one the collectors may write (ACL).
HOST_ID = "riskwatch"

NodeType = Literal["NBIRTH", "NDATA", "NDEATH", "NCMD"]
DeviceType = Literal["DBIRTH", "DDATA", "DDEATH", "DCMD"]
MessageType = Literal["NBIRTH", "NDATA", "NDEATH", "NCMD", "DBIRTH", "DDATA", "DDEATH", "DCMD"]
NODE_TYPES: frozenset[str] = frozenset({"NBIRTH", "NDATA", "NDEATH", "NCMD"})
DEVICE_TYPES: frozenset[str] = frozenset({"DBIRTH", "DDATA", "DDEATH", "DCMD"})
COMMANDS: frozenset[str] = frozenset({"NCMD", "DCMD"})


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed edge node (or device) topic."""

    group: str
    kind: MessageType
    edge: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class State:
    """A host application's STATE topic (ours, or another host's on the same broker)."""

    host: str


@dataclass(frozen=True, slots=True)
class Bad:
    """A topic under spBv1.0/ that is not one of Sparkplug's: a `sparkplug_topic` dead letter."""

    why: str


def is_sparkplug(topic: str) -> bool:
    return topic.startswith(PREFIX)


def parse(topic: str) -> Topic | State | Bad:
    """The topic of a message under spBv1.0/ (check `is_sparkplug` first)."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[1] == "STATE":
        return State(parts[2]) if parts[2] else Bad("STATE without a host id")
    if len(parts) not in (4, 5):
        return Bad(f"{len(parts)} levels; expected spBv1.0/group/TYPE/edge_node[/device]")
    _, group, kind, edge = parts[:4]
    if not group or not edge:
        return Bad("empty group or edge node id")
    if kind in NODE_TYPES:
        if len(parts) != 4:
            return Bad(f"{kind} with a device level")
        return Topic(group, kind, edge)  # type: ignore[arg-type]  # checked against NODE_TYPES
    if kind in DEVICE_TYPES:
        if len(parts) != 5 or not parts[4]:
            return Bad(f"{kind} without a device id")
        return Topic(group, kind, edge, parts[4])  # type: ignore[arg-type]  # checked against DEVICE_TYPES
    return Bad(f"unknown message type {kind[:32]!r}")


def edge_of(topic: str) -> str | None:
    """The edge node (= gateway) level of a topic under spBv1.0/, for dead letters and logs; None if it has none."""
    parts = topic.split("/")
    if len(parts) in (4, 5) and parts[0] == NAMESPACE and parts[3]:
        return parts[3][:64]
    return None


def ncmd(group: str, edge: str) -> str:
    return f"{PREFIX}{group}/NCMD/{edge}"


def state(host: str = HOST_ID) -> str:
    return f"{PREFIX}STATE/{host}"


def gateway_filters(gateway_id: str) -> list[str]:
    """A group member's subscriptions for one gateway's Sparkplug traffic: node and device messages, any group.

    Both the gateway's own messages and the commands addressed to it (another collector's NCMD) match: commands
    are recognised and ignored, as `rw/v1/{gw}/cmd` is."""
    return [f"{PREFIX}+/+/{gateway_id}", f"{PREFIX}+/+/{gateway_id}/+"]
