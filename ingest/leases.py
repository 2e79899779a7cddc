"""Per-gateway leases in PostgreSQL: several collectors on a broker without sticky shared subscriptions.

Mosquitto cannot pin a gateway to one member of a shared subscription, and rule state (conditions, on-delays,
alarms) must be written by one process per gateway. So each collector of a group holds gateways by lease
(`gateway_leases`, migration 0015) and subscribes to `rw/v1/{gateway}/#` only for the gateways it holds:

- every `renew_s` a collector heartbeats (`collectors`), renews its leases for `ttl_s`, claims free or expired
  gateways up to its fair share (gateways / live collectors, rounded up) and releases what is above it, so a
  collector that joins gets gateways and one that dies loses them within `ttl_s + renew_s`;
- a claim raises the gateway's `epoch`; each batch checks (collector, epoch) of its gateways in its own
  transaction, locking the lease rows FOR SHARE (`fence`): a collector whose lease was taken over commits no
  rule state for that gateway, and a claim waits until a batch in flight has committed, so the new owner,
  which loads the recorded state after its claim, sees everything the old one wrote;
- the leases' clock is the database's (one clock for every collector, whatever their hosts' clocks say);
  tests inject a fake clock instead;
- between rounds a `Keeper` thread, on a connection of its own, heartbeats and renews what is held while the flush
  loop is busy with something long (compiling the rules of a 200,000-point registry takes ~8 s, longer than a
  lease), so a busy member does not lose its gateways only to claim them back and reload again; it stops renewing
  once the loop has made no progress for `stall_s`, so a stuck collector still hands its gateways over.

No consensus of our own: the database the service already trusts decides who holds what. `plan` is the pure
core (what to renew, claim and release); `Leases` is the adapter that runs it against the tables.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import psycopg

from core.clock import Clock, ts

log = logging.getLogger("riskwatch.leases")

__all__ = ["Change", "Keeper", "LeaseRow", "LeaseSettings", "Leases", "Plan", "fair_share", "plan"]


@dataclass(frozen=True)
class LeaseSettings:
    """`ttl_s`: how long a lease lasts unrenewed (a dead collector's gateways move after at most ttl + renew);
    `renew_s`: how often a collector renews, claims and rebalances. ttl must cover a few renewals, so a slow
    batch or a short database hiccup does not move gateways. `stall_s`: how long the flush loop may be busy
    with one step (a rule recompile, a long batch) while the `Keeper` still renews for it; a collector stuck
    longer loses its gateways after stall_s + ttl_s."""

    ttl_s: float = 8.0
    renew_s: float = 2.0
    stall_s: float = 60.0

    def __post_init__(self) -> None:
        if not (0 < self.renew_s and self.ttl_s >= 2 * self.renew_s):
            raise ValueError(f"lease ttl ({self.ttl_s:g} s) must be at least twice the renew interval "
                             f"({self.renew_s:g} s)")
        if self.stall_s < self.ttl_s:
            raise ValueError(f"lease stall limit ({self.stall_s:g} s) must be at least the ttl ({self.ttl_s:g} s)")

    @property
    def takeover_s(self) -> float:
        """The longest a dead collector's gateway waits for a new owner: its lease runs out, then the next
        round of a live collector claims it."""
        return self.ttl_s + self.renew_s


@dataclass(frozen=True)
class LeaseRow:
    gateway_id: str
    collector_id: str | None
    expires_at: float
    epoch: int


@dataclass(frozen=True)
class Plan:
    renew: tuple[str, ...] = ()
    claim: tuple[str, ...] = ()
    release: tuple[str, ...] = ()


def fair_share(gateways: int, live: int) -> int:
    """Most gateways one collector should hold: every gateway fits, none holds more than one above another."""
    return math.ceil(gateways / max(1, live)) if gateways else 0


def _rank(me: str, gateway: str) -> bytes:
    """Rendezvous order: each collector prefers a different, stable subset, so claims seldom collide and a
    gateway goes back to the same collector after a rebalance."""
    return hashlib.blake2b(f"{me}\0{gateway}".encode(), digest_size=8).digest()


def plan(me: str, gateways: Sequence[str], leases: Mapping[str, LeaseRow], live: int, now: float) -> Plan:
    """What collector `me` does this round, given every gateway, the lease table, the live collectors (me
    included) and the lease clock.

    It renews what it holds up to its fair share and releases the rest (the gateways it ranks lowest), and
    claims free gateways (no lease, released, or expired: its own expired leases too, since another
    collector may have written their state meanwhile) up to its share, best ranked first.
    """
    share = fair_share(len(gateways), live)
    held: list[str] = []
    free: list[str] = []
    for g in gateways:
        row = leases.get(g)
        if row is not None and row.collector_id == me and row.expires_at > now:
            held.append(g)
        elif row is None or row.collector_id is None or row.expires_at <= now:
            free.append(g)
    held.sort(key=lambda g: _rank(me, g))
    free.sort(key=lambda g: _rank(me, g))
    keep = held[:share]
    return Plan(renew=tuple(sorted(keep)), claim=tuple(sorted(free[:share - len(keep)])),
                release=tuple(sorted(held[share:])))


@dataclass
class Change:
    """What a round (or a fenced batch) changed for this collector: gateways to subscribe and unsubscribe."""

    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


class Leases:
    """This collector's leases: `round` on the timer, `fence` in every batch's transaction, `leave` at stop.

    `held` maps each gateway held to the epoch of the claim, as last committed. The flush loop is the only
    caller of everything but `renew`, which the `Keeper` calls from its own thread: `held` changes and round and
    renew run under `_lock`, so the keeper reads a consistent copy and its renewal never interleaves with a
    round's updates of the same rows (two transactions updating lease rows in different orders could deadlock).
    `fence` runs on the flush loop, which is the only writer of `held`, and takes no lock: a keeper waiting for
    the fence's row locks then waits only for that batch's commit.
    """

    def __init__(self, collector_id: str, settings: LeaseSettings | None = None, *, clock: Clock | None = None):
        """`clock` None: the database's clock (production: one clock for every collector); tests give one."""
        if not collector_id:
            raise ValueError("a collector of a group needs a stable id")
        self.me = collector_id
        self.settings = settings or LeaseSettings()
        self.clock = clock
        self.held: dict[str, int] = {}
        self.rounds = 0
        self.renewals = 0  # by the keeper, between rounds
        self._lock = threading.Lock()

    def _now(self, conn: psycopg.Connection) -> float:
        if self.clock is not None:
            return self.clock.now()
        row = conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        assert row is not None
        return float(row[0])

    def round(self, conn: psycopg.Connection) -> Change:
        """Heartbeat, renew, release above the fair share, claim up to it: one transaction, committed here."""
        with self._lock:
            return self._round(conn)

    def _round(self, conn: psycopg.Connection) -> Change:
        ttl = self.settings.ttl_s
        change = Change()
        with conn.transaction():
            now = self._now(conn)
            conn.execute(
                """INSERT INTO collectors (collector_id, started_at, heartbeat_at, expires_at) VALUES (%s, %s, %s, %s)
                   ON CONFLICT (collector_id) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
                       expires_at = EXCLUDED.expires_at""",
                (self.me, ts(now), ts(now), ts(now + ttl)))
            # Collectors gone for a day are forgotten (a renamed or retired instance leaves its row behind).
            conn.execute("DELETE FROM collectors WHERE expires_at < %s", (ts(now - 86_400),))
            row = conn.execute("SELECT count(*) FROM collectors WHERE expires_at > %s", (ts(now),)).fetchone()
            live = int(row[0]) if row else 1
            gateways = [str(r[0]) for r in conn.execute("SELECT id FROM gateways ORDER BY id")]
            leases = {str(r[0]): LeaseRow(str(r[0]), r[1], float(r[2]), int(r[3])) for r in conn.execute(
                "SELECT gateway_id, collector_id, extract(epoch FROM expires_at), epoch FROM gateway_leases")}
            p = plan(self.me, gateways, leases, live, now)
            # Renew only what is still ours at the epoch we claimed it with.
            want = [g for g in p.renew if g in self.held]
            renewed = self._renew(conn, {g: self.held[g] for g in want}, now)
            rel = [g for g in p.release if g in self.held]
            conn.execute(
                """UPDATE gateway_leases l SET collector_id = NULL, expires_at = %s
                   FROM unnest(%s::text[], %s::bigint[]) AS h(g, e)
                   WHERE l.gateway_id = h.g AND l.epoch = h.e AND l.collector_id = %s""",
                (ts(now), rel, [self.held[g] for g in rel], self.me))
            claimed = {str(r[0]): int(r[1]) for r in conn.execute(
                """INSERT INTO gateway_leases AS l (gateway_id, collector_id, expires_at, epoch, acquired_at)
                   SELECT g, %s, %s, 1, %s FROM unnest(%s::text[]) AS c(g) ORDER BY g
                   ON CONFLICT (gateway_id) DO UPDATE SET collector_id = EXCLUDED.collector_id,
                       expires_at = EXCLUDED.expires_at, epoch = l.epoch + 1, acquired_at = EXCLUDED.acquired_at
                   WHERE l.collector_id IS NULL OR l.expires_at <= %s
                   RETURNING gateway_id, epoch""",
                (self.me, ts(now + ttl), ts(now), list(p.claim), ts(now)))}
        self.rounds += 1
        for g in sorted(self.held):
            if g not in renewed:
                change.lost.append(g)
                del self.held[g]
        for g, epoch in sorted(claimed.items()):
            self.held[g] = epoch
            change.gained.append(g)
        if change.gained or change.lost:
            log.info("leases of %s: +%s -%s (%d held, %d live collectors, share %d)", self.me,
                     change.gained, change.lost, len(self.held), live, fair_share(len(gateways), live))
        return change

    def fence(self, conn: psycopg.Connection, gateways: Sequence[str]) -> frozenset[str]:
        """Inside the caller's transaction: which of `gateways` this collector still holds at its epoch.

        The lease rows stay locked FOR SHARE until the caller commits, so a claim by another collector waits
        for this transaction and this transaction never commits rule state for a gateway claimed before it
        (READ COMMITTED re-checks the epoch of a row updated meanwhile). Gateways found lost leave `held`.
        """
        want = sorted(g for g in set(gateways) if g in self.held)
        if not want:
            return frozenset()
        ok = frozenset(str(r[0]) for r in conn.execute(
            """SELECT l.gateway_id FROM gateway_leases l JOIN unnest(%s::text[], %s::bigint[]) AS h(g, e)
                 ON l.gateway_id = h.g AND l.epoch = h.e
               WHERE l.collector_id = %s ORDER BY l.gateway_id FOR SHARE OF l""",
            (want, [self.held[g] for g in want], self.me)))
        return ok

    def renew(self, conn: psycopg.Connection) -> int:
        """Heartbeat and renew what is held, at the epochs claimed, nothing else: the keeper's step between
        rounds. Leases found lost are left for the next round to notice. Returns how many were renewed."""
        ttl = self.settings.ttl_s
        with self._lock:
            held = dict(self.held)
            with conn.transaction():
                now = self._now(conn)
                conn.execute("UPDATE collectors SET heartbeat_at = %s, expires_at = %s WHERE collector_id = %s",
                             (ts(now), ts(now + ttl), self.me))
                n = len(self._renew(conn, held, now))
            self.renewals += 1
        return n

    def _renew(self, conn: psycopg.Connection, held: Mapping[str, int], now: float) -> set[str]:
        """Extend by ttl the leases of `held` (gateway -> epoch) still ours at that epoch and unexpired; returns
        the gateways renewed."""
        gws = sorted(held)
        return {str(r[0]) for r in conn.execute(
            """UPDATE gateway_leases l SET expires_at = %s FROM unnest(%s::text[], %s::bigint[]) AS h(g, e)
               WHERE l.gateway_id = h.g AND l.epoch = h.e AND l.collector_id = %s AND l.expires_at > %s
               RETURNING l.gateway_id""",
            (ts(now + self.settings.ttl_s), gws, [held[g] for g in gws], self.me, ts(now)))}

    def forget(self, gateways: Sequence[str]) -> list[str]:
        """Drop gateways a fence found lost (after the caller's transaction); returns those that were held."""
        with self._lock:
            out = [g for g in sorted(set(gateways)) if g in self.held]
            for g in out:
                del self.held[g]
        return out

    def leave(self, conn: psycopg.Connection) -> None:
        """Clean stop: release every lease and the heartbeat, so the others take over at their next round."""
        with self._lock:
            with conn.transaction():
                now = self._now(conn)
                conn.execute("UPDATE gateway_leases SET collector_id = NULL, expires_at = %s WHERE collector_id = %s",
                             (ts(now), self.me))
                conn.execute("DELETE FROM collectors WHERE collector_id = %s", (self.me,))
            self.held.clear()


class Keeper:
    """Renews a collector's leases every `renew_s` on a thread and a connection of its own, for as long as the
    flush loop shows progress (`alive`, a monotonic time it refreshes) within `stall_s`.

    The flush loop renews in its rounds too; the keeper covers the steps that outlast a lease. It never claims
    or releases (that needs the loop, which acts on the change), and a renewal that fails (database away) is
    logged and retried at the next tick: the fence keeps batches honest whatever happens to the leases.
    """

    def __init__(self, leases: Leases, connect: Callable[[], psycopg.Connection], alive: Callable[[], float]):
        self.leases = leases
        self._connect = connect
        self._alive = alive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection | None = None
        self._stalled = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"leases-{self.leases.me}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (before the loop releases its leases: a renewal after that would re-announce us)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        s = self.leases.settings
        while not self._stop.wait(s.renew_s):
            busy = time.monotonic() - self._alive()
            if busy > s.stall_s:
                if not self._stalled:
                    log.warning("collector %s made no progress for %.0f s: its leases are left to run out",
                                self.leases.me, busy)
                self._stalled = True
                continue
            self._stalled = False
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = self._connect()
                self.leases.renew(self._conn)
            except psycopg.Error as exc:
                log.warning("lease renewal skipped: %s", exc)
                if self._conn is not None:
                    try:
                        self._conn.close()
                    except psycopg.Error:
                        pass
                    self._conn = None
