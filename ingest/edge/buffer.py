"""The store-and-forward buffer: SQLite on the box's disk, holding every reading until riskwatch stored it.

Two tables. `staged` receives readings the moment a source produced them (one transaction per poll), so a
crash a millisecond later loses nothing. `seal` moves staged readings into `messages`: one encoded telemetry
message per row under a new `seq`, in the same transaction. Rows leave `messages` only when the collector's
`rw/v1/{gateway}/stored` confirmation covers their seq (`confirm`), never on a PUBACK: a broker that PUBACKed
and then crashed before saving has lost the message, the collector never had it.

What a confirmation covers: the seqs it lists (`seqs`, the ranges the collector's commit holds), exactly those.
Its `seq`, the highest ever stored, says nothing about the seqs below it: a broker that drops a QoS1 message for
the collector's session while both connections stay up (a full `max_queued_messages` queue of a slow collector)
delivers n-5 .. n but not n-10, and deleting everything up to n would lose n-10. Only a confirmation without
`seqs` (a collector from before they existed) is read the old way, as everything up to `seq`. `confirmed_seq`
is the watermark the publisher re-sends from: every seq up to it has left the buffer (the lowest message still
held, minus one), so a hole below confirmed messages keeps it down until the hole is re-sent and confirmed.

Durability: WAL with `synchronous=FULL`. With NORMAL a power cut may roll back the last commits of the WAL;
a sealed message may already have been published and confirmed by then, and after the rollback the same seq
would be handed out again for other readings, which the confirmation would then wrongly cover. FULL costs one
fsync per commit; commits are per poll batch and per seal, a few per second, far below what a box's flash does.

Numbering: a fresh buffer starts at the wall clock in microseconds, so an agent reinstalled with an empty
buffer still numbers above what the collector confirmed for the gateway before (the confirmation never goes
down); after that the counter is persisted. A confirmation whose `seq` is above the last seq handed out is ignored
as a whole: it is a previous installation's or a forgery, and honouring it would drop data. Seq numbers are never
handed out twice, so a listed seq names one message for good, whenever the confirmation arrives.

Sparkplug B session state lives here too (`SessionStore`, see formats.py): the tag -> alias table, because a
sealed message carries aliases and may be sent after a restart with a changed config (an alias must keep its tag
for as long as a message using it is buffered), and the bdSeq counter, which Sparkplug increments per MQTT CONNECT
across restarts.

Bounded size: `max_readings` over both tables. `drop_oldest` deletes the oldest messages (then staged
readings), `refuse` drops new readings; both count the drop in `meta.dropped` and report it to the caller,
which logs it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ingest.edge.formats import Format, JsonV1, Reading, decode_stored

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS staged(id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL, ts_ms INTEGER NOT NULL,
                                  v REAL NOT NULL, q INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages(seq INTEGER PRIMARY KEY, payload BLOB NOT NULL, n INTEGER NOT NULL,
                                    oldest_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS aliases(tag TEXT PRIMARY KEY, alias INTEGER NOT NULL UNIQUE);
"""

# advanced: the watermark moved; beyond_gap: messages above a hole deleted, the watermark did not move (the
# publisher's stall clock ignores it, so the hole is re-sent); stale: nothing held was covered; ahead: not ours.
ConfirmOutcome = Literal["advanced", "beyond_gap", "stale", "ahead"]
FORMAT_CODES = {"json_v1": 1, "sparkplug_b": 2}  # meta.format: how the sealed messages are encoded


@dataclass(frozen=True)
class Depth:
    """What the buffer holds: sealed messages, readings (sealed + staged), the oldest reading's time."""

    messages: int
    readings: int
    oldest_ms: int | None
    dropped: int


@dataclass(frozen=True)
class Confirmation:
    outcome: ConfirmOutcome
    deleted: int  # messages removed


class Buffer:
    """Thread-safe (one lock around one connection): sources add from the agent's loop, the publisher thread
    reads and confirms."""

    def __init__(self, path: str | Path, *, max_readings: int = 2_000_000,
                 when_full: Literal["drop_oldest", "refuse"] = "drop_oldest",
                 fmt: Format | None = None, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_readings = max_readings
        self.when_full = when_full
        self.fmt: Format = JsonV1()
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        with self._tx():
            if self._meta("next_seq") is None:
                first = int(self.clock() * 1_000_000)
                self._set("next_seq", first)
                self._set("dropped", 0)
        self._count = self._readings_in_db()
        if fmt is not None:
            self.use_format(fmt)

    # -- internals (lock held) ---------------------------------------------------------------------------

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def _meta(self, key: str) -> int | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set(self, key: str, value: int) -> None:
        self._db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                         "excluded.value", (key, value))

    def _watermark(self) -> int:
        """Every seq up to this has left `messages`: the lowest held minus one, else the last handed out."""
        low = self._db.execute("SELECT min(seq) FROM messages").fetchone()[0]
        return int(low) - 1 if low is not None else (self._meta("next_seq") or 1) - 1

    def _readings_in_db(self) -> int:
        staged = self._db.execute("SELECT count(*) FROM staged").fetchone()[0]
        sealed = self._db.execute("SELECT coalesce(sum(n), 0) FROM messages").fetchone()[0]
        return int(staged) + int(sealed)

    def _make_room(self, incoming: int) -> int:
        """Drop the oldest until `incoming` more fit; returns readings dropped."""
        dropped = 0
        while self._count + incoming > self.max_readings:
            row = self._db.execute("SELECT seq, n FROM messages ORDER BY seq LIMIT 1").fetchone()
            if row is not None:
                self._db.execute("DELETE FROM messages WHERE seq = ?", (row[0],))
                self._count -= int(row[1])
                dropped += int(row[1])
                continue
            over = self._count + incoming - self.max_readings
            cur = self._db.execute("DELETE FROM staged WHERE id IN (SELECT id FROM staged ORDER BY id LIMIT ?)",
                                   (over,))
            self._count -= cur.rowcount
            dropped += cur.rowcount
            if cur.rowcount == 0:
                break
        return dropped

    # -- API ---------------------------------------------------------------------------------------------

    def add(self, readings: Sequence[Reading]) -> int:
        """Store readings durably; returns how many were dropped to respect the size bound (0 normally)."""
        if not readings:
            return 0
        with self._lock, self._tx():
            dropped = 0
            rows = list(readings)
            if self._count + len(rows) > self.max_readings:
                if self.when_full == "refuse":
                    room = max(0, self.max_readings - self._count)
                    dropped = len(rows) - room
                    rows = rows[:room]
                else:
                    dropped = self._make_room(min(len(rows), self.max_readings))
                    if len(rows) > self.max_readings:
                        dropped += len(rows) - self.max_readings
                        rows = rows[-self.max_readings:]
            self._db.executemany("INSERT INTO staged(tag, ts_ms, v, q) VALUES (?, ?, ?, ?)",
                                 [(r.tag, r.ts_ms, r.v, r.q) for r in rows])
            self._count += len(rows)
            if dropped:
                self._set("dropped", (self._meta("dropped") or 0) + dropped)
            return dropped

    def seal(self, max_readings: int) -> int | None:
        """Turn up to `max_readings` staged readings (oldest first) into one message; its seq, or None."""
        with self._lock, self._tx():
            rows = self._db.execute("SELECT id, tag, ts_ms, v, q FROM staged ORDER BY id LIMIT ?",
                                    (max_readings,)).fetchall()
            if not rows:
                return None
            seq = self._meta("next_seq")
            assert seq is not None
            readings = [Reading(r[1], r[2], r[3], r[4]) for r in rows]
            payload = self.fmt.encode(seq, int(self.clock() * 1000), readings)
            self._db.execute("INSERT INTO messages(seq, payload, n, oldest_ms) VALUES (?, ?, ?, ?)",
                             (seq, payload, len(rows), min(r.ts_ms for r in readings)))
            self._db.execute("DELETE FROM staged WHERE id <= ?", (rows[-1][0],))
            self._set("next_seq", seq + 1)
            return seq

    def after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Sealed messages with a seq above `seq`, in seq order (what to send next)."""
        with self._lock:
            return [(int(s), bytes(p)) for s, p in self._db.execute(
                "SELECT seq, payload FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))]

    def confirm(self, seq: int, seqs: Sequence[tuple[int, int]] | None = None) -> Confirmation:
        """The collector stored the messages `seqs` lists (inclusive ranges): delete exactly those. Without
        `seqs` (an older collector) the confirmation covers everything up to `seq`. `seq` is the highest the
        collector ever stored for the gateway; above the last seq handed out, nothing is deleted."""
        with self._lock, self._tx():
            last = (self._meta("next_seq") or 0) - 1
            if seq > last:
                return Confirmation("ahead", 0)
            before = self._watermark()
            spans = [(before + 1, seq)] if seqs is None else [(max(a, before + 1), b) for a, b in seqs]
            deleted = readings = 0
            for a, b in spans:
                if a > b:
                    continue
                row = self._db.execute("SELECT count(*), coalesce(sum(n), 0) FROM messages WHERE seq BETWEEN ? AND ?",
                                       (a, b)).fetchone()
                if row[0]:
                    self._db.execute("DELETE FROM messages WHERE seq BETWEEN ? AND ?", (a, b))
                    deleted += int(row[0])
                    readings += int(row[1])
            self._count -= readings
            if not deleted:
                return Confirmation("stale", 0)
            return Confirmation("advanced" if self._watermark() > before else "beyond_gap", deleted)

    def use_format(self, fmt: Format) -> int:
        """Seal from now on with `fmt`. Messages sealed under another format (the config switched between json_v1
        and sparkplug_b with data buffered) are re-encoded in it, same seq and readings, in one transaction, so
        what is sent is always what the collector expects on that topic. Returns how many were re-encoded."""
        with self._lock, self._tx():
            names = {v: k for k, v in FORMAT_CODES.items()}
            old = names.get(self._meta("format") or FORMAT_CODES["json_v1"], "json_v1")  # buffers before 2026-12
            self._set("format", FORMAT_CODES[fmt.name])
            rows = [] if old == fmt.name else self._db.execute(
                "SELECT seq, payload FROM messages ORDER BY seq").fetchall()
            tag_of = {int(a): str(t) for t, a in self._db.execute("SELECT tag, alias FROM aliases")}
            for seq, payload in rows:
                stored_seq, ts_ms, readings = decode_stored(old, bytes(payload), tag_of)
                if stored_seq != seq:
                    raise ValueError(f"buffer message {seq} carries seq {stored_seq}: the buffer is corrupt")
                self._db.execute("UPDATE messages SET payload = ? WHERE seq = ?",
                                 (fmt.encode(seq, ts_ms, readings), seq))
            self.fmt = fmt  # only once the transaction's work is done (a failure leaves both as they were)
            return len(rows)

    # -- Sparkplug B session state (formats.SessionStore) -------------------------------------------------

    def aliases(self, tags: Sequence[str]) -> dict[str, int]:
        """The alias of every tag in `tags` (new tags get the next free alias, from 1), plus the tags of earlier
        configs that buffered readings may still use; those are forgotten only once the buffer is empty, so a
        message sealed under the old config is never decoded against another tag."""
        with self._lock, self._tx():
            empty = self._db.execute("SELECT NOT EXISTS (SELECT 1 FROM messages) AND NOT EXISTS "
                                     "(SELECT 1 FROM staged)").fetchone()[0]
            wanted = set(tags)
            if empty:
                old = [t for (t,) in self._db.execute("SELECT tag FROM aliases") if t not in wanted]
                self._db.executemany("DELETE FROM aliases WHERE tag = ?", [(t,) for t in old])
            table = {str(t): int(a) for t, a in self._db.execute("SELECT tag, alias FROM aliases")}
            nxt = max(table.values(), default=0) + 1
            for t in tags:
                if t not in table:
                    table[t] = nxt
                    self._db.execute("INSERT INTO aliases(tag, alias) VALUES (?, ?)", (t, nxt))
                    nxt += 1
            return table

    def next_bdseq(self) -> int:
        """Sparkplug's birth/death sequence for the next MQTT CONNECT: the previous one + 1, wrapping 255 -> 0,
        persisted so a restarted agent's will never repeats the bdSeq of the session it replaces."""
        with self._lock, self._tx():
            prev = self._meta("bdseq")
            value = 0 if prev is None else (prev + 1) % 256
            self._set("bdseq", value)
            return value

    @property
    def confirmed_seq(self) -> int:
        """The watermark: every seq up to it is confirmed (or dropped by the size bound); re-sending starts above."""
        with self._lock:
            return self._watermark()

    @property
    def last_seq(self) -> int:
        """The last seq handed out (confirmed_seq when nothing was sealed yet in this buffer's life)."""
        with self._lock:
            return (self._meta("next_seq") or 1) - 1

    def depth(self) -> Depth:
        with self._lock:
            m = self._db.execute("SELECT count(*), min(oldest_ms) FROM messages").fetchone()
            s = self._db.execute("SELECT min(ts_ms) FROM staged").fetchone()
            oldest = [x for x in (m[1], s[0]) if x is not None]
            return Depth(int(m[0]), self._count, min(oldest) if oldest else None, self._meta("dropped") or 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


__all__ = ["Buffer", "Confirmation", "Depth"]
