"""What the collector has stored, for an operator's summary (`riskwatch demo`): row counts and the latest
reading of every point. Read-only queries of the tables ingest writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg


@dataclass(frozen=True)
class Stored:
    readings: int
    dead_letters: int
    unmapped: int  # readings of tags the registry does not know


@dataclass(frozen=True)
class Latest:
    plant: str
    device: str
    tag: str
    point: str  # its name, else its quantity
    value: float
    unit: str
    time: datetime


def stored(conn: psycopg.Connection) -> Stored:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM dead_letters),"
        " (SELECT coalesce(sum(count), 0) FROM unmapped_points)").fetchone()
    assert row is not None
    return Stored(int(row[0]), int(row[1]), int(row[2]))


def latest_readings(conn: psycopg.Connection) -> list[Latest]:
    """Each point's newest reading, by plant, device and tag; points without a reading are left out."""
    rows = conn.execute(
        """SELECT pl.name, d.name, p.tag, coalesce(p.name, p.quantity), l.value, p.unit, l.time
           FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl ON pl.id = d.plant_id
           CROSS JOIN LATERAL (SELECT value, time FROM readings r WHERE r.point_id = p.id
                               ORDER BY time DESC LIMIT 1) l
           ORDER BY pl.id, d.id, p.tag"""
    ).fetchall()
    return [Latest(*r) for r in rows]
