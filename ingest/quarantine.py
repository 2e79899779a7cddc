"""Quarantined readings: what an unmapped tag sent, kept until the tag is mapped to a point, then backfilled.

The collector writes a reading of a tag the registry does not map into `quarantined_readings` (and counts it
in `unmapped_points`) in the batch's own transaction (`write_quarantine`, called by `ingest.store`). Mapping
the tag (`map_tag`, one operation for the HTTP API and the console) creates the point and moves the tag's
quarantined rows into `readings` in one transaction: `DELETE ... RETURNING` feeds an
`INSERT ... ON CONFLICT DO NOTHING RETURNING`, so each quarantined row is moved by exactly one transaction
(a concurrent mover finds it gone) and lands at most once, and only the rows actually inserted are rolled
up, exactly as the collector rolls up a batch.

The race: a collector whose registry snapshot is a second old can quarantine a reading of a tag mapped a
moment ago. `settle` runs in the batch's transaction after the quarantine rows are written and backfills
those of tags mapped meanwhile; row locks on `unmapped_points` order it against `map_tag` (see `settle`).
`sweep` does the same for every mapped tag in a transaction of its own (a repair, and `Sweeper` for a
collector tick).

Backfilled readings are history: they are not evaluated by the rule engine (no alarm is raised for data
that arrived while the tag was unmapped), and they do not count as the point's arrivals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.errors import RiskwatchError
from core.readings import Readings
from ingest.batch import Batch
from ingest.rollup import rollup
from ingest.writer import decode_copy

__all__ = ["MapError", "MapResult", "PointSpec", "Sweeper", "dead_letters", "map_tag", "parse_setpoints",
           "preview", "settle", "sweep", "unmapped", "write_quarantine"]

QUANTITY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TAG = re.compile(r"^[^\x00\s]{1,64}$")
KINDS = ("analog", "boolean", "enum")
MAX_SETPOINTS = 50
#: How much of a dead letter's payload a reader is shown (the rest stays in the table).
PREVIEW_CHARS = 300


class MapError(RiskwatchError):
    """A map request refused: `status` is the HTTP status both faces answer with (404, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PointSpec:
    """What the map form says about the new point; checked like the API's `PointCreate`."""

    device_id: int
    quantity: str
    unit: str = ""
    kind: str = "analog"
    name: str | None = None
    interval_s: float = 1.0
    setpoints: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        """Raise MapError(422) naming the first field that is not acceptable."""
        if not 1 <= self.device_id <= 2**31 - 1:
            raise MapError(422, "请选择设备。 Choose a device.")
        if not QUANTITY.match(self.quantity):
            raise MapError(422, "物理量须为小写英文标识，如 temperature。 Quantity must be an identifier such as "
                                "temperature.")
        if len(self.unit) > 200 or "\x00" in self.unit or (self.name is not None and
                                                            (len(self.name) > 200 or "\x00" in self.name)):
            raise MapError(422, "名称或单位过长。 Name or unit too long.")
        if self.kind not in KINDS:
            raise MapError(422, "类型须为 analog、boolean 或 enum。 Kind must be analog, boolean or enum.")
        if not (0 < self.interval_s <= 86400):
            raise MapError(422, "上报周期须在 0 到 86400 秒之间。 Interval must be in (0, 86400] s.")
        if len(self.setpoints) > MAX_SETPOINTS:
            raise MapError(422, f"限值最多 {MAX_SETPOINTS} 条。 At most {MAX_SETPOINTS} limits.")
        for k, v in self.setpoints.items():
            if not 1 <= len(k) <= 100 or "\x00" in k or not math.isfinite(v):
                raise MapError(422, "限值格式应为 规则编号=数值。 Limits are rule_id=number.")


def parse_setpoints(text: str) -> dict[str, float]:
    """`rule_id=value` per line (the console's limits field) -> dict; MapError(422) on a line that is not."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        key, sep, val = line.partition("=")
        try:
            num = float(val.strip()) if sep else math.nan
        except ValueError:
            num = math.nan
        if not key.strip() or not math.isfinite(num):
            raise MapError(422, "限值格式应为 规则编号=数值，每行一条。 Limits are rule_id=number, one per line.")
        out[key.strip()] = num
    return out


@dataclass(frozen=True)
class MapResult:
    point_id: int
    backfilled: int      # quarantined readings now in `readings`
    duplicates: int      # quarantined readings that were already there (dropped)


# --- the collector's side -------------------------------------------------------------------------


def write_quarantine(cur: psycopg.Cursor[Any], rows: list[tuple[str, str, int, float, int]]) -> None:
    """Keep unmapped readings, inside the batch's transaction; a redelivered one adds nothing."""
    gws, tags, times, values, quals = zip(*rows, strict=True)
    cur.execute(
        """INSERT INTO quarantined_readings (gateway_id, tag, ts, value, quality)
           SELECT g, t, timestamptz 'epoch' + us * interval '1 microsecond', v, q
           FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::float8[], %s::int2[]) AS u(g, t, us, v, q)
           ON CONFLICT DO NOTHING""",
        (list(gws), list(tags), list(times), list(values), list(quals)),
    )


# --- moving quarantined rows into readings --------------------------------------------------------


def _move(conn: psycopg.Connection, gateway_id: str | None, tag: str | None) -> tuple[int, int]:
    """Move the quarantined rows of mapped tags (one tag, or all) into readings and the rollup.
    Returns (inserted, already there). The caller holds the transaction."""
    where: sql.Composable = sql.SQL("")
    if gateway_id is not None and tag is not None:
        where = sql.SQL(" AND q.gateway_id = {} AND q.tag = {}").format(sql.Literal(gateway_id), sql.Literal(tag))
    stmt = sql.SQL(
        """COPY (WITH moved AS (
                     DELETE FROM quarantined_readings q USING points p
                     WHERE p.gateway_id = q.gateway_id AND p.tag = q.tag{}
                     RETURNING q.ts, p.id AS point_id, q.value, q.quality),
                 ins AS (
                     INSERT INTO readings (time, point_id, value, quality)
                     SELECT ts, point_id, value, quality FROM moved
                     ON CONFLICT (point_id, time) DO NOTHING
                     RETURNING time, point_id, value, quality)
                 SELECT time, point_id, value, quality FROM ins)
           TO STDOUT (FORMAT BINARY)""").format(where)
    out = bytearray()
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM quarantined_readings q JOIN points p"
                    " ON p.gateway_id = q.gateway_id AND p.tag = q.tag"
                    + ("" if gateway_id is None else " WHERE q.gateway_id = %s AND q.tag = %s"),
                    () if gateway_id is None else (gateway_id, tag))
        row = cur.fetchone()
        with cur.copy(stmt) as copy:
            for block in copy:
                out += block
    new: Readings = decode_copy(bytes(out))
    rollup(conn, new)
    candidates = int(row[0]) if row else 0
    return len(new), max(0, candidates - len(new))


def _forget_mapped(conn: psycopg.Connection, gateway_id: str | None = None, tag: str | None = None) -> None:
    """Drop unmapped_points rows of tags that are mapped now (no quarantined row of theirs is left)."""
    conn.execute(
        """DELETE FROM unmapped_points u USING points p
           WHERE p.gateway_id = u.gateway_id AND p.tag = u.tag
             AND (%(gw)s::text IS NULL OR (u.gateway_id = %(gw)s AND u.tag = %(tag)s))""",
        {"gw": gateway_id, "tag": tag})


def settle(conn: psycopg.Connection, keys: list[tuple[str, str]]) -> int:
    """In the collector's batch transaction, after its quarantine rows are written: backfill those of the
    batch's unmapped tags that a map committed meanwhile (the collector's registry snapshot may be a second
    old). Race-free with `map_tag`: the batch holds its `unmapped_points` rows locked (the upsert) and
    `map_tag` locks the tag's row before moving, so one of the two waits for the other and whichever comes
    second sees the other's rows. Returns the readings moved (0, and one cheap query, in the usual case)."""
    mapped = conn.execute(
        """SELECT p.gateway_id, p.tag FROM points p
           JOIN unnest(%s::text[], %s::text[]) AS k(g, t) ON p.gateway_id = k.g AND p.tag = k.t""",
        ([g for g, _ in keys], [t for _, t in keys])).fetchall()
    moved = 0
    for gw, tag in sorted(mapped):
        moved += _move(conn, gw, tag)[0]
        _forget_mapped(conn, gw, tag)
    return moved


def sweep(conn: psycopg.Connection) -> int:
    """Backfill the quarantined rows of every tag mapped since they were quarantined (the collector's snapshot
    race); one transaction. Returns the readings moved. Cheap when there is nothing to do: it starts from
    `unmapped_points` (a handful of rows) joined to points."""
    with conn.transaction():
        pending = conn.execute(
            "SELECT 1 FROM unmapped_points u JOIN points p ON p.gateway_id = u.gateway_id AND p.tag = u.tag LIMIT 1"
        ).fetchone()
        if pending is None:
            return 0
        moved, _dup = _move(conn, None, None)
        _forget_mapped(conn)
    return moved


@dataclass
class Sweeper:
    """A collector processor (`ingest.collector.Processor`) whose only work is `sweep` on the tick."""

    tick_s: float = 5.0

    def prepare(self, conn: psycopg.Connection) -> None:
        return None

    def process(self, conn: psycopg.Connection, batch: Batch, now: float) -> Callable[[], None]:
        return _noop

    def tick(self, conn: psycopg.Connection) -> None:
        sweep(conn)


def _noop() -> None:
    return None


# --- mapping a tag --------------------------------------------------------------------------------


def map_tag(conn: psycopg.Connection, gateway_id: str, tag: str, spec: PointSpec, scope: str | None,
            audit: Callable[[psycopg.Connection, MapResult], None] | None = None) -> MapResult:
    """Create the point for an unmapped tag of a gateway in `scope` (None: any enterprise) on a device of the
    gateway's plant, and backfill its quarantined readings; one transaction, `audit` called inside it.

    Adding a point adds supervision and never weakens it, so an enterprise may map its own gateway's tags.
    A gateway outside the scope is "not found" (404), like the API's other objects."""
    spec.check()
    if not TAG.match(tag):
        raise MapError(422, "测点标签无效。 Invalid tag.")
    with conn.transaction():
        gw = conn.execute(
            """SELECT g.plant_id FROM gateways g JOIN plants pl ON pl.id = g.plant_id
               WHERE g.id = %s AND (%s::text IS NULL OR pl.enterprise_id = %s)""",
            (gateway_id, scope, scope)).fetchone()
        if gw is None:
            raise MapError(404, f"网关 {gateway_id} 不存在。 No such gateway.")
        seen = conn.execute(
            "SELECT 1 FROM unmapped_points WHERE gateway_id = %s AND tag = %s FOR UPDATE", (gateway_id, tag)
        ).fetchone()
        if seen is None:
            raise MapError(404, f"网关 {gateway_id} 没有未映射的标签 {tag}。 No such unmapped tag.")
        dev = conn.execute("SELECT plant_id FROM devices WHERE id = %s", (spec.device_id,)).fetchone()
        if dev is None or dev[0] != gw[0]:
            raise MapError(422, "所选设备不在该网关所属厂区。 The device is not in the gateway's plant.")
        if conn.execute("SELECT 1 FROM points WHERE gateway_id = %s AND tag = %s",
                        (gateway_id, tag)).fetchone() is not None:
            raise MapError(409, f"标签 {tag} 已映射为测点。 The tag is already mapped.")
        row = conn.execute(
            """INSERT INTO points (device_id, gateway_id, tag, name, quantity, unit, kind, interval_s, setpoints)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (spec.device_id, gateway_id, tag, spec.name, spec.quantity, spec.unit, spec.kind, spec.interval_s,
             Jsonb(spec.setpoints) if spec.setpoints else None)).fetchone()
        assert row is not None
        moved, dup = _move(conn, gateway_id, tag)
        _forget_mapped(conn, gateway_id, tag)
        result = MapResult(int(row[0]), moved, dup)
        if audit is not None:
            audit(conn, result)
    return result


# --- reads for the faces (scoped) -----------------------------------------------------------------

#: An enterprise sees the rows of its own gateways; a dead letter of an unknown gateway is the bureau's.
_GW_SCOPE = """(%(scope)s::text IS NULL OR EXISTS (
                   SELECT 1 FROM gateways g JOIN plants pl ON pl.id = g.plant_id
                   WHERE g.id = {col} AND pl.enterprise_id = %(scope)s))"""


def preview(payload: bytes | None, limit: int = PREVIEW_CHARS) -> str | None:
    """A payload as text a page or JSON can show: undecodable bytes as \\xNN, cut to `limit` characters."""
    if payload is None:
        return None
    text = bytes(payload[: limit * 4]).decode("utf-8", "backslashreplace")
    return text if len(text) <= limit and len(payload) <= limit * 4 else text[:limit] + "…"


def dead_letters(conn: psycopg.Connection, scope: str | None, limit: int = 50, offset: int = 0,
                 reason: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Newest dead letters in scope, with a payload preview (never the raw bytes), and their total."""
    where = _GW_SCOPE.format(col="d.gateway_id") + " AND (%(reason)s::text IS NULL OR d.reason = %(reason)s)"
    params = {"scope": scope, "reason": reason, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT d.id, d.received_at, d.gateway_id, d.topic, d.reason, left(d.detail, 500) AS detail,
                       d.reading_index, substring(d.payload FROM 1 FOR {PREVIEW_CHARS * 4 + 1}) AS payload,
                       octet_length(d.payload) AS payload_bytes, pl.enterprise_id
                FROM dead_letters d LEFT JOIN gateways g ON g.id = d.gateway_id
                LEFT JOIN plants pl ON pl.id = g.plant_id
                WHERE {where}
                ORDER BY d.received_at DESC, d.id DESC LIMIT %(limit)s OFFSET %(offset)s""", params).fetchall()
        total = cur.execute(f"SELECT count(*) AS n FROM dead_letters d WHERE {where}", params).fetchone()
    for r in rows:
        r["payload_preview"] = preview(r.pop("payload"))
    return rows, int(total["n"]) if total else 0


def unmapped(conn: psycopg.Connection, scope: str | None, limit: int = 100,
             offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Unmapped tags in scope, with their gateway's plant and how many of their readings are quarantined."""
    where = _GW_SCOPE.format(col="u.gateway_id")
    params = {"scope": scope, "limit": limit, "offset": offset}
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"""SELECT u.gateway_id, u.tag, u.first_seen, u.last_seen, u.count, u.last_value, g.plant_id,
                       pl.name AS plant_name, pl.enterprise_id,
                       (SELECT count(*) FROM quarantined_readings q
                        WHERE q.gateway_id = u.gateway_id AND q.tag = u.tag) AS quarantined
                FROM unmapped_points u LEFT JOIN gateways g ON g.id = u.gateway_id
                LEFT JOIN plants pl ON pl.id = g.plant_id
                WHERE {where}
                ORDER BY u.last_seen DESC, u.gateway_id, u.tag LIMIT %(limit)s OFFSET %(offset)s""",
            params).fetchall()
        total = cur.execute(f"SELECT count(*) AS n FROM unmapped_points u WHERE {where}", params).fetchone()
    return rows, int(total["n"]) if total else 0
