"""The live feed behind the alarm board: PostgreSQL LISTEN/NOTIFY fanned out to server-sent-event streams.

Migration 0014's trigger announces every `alarm_events` row on channel
`rw_alarm` when its transaction commits, with the enterprise the alarm
belongs to; `core.accounts` announces on `rw_session` the user whose sessions
ended (deactivated, password reset). One dedicated psycopg connection per
process listens — not a pooled one: a pooled connection would be handed to
other requests while it is subscribed — in a thread, and hands each event to
the subscribers allowed to see it.

The listener runs only while someone watches: the first subscriber starts
it, the last one leaving stops it (so no idle process holds a connection,
and a test's database can be dropped). A lost connection is reopened with a
backoff; subscribers are told to refresh, since events may have been missed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg

log = logging.getLogger("riskwatch.web.events")

ALARM_CHANNEL = "rw_alarm"
SESSION_CHANNEL = "rw_session"


@dataclass(frozen=True)
class FeedEvent:
    kind: str  # "alarm", "refresh" (events may be lost: reload the board), "ended" (the session ended)
    data: dict[str, Any] = field(default_factory=dict)


def visible(event: dict[str, Any], scope: str | None) -> bool:
    """An enterprise user sees only its own enterprise's alarms; bureau and admin (scope None) see all."""
    return scope is None or event.get("enterprise_id") == scope


@dataclass(eq=False)
class Subscriber:
    user_id: int
    scope: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[FeedEvent] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))

    def offer(self, ev: FeedEvent) -> None:
        """Called from the listener thread."""
        def put() -> None:
            if self.queue.full():  # a stalled browser: drop the backlog and ask it to reload instead
                while not self.queue.empty():
                    self.queue.get_nowait()
                self.queue.put_nowait(FeedEvent("refresh"))
            else:
                self.queue.put_nowait(ev)
        try:
            self.loop.call_soon_threadsafe(put)
        except RuntimeError:  # the subscriber's loop is closed: it is going away
            pass


class AlarmHub:
    def __init__(self, db_url: str, *, poll_s: float = 0.5):
        self.db_url = db_url
        self.poll_s = poll_s
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in effect (tests wait on it)

    def subscribe(self, user_id: int, scope: str | None) -> Subscriber:
        sub = Subscriber(user_id, scope, asyncio.get_running_loop())
        with self._lock:
            self._subs.add(sub)
            if self._thread is None or not self._thread.is_alive() or self._stop.is_set():
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True,
                                                name="rw-console-listen")
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)
            if not self._subs:
                self._stop.set()

    def close(self) -> None:
        with self._lock:
            self._subs.clear()
            self._stop.set()

    def _fan_out(self, channel: str, payload: str) -> None:
        with self._lock:
            subs = list(self._subs)
        if channel == SESSION_CHANNEL:
            for s in subs:
                if str(s.user_id) == payload:
                    s.offer(FeedEvent("ended"))
            return
        try:
            data = json.loads(payload)
        except ValueError:
            log.warning("unreadable %s payload dropped", channel)
            return
        for s in subs:
            if visible(data, s.scope):
                s.offer(FeedEvent("alarm", data))

    def _run(self, stop: threading.Event) -> None:
        backoff = 0.5
        first = True
        while not stop.is_set():
            try:
                with psycopg.connect(self.db_url, autocommit=True,
                                     application_name="riskwatch-console-listen") as conn:
                    conn.execute(f"LISTEN {ALARM_CHANNEL}")
                    conn.execute(f"LISTEN {SESSION_CHANNEL}")
                    self.listening.set()
                    if not first:  # events committed while we were away were not heard
                        self._broadcast(FeedEvent("refresh"))
                    first, backoff = False, 0.5
                    while not stop.is_set():
                        for n in conn.notifies(timeout=self.poll_s, stop_after=100):
                            self._fan_out(n.channel, n.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("console listener lost its connection (%s); retrying in %.1f s", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.listening.clear()

    def _broadcast(self, ev: FeedEvent) -> None:
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s.offer(ev)
