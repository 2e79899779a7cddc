"""`riskwatch bench`: figures measured on private services, all in one run.

Parts (each prints medians and ratios, never pass/fail):
- ``db``       binary COPY ceiling of the readings schema (rows/s)
- ``latency``  breach published -> alarm committed (p50/p99) under a moderate
               background load, through real Mosquitto and the real collector
               with the rule engine; the commit is observed with LISTEN/NOTIFY,
               which PostgreSQL delivers only when the transaction commits.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
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
from core.services import COLLECTOR_USER, LocalServices
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


def _publisher(host: str, port: int, gw: str, password: str, tags: list[str], rate: float, batch: int,
               seconds: float, counter: Any) -> None:
    """Background load: `rate` readings/s in messages of `batch` readings, for `seconds`."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{gw}-load", protocol=mqtt.MQTTv311)
    c.username_pw_set(gw, password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    topic = f"rw/v1/{gw}/telemetry"
    start = time.monotonic()
    sent = 0
    k = 0
    ntags = len(tags)
    last: mqtt.MQTTMessageInfo | None = None
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while sent + batch <= due:
            now_ms = int(time.time() * 1000)
            readings = [{"tag": tags[(k + j) % ntags], "v": 50.0, "ts": now_ms - ((k + j) // ntags) % 1000}
                        for j in range(batch)]
            last = c.publish(topic, orjson.dumps({"readings": readings}), qos=1)
            k += batch
            sent += batch
        time.sleep(0.005)
    if last is not None:
        last.wait_for_publish(30)
    with counter.get_lock():
        counter.value += sent
    c.disconnect()
    c.loop_stop()


def alarm_latency(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, *, load_rate: float,
                  breaches: int, interval_s: float, progress: Callable[[str], None]) -> list[float]:
    """Publish `breaches` limit breaches on one point while others publish background load; return
    breach-publish -> alarm-commit latencies in seconds."""
    port = bench.services.state.mqtt_port
    gws = [g.id for _, g in site.gateways()]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    probe_gw, load_gws = gws[0], gws[1:]
    seconds = breaches * interval_s + 5
    counter = mp.Value("q", 0)
    procs = [mp.Process(target=_publisher, args=("127.0.0.1", port, g, creds[g], tags[g], load_rate / len(load_gws),
                                                  100, seconds, counter), daemon=True) for g in load_gws]
    for p in procs:
        p.start()
    lat: list[float] = []
    probe = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{probe_gw}-probe", protocol=mqtt.MQTTv311)
    probe.username_pw_set(probe_gw, creds[probe_gw])
    probe.connect("127.0.0.1", port)
    probe.loop_start()
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


def run(parts: list[str], quick: bool, progress: Callable[[str], None]) -> Figures:
    fig = Figures()
    with Bench() as bench:
        if "db" in parts:
            rows = 200_000 if quick else 2_000_000
            progress(f"db: binary COPY of {rows:,} rows")
            med, _ = db_ceiling(bench.services.db_url, rows, 20_000, 10_000)
            fig.add("db_copy_rows_per_s", "数据库上限 DB ceiling: binary COPY", med, "rows/s",
                    "median of batches of 20k")
        if "latency" in parts:
            site = _site(gateways=5, points_per_gateway=200)
            creds = bench.load(site)
            cat = bench.dir / "bench-catalog.yaml"
            cat.write_text(BENCH_CATALOG)
            bench.start_collector(cat)
            load = 2_000.0 if quick else 5_000.0
            n = 60 if quick else 300
            progress(f"latency: {n} breaches under {load:,.0f} readings/s background load")
            lat = alarm_latency(bench, creds, site, load_rate=load, breaches=n, interval_s=0.25, progress=progress)
            bench.stop_collector()
            fig.add("alarm_latency_p50_ms", "越限→报警提交 breach→alarm committed p50", pct(lat, 50) * 1000, "ms",
                    f"{len(lat)}/{n} breaches, load {load:,.0f} readings/s")
            fig.add("alarm_latency_p99_ms", "越限→报警提交 breach→alarm committed p99", pct(lat, 99) * 1000, "ms",
                    "target ≤ 300 ms")
            fig.data["alarm_latency_samples"] = len(lat)
    return fig
