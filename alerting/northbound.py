"""The northbound forwarder: items owed to the provincial platform → HTTP, at least once (issue 18).

Items are recorded by triggers in the transaction that produced them (migration 0021): readings of
points flagged `required`, every alarm_events row (alarm transitions), every hazard_events row (ledger
changes). Ingest never waits on this: the trigger only inserts, the forwarder runs elsewhere.

One worker thread per target, each repeating one short transaction: claim up to `batch_size` due
items (FOR UPDATE SKIP LOCKED, so a second forwarder never sends the same rows at the same time),
send them in one request while holding the locks, record the attempt. A forwarder killed between
sending and recording leaves the rows pending and unlocked: they are sent again, with the same keys
(at least once). Failures back off exponentially with jitter (`dispatcher.backoff`); a permanent
error (4xx other than 408/425/429) or the `max_attempts`-th failure marks the items dead with the reason.

Every item carries its idempotency key in the body (the template must render it, checked at load);
the request carries `Idempotency-Key` (the item's key for a batch of one, else a key derived from the
batch's item keys) and `X-Riskwatch-Item-Keys` (the items' keys, comma-separated).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg

from alerting import northbound_store as store
from alerting.channels import _http
from alerting.channels.base import DeliveryError
from alerting.dispatcher import backoff
from alerting.northbound_config import NorthboundConfig, Resolved, render_body
from core.clock import Clock
from core.redact import redact_text

__all__ = ["STARTED", "Forwarder", "ForwarderStats", "batch_key"]

log = logging.getLogger("riskwatch.northbound")

#: Logged once the targets are registered: from then on every produced item is owed.
STARTED = "riskwatch northbound: forwarding"


@dataclass
class ForwarderStats:
    sent: int = 0
    failed: int = 0
    dead: int = 0
    last_error: str | None = None
    by_target: dict[str, int] = field(default_factory=dict)


def batch_key(items: Sequence[store.Item]) -> str:
    """The request's Idempotency-Key: the item's own for one item, else a digest of the items' keys."""
    if len(items) == 1:
        return items[0].key
    return "rw-b-" + hashlib.sha256("\n".join(i.key for i in items).encode()).hexdigest()[:32]


class Forwarder:
    """Sends what the northbound tables owe to each configured target; `poll_s` bounds the idle wait."""

    def __init__(self, db_url: str, cfg: NorthboundConfig, *, clock: Clock, poll_s: float = 1.0,
                 rng: random.Random | None = None):
        self.db_url = db_url
        self.cfg = cfg
        self.clock = clock
        self.poll_s = poll_s
        self.rng = rng or random.Random()
        self.stats = ForwarderStats()
        self._stop = threading.Event()
        self._clients = {name: _http.client(t.spec.timeout_s) for name, t in cfg.targets.items()}

    def register(self) -> None:
        """Tell the triggers which targets take what (done before the first send, again at each start)."""
        with psycopg.connect(self.db_url, application_name="riskwatch-northbound") as conn:
            store.register_targets(conn, {n: t.spec.kinds for n, t in self.cfg.targets.items()})

    def send_once(self, conn: psycopg.Connection, target: Resolved) -> int:
        """One batch of `target`: claimed, sent, recorded in one transaction. The number of items tried."""
        spec = target.spec
        with conn.transaction():
            now = self.clock.now()
            items = store.claim(conn, target.name, now, spec.batch_size)
            if not items:
                return 0
            key = batch_key(items)
            body = render_body(spec, [{"key": i.key, "kind": i.kind, "data": i.data} for i in items], key,
                               target.name)
            headers = {**target.headers, "Content-Type": spec.content_type, "Idempotency-Key": key,
                       "X-Riskwatch-Item-Keys": ",".join(i.key for i in items)}
            started = time.monotonic()
            status: int | None = None
            error: str | None = None
            transient = True
            try:
                resp = _http.request(self._clients[target.name], f"northbound {target.name}", spec.method, spec.url,
                                     content=body, headers=headers)
                status = resp.status_code
            except DeliveryError as exc:
                error = redact_text(f"{exc} {exc.detail or ''}".strip())[:500]
                transient = exc.transient
            ms = (time.monotonic() - started) * 1000
            attempt = max(i.attempts for i in items) + 1
            dead = error is not None and (not transient or attempt >= spec.max_attempts)
            nxt = None if error is None else now + backoff(attempt, spec.backoff.initial_s, spec.backoff.max_s,
                                                            self.rng)
            if dead:
                error = f"{error} (attempt {attempt} of {spec.max_attempts}{'' if transient else ', permanent'})"
            store.record(conn, target.name, items, now=self.clock.now(), batch_key=key, ok=error is None,
                         http_status=status, error=error, duration_ms=ms, next_at=nxt, dead=dead)
        self._count(target.name, len(items), error, dead)
        return len(items)

    def _count(self, target: str, n: int, error: str | None, dead: bool) -> None:
        if error is None:
            self.stats.sent += n
            self.stats.by_target[target] = self.stats.by_target.get(target, 0) + n
            return
        self.stats.failed += n
        self.stats.last_error = error
        if dead:
            self.stats.dead += n
            log.error("northbound %s: %d item(s) dead: %s", target, n, error)
        else:
            log.warning("northbound %s: %d item(s) not sent, will retry: %s", target, n, error)

    def _loop(self, target: Resolved) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.db_url, application_name="riskwatch-northbound") as conn:
                    while not self._stop.is_set():
                        if not self.send_once(conn, target):
                            self._stop.wait(self.poll_s)
            except psycopg.Error as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.error("northbound %s: %s; reconnecting", target.name, exc)
                self._stop.wait(1.0)

    def run(self) -> None:
        """Register the targets, then forward until `stop()`; raises if the database is unreachable at start."""
        self.register()
        log.warning("%s %s to %s", STARTED, self.cfg.source, ", ".join(self.cfg.targets))
        threads = [threading.Thread(target=self._loop, args=(t,), name=f"northbound-{t.name}", daemon=True)
                   for t in self.cfg.targets.values()]
        for t in threads:
            t.start()
        try:
            while not self._stop.is_set():
                self._stop.wait(1.0)
        finally:
            self._stop.set()
            for t in threads:
                t.join(30)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


