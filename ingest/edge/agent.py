"""The edge agent: sources -> SQLite buffer -> publisher, supervised in one process.

The asyncio loop runs the sources and the sealer (staged readings -> numbered messages every
`flush_interval_s`); the publisher runs its MQTT connection on its own thread. Health goes out in the retained
status message and, every status interval, in one log line (buffer depth, oldest age, link, sources).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from ingest.edge.buffer import Buffer
from ingest.edge.config import EdgeConfig
from ingest.edge.formats import Reading, make_format
from ingest.edge.publisher import Publisher
from ingest.edge.sources import ModbusPoller, OpcuaReader, make_source

log = logging.getLogger("riskwatch.edge")


class Agent:
    def __init__(self, cfg: EdgeConfig, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.clock = clock
        self.buffer = Buffer(cfg.buffer.path, max_readings=cfg.buffer.max_readings,
                             when_full=cfg.buffer.when_full, clock=clock)
        # Sparkplug's session state (aliases, bdSeq) lives in the buffer's database, hence format after buffer.
        self.fmt = make_format(cfg.publish.format, group_id=cfg.publish.group_id, tags=cfg.tags(),
                               store=self.buffer, clock=clock, primary_host_id=cfg.publish.primary_host_id)
        self.buffer.use_format(self.fmt)
        self.sources: list[ModbusPoller | OpcuaReader] = [make_source(s, self._sink, clock) for s in cfg.sources]
        self.publisher = Publisher(
            cfg.gateway, cfg.mqtt_url(), self.buffer, self.fmt, window=cfg.publish.window,
            resend_after_s=cfg.publish.resend_after_s, keepalive_s=cfg.broker.keepalive_s,
            backoff_initial_s=cfg.broker.backoff_initial_s, backoff_max_s=cfg.broker.backoff_max_s,
            max_clock_skew_s=cfg.health.max_clock_skew_s, status=self._sources_doc,
            status_interval_s=cfg.health.status_interval_s, clock=clock)
        self.stop_event: asyncio.Event | None = None
        self.dropped_logged = 0

    def _sink(self, readings: Sequence[Reading]) -> None:
        dropped = self.buffer.add(readings)
        if dropped:
            log.error("%s: buffer full (%d readings): %d readings dropped (policy %s)", self.cfg.gateway,
                      self.cfg.buffer.max_readings, dropped, self.cfg.buffer.when_full)

    def _sources_doc(self) -> dict[str, Any]:
        return {"sources": {s.health.name: s.health.doc() for s in self.sources}}

    def _seal_all(self) -> int:
        n = 0
        while self.buffer.seal(self.cfg.publish.max_readings_per_message) is not None:
            n += 1
        if n:
            self.publisher.wake()
        return n

    async def _sealer(self, stop: asyncio.Event) -> None:
        next_health = time.monotonic() + self.cfg.health.status_interval_s
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.cfg.publish.flush_interval_s)
            except TimeoutError:
                pass
            self._seal_all()
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + self.cfg.health.status_interval_s
                self.log_health()

    def log_health(self) -> None:
        d = self.buffer.depth()
        age = None if d.oldest_ms is None else (self.clock() * 1000 - d.oldest_ms) / 1000
        st = self.publisher.state
        log.info("%s health: buffer %d messages / %d readings, oldest %s, dropped %d; broker %s "
                 "(connects %d), confirmed seq %d, clock skew %s ms; sources %s", self.cfg.gateway,
                 d.messages, d.readings, "-" if age is None else f"{age:.1f} s", d.dropped,
                 "up" if self.publisher.connected() else "down", st.connects, self.buffer.confirmed_seq,
                 st.clock_skew_ms, ", ".join(f"{s.health.name}={'up' if s.health.connected else 'down'}"
                                             f"/{len(s.health.errors)} tag errors" for s in self.sources))

    async def run(self, stop: asyncio.Event | None = None) -> None:
        self.stop_event = stop = stop or asyncio.Event()
        log.info("%s: edge agent starting: %d sources, buffer %s (%d readings held from before)", self.cfg.gateway,
                 len(self.sources), self.cfg.buffer.path, self.buffer.depth().readings)
        self.publisher.start()
        tasks = [asyncio.create_task(s.run(stop), name=f"source-{s.health.name}") for s in self.sources]
        tasks.append(asyncio.create_task(self._sealer(stop), name="sealer"))
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._seal_all()
            await asyncio.to_thread(self.publisher.stop)
            self.log_health()
            self.buffer.close()
            log.info("%s: edge agent stopped", self.cfg.gateway)


def run_agent(cfg: EdgeConfig) -> None:
    """Run until SIGTERM / SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Agent(cfg).run(stop)

    asyncio.run(main())


__all__ = ["Agent", "run_agent"]
