"""`riskwatch bench`: figures measured on private services, all in one run.

Parts (each prints medians and ratios, never pass/fail):
- ``db``       binary COPY ceiling of the readings schema (rows/s)
- ``latency``  breach published -> alarm committed (p50/p99) under a moderate
               background load, through real Mosquitto and the real collector
               with the rule engine; the commit is observed with LISTEN/NOTIFY,
               which PostgreSQL delivers only when the transaction commits.
- ``alerting`` breach published -> webhook received (p50/p99/max) at a moderate background load,
               with the alerting dispatcher routing, grouping and delivering; split at the alarm's
               commit (``simulators.bench_alerting``).
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
from paho.mqtt.enums import CallbackAPIVersion

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

    def __init__(self, keep: bool = False):
        self.dir = Path(tempfile.mkdtemp(prefix="rw-bench-"))
        self.keep = keep
        self.services = LocalServices(self.dir / "data")
        self.collector: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Bench:
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


def gateway_client(url: str, protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311) -> mqtt.Client:
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


def _publisher(url: str, tags: list[str], rate: float, batch: int, seconds: float, counter: Any,
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
    ps = [mp.Process(target=_publisher, args=(bench.gateway_url(g, creds[g]), tags[g], math.inf, batch, 3600,
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
    ps = [mp.Process(target=_publisher, args=(bench.gateway_url(g, creds[g]), tags[g], math.inf, 1, seconds,
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
    procs = [mp.Process(target=_publisher, args=(bench.gateway_url(g, creds[g]), tags[g], load_rate / len(load_gws),
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


def run(parts: list[str], quick: bool, progress: Callable[[str], None], *, duration: float | None = None,
        points: int | None = None, batch: int = 100, procs: int = 2) -> Figures:
    """Every part on the same private services, in one run, so ratios compare like with like."""
    fig = Figures()
    dur = duration or (8.0 if quick else 30.0)
    n_points = points or (2_000 if quick else 100_000)
    with Bench() as bench:
        db = e2e_b = e2e_1 = broker = None
        if "db" in parts:
            rows = 300_000 if quick else 2_000_000
            progress(f"db: binary COPY of {rows:,} rows")
            db, _ = db_ceiling(bench.services.db_url, rows, 20_000, 10_000)
            fig.add("db_copy_rows_per_s", "数据库上限 DB ceiling: binary COPY", db, "rows/s",
                    "median of batches of 20k rows")
        if "grafana" in parts:
            from simulators import bench_grafana

            progress("grafana: 30 days of one 1 Hz point; panel queries from rollups and raw")
            g = bench_grafana.run(bench.services.db_url, quick)
            fig.data.update(g)
            fig.add("grafana_30d_rollup_ms", "Grafana 30天面板 30-day panel (rollups) median",
                    g["grafana_30d_rollup_ms"], "ms", "target ≤ 50 ms")
            fig.add("grafana_24h_raw_ms", "Grafana 24小时面板 24-hour panel (raw) median",
                    g["grafana_24h_raw_ms"], "ms", "target ≤ 100 ms")
        if not {"broker", "e2e", "latency", "alerting"} & set(parts):
            return fig
        gws = max(procs, 2) + 1
        site = _site(gateways=gws, points_per_gateway=max(1, n_points // gws))
        progress(f"loading a registry of {n_points:,} points")
        creds = bench.load(site)
        cat = bench.dir / "bench-catalog.yaml"
        cat.write_text(BENCH_CATALOG)
        t_load = time.monotonic()
        bench.start_collector(cat)
        fig.data["collector_start_s"] = time.monotonic() - t_load
        if "broker" in parts:
            progress(f"broker: single-reading messages, QoS1, {procs} publishers, {dur:g} s")
            broker = broker_ceiling(bench, creds, site, seconds=dur, procs=procs)
            fig.add("broker_msgs_per_s", "消息代理上限 broker ceiling: QoS1 publish→receive", broker, "msg/s",
                    f"{procs} publisher processes, no processing")
        if "e2e" in parts:
            for b in (batch, 1):
                n = int(dur * (100_000 if b > 1 else 10_000))
                progress(f"e2e: {n:,} readings, {b} per message, {procs} publisher processes, rules on")
                r = end_to_end(bench, creds, site, cat, batch=b, readings=n, procs=procs, progress=progress)
                key = "batched" if b > 1 else "single"
                fig.add(f"e2e_{key}_readings_per_s", f"端到端 end to end, {b}/msg: stored", r.rate, "readings/s",
                        f"sent {r.sent:,}, stored {r.stored:,}" + (" ✓" if r.stored == r.sent else " ✗ LOST"))
                fig.add(f"e2e_{key}_collector_cpu", f"  collector CPU ({key})", r.cpu * 100, "% of a core", "")
                fig.data[f"e2e_{key}_sent"] = r.sent
                fig.data[f"e2e_{key}_stored"] = r.stored
                fig.data[f"e2e_{key}_lost"] = r.sent - r.stored
                if b > 1:
                    e2e_b = r.rate
                else:
                    e2e_1 = r.rate
                fig.data["collector_peak_rss_mb"] = r.rss / 2**20
            fig.add("collector_peak_rss_mb", f"采集进程峰值内存 collector peak RSS ({n_points:,} points)",
                    fig.data["collector_peak_rss_mb"], "MB", "target ≤ 300 MB at 100k points")
        if "latency" in parts:
            load = (e2e_b / 2) if e2e_b else (2_000.0 if quick else 5_000.0)
            n = 60 if quick else 300
            progress(f"latency: {n} breaches under {load:,.0f} readings/s background load")
            lat = alarm_latency(bench, creds, site, load_rate=load, breaches=n, interval_s=0.25, progress=progress)
            fig.add("alarm_latency_p50_ms", "越限→报警提交 breach→alarm committed p50", pct(lat, 50) * 1000, "ms",
                    f"{len(lat)}/{n} breaches at {load:,.0f} readings/s" + (" (half the e2e rate)" if e2e_b else ""))
            fig.add("alarm_latency_p99_ms", "越限→报警提交 breach→alarm committed p99", pct(lat, 99) * 1000, "ms",
                    "target ≤ 300 ms")
            fig.data["alarm_latency_samples"] = len(lat)
        if "alerting" in parts:
            from simulators import bench_alerting

            n, load = (50 if quick else 200), 2_000.0
            progress(f"alerting: {n} breaches → signed webhooks under {load:,.0f} readings/s background load")
            ar = bench_alerting.alert_latency(bench, creds, site, load_rate=load, breaches=n, interval_s=0.2,
                                              progress=progress)
            bench_alerting.add_figures(fig, ar, breaches=n, load=load)
        bench.stop_collector()
        if db and e2e_b:
            fig.add("ratio_e2e_db", "比值 end to end ÷ DB ceiling", e2e_b / db * 100, "%", "target ≥ 75 % or ≥ 150k/s")
        if broker and e2e_1:
            fig.add("ratio_single_broker", "比值 single-reading ÷ broker ceiling", e2e_1 / broker * 100, "%", "")
    return fig
