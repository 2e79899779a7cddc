"""`simulate --via edge`: readings take the plant's real path, simulated PLC -> edge agent -> MQTT -> collector.

`edge_publisher_factory` plugs into `simulators.run.simulate` as its `publisher_factory`, so the run loop,
the signal models and the scenarios are exactly those of the direct simulator. Per gateway, instead of
publishing JSON itself, the "publisher" writes each sample's values into the holding registers of a simulated
Modbus TCP PLC (`simulators.plc.PlcSimulator`'s server, one per gateway on a free loopback port), and a real
edge agent (`ingest.edge.agent.Agent`, generated from the site's points: one float32 register pair per
analogue point, one int32 pair per boolean / enum / counter point) polls them at the sample rate and publishes
to the broker under the gateway's own account over TLS, with its SQLite buffer in the data directory.

The agent runs in-process (its asyncio loop on a thread; its MQTT client on its own thread, as in
`riskwatch edge`): it is the very `Agent` class the `riskwatch edge` command runs, it starts in well under a
second, and it cannot outlive the simulation (no orphaned subprocess after Ctrl-C). The config it runs from is
also written to the data directory as YAML (`edge-<gateway>.yaml`), so it can be checked or run by hand.

Limits (those of Modbus, see docs/edge.md): a reading is stamped when the agent read it, not with the sample's
time; a value held for less than a poll may be missed or read twice. Real time only (the agent polls; a
backfill or history would overwrite registers faster than anyone reads them): `check_realtime` refuses the
rest. A stopped point keeps its last register value (a dead sensor's register does not go empty), and
scenarios that unplug a gateway or run its clock fast are refused by `simulate` (this publisher has neither
`unplug` nor `clock_offset_ms`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from core.errors import ConfigError
from core.registry import SiteSpec
from core.services import free_port
from ingest.edge.agent import Agent
from ingest.edge.config import EdgeConfig
from ingest.edge.formats import Reading
from ingest.edge.registers import RegType, register_count
from simulators.gateway import GatewayConnectError, GatewayStats, Value
from simulators.plc import PlcSimulator, PlcTag
from simulators.run import Publisher, PublisherFactory, site_models

log = logging.getLogger("riskwatch.simulators.via_edge")

VIAS = ("direct", "edge")


def check_realtime(*, backfill: bool, start_ago: float) -> None:
    """The edge path polls live registers: only a real-time run starting now makes sense."""
    if backfill:
        raise ConfigError("--via edge runs in real time only (the edge agent polls the PLC); drop --backfill")
    if start_ago:
        raise ConfigError("--via edge starts now (a PLC holds only its current value); drop --start-ago")


def plc_tags(tags: Sequence[str], integral: set[str]) -> list[PlcTag]:
    """One holding-register block per point, in the given order: float32 for analogue values, int32 for
    booleans / enums / counters (PLCs hold states as integers), one spare register between points."""
    out: list[PlcTag] = []
    addr = 0
    for tag in tags:
        kind: RegType = "int32" if tag in integral else "float32"
        out.append(PlcTag(tag, "modbus", lambda _t: 0.0, address=addr, function="holding", type=kind))
        addr += register_count(kind) + 1
    return out


class _CountingAgent(Agent):
    """The real agent, counting the readings it took (for the run's statistics)."""

    def __init__(self, cfg: EdgeConfig):
        super().__init__(cfg)
        self.taken = 0

    def _sink(self, readings: Sequence[Reading]) -> None:
        self.taken += len(readings)
        super()._sink(readings)


class EdgePlcPublisher:
    """`simulators.run.Publisher` whose readings go PLC registers -> edge agent -> broker.

    `publish_telemetry` writes the newest value of each tag into the PLC (older samples of the same call were
    overwritten on a real PLC too); the agent starts at the first write, so it never reads an empty register.
    """

    def __init__(self, gateway: str, password: str, host: str, port: int, *, tags: Sequence[str],
                 integral: set[str], workdir: Path, poll_s: float, cafile: str | None, tls: bool = True):
        self.gateway = gateway
        self.poll_s = poll_s
        self.workdir = workdir / gateway
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.by_tag = {t.tag: t for t in plc_tags(tags, integral)}
        self.plc = PlcSimulator(list(self.by_tag.values()), log_path=self.workdir / "plc.jsonl",
                                modbus_port=free_port(), opcua_port=0, update_s=poll_s)
        pw = self.workdir / "password"
        pw.write_text(password, encoding="utf-8")
        pw.chmod(0o600)
        buffer = self.workdir / "buffer.sqlite"
        for stale in (buffer, buffer.with_name("buffer.sqlite-wal"), buffer.with_name("buffer.sqlite-shm")):
            stale.unlink(missing_ok=True)  # a previous run's unconfirmed readings are not this run's
        url = f"{'mqtts' if tls else 'mqtt'}://{gateway}@{host}:{port}"
        if tls and cafile:
            url += f"?cafile={quote(cafile, safe='/')}"
        extra: dict[str, Any] = {"publish": {"flush_interval_s": 0.2, "resend_after_s": 5.0},
                                 "health": {"status_interval_s": 30.0}}
        if not tls:
            extra["broker"] = {"allow_plain": True}
        doc = self.plc.edge_config(gateway, url, buffer, password_file=pw, poll_s=poll_s, on_change=False,
                                   extra=extra)
        (workdir / f"edge-{gateway}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
                                                      encoding="utf-8")
        self.cfg = EdgeConfig.model_validate(doc)
        self.agent: _CountingAgent | None = None
        self._connect_timeout = 10.0
        self._plc_loop: asyncio.AbstractEventLoop | None = None
        self._plc_stop: asyncio.Event | None = None
        self._agent_loop: asyncio.AbstractEventLoop | None = None
        self._agent_stop: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []
        self._first_seq = 0
        self._writes = 0

    # -- the PLC -----------------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Serve the PLC's Modbus TCP port (the agent starts at the first sample, see the class docstring)."""
        self._connect_timeout = timeout
        ready = threading.Event()
        errors: list[BaseException] = []

        async def serve() -> None:
            self._plc_stop = asyncio.Event()
            await self.plc.start_modbus()
            ready.set()
            try:
                await self._plc_stop.wait()
            finally:
                await self.plc.stop_modbus()

        def main() -> None:
            self._plc_loop = loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                errors.append(exc)
                ready.set()
            finally:
                loop.close()

        th = threading.Thread(target=main, name=f"plc-{self.gateway}", daemon=True)
        th.start()
        self._threads.append(th)
        if not ready.wait(timeout) or errors:
            why = errors[0] if errors else "timeout"
            raise GatewayConnectError(self.gateway, f"simulated PLC did not start: {why}")

    def _write(self, values: dict[str, Value]) -> None:
        """On the PLC's loop (serialised with the server's reads: no torn register pair)."""
        for tag, v in values.items():
            t = self.by_tag[tag]
            regs, _ = t.served(float(v))
            self.plc.image[t.function][t.address:t.address + len(regs)] = regs

    def publish_telemetry(self, tags: Sequence[str], values: Sequence[Value], times_ms: Sequence[int]) -> int:
        newest: dict[str, Value] = {}
        for tag, v in zip(tags, values, strict=True):
            newest[tag] = v  # samples come in time order: the last one is what the register holds now
        loop = self._plc_loop
        if loop is None:
            raise GatewayConnectError(self.gateway, "publish before start()")
        done = threading.Event()

        def write() -> None:
            self._write(newest)
            done.set()

        loop.call_soon_threadsafe(write)
        done.wait(5.0)
        self._writes += 1
        if self.agent is None:
            self._start_agent()
        return len(newest)

    # -- the agent ---------------------------------------------------------------------------------------------

    def _start_agent(self) -> None:
        self.agent = agent = _CountingAgent(self.cfg)
        self._first_seq = agent.buffer.last_seq
        started = threading.Event()

        def main() -> None:
            self._agent_loop = loop = asyncio.new_event_loop()
            self._agent_stop = asyncio.Event()
            loop.call_soon(started.set)
            try:
                loop.run_until_complete(agent.run(self._agent_stop))
            except Exception:  # the run must not die silently; the missing readings will show
                log.exception("%s: edge agent failed", self.gateway)
            finally:
                loop.close()

        th = threading.Thread(target=main, name=f"edge-{self.gateway}", daemon=True)
        th.start()
        self._threads.append(th)
        started.wait(5.0)
        deadline = time.monotonic() + self._connect_timeout
        while not agent.publisher.connected():
            if time.monotonic() > deadline or not th.is_alive():
                raise GatewayConnectError(self.gateway, f"edge agent could not connect to the broker in "
                                                        f"{self._connect_timeout:g} s (see its log)")
            time.sleep(0.05)

    def wait_acked(self, timeout: float) -> bool:
        """After the last sample: one more poll reads it, then everything the agent buffered is confirmed
        stored by the collector (the buffer is empty), or False at `timeout`."""
        agent = self.agent
        if agent is None:
            return True
        deadline = time.monotonic() + timeout
        time.sleep(min(timeout, self.poll_s * 1.5 + self.cfg.publish.flush_interval_s))
        while time.monotonic() < deadline:
            d = agent.buffer.depth()
            if d.messages == 0 and d.readings == 0:
                return True
            time.sleep(0.1)
        return False

    def stats(self) -> GatewayStats:
        agent = self.agent
        if agent is None:
            return GatewayStats(self.gateway, 0, 0, 0, 0, 0, 0)
        messages = agent.buffer.last_seq - self._first_seq
        confirmed = max(0, agent.buffer.confirmed_seq - self._first_seq)
        st = agent.publisher.state
        return GatewayStats(self.gateway, messages, agent.taken, messages, confirmed, st.connects, st.disconnects)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the agent (it publishes its clean offline status), then the PLC."""
        if self._agent_loop is not None and self._agent_stop is not None and not self._agent_loop.is_closed():
            self._agent_loop.call_soon_threadsafe(self._agent_stop.set)
        if self._threads[1:]:
            self._threads[1].join(timeout)
        if self._plc_loop is not None and self._plc_stop is not None and not self._plc_loop.is_closed():
            self._plc_loop.call_soon_threadsafe(self._plc_stop.set)
        if self._threads:
            self._threads[0].join(timeout)


def edge_publisher_factory(site: SiteSpec, workdir: Path, *, rate_hz: float, cafile: str | None,
                           tls: bool = True, seed: int = 0) -> PublisherFactory:
    """The `publisher_factory` for `simulate(...)`: one PLC + edge agent per gateway, config under `workdir`."""
    if not 0 < rate_hz <= 10:
        raise ConfigError("--via edge polls Modbus at the sample rate: --rate must be in (0, 10] Hz")
    models = site_models(site, seed)
    # As `riskwatch edge` does: the agent reports lost connections itself, once; the libraries' tracebacks go.
    for noisy in ("pymodbus", "asyncua"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))

    def make(gateway: str, password: str, host: str, port: int) -> Publisher:
        ms = models[gateway]
        return EdgePlcPublisher(gateway, password, host, port, tags=list(ms),
                                integral={t for t, m in ms.items() if m.integral}, workdir=workdir,
                                poll_s=1.0 / rate_hz, cafile=cafile, tls=tls)

    return make


__all__ = ["VIAS", "EdgePlcPublisher", "check_realtime", "edge_publisher_factory", "plc_tags"]
