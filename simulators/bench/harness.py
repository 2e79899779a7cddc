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
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from core import registry
from core.db import migrate
from core.mqtt import configure
from core.services import COLLECTOR_USER, LocalServices
from core.settings import MqttUrl
from ingest.batch import Readings
from ingest.writer import write_readings

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


class Bench:
    """Private services in a temporary data dir, torn down at the end."""

    dir: Path
    services: LocalServices

    def __init__(self, keep: bool = False):
        self.keep = keep
        self.collector: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Bench:
        # the scratch dir and the services exist from here to __exit__, not from construction
        self.dir = Path(tempfile.mkdtemp(prefix="rw-bench-"))
        self.services = LocalServices(self.dir / "data")
        self.services.up()
        migrate(self.services.db_url)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_collector()
        self.services.destroy()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

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


def broker_ceiling(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, *, seconds: float,
                   procs: int) -> float:
    """Publish -> receive of single-reading messages at QoS1, no processing: messages/s received.

    Each publisher process sends to its gateway's own command topic (`rw/v1/{gw}/cmd/bench`, which the ACL
    lets a gateway write and read) and receives there on the same connection. A separate sink would need an
    account allowed to read every gateway's topics — the collector's, and under the collector's name it would
    take over the running collector's session (client id = username).
    """
    gws = [g.id for _, g in site.gateways()][:procs]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    counter = mp.Value("q", 0)
    received = [mp.Value("q", 0, lock=False) for _ in gws]
    ps = [mp.Process(target=publisher, args=(bench.gateway_url(g, creds[g]), tags[g], math.inf, 1, seconds,
                                               counter, 0, f"rw/v1/{g}/cmd/bench", None, r), daemon=True)
          for g, r in zip(gws, received, strict=True)]

    def got() -> int:
        return sum(int(r.value) for r in received)

    for p in ps:
        p.start()
    time.sleep(0.2 * seconds)
    a, ta = got(), time.monotonic()
    time.sleep(0.7 * seconds)
    b, tb = got(), time.monotonic()
    for p in ps:
        p.join(seconds + 120)
    return (b - a) / (tb - ta)


def alarm_latency(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, *, load_rate: float,
                  breaches: int, interval_s: float, progress: Callable[[str], None]) -> list[float]:
    """Publish `breaches` limit breaches on one point while others publish background load; return
    breach-publish -> alarm-commit latencies in seconds."""
    gws = [g.id for _, g in site.gateways()]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    probe_gw, load_gws = gws[0], gws[1:]
    seconds = breaches * interval_s + 5
    counter = mp.Value("q", 0)
    procs = [mp.Process(target=publisher, args=(bench.gateway_url(g, creds[g]), tags[g], load_rate / len(load_gws),
                                                  100, seconds, counter), daemon=True) for g in load_gws]
    for p in procs:
        p.start()
    lat: list[float] = []
    probe = gateway_client(bench.gateway_url(probe_gw, creds[probe_gw]))  # not a load gateway: its own account
    sent_at: dict[int, float] = {}
    with psycopg.connect(bench.services.db_url, autocommit=True) as conn:
        conn.execute("LISTEN riskwatch_alarm")
        time.sleep(2.0)  # load running
        tag = tags[probe_gw][0]
        for b in range(breaches):
            ts = int(time.time() * 1000)
            sent_at[ts] = time.time()
            probe.publish(f"rw/v1/{probe_gw}/telemetry",
                          orjson.dumps({"readings": [{"tag": tag, "v": 150.0, "ts": ts},
                                                     {"tag": tag, "v": 50.0, "ts": ts + 1}]}), qos=1)
            deadline = time.time() + interval_s
            while time.time() < deadline:
                r, _, _ = select.select([conn.fileno()], [], [], max(0.0, deadline - time.time()))
                if not r:
                    continue
                for n in conn.notifies(timeout=0, stop_after=100):
                    d = json.loads(n.payload)
                    if d["event"] == "activate" and d["rule"] == "bench.temp:hi":
                        key = int(round(d["time"] * 1000))
                        if key in sent_at:
                            lat.append(time.time() - sent_at.pop(key))
            if (b + 1) % 20 == 0:
                progress(f"latency: {b + 1}/{breaches} breaches")
    probe.disconnect()
    probe.loop_stop()
    for p in procs:
        p.join(seconds + 60)
    return lat


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")
