"""The bench's harness: private services in a scratch dir, the real collector as a subprocess, publisher
processes, and the throughput and alarm-latency parts. `simulators.bench.run` runs the parts in order.

Parts (each prints medians and ratios, never pass/fail):
- ``db``       binary COPY ceiling of the readings schema (rows/s)
- ``latency``  breach published -> alarm committed (p50/p99) under a moderate
               background load, through real Mosquitto and the real collector
               with the rule engine; the commit is observed with LISTEN/NOTIFY,
               which PostgreSQL delivers only when the transaction commits.
- ``alerting`` breach published -> webhook received (p50/p99/max) at a moderate background load,
               with the alerting dispatcher routing, grouping and delivering; split at the alarm's
               commit (``simulators.bench.alert_latency``).
- ``broker``   the QoS1 ceiling measured with Mosquitto's C clients (``simulators.bench.cclients``):
               a queued persistent session drained by `mosquitto_sub`, and publish + drain at once.
- ``scale``    batched end to end with 1, 2 and 3 `collect --group` members (leases), stored == sent,
               with the CPU of members, PostgreSQL, broker and machine over the same window.

The latency part and the scale part check their own accounting: every breach published is detected, every
reading sent is stored. A miss is returned to `run`, which records it as a failure (the CLI exits 1).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from core import registry
from core.db import migrate
from core.mqtt import configure
from core.services import COLLECTOR_USER, LocalServices, collector_users
from core.settings import MqttUrl
from ingest.batch import Readings
from ingest.writer import write_readings
from simulators.bench.cclients import (
    CPublisher,
    DrainResult,
    chunks,
    reading_lines,
    start_drain,
    subscribe_persistent,
    wait_drain,
    wipe_session,
)
from simulators.bench.cclients import client_args as cclients_args

#: Collectors of the ``scale`` part: 1, 2 and 3 members of a lease group.
SCALE_COLLECTORS = (1, 2, 3)
#: Logins the bench's broker holds: the scale part's members, then one spare for the C drain of the
#: ``broker`` part, so the drain never takes over a collector's session (client id = username).
BENCH_COLLECTOR_LOGINS = max(SCALE_COLLECTORS) + 1
DRAIN_USER = collector_users(instances=BENCH_COLLECTOR_LOGINS)[-1]

BENCH_CATALOG = """\
catalog: bench
title: {zh: 基准测试, en: Benchmark}
version: "b1"
industries: all
rules:
  - id: bench.temp
    title: {zh: 温度高, en: Temperature high}
    basis: benchmark only
    applies: {equipment: [bench_device], point: {quantity: temperature}}
    shape: threshold
    limits: {hi: 100, hihi: 120}
    deadband: 1
"""


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (figure, value, note)
    data: dict[str, Any] = field(default_factory=dict)
    #: What makes the run fail (the CLI exits non-zero): a check that must hold, such as every breach detected.
    failures: list[str] = field(default_factory=list)

    def add(self, key: str, label: str, value: float, unit: str, note: str = "") -> None:
        self.data[key] = value
        self.rows.append((label, f"{value:,.1f} {unit}" if value < 1000 else f"{value:,.0f} {unit}", note))


def _site(gateways: int, points_per_gateway: int) -> registry.SiteSpec:
    gws = [{"id": f"bench-gw-{g:02d}"} for g in range(gateways)]
    devices = [{
        "code": f"D{g:02d}", "name": f"基准设备{g}", "kind": "bench_device", "gateway": f"bench-gw-{g:02d}",
        "points": [{"tag": f"T{k:05d}", "quantity": "temperature", "unit": "°C"} for k in range(points_per_gateway)],
    } for g in range(gateways)]
    doc = {"version": 1, "enterprises": [{
        "id": "bench-ent", "name": "基准企业", "principal": {"name": "甲"}, "controller": {"name": "乙"},
        "plants": [{"id": "bench-plant", "name": "基准厂", "industry": "foundry", "gateways": gws,
                    "devices": devices}]}]}
    return registry.SiteSpec.model_validate(doc)


class BenchInterrupted(SystemExit):
    """SIGTERM or SIGHUP arrived: unwind, so the bench's private PostgreSQL, Mosquitto and collectors stop."""


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _teardown_on_signals() -> dict[int, _Handler]:
    """SIGTERM and SIGHUP (a `timeout`, a closed terminal, a CI runner giving up) end Python without running
    `finally` blocks, which left the private PostgreSQL and Mosquitto of a killed bench running; raise instead, so
    `Bench.__exit__` tears them down. Returns the previous handlers, restored at exit. SIGINT already raises
    KeyboardInterrupt; SIGKILL cannot be caught (then `RISKWATCH_DATA_DIR=<scratch dir>/data riskwatch services
    down` stops them; the bench prints its scratch dir first)."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise BenchInterrupted(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}


class Bench:
    """Private services in a temporary data dir, torn down at the end (also on SIGTERM and SIGHUP)."""

    dir: Path
    services: LocalServices

    def __init__(self, keep: bool = False):
        self.keep = keep
        self.collector: subprocess.Popen[bytes] | None = None
        self.members: dict[str, subprocess.Popen[bytes]] = {}  # the scale part's lease-group collectors

    def __enter__(self) -> Bench:
        # the scratch dir and the services exist from here to __exit__, not from construction
        self.dir = Path(tempfile.mkdtemp(prefix="rw-bench-"))
        self._signals = _teardown_on_signals()
        try:
            self.services = LocalServices(self.dir / "data")
            self.services.state.collector_instances = BENCH_COLLECTOR_LOGINS  # written by `load` (write_auth)
            self.services.up()
            migrate(self.services.db_url)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_collector()
            self.stop_members()
            if hasattr(self, "services"):
                self.services.destroy()
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
        finally:
            for sig, handler in self._signals.items():
                signal.signal(sig, handler)

    def load(self, site: registry.SiteSpec) -> dict[str, str]:
        with psycopg.connect(self.services.db_url) as conn:
            registry.upsert_site(conn, site)
            creds = {g.id: registry.issue_credentials(conn, g.id) for _, g in site.gateways()}
            self.services.mqtt.write_auth(registry.broker_credentials(conn))
        self.services.mqtt.reload()
        time.sleep(0.3)
        return creds

    def start_collector(self, catalog: Path) -> None:
        env = {**os.environ, "RISKWATCH_DB_URL": self.services.db_url,
               "RISKWATCH_MQTT_URL": self.services.mqtt.url(COLLECTOR_USER),
               "RISKWATCH_DATA_DIR": str(self.dir / "data")}
        log = (self.dir / "collector.log").open("wb")
        exe = Path(sys.executable).parent / "riskwatch"
        self.collector = subprocess.Popen([str(exe), "-v", "collect", "--catalog", str(catalog)], env=env,
                                          stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "MQTT connected" not in (self.dir / "collector.log").read_text():
            if self.collector.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("collector did not start:\n" + (self.dir / "collector.log").read_text()[-2000:])
            time.sleep(0.05)

    def start_member(self, user: str, catalog: Path, ttl_s: float, renew_s: float) -> subprocess.Popen[bytes]:
        """One `riskwatch collect --group` member under its own login (`riskwatch-collector[-N]`), as
        `riskwatch services collectors N` prints them; it logs to ``<user>.log`` in the bench dir."""
        env = {**os.environ, "RISKWATCH_DB_URL": self.services.db_url,
               "RISKWATCH_MQTT_URL": self.services.mqtt.url(user),
               "RISKWATCH_DATA_DIR": str(self.dir / "data")}
        path = self.dir / f"{user}.log"
        exe = Path(sys.executable).parent / "riskwatch"
        with path.open("ab") as log:
            log.write(b"--- start\n")
            p = subprocess.Popen([str(exe), "-v", "collect", "--catalog", str(catalog), "--group",
                                  "--lease-ttl", f"{ttl_s:g}", "--lease-renew", f"{renew_s:g}"], env=env,
                                 stdout=log, stderr=subprocess.STDOUT)
        self.members[user] = p
        deadline = time.monotonic() + 60
        while "MQTT connected" not in path.read_text().rsplit("--- start\n", 1)[-1]:
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector {user} did not start:\n" + path.read_text()[-2000:])
            time.sleep(0.05)
        return p

    def stop_members(self) -> None:
        """SIGTERM every member (each flushes and releases its leases), then wait for all."""
        for p in self.members.values():
            if p.poll() is None:
                p.terminate()
        for p in self.members.values():
            p.wait(60)
        self.members.clear()

    def gateway_url(self, gateway: str, password: str) -> str:
        """A gateway's broker URL (mqtts, the private CA): a string, so a publisher process can take it."""
        return self.services.mqtt.url(gateway, password)

    def stop_collector(self) -> None:
        if self.collector is not None and self.collector.poll() is None:
            self.collector.terminate()
            self.collector.wait(60)
        self.collector = None


# --- database ceiling -------------------------------------------------------------------------


def db_ceiling(db_url: str, rows: int, batch: int, points: int) -> tuple[float, list[float]]:
    """Binary COPY of pre-built rows into `readings`: rows/s per batch, median."""
    rng = np.random.default_rng(0)
    t0 = int(time.time() * 1e6) - 3600 * 1_000_000
    rates = []
    with psycopg.connect(db_url) as conn:
        done = 0
        k = 0
        while done < rows:
            n = min(batch, rows - done)
            idx = np.arange(done, done + n)
            r = Readings((idx % points + 1_000_000).astype(np.int32), t0 + (idx // points) * 1000 + k,
                         rng.normal(50, 1, n), np.zeros(n, np.int16))
            start = time.perf_counter()
            with conn.transaction():
                write_readings(conn, r)
            rates.append(n / (time.perf_counter() - start))
            done += n
        conn.execute("DELETE FROM readings WHERE point_id >= 1000000")
        conn.commit()
    return statistics.median(rates), rates


# --- load generator -----------------------------------------------------------------------------


def gateway_client(url: str, protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311) -> mqtt.Client:
    """A connected paho client (network loop running) for a gateway URL: TLS verified, client id = username.

    The broker binds client ids to usernames, so a second connection under one gateway's account would take the
    first one over: every concurrent connection of the bench has an account of its own.
    """
    u = MqttUrl.parse(url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=u.username or "", protocol=protocol)
    configure(c, u)
    c.connect(u.host, u.port)
    c.loop_start()
    return c


def publisher(url: str, tags: list[str], rate: float, batch: int, seconds: float, counter: Any,
               start_ms: int = 0, topic: str | None = None, limit: int | None = None,
               received: Any = None) -> None:
    """Load: `rate` readings/s (inf: as fast as the broker acknowledges) in messages of `batch` readings.

    Each point's timestamps advance by 1 ms per pass over the points, from `start_ms`, so every
    reading is distinct: the stored count can be checked exactly. batch == 1 sends bare readings.
    With `received` (a shared counter) the publisher also subscribes to its own `topic` and counts what
    the broker delivers back to it (the broker ceiling's receiving side).
    """
    u = MqttUrl.parse(url)
    gw = u.username or ""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gw, protocol=mqtt.MQTTv311)
    configure(c, u)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(2000)
    got = [0]
    subscribed = threading.Event()
    if received is not None:
        def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
            got[0] += 1

        c.on_message = on_message
        c.on_subscribe = lambda *_a: subscribed.set()
    c.connect(u.host, u.port)
    c.loop_start()
    if received is not None:
        if topic is None:
            raise ValueError("a publisher that counts what it receives needs its topic")
        c.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            raise RuntimeError(f"{gw}: no SUBACK for {topic}")
    topic = topic or f"rw/v1/{gw}/telemetry"
    base = start_ms or int(time.time() * 1000) - 120_000
    start = time.monotonic()
    sent = 0
    k = 0
    ntags = len(tags)
    last: mqtt.MQTTMessageInfo | None = None
    paced = math.isfinite(rate)
    while time.monotonic() - start < seconds and (limit is None or sent < limit):
        due = int((time.monotonic() - start) * rate) if paced else sent + batch * 50
        if limit is not None:
            due = min(due, limit)
        while sent + batch <= due:
            if batch == 1:
                payload = orjson.dumps({"tag": tags[k % ntags], "v": 50.0, "ts": base + k // ntags})
            else:
                payload = orjson.dumps({"readings": [{"tag": tags[(k + j) % ntags], "v": 50.0,
                                                      "ts": base + (k + j) // ntags} for j in range(batch)]})
            info = c.publish(topic, payload, qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                time.sleep(0.001)  # the broker's window is full: wait, then send the same readings
                continue
            last = info
            k += batch
            sent += batch
        if received is not None:
            received.value = got[0]  # one writer per counter: no lock
        if paced:
            time.sleep(0.005)
    if last is not None:
        last.wait_for_publish(120)
    if received is not None:
        received.value = got[0]
    with counter.get_lock():
        counter.value += sent
    c.disconnect()
    c.loop_stop()


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return cpu, hwm


def _inserted(db_url: str) -> int:
    """Rows inserted into the readings chunks (statistics counters: cheap, unlike count(*))."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            """SELECT coalesce(sum(s.n_tup_ins), 0) FROM pg_stat_user_tables s
               JOIN timescaledb_information.chunks c
                 ON c.chunk_schema = s.schemaname AND c.chunk_name = s.relname
               WHERE c.hypertable_name = 'readings'""").fetchone()
    return int(row[0]) if row else 0


def _count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


@dataclass
class E2E:
    sent: int
    stored: int
    rate: float  # sustained readings/s stored, over the steady window
    cpu: float  # collector CPU cores used over the window (1.0 = one core)
    rss: int  # collector peak RSS, bytes


def end_to_end(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, catalog: Path, *, batch: int,
               readings: int, procs: int, progress: Callable[[str], None]) -> E2E:
    """Sustained throughput of collector + rules + database, measured on a backlog.

    With the collector stopped (its persistent session keeps collecting), gateways in separate
    processes publish `readings` at QoS1; then the collector starts and drains the backlog. The rate
    is taken between the first stored row and the last, so it excludes the collector's start-up and
    the publishers' CPU (on this 2-core machine they would otherwise compete with it). At the end the
    stored count must equal exactly what the publishers sent.
    """
    with psycopg.connect(bench.services.db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
        conn.execute("TRUNCATE readings_1m")
    bench.stop_collector()
    gws = [g.id for _, g in site.gateways()][:procs]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    counter = mp.Value("q", 0)
    start_ms = int(time.time() * 1000) - 240_000 - int(batch == 1) * 60_000
    per = readings // len(gws)
    ps = [mp.Process(target=publisher, args=(bench.gateway_url(g, creds[g]), tags[g], math.inf, batch, 3600,
                                               counter, start_ms, None, per), daemon=True) for g in gws]
    t_pub = time.monotonic()
    for p in ps:
        p.start()
    for p in ps:
        p.join(600)
    sent = int(counter.value)
    progress(f"e2e batch={batch}: {sent:,} readings published in {time.monotonic() - t_pub:.1f} s; draining")
    bench.start_collector(catalog)
    assert bench.collector is not None
    pid = bench.collector.pid
    stored = 0
    t_first = t_last = 0.0
    n_first = 0
    deadline = time.monotonic() + 900
    while stored < sent and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = _inserted(bench.services.db_url)
        now = time.monotonic()
        if stored and not t_first:
            t_first, n_first, cpu_first = now, stored, _proc_stat(pid)[0]
        t_last = now
    cpu1, rss = _proc_stat(pid)
    rate = (stored - n_first) / (t_last - t_first) if t_last > t_first else 0.0
    stored = _count(bench.services.db_url)  # the exact check
    progress(f"e2e batch={batch}: sent {sent:,}, stored {stored:,} at {rate:,.0f}/s")
    return E2E(sent, stored, rate, (cpu1 - cpu_first) / max(t_last - t_first, 1e-9) if t_first else 0.0, rss)


@dataclass
class BrokerCeiling:
    """The broker measured with C clients: one drain, `procs` publishers, single-reading QoS1 messages."""

    messages: int  # published, each acknowledged (PUBACK) by the broker
    publish_rate: float  # messages/s, first publisher start -> last PUBACK (prefilled: into the queued session)
    drain: DrainResult  # what the drain received, with its first/last stamps
    mode: str  # "prefilled" (a queued persistent session drained) or "live" (publish and drain at once)

    @property
    def complete(self) -> bool:
        return self.drain.received == self.messages


def broker_ceiling(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, *, messages: int, procs: int,
                   mode: str = "prefilled", progress: Callable[[str], None] = lambda _m: None) -> BrokerCeiling:
    """The broker's QoS1 ceiling for single-reading messages, measured with Mosquitto's C clients.

    `procs` gateways each run `mosquitto_pub -l -q 1` over TLS on their telemetry topic, fed JSON v1 single
    readings (`cclients.reading_lines`); one `mosquitto_sub -q 1 -C messages` drain under a spare collector
    login (`DRAIN_USER`, which the ACL lets read ``rw/v1/#``) receives them, stamping each (`-F %U`).

    ``prefilled`` (the ratio's denominator): the drain's persistent session subscribes first and leaves, the
    publishers fill it, then the drain connects and empties it. That is exactly what the ``e2e`` part asks of
    the collector (a backlog queued in its persistent session while it was stopped), so the single-reading
    ratio compares like with like: the broker delivering a queued session to one QoS1 subscriber, acknowledging
    each PUBACK. ``live``: the drain is connected while the publishers run (the broker receives and delivers at
    once). Rates are taken from the first message the drain received to the last one: neither process start
    nor TLS handshakes count.

    Needs no collector session subscribed to telemetry (the run wipes the collector's before this part):
    otherwise the broker would also queue every message for it.
    """
    if mode not in ("prefilled", "live"):
        raise ValueError(f"mode must be prefilled or live, got {mode!r}")
    gws = [g.id for _, g in site.gateways()][:procs]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    per = messages // len(gws)
    start_ms = int(time.time() * 1000) - 600_000
    work = bench.dir / f"cpub-{mode}"
    pubs = [CPublisher(bench.gateway_url(g, creds[g]), f"rw/v1/{g}/telemetry",
                       chunks(reading_lines(tags[g], per, start_ms)), work, g) for g in gws]
    total = per * len(gws)
    drain_url = bench.services.mqtt.url(DRAIN_USER)
    topic = "rw/v1/+/telemetry"
    subscribe_persistent(drain_url, topic)
    out = bench.dir / f"drain-{mode}.stamps"
    drain = None if mode == "prefilled" else start_drain(drain_url, topic, total, out)
    if drain is not None:
        time.sleep(0.5)  # connected; a message before that is queued in the session, not lost
    t0 = time.monotonic()
    for p in pubs:
        p.start()
    for p in pubs:
        p.join(900)
    t_pub = time.monotonic() - t0
    failed = [(p.name, p.rc, p.stderr.decode(errors="replace")[-300:]) for p in pubs if p.rc]
    if failed:
        raise RuntimeError(f"mosquitto_pub failed: {failed}")
    progress(f"broker ({mode}): {total:,} messages published by {len(gws)} mosquitto_pub in {t_pub:.1f} s")
    if drain is None:
        drain = start_drain(drain_url, topic, total, out)
    result = wait_drain(drain, out, total, timeout_s=max(60.0, total / 2_000))
    wipe_session(drain_url)  # nothing of this part stays queued on the broker
    return BrokerCeiling(total, total / t_pub if t_pub > 0 else 0.0, result, mode)


@dataclass(frozen=True)
class Breach:
    """One limit breach the latency part published: a reading above `hi`, cleared 1 ms later."""

    gateway: str
    tag: str
    ts_ms: int  # data time of the breaching reading
    value: float

    def describe(self) -> str:
        t = time.strftime("%H:%M:%S", time.gmtime(self.ts_ms / 1000)) + f".{self.ts_ms % 1000:03d}Z"
        return f"{self.gateway}/{self.tag} at {t} ({self.ts_ms}) value {self.value:g}"


@dataclass
class Accounting:
    """Breaches published vs activations committed, matched on the breach's data time (ms)."""

    latencies: list[float]  # seconds, publish -> commit seen, in publish order
    missing: list[int]  # data times published and never seen activated
    unexpected: list[int]  # activations at a data time no breach of this run had


def account_breaches(published: dict[int, float], detected: dict[int, float]) -> Accounting:
    """Every breach accounted for: published (data time -> wall time sent) against detected (data time -> wall
    time its activation's commit was heard). Pure, so the bench's own bookkeeping is unit-tested."""
    lat = [detected[t] - published[t] for t in sorted(published) if t in detected]
    return Accounting(lat, sorted(t for t in published if t not in detected),
                      sorted(t for t in detected if t not in published))


@dataclass
class LatencyRun:
    breaches: dict[int, Breach]  # by data time (ms)
    published: dict[int, float]  # data time -> wall time published
    detected: dict[int, float]  # data time -> wall time the activation's commit was heard
    window_end: float  # wall time the last breach's own listening window closed
    evidence: dict[int, str] = field(default_factory=dict)  # for a missing breach: what the database holds

    @property
    def accounting(self) -> Accounting:
        return account_breaches(self.published, self.detected)

    @property
    def late(self) -> int:
        """Breaches whose commit was heard only after the last breach's window: what a bench that stops listening
        there (as this part did before issue 15) reports as missing."""
        return sum(1 for t in self.detected.values() if t > self.window_end)

    def missing_lines(self) -> list[str]:
        return [self.breaches[t].describe() + (f"; {self.evidence[t]}" if t in self.evidence else "")
                for t in self.accounting.missing]


def alarm_latency(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, *, load_rate: float,
                  breaches: int, interval_s: float, progress: Callable[[str], None],
                  grace_s: float = 15.0) -> LatencyRun:
    """Publish `breaches` limit breaches on one point while others publish background load; every breach's
    publish -> alarm-commit latency.

    Each breach is a reading above `hi` cleared by one at 50 a millisecond later (one message), one breach every
    `interval_s`. The commit is heard on LISTEN riskwatch_alarm (delivered at commit). After the last breach the
    part keeps listening until every breach is heard or `grace_s` passes: a breach still missing then is a
    breach the pipeline did not detect, and `LatencyRun.missing_lines` names it with what the database holds.
    """
    gws = [g.id for _, g in site.gateways()]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    probe_gw, load_gws = gws[0], gws[1:]
    seconds = breaches * interval_s + 5
    counter = mp.Value("q", 0)
    procs = [mp.Process(target=publisher, args=(bench.gateway_url(g, creds[g]), tags[g], load_rate / len(load_gws),
                                                  100, seconds, counter), daemon=True) for g in load_gws]
    for p in procs:
        p.start()
    probe = gateway_client(bench.gateway_url(probe_gw, creds[probe_gw]))  # not a load gateway: its own account
    tag = tags[probe_gw][0]
    run = LatencyRun({}, {}, {}, 0.0)

    def hear(conn: psycopg.Connection[Any], until: float) -> None:
        while time.time() < until:
            r, _, _ = select.select([conn.fileno()], [], [], max(0.0, until - time.time()))
            if not r:
                continue
            for n in conn.notifies(timeout=0, stop_after=100):
                d = json.loads(n.payload)
                if d["event"] == "activate" and d["rule"] == "bench.temp:hi":
                    run.detected.setdefault(int(round(d["time"] * 1000)), time.time())

    with psycopg.connect(bench.services.db_url, autocommit=True) as conn:
        conn.execute("LISTEN riskwatch_alarm")
        time.sleep(2.0)  # load running
        for b in range(breaches):
            ts = int(time.time() * 1000)
            run.breaches[ts] = Breach(probe_gw, tag, ts, 150.0)
            run.published[ts] = time.time()
            probe.publish(f"rw/v1/{probe_gw}/telemetry",
                          orjson.dumps({"readings": [{"tag": tag, "v": 150.0, "ts": ts},
                                                     {"tag": tag, "v": 50.0, "ts": ts + 1}]}), qos=1)
            hear(conn, time.time() + interval_s)
            if (b + 1) % 20 == 0:
                progress(f"latency: {b + 1}/{breaches} breaches")
        run.window_end = time.time()
        deadline = run.window_end + grace_s
        while run.accounting.missing and time.time() < deadline:
            hear(conn, min(deadline, time.time() + 0.2))
        for t in run.accounting.missing:
            run.evidence[t] = _breach_evidence(conn, probe_gw, tag, t)
    probe.disconnect()
    probe.loop_stop()
    for p in procs:
        p.join(seconds + 60)
    return run


def _breach_evidence(conn: psycopg.Connection[Any], gateway: str, tag: str, ts_ms: int) -> str:
    """What the database holds for a breach not heard: is the reading stored, and which alarm events are there."""
    stored = conn.execute(
        "SELECT r.value FROM readings r JOIN points p ON p.id = r.point_id WHERE p.gateway_id = %s AND p.tag = %s"
        " AND r.time = to_timestamp(%s / 1000.0)", (gateway, tag, ts_ms)).fetchall()
    events = conn.execute(
        "SELECT event, (extract(epoch FROM time) * 1000)::bigint FROM alarm_events WHERE rule_id = 'bench.temp:hi'"
        " AND time BETWEEN to_timestamp(%s / 1000.0) AND to_timestamp(%s / 1000.0) ORDER BY time",
        (ts_ms - 1000, ts_ms + 1000)).fetchall()
    return (f"reading stored: {'yes, ' + str(stored[0][0]) if stored else 'no'}; alarm events within ±1 s: "
            + (", ".join(f"{e}@{t}" for e, t in events) or "none"))


def wait_caught_up(db_url: str, quiet_s: float = 2.0, timeout_s: float = 180.0) -> float:
    """Wait until the collector has stored everything queued for it (no row inserted for `quiet_s`): a part that
    left a backlog in the collector's session would otherwise bleed into the next part's figures. Returns the
    seconds waited beyond `quiet_s` (how far behind the load left the collector)."""
    t0 = time.monotonic()
    last, since = _inserted(db_url), time.monotonic()
    while time.monotonic() - since < quiet_s and time.monotonic() - t0 < timeout_s:
        time.sleep(0.25)
        n = _inserted(db_url)
        if n != last:
            last, since = n, time.monotonic()
    return max(0.0, since - t0)


# --- several collectors ---------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (from /proc): a PostgreSQL postmaster and its backends."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for p in pids:
        try:
            total += _proc_stat(p)[0]
        except (OSError, IndexError, ValueError):
            pass  # exited between the listing and the read
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (idle and iowait are not busy)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(f) - f[3] - f[4]) / tck, sum(f) / tck


@dataclass
class ScaleRun:
    """Batched end to end with `collectors` members of a lease group, on one broker and one database."""

    collectors: int
    sent: int
    stored: int
    rate: float  # readings/s stored, publishers' start -> the last row stored
    held: dict[str, int]  # gateways per member, as the leases spread them
    cores: dict[str, float]  # CPU over the window, in cores: each member, postgres, broker, machine
    moved: list[str] = field(default_factory=list)  # gateways whose lease changed hands (or epoch) during the run


def fair_spread(held: dict[str, int], members: list[str], gateways: int) -> bool:
    """The leases have settled: every member holds its fair share (⌊G/N⌋ or ⌈G/N⌉), all G gateways held once."""
    n = len(members)
    return (sorted(held) == sorted(members) and sum(held.values()) == gateways
            and all(gateways // n <= held[m] <= -(-gateways // n) for m in members))


def _held(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        return {str(r[0]): int(r[1]) for r in conn.execute(
            "SELECT collector_id, count(*) FROM gateway_leases WHERE collector_id IS NOT NULL"
            " AND expires_at > now() GROUP BY collector_id")}


def _leases(db_url: str) -> dict[str, tuple[str | None, int]]:
    with psycopg.connect(db_url) as conn:
        return {str(r[0]): (r[1], int(r[2])) for r in conn.execute(
            "SELECT gateway_id, collector_id, epoch FROM gateway_leases")}


def scale_run(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, catalog: Path, *, collectors: int,
              readings: int, batch: int, progress: Callable[[str], None], ttl_s: float = 6.0,
              renew_s: float = 1.0) -> ScaleRun:
    """`readings` batched readings over every gateway of `site`, stored by `collectors` lease-group members.

    The members are `riskwatch collect --group` under `riskwatch-collector`, `-2`, `-3` (the logins
    `riskwatch services collectors N` creates), started on an empty `readings` table. Once the leases have
    spread the gateways fairly and a probe reading of every gateway has been stored (each member subscribed
    to what it holds), one `mosquitto_pub -l` per gateway publishes its share as fast as the broker takes it
    (C publishers: a few per cent of a core, so the publishers do not take the collectors' CPU as paho ones
    would). The rate is taken from the publishers' start to the last row stored (the statistics counters lag
    by up to a second, which only lengthens the window: a lower bound); CPU of each member, of PostgreSQL (the
    postmaster and its backends), of the broker and of the whole machine over the same window says what bounds
    it. Stored must equal sent, exactly (count(*) of the readings at or after the run's first time).
    """
    db = bench.services.db_url
    bench.stop_collector()
    bench.stop_members()
    # A stopped collector's persistent session keeps its subscriptions, so the broker queued copies of everything
    # published since (the single collector's rw/v1/#, a member's gateways of the previous run). Delivered at the
    # next start, they would be drained before this run's data and counted in its time: each run starts clean.
    for user in collector_users(instances=max(SCALE_COLLECTORS)):
        wipe_session(bench.services.mqtt.url(user))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("TRUNCATE readings")
        conn.execute("TRUNCATE readings_1m")
    gws = [g.id for _, g in site.gateways()]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    per = readings // len(gws)
    start_ms = int(time.time() * 1000)
    work = bench.dir / f"scale-{collectors}"
    pubs = [CPublisher(bench.gateway_url(g, creds[g]), f"rw/v1/{g}/telemetry",
                       chunks(reading_lines(tags[g], per, start_ms, batch=batch)), work, g) for g in gws]
    sent = per * len(gws)
    members = collector_users(instances=collectors)
    t_start = time.monotonic()
    for m in members:
        bench.start_member(m, catalog, ttl_s, renew_s)
    deadline = time.monotonic() + 120
    while not fair_spread(_held(db), members, len(gws)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"scale {collectors}: leases did not spread: {_held(db)}")
        time.sleep(0.2)
    time.sleep(2 * renew_s + 0.5)  # a gateway that moved while settling is unsubscribed by its first holder
    # Probes, 1 ms before the run's data: one reading per gateway until each is stored (subscriptions live).
    stored_probe: set[str] = set()
    probe_ms = start_ms - 1
    while set(gws) - stored_probe:
        if time.monotonic() > deadline:
            raise RuntimeError(f"scale {collectors}: no probe stored for {sorted(set(gws) - stored_probe)}")
        for g in sorted(set(gws) - stored_probe):
            subprocess.run(["mosquitto_pub", *cclients_args(bench.gateway_url(g, creds[g])), "-q", "1",
                            "-t", f"rw/v1/{g}/telemetry", "-m",
                            orjson.dumps({"tag": tags[g][0], "v": 50.0, "ts": probe_ms}).decode()],
                           check=True, capture_output=True, timeout=30)
        probe_ms -= 1
        time.sleep(1.0)
        with psycopg.connect(db) as conn:
            # this run's probes only (the probe tag, times just below the run's): nothing older counts
            stored_probe = {str(r[0]) for r in conn.execute(
                "SELECT DISTINCT p.gateway_id FROM readings r JOIN points p ON p.id = r.point_id"
                " WHERE p.tag = ANY(%s) AND r.time > to_timestamp(%s / 1000.0) AND r.time < to_timestamp(%s / 1000.0)",
                (sorted({tags[g][0] for g in gws}), probe_ms, start_ms))}
    progress(f"scale {collectors}: leases {_held(db)}, probes stored after {time.monotonic() - t_start:.1f} s; "
             f"publishing {sent:,} readings")
    held = _held(db)
    before = _leases(db)
    base = _inserted(db)
    pids = {m: p.pid for m, p in bench.members.items()}
    pg_pid, mq_pid = bench.services.pg.pid(), bench.services.mqtt.pid()

    def sample() -> dict[str, float]:
        out = {m: _cpu_of([pid]) for m, pid in pids.items()}
        out["postgres"] = _cpu_of(_descendants(pg_pid)) if pg_pid else 0.0
        out["broker"] = _cpu_of([mq_pid]) if mq_pid else 0.0
        out["machine"] = _machine_busy()[0]
        return out

    first = sample()
    t_pub = time.monotonic()
    for p in pubs:
        p.start()
    stored = 0
    t_done = t_pub
    last_change, prev = time.monotonic(), -1
    # A run that trickles (leases moving back and forth) never stalls for 20 s: bound it as a whole too, at
    # what the slowest rate worth measuring (10,000 readings/s) needs, three times over.
    give_up = t_pub + max(120.0, 3 * sent / 10_000)
    while stored < sent:
        time.sleep(0.2)
        stored = _inserted(db) - base
        now = time.monotonic()
        if stored != prev:
            last_change, prev, t_done = now, stored, now
        elif now - last_change > 20:
            break  # stalled: the exact count below says what is missing
        if now > give_up:
            progress(f"scale {collectors}: gave up after {now - t_pub:.0f} s with {stored:,} of {sent:,} stored")
            break
    last, t_sampled = sample(), time.monotonic()
    for p in pubs:
        p.join(120)
    window = max(t_done - t_pub, 1e-9)
    rate = stored / window
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM readings WHERE time >= to_timestamp(%s / 1000.0)",
                           (start_ms,)).fetchone()
    exact = int(row[0]) if row else 0
    after = _leases(db)
    moved = sorted(f"{g}: {before.get(g)} -> {after.get(g)}" for g in gws if before.get(g) != after.get(g))
    cores = {k: (last[k] - first[k]) / max(t_sampled - t_pub, 1e-9) for k in last}
    failed = [(p.name, p.rc) for p in pubs if p.rc]
    if failed:
        progress(f"scale {collectors}: mosquitto_pub failed: {failed}")
    bench.stop_members()
    progress(f"scale {collectors}: sent {sent:,}, stored {exact:,} at {rate:,.0f}/s; cores "
             + ", ".join(f"{k} {v:.2f}" for k, v in cores.items())
             + (f"; leases moved during the run: {moved}" if moved else ""))
    return ScaleRun(collectors, sent, exact, rate, held, cores, moved)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")
