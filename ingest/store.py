"""Everything a batch writes, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from ingest.batch import Batch
from ingest.quarantine import settle, write_quarantine
from ingest.rollup import rollup
from ingest.writer import write_readings


@dataclass(frozen=True)
class StoreResult:
    stored: int
    duplicates: int
    # Per gateway with a `seq` in the batch: the highest seq durably stored once this transaction commits
    # (never lower than before: redelivered older messages do not lower it).
    confirmed: dict[str, int] = field(default_factory=dict)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def store_batch(conn: psycopg.Connection, batch: Batch) -> StoreResult:
    unique = batch.readings()
    new = write_readings(conn, unique)
    rollup(conn, new)  # only what was inserted: a redelivered reading is not counted twice
    stored = len(new)
    with conn.cursor() as cur:
        if batch.dead:
            with cur.copy(
                "COPY dead_letters (gateway_id, topic, reason, detail, reading_index, payload) FROM STDIN"
            ) as copy:
                for d in batch.dead:
                    copy.write_row((d.gateway_id, d.topic, d.reason, d.detail, d.reading_index, d.payload))
        if batch.unmapped:
            cur.executemany(
                """INSERT INTO unmapped_points AS u (gateway_id, tag, first_seen, last_seen, count, last_value)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (gateway_id, tag) DO UPDATE SET
                       first_seen = least(u.first_seen, EXCLUDED.first_seen),
                       last_seen = greatest(u.last_seen, EXCLUDED.last_seen),
                       count = u.count + EXCLUDED.count,
                       last_value = CASE WHEN EXCLUDED.last_seen >= u.last_seen
                                         THEN EXCLUDED.last_value ELSE u.last_value END""",
                [(gw, tag, _ts(u.first_us / 1e6), _ts(u.last_us / 1e6), u.count, u.last_value)
                 for (gw, tag), u in sorted(batch.unmapped.items())],
            )
        if batch.quarantine:
            write_quarantine(cur, batch.quarantine)
            settle(conn, sorted(batch.unmapped))  # a tag mapped since the registry snapshot: backfill now
        if batch.last_seen:
            gws = sorted(batch.last_seen)
            cur.execute(
                """UPDATE gateways g SET last_seen = greatest(g.last_seen, s.t)
                   FROM unnest(%s::text[], %s::timestamptz[]) AS s(id, t) WHERE g.id = s.id""",
                (gws, [_ts(batch.last_seen[g]) for g in gws]),
            )
        for gw, (online, at) in sorted(batch.status.items()):
            cur.execute("UPDATE gateways SET online = %s, status_at = %s WHERE id = %s", (online, _ts(at), gw))
        if batch.retained_cleared:
            cur.execute("DELETE FROM retained_seen WHERE topic = ANY(%s)", (sorted(set(batch.retained_cleared)),))
        if batch.retained_new:
            seen = sorted(set(batch.retained_new))
            cur.execute(
                """INSERT INTO retained_seen (topic, digest)
                   SELECT * FROM unnest(%s::text[], %s::bytea[]) ON CONFLICT DO NOTHING""",
                ([t for t, _ in seen], [d for _, d in seen]),
            )
        confirmed: dict[str, int] = {}
        if batch.seqs:
            gws = sorted(batch.seqs)
            cur.execute(
                """INSERT INTO gateway_stored_seq AS s (gateway_id, seq, stored_at)
                   SELECT id, seq, now() FROM unnest(%s::text[], %s::bigint[]) AS u(id, seq)
                   ON CONFLICT (gateway_id) DO UPDATE SET seq = greatest(s.seq, EXCLUDED.seq),
                       stored_at = CASE WHEN EXCLUDED.seq > s.seq THEN EXCLUDED.stored_at ELSE s.stored_at END
                   RETURNING gateway_id, seq""",
                (gws, [batch.seqs[g] for g in gws]),
            )
            confirmed = {str(gw): int(seq) for gw, seq in cur.fetchall()}
    return StoreResult(stored=stored, duplicates=batch.received - stored, confirmed=confirmed)
