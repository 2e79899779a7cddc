"""What the rule engine has raised, for an operator's summary (`riskwatch demo`): active alarms and the
hazard candidates it detected. Read-only queries of the tables the engine writes (rules.store).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class Raised:
    active_alarms: int
    candidates: int  # hazard_candidates rows, all time


@dataclass(frozen=True)
class CandidateRow:
    detected_at: datetime
    rule_id: str
    title_zh: str
    basis: str
    plant: str
    reason: str | None


def raised(conn: psycopg.Connection) -> Raised:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM alarms WHERE active), (SELECT count(*) FROM hazard_candidates)").fetchone()
    assert row is not None
    return Raised(int(row[0]), int(row[1]))


def candidates_since(conn: psycopg.Connection, since: float) -> list[CandidateRow]:
    """Hazard candidates detected at or after `since` (epoch s), oldest first, with their plant's name."""
    rows = conn.execute(
        """SELECT c.detected_at, c.rule_id, c.title_zh, c.basis, pl.name, c.reason
           FROM hazard_candidates c JOIN plants pl ON pl.id = c.plant_id
           WHERE c.detected_at >= to_timestamp(%s) ORDER BY c.detected_at""", (since,)).fetchall()
    return [CandidateRow(*r) for r in rows]


@dataclass(frozen=True)
class ShownAlarm:
    """An alarm as an operator names it: gateway and tag (or the gateway alone), never the internal subject.

    `target` is what `riskwatch alarms ack RULE TARGET` takes: `GW/TAG` for a point, `GW` for a gateway.
    """

    rule_id: str
    target: str
    gateway_id: str | None
    tag: str | None
    device: str | None
    plant_id: str
    state: str
    active: bool
    severity: str
    candidate: bool
    activated_at: datetime | None
    value: float | None
    reason: str | None
    shelved: bool
    chattering: bool
    out_of_service: bool


def alarms_shown(conn: psycopg.Connection, *, plant: str | None = None, include_normal: bool = False,
                 limit: int = 200) -> list[ShownAlarm]:
    """Alarms that are active or awaiting acknowledgement (or all), most severe first, with their gateway,
    tag and device resolved from the registry (`riskwatch alarms list`)."""
    rows = conn.execute(
        """SELECT a.rule_id, COALESCE(p.gateway_id, a.gateway_id), p.tag, d.code, a.plant_id, a.state, a.active,
                  a.severity, a.candidate, a.activated_at, a.value, a.reason,
                  a.shelved_until IS NOT NULL AND a.shelved_until > now(), a.chattering, a.out_of_service,
                  a.subject
           FROM alarms a LEFT JOIN points p ON p.id = a.point_id LEFT JOIN devices d ON d.id = p.device_id
           WHERE (%s OR a.state <> 'normal') AND (%s::text IS NULL OR a.plant_id = %s)
           ORDER BY CASE a.severity WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END,
                    a.activated_at DESC NULLS LAST, a.rule_id, a.subject
           LIMIT %s""",
        (include_normal, plant, plant, limit),
    ).fetchall()
    out: list[ShownAlarm] = []
    for r in rows:
        gw, tag = r[1], r[2]
        target = f"{gw}/{tag}" if gw and tag else (gw or r[15])  # a point gone from the registry: its subject
        out.append(ShownAlarm(r[0], target, gw, tag, r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                              None if r[10] is None else float(r[10]), r[11], r[12], r[13], r[14]))
    return out
