"""SQL of the rule engine: rebuild state at start, persist evaluator state, apply lifecycle."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.types.json import Jsonb

from core import outbox
from core.clock import secs, ts
from core.keys import AlarmKey
from core.timeconst import US_PER_S
from rules import lifecycle
from rules.compile import DeviceRow, GatewayRow, Instance, PlantRow, PointRow, RegistryView
from rules.evaluate import InstState


def load_registry(conn: psycopg.Connection) -> tuple[RegistryView, dict[int, float], dict[str, float]]:
    """The registry as the compiler sees it, plus creation times of points and gateways."""
    points = []
    created: dict[int, float] = {}
    for r in conn.execute(
        "SELECT id, gateway_id, tag, device_id, quantity, role, required, interval_s, coalesce(setpoints, '{}'),"
        " baseline, unit, extract(epoch FROM created_at), extract(epoch FROM baseline_at),"
        " extract(epoch FROM serviced_at) FROM points ORDER BY id"
    ):
        # Gateway ids, quantities and units repeat across points: one string each, not one per row.
        points.append(PointRow(r[0], sys.intern(r[1]), r[2], r[3], sys.intern(r[4]), r[5], r[6], r[7], dict(r[8]),
                               r[9], sys.intern(r[10]), float(r[11]),
                               None if r[12] is None else float(r[12]), None if r[13] is None else float(r[13])))
        created[r[0]] = float(r[11])
    devices = {r[0]: DeviceRow(r[0], r[1], r[2], r[3])
               for r in conn.execute("SELECT id, plant_id, kind, code FROM devices")}
    plants = {r[0]: PlantRow(r[0], r[1], r[2]) for r in conn.execute("SELECT id, industry, enterprise_id FROM plants")}
    gws = []
    gw_created: dict[str, float] = {}
    for r in conn.execute("SELECT id, plant_id, enabled, extract(epoch FROM created_at) FROM gateways ORDER BY id"):
        gws.append(GatewayRow(r[0], r[1], r[2]))
        gw_created[r[0]] = float(r[3])
    return RegistryView(points, devices, plants, gws), created, gw_created


def registry_fingerprint(conn: psycopg.Connection) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT (SELECT (count(*), max(updated_at)) FROM points), (SELECT (count(*), max(updated_at)) FROM devices),"
        " (SELECT (count(*), max(updated_at)) FROM gateways), (SELECT (count(*), max(updated_at)) FROM plants)"
    ).fetchone()
    return tuple(str(x) for x in row) if row else ()


@dataclass
class PointHistory:
    last_t: dict[int, int]
    last_v: dict[int, float]
    last_valid: dict[int, float]


def load_point_history(conn: psycopg.Connection, point_ids: list[int]) -> PointHistory:
    """Newest reading (any quality) and newest valid reading of each point."""
    h = PointHistory({}, {}, {})
    if not point_ids:
        return h
    rows = conn.execute(
        """SELECT p.id, a.t, b.t, b.value FROM unnest(%s::int[]) AS p(id)
           LEFT JOIN LATERAL (SELECT time AS t FROM readings WHERE point_id = p.id
                              ORDER BY time DESC LIMIT 1) a ON true
           LEFT JOIN LATERAL (SELECT time AS t, value FROM readings WHERE point_id = p.id AND quality < 2
                              ORDER BY time DESC LIMIT 1) b ON true""",
        (point_ids,),
    ).fetchall()
    for pid, t_any, t_valid, v in rows:
        if t_any is not None:
            h.last_t[pid] = int(round(t_any.timestamp() * US_PER_S))
        if t_valid is not None:
            h.last_v[pid] = float(v)
            h.last_valid[pid] = t_valid.timestamp()
    return h


def load_rate_history(conn: psycopg.Connection, windows: dict[int, int]) -> dict[int, tuple[Any, Any]]:
    out = {}
    for pid, w_us in windows.items():
        rows = conn.execute(
            "SELECT time, value FROM readings WHERE point_id = %s AND quality < 2"
            " AND time >= (SELECT max(time) FROM readings WHERE point_id = %s) - %s * interval '1 microsecond'"
            " ORDER BY time",
            (pid, pid, 2 * w_us),
        ).fetchall()
        if rows:
            out[pid] = (np.array([int(round(r[0].timestamp() * US_PER_S)) for r in rows], np.int64),
                        np.array([float(r[1]) for r in rows]))
    return out


def load_instance_states(conn: psycopg.Connection) -> dict[AlarmKey, InstState]:
    out = {}
    for rid, subj, cond, since, active, leaves in conn.execute(
        "SELECT rule_id, subject, cond, cond_since, active, leaves FROM alarms"
    ):
        since_us = int(round(since.timestamp() * US_PER_S)) if since else 0
        out[AlarmKey(rid, subj)] = InstState(bool(cond), since_us, bool(active), tuple(bool(x) for x in (leaves or [])))
    return out


def load_gateways(conn: psycopg.Connection) -> tuple[dict[str, float], dict[str, float]]:
    seen, offline = {}, {}
    for gid, last_seen, online, status_at in conn.execute("SELECT id, last_seen, online, status_at FROM gateways"):
        if last_seen is not None:
            seen[gid] = last_seen.timestamp()
        if online is False and status_at is not None:
            offline[gid] = status_at.timestamp()
    return seen, offline


def log_point_arrivals(conn: psycopg.Connection, point_ids: npt.NDArray[np.int64], now: float) -> int | None:
    """Record that valid data of these points arrived at `now` (the batch's clock), in the batch's transaction.

    One row per batch, the ids as little-endian int4 bytes: an upsert of one row per point costs ~80 ms for a
    20k-point batch, this ~2 ms. The tick folds the log into a snapshot (`snapshot_point_arrivals`).
    """
    if not point_ids.size:
        return None
    row = conn.execute("INSERT INTO point_arrival_log (arrived_at, point_ids) VALUES (%s, %s) RETURNING id",
                       (ts(now), point_ids.astype("<i4").tobytes())).fetchone()
    assert row is not None
    return int(row[0])


def snapshot_point_arrivals(conn: psycopg.Connection, arrival: npt.NDArray[np.float64], upto: int,
                            *, delete: bool = True) -> None:
    """Replace the snapshot with the engine's arrivals (which include every log row up to `upto`); drop those rows."""
    conn.execute(
        """INSERT INTO point_arrival_snapshot (id, upto, taken_at, arrivals) VALUES (1, %s, now(), %s)
           ON CONFLICT (id) DO UPDATE SET upto = EXCLUDED.upto, taken_at = EXCLUDED.taken_at,
               arrivals = EXCLUDED.arrivals""",
        (upto, arrival.astype("<f8").tobytes()),
    )
    if delete:
        conn.execute("DELETE FROM point_arrival_log WHERE id <= %s", (upto,))


def load_point_arrivals(conn: psycopg.Connection, size: int) -> tuple[npt.NDArray[np.float64], int]:
    """Last arrival per point id (epoch s, 0 = none recorded): the snapshot, then the log rows after it.

    Returns the arrivals and the newest log id they include.
    """
    out = np.zeros(size)
    upto = 0
    row = conn.execute("SELECT upto, arrivals FROM point_arrival_snapshot WHERE id = 1").fetchone()
    if row is not None:
        upto = int(row[0])
        snap = np.frombuffer(bytes(row[1]), "<f8")[:size]
        out[:snap.size] = snap
    # Every log row left: folded rows are deleted with the snapshot that folds them. Several collectors commit
    # log rows out of id order, so a row below `upto` may still be unfolded (merge_point_arrivals): newest wins.
    for log_id, at, ids in conn.execute("SELECT id, arrived_at, point_ids FROM point_arrival_log ORDER BY id"):
        pids = np.frombuffer(bytes(ids), "<i4")
        pids = pids[(pids >= 0) & (pids < size)]
        out[pids] = np.maximum(out[pids], at.timestamp())
        upto = max(upto, int(log_id))
    return out, upto


def merge_point_arrivals(conn: psycopg.Connection, arrival: npt.NDArray[np.float64]) -> None:
    """The snapshot of several collectors (ingest.leases): each holds current arrivals only for its own points.

    Serialised by an advisory lock; the snapshot becomes, per point, the newest of the old snapshot, every
    committed log row and this engine's arrivals, and exactly the log rows read are deleted (one committed
    late, with a lower id, stays for the next fold).
    """
    conn.execute("SELECT pg_advisory_xact_lock(150015)")
    size = arrival.shape[0]
    out = np.zeros(size)
    row = conn.execute("SELECT arrivals FROM point_arrival_snapshot WHERE id = 1").fetchone()
    if row is not None:
        snap = np.frombuffer(bytes(row[0]), "<f8")
        out[:min(size, snap.size)] = snap[:size]
    read: list[int] = []
    for log_id, at, ids in conn.execute("SELECT id, arrived_at, point_ids FROM point_arrival_log ORDER BY id"):
        pids = np.frombuffer(bytes(ids), "<i4")
        pids = pids[(pids >= 0) & (pids < size)]
        out[pids] = np.maximum(out[pids], at.timestamp())
        read.append(int(log_id))
    np.maximum(out, arrival, out=out)
    snapshot_point_arrivals(conn, out, max(read, default=0), delete=False)
    if read:
        conn.execute("DELETE FROM point_arrival_log WHERE id = ANY(%s)", (read,))


@dataclass
class GatewayRecord:
    """A gateway's live traffic and offline state as the engine holds them, for the next start."""

    last_seen: dict[str, float]
    offline_at: dict[str, float]


def load_gateway_arrivals(conn: psycopg.Connection) -> GatewayRecord:
    """The engine's own record (migration 0010); gateways it has no row for fall back to `gateways`, which the
    collector writes from live messages only."""
    seen, offline = load_gateways(conn)
    for gid, last_seen, online, status_at in conn.execute(
        "SELECT gateway_id, last_seen, online, status_at FROM gateway_arrivals"
    ):
        if last_seen is not None:
            seen[gid] = max(seen.get(gid, 0.0), last_seen.timestamp())
        if online is False and status_at is not None:
            offline[gid] = status_at.timestamp()
        elif online is True:
            offline.pop(gid, None)
    return GatewayRecord(seen, offline)


def save_gateway_arrivals(conn: psycopg.Connection, last_seen: dict[str, float],
                          offline_at: dict[str, float | None], now: float) -> None:
    """Record a batch's live gateway traffic and the offline states it set or ended (None: back online)."""
    if last_seen:
        gws = sorted(last_seen)
        conn.execute(
            """INSERT INTO gateway_arrivals (gateway_id, last_seen) SELECT * FROM unnest(%s::text[], %s::timestamptz[])
               ON CONFLICT (gateway_id) DO UPDATE SET last_seen = EXCLUDED.last_seen""",
            (gws, [ts(last_seen[g]) for g in gws]),
        )
    if offline_at:
        gws = sorted(offline_at)
        at = [offline_at[g] for g in gws]
        conn.execute(
            """INSERT INTO gateway_arrivals (gateway_id, online, status_at)
               SELECT * FROM unnest(%s::text[], %s::bool[], %s::timestamptz[])
               ON CONFLICT (gateway_id) DO UPDATE SET online = EXCLUDED.online, status_at = EXCLUDED.status_at""",
            (gws, [a is None for a in at], [ts(now if a is None else a) for a in at]),
        )


def load_device_states(conn: psycopg.Connection) -> dict[tuple[str, str], float]:
    """The Sparkplug devices the engine holds dead, (gateway, device) -> since when (migration 0022)."""
    return {(gid, dev): at.timestamp() for gid, dev, at in conn.execute(
        "SELECT gateway_id, device_id, status_at FROM sparkplug_devices WHERE NOT online")}


def save_device_states(conn: psycopg.Connection, offline_at: dict[tuple[str, str], float | None],
                       now: float) -> None:
    """Record the device offline states a batch set or ended (None: alive again, since `now`)."""
    if not offline_at:
        return
    devs = sorted(offline_at)
    at = [offline_at[d] for d in devs]
    conn.execute(
        """INSERT INTO sparkplug_devices (gateway_id, device_id, online, status_at)
           SELECT * FROM unnest(%s::text[], %s::text[], %s::bool[], %s::timestamptz[])
           ON CONFLICT (gateway_id, device_id)
           DO UPDATE SET online = EXCLUDED.online, status_at = EXCLUDED.status_at""",
        ([g for g, _ in devs], [d for _, d in devs], [a is None for a in at],
         [ts(now if a is None else a) for a in at]),
    )


def save_instance_states(conn: psycopg.Connection, items: Iterable[tuple[Instance, InstState]]) -> None:
    rows = [(i.rule_id, i.subject, i.point_id, i.gateway_id, i.plant_id, i.catalog_version, i.severity, i.candidate,
             s.cond, ts(s.since_us / US_PER_S) if s.since_us else None, Jsonb(list(s.leaves)) if s.leaves else None)
            for i, s in items]
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity,
                                   candidate, cond, cond_since, leaves)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
               ON CONFLICT (rule_id, subject) DO UPDATE SET cond = EXCLUDED.cond, cond_since = EXCLUDED.cond_since,
                   leaves = EXCLUDED.leaves, catalog_version = EXCLUDED.catalog_version,
                   severity = EXCLUDED.severity, candidate = EXCLUDED.candidate, updated_at = now()""",
            rows,
        )


_ALARM_COLS = ("state, active, shelved_until, out_of_service, chattering, recent_activations, acked_at, acked_by,"
               " ack_comment, shelved_by, shelve_reason, activated_at, cleared_at")


def _alarm_from_row(r: tuple[Any, ...]) -> lifecycle.Alarm:
    return lifecycle.Alarm(
        state=r[0], active=r[1], shelved_until=secs(r[2]), out_of_service=r[3], chattering=r[4],
        recent=tuple(x.timestamp() for x in (r[5] or [])), acked_at=secs(r[6]), acked_by=r[7], ack_comment=r[8],
        shelved_by=r[9], shelve_reason=r[10], activated_at=secs(r[11]), cleared_at=secs(r[12]),
    )


def lock_alarms(conn: psycopg.Connection, keys: list[AlarmKey]) -> dict[AlarmKey, lifecycle.Alarm]:
    if not keys:
        return {}
    rows = conn.execute(
        f"SELECT rule_id, subject, {_ALARM_COLS} FROM alarms"
        " WHERE (rule_id, subject) IN (SELECT * FROM unnest(%s::text[], %s::text[])) FOR UPDATE",
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    return {AlarmKey(r[0], r[1]): _alarm_from_row(r[2:]) for r in rows}


def write_alarm(conn: psycopg.Connection, key: AlarmKey, a: lifecycle.Alarm, value: float | None = None,
                reason: str | None = None) -> None:
    conn.execute(
        """UPDATE alarms SET state=%s, active=%s, shelved_until=%s, out_of_service=%s, chattering=%s,
               recent_activations=%s, acked_at=%s, acked_by=%s, ack_comment=%s, shelved_by=%s, shelve_reason=%s,
               activated_at=%s, cleared_at=%s, value=coalesce(%s, value), reason=coalesce(%s, reason),
               updated_at=now()
           WHERE rule_id=%s AND subject=%s""",
        (a.state, a.active, ts(a.shelved_until), a.out_of_service, a.chattering, [ts(x) for x in a.recent],
         ts(a.acked_at), a.acked_by, a.ack_comment, a.shelved_by, a.shelve_reason, ts(a.activated_at),
         ts(a.cleared_at), value, reason, key[0], key[1]),
    )


@dataclass(frozen=True)
class AlarmMeta:
    point_id: int | None
    gateway_id: str | None
    plant_id: str
    severity: str
    catalog_version: str


def insert_events(conn: psycopg.Connection, rows: list[tuple[AlarmKey, AlarmMeta, lifecycle.Event,
                                                             float | None]]) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO alarm_events (time, rule_id, subject, point_id, gateway_id, plant_id, event, from_state,
                   to_state, annunciate, actor, reason, value, severity, catalog_version)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
            [(ts(e.time), k[0], k[1], m.point_id, m.gateway_id, m.plant_id, e.event, e.from_state, e.to_state,
              e.annunciate, e.actor, e.reason, v, m.severity, m.catalog_version) for k, m, e, v in rows],
        )
        # Notifications owed for these transitions commit with them (the transactional outbox).
        outbox.enqueue_alarm_events(conn, [outbox.AlarmAnnouncement(AlarmKey(*k), m.plant_id, m.severity,
                                                                    e.annunciate, e.time, e.event, v, e.actor,
                                                                    e.reason) for k, m, e, v in rows])
        # Delivered on commit: wakes whoever waits for alarms (dispatcher, benchmarks) without polling.
        cur.executemany("SELECT pg_notify('riskwatch_alarm', %s)",
                        [(json.dumps({"rule": k[0], "subject": k[1], "event": e.event, "time": e.time,
                                      "annunciate": e.annunciate}),) for k, _, e, _ in rows])


def meta_of(conn: psycopg.Connection, key: AlarmKey) -> AlarmMeta:
    r = conn.execute("SELECT point_id, gateway_id, plant_id, severity, catalog_version FROM alarms"
                     " WHERE rule_id = %s AND subject = %s", key).fetchone()
    if r is None:
        raise KeyError(key)
    return AlarmMeta(*r)


def evidence_window(
    conn: psycopg.Connection, inst: Instance, t: float, window_s: float = 300.0
) -> list[dict[str, Any]]:
    """Readings of the instance's points in the window before the activation (from this transaction too)."""
    if not inst.points:
        return []
    rows = conn.execute(
        """SELECT point_id, time, value, quality FROM readings
           WHERE point_id = ANY(%s) AND time > %s AND time <= %s ORDER BY time DESC LIMIT 600""",
        (list(inst.points), ts(t - window_s), ts(t + 1e-6)),
    ).fetchall()
    return [{"tag": inst.tags.get(p, str(p)), "time": tm.isoformat(), "value": v, "quality": q}
            for p, tm, v, q in reversed(rows)]


def insert_candidate(conn: psycopg.Connection, inst: Instance, t: float, reason: str,
                     evidence: dict[str, Any]) -> int:
    row = conn.execute(
        """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id,
               enterprise_id, basis, title_zh, title_en, catalog_version, reason, evidence)
           VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id""",
        (ts(t), inst.rule_id, inst.subject, inst.point_id, inst.gateway_id, inst.plant_id, inst.enterprise_id,
         inst.basis, inst.title_zh, inst.title_en, inst.catalog_version, reason, Jsonb(evidence)),
    ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Window:
    id: int
    plant_id: str
    device_id: int | None
    point_id: int | None
    starts: float
    ends: float
    reason: str


def load_windows(conn: psycopg.Connection, now: float) -> list[Window]:
    return [Window(r[0], r[1], r[2], r[3], r[4].timestamp(), r[5].timestamp(), r[6]) for r in conn.execute(
        "SELECT id, plant_id, device_id, point_id, starts_at, ends_at, reason FROM maintenance_windows"
        " WHERE ends_at > %s", (ts(now - 3600),))]


def due_lifecycle(conn: psycopg.Connection, now: float) -> dict[AlarmKey, lifecycle.Alarm]:
    rows = conn.execute(
        f"SELECT rule_id, subject, {_ALARM_COLS} FROM alarms"
        " WHERE (shelved_until IS NOT NULL AND shelved_until <= %s) OR chattering FOR UPDATE SKIP LOCKED",
        (ts(now),),
    ).fetchall()
    return {AlarmKey(r[0], r[1]): _alarm_from_row(r[2:]) for r in rows}
