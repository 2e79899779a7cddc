"""Southbound adapters: Modbus TCP (pymodbus) and OPC UA (asyncua) turned into `Reading`s.

Each source is a supervised loop: a bad tag (an illegal address, a value of the wrong type) is logged once
per change of its error and skipped, the other tags go on; a device that drops the connection is reconnected
with backoff. Nothing here raises out of `run` except cancellation. Library errors are caught at this
boundary and reported as text in `SourceHealth`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.edge.config import ModbusSource, ModbusTag, OpcuaSource, OpcuaTag
from ingest.edge.formats import Reading
from ingest.edge.registers import RegisterDecodeError, decode, engineering

log = logging.getLogger("riskwatch.edge.sources")

Sink = Callable[[Sequence[Reading]], None]


@dataclass
class SourceHealth:
    """Per source: connected, readings produced, and the current error of each failing tag."""

    name: str
    connected: bool = False
    readings: int = 0
    reconnects: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    last_error: str | None = None

    def doc(self) -> dict[str, Any]:
        return {"connected": self.connected, "readings": self.readings, "reconnects": self.reconnects,
                "tag_errors": dict(self.errors), "last_error": self.last_error}

    def tag_failed(self, tag: str, message: str) -> None:
        if self.errors.get(tag) != message:
            log.error("source %s, tag %s: %s (skipped; other tags continue)", self.name, tag, message)
        self.errors[tag] = message

    def tag_ok(self, tag: str) -> None:
        if self.errors.pop(tag, None) is not None:
            log.info("source %s, tag %s: reading again", self.name, tag)


class _Changes:
    """`on_change`: the last value recorded per tag, so a repeated value is not recorded again."""

    def __init__(self) -> None:
        self.last: dict[str, tuple[float, int]] = {}

    def new(self, tag: str, v: float, q: int) -> bool:
        if self.last.get(tag) == (v, q):
            return False
        self.last[tag] = (v, q)
        return True


async def _every(period_s: float, stop: asyncio.Event) -> Any:
    """Ticks on a fixed schedule (no drift from the time the body takes); skips ticks that are already past."""
    t = time.monotonic()
    while not stop.is_set():
        yield
        t += period_s
        now = time.monotonic()
        if t < now:
            t = now + (period_s - (now - t) % period_s)
        try:
            await asyncio.wait_for(stop.wait(), t - now)
        except TimeoutError:
            pass


class ModbusPoller:
    """One Modbus TCP device (host, port, unit); tags grouped by their interval, one request per tag."""

    def __init__(self, src: ModbusSource, sink: Sink, clock: Callable[[], float] = time.time,
                 backoff_max_s: float = 10.0):
        from pymodbus.client import AsyncModbusTcpClient

        self.src = src
        self.sink = sink
        self.clock = clock
        self.backoff_max_s = backoff_max_s
        self.health = SourceHealth(src.name)
        self.changes = _Changes()
        self._client_cls = AsyncModbusTcpClient
        self.client: Any = None  # made in run(): pymodbus binds a client to the running loop
        self._lock = asyncio.Lock()  # binds to a loop on first use (3.10+)

    async def _ensure(self) -> bool:
        if self.client.connected:
            return True
        ok = await self.client.connect()
        if ok:
            self.health.connected = True
            self.health.last_error = None
            log.info("source %s: connected to modbus %s:%d", self.src.name, self.src.host, self.src.port)
        return bool(ok)

    async def _read(self, t: ModbusTag) -> Reading | None:
        from pymodbus.exceptions import ModbusException

        fn = {"holding": self.client.read_holding_registers, "input": self.client.read_input_registers,
              "coil": self.client.read_coils, "discrete": self.client.read_discrete_inputs}[t.function]
        try:
            rr = await fn(t.address, count=t.count, device_id=self.src.unit)
        except ModbusException as exc:
            if not self.client.connected:
                raise ConnectionError(str(exc)) from exc
            self.health.tag_failed(t.tag, f"{t.function} {t.address}: {exc}")
            return None
        ts_ms = int(self.clock() * 1000)
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            self.health.tag_failed(t.tag, f"{t.function} register {t.address}: device answered exception {code} "
                                          f"(illegal address or function?)")
            return None
        try:
            if t.function in ("coil", "discrete"):
                raw = 1.0 if rr.bits[0] else 0.0
            else:
                raw = decode(list(rr.registers), t.type, t.byte_order, t.word_order)
        except (RegisterDecodeError, IndexError) as exc:
            self.health.tag_failed(t.tag, f"cannot decode {t.type}: {exc}")
            return None
        v = engineering(raw, t.scale, t.offset)
        if not math.isfinite(v):
            self.health.tag_failed(t.tag, f"{t.type} at {t.address} is not a finite number ({v})")
            return None
        self.health.tag_ok(t.tag)
        return Reading(t.tag, ts_ms, v, 0)

    async def _group(self, period: float, tags: list[ModbusTag], stop: asyncio.Event) -> None:
        async for _ in _every(period, stop):
            async with self._lock:
                if not self.client.connected:
                    continue  # the supervisor reconnects
                out: list[Reading] = []
                try:
                    for t in tags:
                        r = await self._read(t)
                        if r is not None and (not t.on_change or self.changes.new(t.tag, r.v, r.q)):
                            out.append(r)
                except (ConnectionError, OSError) as exc:
                    self._lost(str(exc))
                if out:
                    self.sink(out)
                    self.health.readings += len(out)

    def _lost(self, why: str) -> None:
        if self.health.connected:
            log.warning("source %s: modbus %s:%d connection lost (%s); reconnecting", self.src.name,
                        self.src.host, self.src.port, why)
        self.health.connected = False
        self.health.last_error = why
        self.client.close()

    async def run(self, stop: asyncio.Event) -> None:
        self.client = self._client_cls(self.src.host, port=self.src.port, timeout=self.src.timeout_s, retries=1,
                                       reconnect_delay=0, reconnect_delay_max=0)
        groups: dict[float, list[ModbusTag]] = {}
        for t in self.src.tags:
            groups.setdefault(t.interval_s, []).append(t)
        tasks = [asyncio.create_task(self._group(p, ts, stop), name=f"modbus-{self.src.name}-{p}")
                 for p, ts in groups.items()]
        delay = 0.5
        try:
            while not stop.is_set():
                if not self.client.connected:
                    if self.health.connected:
                        self._lost("connection closed")
                    async with self._lock:
                        ok = await self._ensure()
                    if not ok:
                        self.health.last_error = f"cannot connect to {self.src.host}:{self.src.port}"
                        log.warning("source %s: %s; retrying in %.1f s", self.src.name, self.health.last_error,
                                    delay)
                        try:
                            await asyncio.wait_for(stop.wait(), delay)
                        except TimeoutError:
                            pass
                        delay = min(delay * 2, self.backoff_max_s)
                        continue
                    if self.health.reconnects or delay > 0.5:
                        self.health.reconnects += 1
                    delay = 0.5
                try:
                    await asyncio.wait_for(stop.wait(), 0.5)
                except TimeoutError:
                    pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.client.close()


def _quality(status: Any) -> int:
    if status is None or status.is_good():
        return 0
    return 2 if status.is_bad() else 1


def _ms(ts: dt.datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return int(ts.timestamp() * 1000)


def opcua_reading(tag: str, dv: Any, now_ms: int, last: float | None = None) -> tuple[Reading | None, str | None]:
    """A DataValue -> (reading, None) or (None, why not). Pure, for the unit tests.

    Time is the value's SourceTimestamp (when the PLC sampled it), else the server's, else now. A bad or
    uncertain status keeps a numeric value with `q` set. A Bad status usually comes without a value (servers
    withhold it): it is sent with `q: bad` and `last`, the tag's last value, so the failure is stored at its time
    and no number is invented; with no last value it is reported only. A value that is not a number (a string,
    an array) is not a reading: it is reported, not stored.
    """
    q = _quality(getattr(dv, "StatusCode", None))
    variant = getattr(dv, "Value", None)
    value = getattr(variant, "Value", None) if variant is not None else None
    ts = _ms(getattr(dv, "SourceTimestamp", None)) or _ms(getattr(dv, "ServerTimestamp", None)) or now_ms
    if isinstance(value, bool):
        v = 1.0 if value else 0.0
    elif isinstance(value, (int, float)):
        v = float(value)
    elif value is None and q == 2:
        if last is None:
            return None, f"status {dv.StatusCode.name} without a value (and no earlier value to flag)"
        v = last
    else:
        return None, f"value {str(value)[:40]!r} ({type(value).__name__}) is not a number"
    if not math.isfinite(v):
        return None, f"value {v} is not finite"
    return Reading(tag, ts, v, q), None


class OpcuaReader:
    """One OPC UA server: subscriptions (grouped by publishing interval) and polled nodes."""

    def __init__(self, src: OpcuaSource, sink: Sink, clock: Callable[[], float] = time.time,
                 backoff_max_s: float = 10.0):
        self.src = src
        self.sink = sink
        self.clock = clock
        self.backoff_max_s = backoff_max_s
        self.health = SourceHealth(src.name)
        self._last_ts: dict[str, int] = {}
        self._last_v: dict[str, float] = {}

    def _accept(self, tag: str, dv: Any) -> Reading | None:
        r, why = opcua_reading(tag, dv, int(self.clock() * 1000), self._last_v.get(tag))
        if r is None:
            self.health.tag_failed(tag, why or "unusable value")
            return None
        if r.q == 2:
            self.health.tag_failed(tag, f"status {dv.StatusCode.name}: stored with quality bad")
        else:
            self.health.tag_ok(tag)
            self._last_v[tag] = r.v
        if self._last_ts.get(tag) == r.ts_ms:
            return None  # the same sample again (a poll faster than the PLC, or a resubscription's first value)
        self._last_ts[tag] = r.ts_ms
        return r

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        tag = self._by_node.get(node.nodeid.to_string())
        if tag is None:
            return
        r = self._accept(tag, data.monitored_item.Value)
        if r is not None:
            self.sink([r])
            self.health.readings += 1

    def status_change_notification(self, status: Any) -> None:
        self.health.last_error = f"subscription status {status}"

    async def _session(self, stop: asyncio.Event) -> None:
        from asyncua.client.client import Client

        client = Client(self.src.endpoint, timeout=self.src.timeout_s)
        await client.connect()
        try:
            self.health.connected = True
            self.health.last_error = None
            log.info("source %s: connected to %s", self.src.name, self.src.endpoint)
            self._by_node: dict[str, str] = {}
            subs: dict[float, list[OpcuaTag]] = {}
            polls: dict[float, list[OpcuaTag]] = {}
            for t in self.src.tags:
                (subs if t.mode == "subscribe" else polls).setdefault(t.interval_s, []).append(t)
            for period, tags in subs.items():
                sub = await client.create_subscription(period * 1000, self)
                nodes = [client.get_node(t.node) for t in tags]
                for t, n in zip(tags, nodes, strict=True):
                    self._by_node[n.nodeid.to_string()] = t.tag
                # Trigger on the timestamp too: a PLC that samples the same value again has produced a new
                # reading (the default trigger, StatusValue, would skip it). asyncua's public
                # subscribe_data_change takes no filter, hence its lower-level _subscribe.
                from asyncua import ua

                trigger = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValueTimestamp)
                res = await sub._subscribe(nodes, mfilter=trigger, queuesize=100)
                for t, handle in zip(tags, res if isinstance(res, list) else [res], strict=False):
                    if not isinstance(handle, int):
                        self.health.tag_failed(t.tag, f"cannot subscribe to {t.node}: {handle}")
            tasks = [asyncio.create_task(self._poll(client, p, ts, stop), name=f"opcua-poll-{p}")
                     for p, ts in polls.items()]
            try:
                while not stop.is_set():
                    await client.check_connection()
                    try:
                        await asyncio.wait_for(stop.wait(), 1.0)
                    except TimeoutError:
                        pass
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.health.connected = False
            try:
                await client.disconnect()
            except Exception:  # noqa: BLE001 - the connection is already gone; nothing to report
                pass

    async def _poll(self, client: Any, period: float, tags: list[OpcuaTag], stop: asyncio.Event) -> None:
        nodes = [client.get_node(t.node) for t in tags]
        async for _ in _every(period, stop):
            out = []
            for t, n in zip(tags, nodes, strict=True):
                try:
                    dv = await n.read_data_value(raise_on_bad_status=False)
                except Exception as exc:  # noqa: BLE001 - asyncua raises many types; the tag is reported
                    self.health.tag_failed(t.tag, f"read {t.node}: {type(exc).__name__}: {exc}")
                    continue
                r = self._accept(t.tag, dv)
                if r is not None:
                    out.append(r)
            if out:
                self.sink(out)
                self.health.readings += len(out)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of the session: reconnect
                self.health.last_error = f"{type(exc).__name__}: {exc}"
                self.health.reconnects += 1
                log.warning("source %s: OPC UA %s failed (%s); reconnecting in %.1f s", self.src.name,
                            self.src.endpoint, self.health.last_error, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, self.backoff_max_s)
                continue
            delay = 0.5


def make_source(src: ModbusSource | OpcuaSource, sink: Sink, clock: Callable[[], float] = time.time
                ) -> ModbusPoller | OpcuaReader:
    if isinstance(src, ModbusSource):
        return ModbusPoller(src, sink, clock)
    return OpcuaReader(src, sink, clock)


__all__ = ["ModbusPoller", "OpcuaReader", "SourceHealth", "make_source", "opcua_reading"]
