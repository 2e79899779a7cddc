"""Simulated PLCs on real protocols: a Modbus TCP server (pymodbus) and an OPC UA server (asyncua) per plant
gateway, serving the values of the plant models (simulators/models.py).

Every update writes each tag's value into its Modbus registers or OPC UA node and appends one line per tag
to the PLC's own log (JSON lines: tag, time in ms, the value exactly as served, protocol). Tests compare that
log with what riskwatch stored, so "nothing the PLC produced was lost" is checked against the producer, not
against the edge agent's word.

What "the value as served" means: a float32 register pair holds float32(v), an int16 register with scale 0.1
holds round(v / 0.1) counts and stands for counts * 0.1; the log records that engineering value, which is
what any correct Modbus reader decodes. OPC UA nodes hold doubles with SourceTimestamp = the update time.

`edge_config` generates the edge agent's YAML for the plant (the register map and node ids below), so the
agent is configured the way an integrator would, by file.

Run one by hand: `python -m simulators.plc --site simulators/sites/county.yaml --gateway gw-cem-01
--modbus-port 5020 --opcua-port 4840 --log plc.jsonl --edge-config edge.yaml --broker-url mqtts://...`.
The OPC UA endpoint has no security policy: it is a loopback simulator, not a plant network.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ingest.edge.registers import Order, RegType, encode, engineering, register_count

log = logging.getLogger("riskwatch.simulators.plc")

ValueFn = Callable[[float], float]  # seconds since the PLC started -> value

#: Register encodings rotated over the Modbus tags, so one plant exercises every decoding path of the agent.
LAYOUTS: list[tuple[RegType, Order, Order, float, float]] = [
    ("float32", "big", "big", 1.0, 0.0),
    ("float32", "big", "little", 1.0, 0.0),
    ("int16", "big", "big", 0.1, 0.0),
    ("uint32", "little", "little", 0.01, -100.0),
    ("float64", "big", "big", 1.0, 0.0),
    ("int32", "little", "big", 0.001, 0.0),
]


@dataclass(frozen=True)
class PlcTag:
    tag: str
    protocol: Literal["modbus", "opcua"]
    value: ValueFn
    address: int = 0
    function: Literal["holding", "input"] = "holding"
    type: RegType = "float32"
    byte_order: Order = "big"
    word_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def node(self) -> str:
        return f"ns=2;s={self.tag}"

    def served(self, v: float) -> tuple[list[int], float]:
        """The registers holding `v` and the engineering value they stand for."""
        if self.type in ("float32",):
            f = float(np.float32(v))
            return encode(f, self.type, self.byte_order, self.word_order), f
        if self.type == "float64":
            return encode(v, self.type, self.byte_order, self.word_order), float(v)
        raw = int(round((v - self.offset) / self.scale))
        return encode(raw, self.type, self.byte_order, self.word_order), engineering(raw, self.scale, self.offset)


def plan_tags(values: Mapping[str, ValueFn], *, opcua_every: int = 2, integral: set[str] | None = None) -> list[PlcTag]:
    """Spread a gateway's tags over the two servers (every `opcua_every`-th on OPC UA) and over the layouts.

    Integral tags (states, counters) go to plain uint16 registers, as PLCs hold them.
    """
    out: list[PlcTag] = []
    addr = 0
    k = 0
    for i, (tag, fn) in enumerate(sorted(values.items())):
        if opcua_every and i % opcua_every == opcua_every - 1:
            out.append(PlcTag(tag, "opcua", fn))
            continue
        if integral and tag in integral:
            layout: tuple[RegType, Order, Order, float, float] = ("uint16", "big", "big", 1.0, 0.0)
        else:
            layout = LAYOUTS[k % len(LAYOUTS)]
            k += 1
        kind, bo, wo, scale, offset = layout
        out.append(PlcTag(tag, "modbus", fn, address=addr, function="holding" if i % 3 else "input", type=kind,
                          byte_order=bo, word_order=wo, scale=scale, offset=offset))
        addr += register_count(kind) + 1  # a gap: a mis-sized read shows up as garbage, not as a neighbour
    return out


def site_plc_tags(site_path: str | Path, gateway: str, seed: int = 0, opcua_every: int = 2) -> list[PlcTag]:
    """The PLC tags of one gateway of a site file, valued by its signal models."""
    from simulators.run import load_site, site_models

    site = load_site(site_path)
    models = site_models(site, seed)[gateway]

    def fn(m: Any) -> ValueFn:
        return lambda t: float(m.value(np.array([t], dtype=np.float64))[0])

    integral = {tag for tag, m in models.items() if m.integral}
    return plan_tags({tag: fn(m) for tag, m in models.items()}, opcua_every=opcua_every, integral=integral)


@dataclass(frozen=True)
class LogEntry:
    tag: str
    t_ms: int
    v: float | None  # None: a malformed value was served (nothing numeric to store)
    proto: str
    q: str | None = None  # "bad" / "malformed" when a fault was injected


def read_log(path: str | Path) -> list[LogEntry]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(LogEntry(d["tag"], d["t_ms"], d["v"], d["proto"], d.get("q")))
    return out


class PlcSimulator:
    """Both servers and the update loop on one asyncio loop (its own thread with `start_thread`)."""

    def __init__(self, tags: list[PlcTag], *, log_path: str | Path, modbus_port: int, opcua_port: int,
                 update_s: float = 1.0, unit: int = 1, clock: Callable[[], float] = time.time,
                 host: str = "127.0.0.1"):
        self.tags = tags
        self.log_path = Path(log_path)
        self.modbus_port = modbus_port
        self.opcua_port = opcua_port
        self.update_s = update_s
        self.unit = unit
        self.clock = clock
        self.host = host
        self.t0 = clock()
        n_regs = max([t.address + register_count(t.type) for t in tags if t.protocol == "modbus"] + [1]) + 8
        self.image: dict[str, list[int]] = {"holding": [0] * n_regs, "input": [0] * n_regs}
        self.updates = 0
        self.faults: dict[str, str] = {}  # tag -> "bad" | "malformed": the next updates serve that instead
        self.paused = False  # updates stop (the PLC froze); nothing is logged while paused
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._modbus: Any = None
        self._opcua: Any = None
        self._nodes: dict[str, Any] = {}
        self._last_good: dict[str, float] = {}
        self._forced: set[str] = set()
        self._error: BaseException | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.opcua_port}/riskwatch/plc"

    # -- servers -------------------------------------------------------------------------------------------

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      current_registers: list[int], set_values: Any) -> None:
        """pymodbus calls this on every request: serve the current image (read-only PLC)."""
        block = {3: "holding", 4: "input"}.get(function_code)
        if block is None:
            return
        img = self.image[block]
        for i in range(min(len(current_registers), len(img) - start_address)):
            current_registers[i] = img[start_address + i]

    async def start_modbus(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        n = len(self.image["holding"])
        dev = SimDevice(self.unit, simdata=([SimData(0, count=16, values=False, datatype=DataType.BITS)],
                                            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                                            [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)],
                                            [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)]),
                        action=self._action)
        self._modbus = ModbusTcpServer(dev, address=(self.host, self.modbus_port))
        await self._modbus.serve_forever(background=True)

    async def stop_modbus(self) -> None:
        """The PLC goes away: listener closed and every client connection dropped."""
        if self._modbus is not None:
            await self._modbus.shutdown()
            self._modbus = None

    async def start_opcua(self) -> None:
        from asyncua import ua
        from asyncua.server.server import Server

        srv = Server()
        await srv.init()
        srv.set_endpoint(self.endpoint)
        srv.set_server_name("riskwatch simulated PLC")
        srv.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await srv.register_namespace("urn:riskwatch:plc")
        assert ns == 2, ns
        obj = await srv.nodes.objects.add_object(ua.NodeId(ua.String("plc"), ua.Int16(ns)), "plc")
        for t in self.tags:
            if t.protocol == "opcua":
                self._nodes[t.tag] = await obj.add_variable(ua.NodeId(ua.String(t.tag), ua.Int16(ns)), t.tag, 0.0,
                                                            varianttype=ua.VariantType.Double)
        await srv.start()
        self._opcua = srv

    # -- values --------------------------------------------------------------------------------------------

    async def update(self) -> None:
        """One PLC scan: every tag gets its value at this instant; logged after it is served."""
        from asyncua import ua
        from asyncua.ua.status_codes import StatusCodes

        now = self.clock()
        t_ms = int(now * 1000)
        stamp = ua.DateTime.fromtimestamp(t_ms / 1000, dt.UTC)
        lines = []
        for t in self.tags:
            v = t.value(now - self.t0)
            fault = self.faults.get(t.tag)
            if t.protocol == "modbus":
                regs, served = t.served(v)
                self.image[t.function][t.address:t.address + len(regs)] = regs
                lines.append({"tag": t.tag, "t_ms": t_ms, "v": served, "proto": "modbus"})
            else:
                if fault == "bad":
                    # A Bad status carries no usable value (OPC UA servers send none); the log records the last
                    # good value, which is what a reader can report with quality bad.
                    dv = ua.DataValue(ua.Variant(float(v), ua.VariantType.Double),
                                      StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadSensorFailure)),
                                      SourceTimestamp=stamp, ServerTimestamp=stamp)
                    lines.append({"tag": t.tag, "t_ms": t_ms, "v": self._last_good.get(t.tag), "proto": "opcua",
                                  "q": "bad"})
                elif fault == "malformed":
                    dv = ua.DataValue(ua.Variant("##ERR", ua.VariantType.String), SourceTimestamp=stamp,
                                      ServerTimestamp=stamp)
                    lines.append({"tag": t.tag, "t_ms": t_ms, "v": None, "proto": "opcua", "q": "malformed"})
                else:
                    dv = ua.DataValue(ua.Variant(float(v), ua.VariantType.Double), SourceTimestamp=stamp,
                                      ServerTimestamp=stamp)
                    lines.append({"tag": t.tag, "t_ms": t_ms, "v": float(v), "proto": "opcua"})
                    self._last_good[t.tag] = float(v)
                if fault == "malformed" or t.tag in self._forced:
                    # after a wrong-typed value the server's type check would refuse the good ones too
                    self._forced.add(t.tag)
                    await self._force_write(self._nodes[t.tag].nodeid, dv)
                else:
                    await self._opcua.write_attribute_value(self._nodes[t.tag].nodeid, dv)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(x) + "\n" for x in lines))
        self.updates += 1

    async def _force_write(self, nodeid: Any, dv: Any) -> None:
        """Serve a value of the wrong type (a string in a Double node), as a misbehaving server would.

        asyncua's server refuses such writes (BadTypeMismatch), so this does what its write_attribute_value does
        after the check: store the value and notify the subscriptions. Fault injection only.
        """
        from asyncua.ua.attribute_ids import AttributeIds

        attval = self._opcua.iserver.aspace._nodes[nodeid].attributes[AttributeIds.Value]
        attval.value = dv
        attval.value_callback = None
        for handle, callback in list(attval.datachange_callbacks.items()):
            await callback(handle, dv)

    async def run(self, stop: asyncio.Event, ready: Callable[[], None] | None = None) -> None:
        await self.start_opcua()
        await self.start_modbus()
        await self.update()  # the PLC holds a value before anyone can read it
        if ready:
            ready()
        try:
            next_t = time.monotonic()
            while not stop.is_set():
                next_t += self.update_s
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, next_t - time.monotonic()))
                except TimeoutError:
                    pass
                if not self.paused and not stop.is_set():
                    await self.update()
        finally:
            await self.stop_modbus()
            if self._opcua is not None:
                await self._opcua.stop()

    # -- test harness: the simulator on its own thread ------------------------------------------------------

    def start_thread(self, timeout: float = 30.0) -> None:
        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._stop = asyncio.Event()
            try:
                self._loop.run_until_complete(self.run(self._stop, self._ready.set))
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread
                self._error = exc
                self._ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=main, name="plc-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"PLC simulator did not start: {self._error!r}")

    def call(self, coro_fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the simulator's loop (e.g. `sim.call(sim.stop_modbus)`)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro_fn(), self._loop).result(timeout)

    def stop_thread(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    # -- the generator ---------------------------------------------------------------------------------------

    def edge_config(self, gateway: str, broker_url: str, buffer_path: str | Path, *,
                    password_file: str | Path | None = None, poll_s: float | None = None,
                    on_change: bool = True, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The edge agent's config (as a dict; `yaml.safe_dump` it) reading this PLC's tags.

        Modbus tags are polled at `poll_s` (default a quarter of the update period, so every update is seen)
        with `on_change` (one reading per new value); OPC UA tags are subscribed at the same interval.
        """
        poll = poll_s or self.update_s / 4
        modbus = [{"tag": t.tag, "function": t.function, "address": t.address, "type": t.type,
                   "byte_order": t.byte_order, "word_order": t.word_order, "scale": t.scale, "offset": t.offset,
                   "interval_s": poll, "on_change": on_change} for t in self.tags if t.protocol == "modbus"]
        opcua = [{"tag": t.tag, "node": t.node, "mode": "subscribe", "interval_s": poll}
                 for t in self.tags if t.protocol == "opcua"]
        sources: list[dict[str, Any]] = []
        if modbus:
            sources.append({"kind": "modbus", "name": "plc-modbus", "host": self.host, "port": self.modbus_port,
                            "unit": self.unit, "tags": modbus})
        if opcua:
            sources.append({"kind": "opcua", "name": "plc-opcua", "endpoint": self.endpoint, "tags": opcua})
        broker: dict[str, Any] = {"url": broker_url}
        if password_file is not None:
            broker["password_file"] = str(password_file)
        cfg: dict[str, Any] = {"version": 1, "gateway": gateway, "broker": broker,
                               "buffer": {"path": str(buffer_path)}, "sources": sources}
        for k, v in (extra or {}).items():
            cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
        return cfg


def main(argv: list[str] | None = None) -> int:
    import yaml

    p = argparse.ArgumentParser(prog="python -m simulators.plc", description=__doc__.split("\n\n")[0])
    p.add_argument("--site", default=str(Path(__file__).resolve().parent / "sites" / "county.yaml"))
    p.add_argument("--gateway", required=True)
    p.add_argument("--modbus-port", type=int, default=5020)
    p.add_argument("--opcua-port", type=int, default=4840)
    p.add_argument("--update-s", type=float, default=1.0)
    p.add_argument("--log", default="plc.jsonl", help="the PLC's own value log (JSON lines)")
    p.add_argument("--edge-config", help="also write the edge agent's YAML for this PLC here")
    p.add_argument("--broker-url", default="mqtts://127.0.0.1:8883", help="for --edge-config")
    p.add_argument("--buffer", default="edge-buffer.sqlite", help="for --edge-config")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pymodbus", "asyncua"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sim = PlcSimulator(site_plc_tags(args.site, args.gateway), log_path=args.log, modbus_port=args.modbus_port,
                       opcua_port=args.opcua_port, update_s=args.update_s)
    if args.edge_config:
        Path(args.edge_config).write_text(yaml.safe_dump(
            sim.edge_config(args.gateway, args.broker_url, args.buffer), allow_unicode=True, sort_keys=False))
    log.info("PLC %s: modbus %s:%d, OPC UA %s, log %s", args.gateway, sim.host, sim.modbus_port, sim.endpoint,
             sim.log_path)
    try:
        asyncio.run(sim.run(asyncio.Event()))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def edge_throughput(*, gateway: str, password: str, broker_url: str, db_url: str, tags: list[str],
                    workdir: str | Path, duration_s: float = 20.0, poll_s: float = 0.02) -> dict[str, float]:
    """The bench's `edge` part: readings/s through Modbus TCP -> edge agent -> broker -> collector -> readings.

    Serves `tags` (points of `gateway` in the registry; the collector must be running) from a simulated PLC
    whose values change every `poll_s`, runs the agent in-process polling every tag every `poll_s` (no
    on-change filter: every poll is a reading), and counts what reached the database during
    `duration_s` (after a 2 s warm-up). `broker_url` is the gateway's `mqtts://…?cafile=…` URL without the password.
    One request per tag per poll: coalescing contiguous registers into one read is the obvious next step.
    """
    import psycopg

    from core.services import free_port
    from ingest.edge.agent import Agent
    from ingest.edge.config import EdgeConfig

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    fns = {t: (lambda k: (lambda s: 50.0 + 10.0 * math.sin(s / 7.0 + k)))(i) for i, t in enumerate(tags)}
    sim = PlcSimulator(plan_tags(fns, opcua_every=0), log_path=work / "plc-bench.jsonl", modbus_port=free_port(),
                       opcua_port=free_port(), update_s=poll_s)
    pw = work / "bench.password"
    pw.write_text(password)
    pw.chmod(0o600)
    cfg = EdgeConfig.model_validate(sim.edge_config(
        gateway, broker_url, work / "bench-buffer.sqlite", password_file=pw, poll_s=poll_s, on_change=False,
        extra={"publish": {"flush_interval_s": 0.2, "max_readings_per_message": 2000, "window": 200}}))
    query = ("SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id WHERE p.gateway_id = %s "
             "AND p.tag = ANY(%s)")

    def stored() -> int:
        with psycopg.connect(db_url) as conn:
            row = conn.execute(query, (gateway, tags)).fetchone()
        return int(row[0]) if row else 0

    before = stored()
    sim.start_thread()
    agent = Agent(cfg)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    runner = threading.Thread(target=lambda: loop.run_until_complete(agent.run(stop)), daemon=True)
    runner.start()
    time.sleep(2.0)  # connect to PLC and broker
    t0, n0 = time.monotonic(), stored()
    time.sleep(duration_s)
    # Sustained rate: what reached the database during the window (the pipeline's lag is the same at both ends
    # once it runs steadily); `buffered_at_end` says how far the agent was behind at the end.
    n1 = stored()
    elapsed = time.monotonic() - t0
    polled = agent.buffer.depth().readings
    loop.call_soon_threadsafe(stop.set)
    runner.join(30)
    sim.stop_thread()
    return {"readings": float(n1 - n0), "seconds": elapsed, "readings_per_s": (n1 - n0) / elapsed,
            "tags": float(len(tags)), "poll_s": poll_s, "buffered_at_end": float(polled),
            "stored_before": float(before)}
