"""Named background tasks under one supervisor, each on its own thread.

A task that fails is logged, counted (`riskwatch_task_restarts_total`) and restarted with jittered
backoff; it never takes the process down with it, and `check(name)` says whether it runs (for
/healthz).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from api.http import Check, Metrics

__all__ = ["Running", "Supervisor", "Task"]

log = logging.getLogger("riskwatch.serve")


@dataclass
class Running:
    """What a task's factory returns: how to run it (blocks) and how to ask it to stop."""

    run: Callable[[], None]
    stop: Callable[[], None]


@dataclass
class Task:
    name: str
    factory: Callable[[], Running]
    thread: threading.Thread | None = None
    current: Running | None = None
    running: bool = False
    restarts: int = 0
    last_error: str | None = None
    started_at: float = 0.0


@dataclass
class Supervisor:
    metrics: Metrics
    max_backoff_s: float = 60.0
    tasks: dict[str, Task] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def add(self, name: str, factory: Callable[[], Running]) -> None:
        self.tasks[name] = Task(name, factory)

    def start(self) -> None:
        for t in self.tasks.values():
            t.thread = threading.Thread(target=self._keep, args=(t,), name=f"rw-{t.name}", daemon=True)
            t.thread.start()

    def _keep(self, t: Task) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                t.current = t.factory()
                t.running, t.started_at = True, time.monotonic()
                t.current.run()
                t.running = False
                if self._stop.is_set():
                    return
                t.last_error = "exited"
                log.warning("task %s exited on its own; restarting", t.name)
            except Exception as exc:  # noqa: BLE001 - a failing task is restarted, never fatal
                t.running = False
                t.last_error = f"{type(exc).__name__}: {exc}"
                log.error("task %s failed: %s; restarting in %.0f s", t.name, t.last_error, backoff, exc_info=True)
            if time.monotonic() - t.started_at > 5 * self.max_backoff_s:
                backoff = 1.0  # it ran well for a while: start the backoff over
            t.restarts += 1
            self.metrics.task_restarts.labels(t.name).inc()
            self._stop.wait(backoff * random.uniform(0.5, 1.0))
            backoff = min(self.max_backoff_s, backoff * 2)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in self.tasks.values():
            if t.current is not None:
                try:
                    t.current.stop()
                except Exception as exc:  # noqa: BLE001
                    log.warning("stopping %s: %s", t.name, exc)
        deadline = time.monotonic() + timeout
        for t in self.tasks.values():
            if t.thread is not None:
                t.thread.join(max(0.1, deadline - time.monotonic()))
                if t.thread.is_alive():
                    log.warning("task %s did not stop within %.0f s", t.name, timeout)

    def check(self, name: str) -> Callable[[], Check]:
        def _check() -> Check:
            t = self.tasks[name]
            if t.running:
                return Check(True, None, f"running (restarts: {t.restarts})")
            return Check(False, None, f"not running: {t.last_error or 'starting'} (restarts: {t.restarts})")
        return _check
