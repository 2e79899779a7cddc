"""Test harness for the edge agent: a loopback TCP proxy that can refuse or blackhole, the agent as a real
subprocess (`python -m ingest.edge CONFIG`), the comparison of the PLC simulator's log with stored readings, and
the steps every edge test repeats (set up the county's first gateway, start polling, the acceptance run's faults,
drain, teardown, the exactly-once check), written once so that each test shows only what it adds."""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

import psycopg
import pytest
import yaml

from core.services import LocalMosquitto, free_port
from simulators.plc import LogEntry, PlcSimulator, read_log, site_plc_tags
from tests.conftest import Site, sql_one, wait_for

ROOT = Path(__file__).resolve().parents[2]
COUNTY = ROOT / "simulators" / "sites" / "county.yaml"
GW = "gw-cem-01"


class LoopbackProxy:
    """127.0.0.1:port -> 127.0.0.1:target. `cut("refuse")`: connections dropped and the port closed
    (connect gets ECONNREFUSED); `cut("blackhole")`: connections kept and new ones accepted, but no byte passes
    in either direction (the client notices only by its keepalive). `restore()` drops what was blackholed and
    forwards again."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.port = free_port()
        self.mode: Literal["pass", "refuse", "blackhole"] = "pass"
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket]] = []
        self._closing = False
        self._listener: socket.socket | None = None
        self._listen()

    def _listen(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True, name="proxy-accept").start()

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self._lock:
                self._conns.append((c, up))
            threading.Thread(target=self._pump, args=(c, up), daemon=True, name="proxy-pump").start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                r, _, _ = select.select([a, b], [], [], 0.5)
                for src in r:
                    data = src.recv(65536)
                    if not data:
                        return
                    if self.mode == "pass":
                        (b if src is a else a).sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for a, b in conns:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self, how: Literal["refuse", "blackhole"]) -> None:
        self.mode = how
        if how == "refuse":
            assert self._listener is not None
            self._listener.close()
            self._listener = None
            self._drop_all()

    def restore(self) -> None:
        was = self.mode
        self.mode = "pass"
        if was == "blackhole":
            self._drop_all()
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._drop_all()


class EdgeProcess:
    """The agent in its own process, so a test can SIGKILL it like a power cut."""

    def __init__(self, config: dict, workdir: Path):  # type: ignore[type-arg]
        self.config_path = workdir / "edge.yaml"
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
        self.buffer_path = Path(config["buffer"]["path"])
        self.log = workdir / "edge.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as f:
            f.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen([sys.executable, "-m", "ingest.edge", str(self.config_path)], cwd=ROOT,
                                         env=env, stdout=f, stderr=subprocess.STDOUT)

    def section(self) -> str:
        return self.log.read_text(errors="replace").split(f"--- start {self.starts}\n")[-1]

    def wait_log(self, text: str, timeout: float = 30, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.section().count(text) < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"edge agent exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"edge log has no {text!r} x{count}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def buffered(self) -> int:
        """Readings still in the agent's buffer (read through SQLite's WAL while the agent runs)."""
        import sqlite3

        db = sqlite3.connect(f"file:{self.buffer_path}?mode=ro", uri=True, timeout=5)
        try:
            staged = db.execute("SELECT count(*) FROM staged").fetchone()[0]
            sealed = db.execute("SELECT coalesce(sum(n), 0) FROM messages").fetchone()[0]
            return int(staged) + int(sealed)
        finally:
            db.close()


def stored(db_url: str, gateway: str) -> dict[str, list[tuple[int, float, int]]]:
    """{tag: [(time ms, value, quality)]} in time order, for one gateway."""
    out: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT p.tag, (extract(epoch FROM r.time) * 1000)::bigint, r.value, r.quality FROM readings r "
            "JOIN points p ON p.id = r.point_id WHERE p.gateway_id = %s ORDER BY p.tag, r.time", (gateway,)).fetchall()
    for tag, t, v, q in rows:
        out[tag].append((int(t), float(v), int(q)))
    return out


def collapse(values: list[float]) -> list[float]:
    """Consecutive repeats as one: what an on-change reader records of a held value."""
    out: list[float] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


def compare(log: list[LogEntry], got: dict[str, list[tuple[int, float, int]]], *, restarts_ms: list[int],
            min_hold_ms: int = 500, notes: list[str] | None = None) -> list[str]:
    """Problems (empty = every PLC value stored exactly once).

    OPC UA readings carry the PLC's SourceTimestamp: (tag, time, value) must match the log one for one.
    Modbus has no timestamps: the stored values per tag, in time order, must be the log's values with
    consecutive repeats collapsed (the agent records on change), except values held under `min_hold_ms`, which a
    poller cannot be expected to see (counted in `notes`); a value recorded twice in a row is allowed only as
    the agent's first reading after one of `restarts_ms` (it forgets the last value on restart).
    """
    problems: list[str] = []
    notes = notes if notes is not None else []
    by_tag: dict[str, list[LogEntry]] = defaultdict(list)
    for e in log:
        by_tag[e.tag].append(e)
    for tag, entries in by_tag.items():
        rows = got.get(tag, [])
        if entries[0].proto == "opcua":
            # a malformed value is reported by the agent, not stored; a bad one is stored with quality bad (2)
            want = [(e.t_ms, e.v, 2 if e.q == "bad" else 0) for e in entries if e.q != "malformed"]
            have = rows
            if want != have:
                missing = sorted(set(want) - set(have))[:5]
                extra = sorted(set(have) - set(want))[:5]
                problems.append(f"{tag} (opcua): {len(want)} produced, {len(have)} stored; missing {missing}, "
                                f"extra {extra}")
            continue
        # A value the PLC held for less than `min_hold_ms` (its scan stalled and caught up) may or may not have
        # been polled: optional. Everything held longer must be there, in order.
        held = [(e, (entries[i + 1].t_ms if i + 1 < len(entries) else 2**62) - e.t_ms) for i, e in enumerate(entries)]
        runs_v: list[tuple[float, bool]] = []  # (value, optional) per run of equal values
        for e, h in held:
            if runs_v and runs_v[-1][0] == e.v:
                runs_v[-1] = (runs_v[-1][0], runs_v[-1][1] and h < min_hold_ms)
            else:
                runs_v.append((e.v, h < min_hold_ms))  # type: ignore[arg-type]
        have_vals = collapse([v for _t, v, _q in rows])
        repeats = [i for i in range(1, len(rows)) if rows[i][1] == rows[i - 1][1]]
        bad_repeats = [rows[i][0] for i in repeats
                       if not any(r <= rows[i][0] <= r + 30_000 for r in restarts_ms)]
        if bad_repeats:
            problems.append(f"{tag} (modbus): value recorded twice in a row at {bad_repeats[:5]}")
        j = 0
        last: float | None = None
        for k, (v, optional) in enumerate(runs_v):
            if j < len(have_vals) and have_vals[j] == v:
                last = v
                j += 1
            elif optional or v == last:
                continue
            else:
                problems.append(f"{tag} (modbus): produced value #{k} {v} (and {len(runs_v) - k - 1} after it) not "
                                f"stored in order; stored next: {have_vals[j:j + 3]}")
                break
        else:
            if j != len(have_vals):
                problems.append(f"{tag} (modbus): stored values never produced: {have_vals[j:j + 5]}")
        skipped = sum(1 for _v, o in runs_v if o)
        if skipped:
            notes.append(f"{tag}: {skipped} values held < {min_hold_ms} ms (optional)")
        continue
    for tag in got:
        if tag not in by_tag:
            problems.append(f"{tag}: stored but never produced")
    for tag, rows in got.items():
        if any(not math.isfinite(v) for _t, v, _q in rows):
            problems.append(f"{tag}: non-finite value stored")
    return problems


@pytest.fixture
def county(db_url: str, broker: LocalMosquitto) -> Site:
    return Site(db_url, broker, COUNTY)


def plc_and_agent(site: Site, tmp_path: Path, port: int, plc_update_s: float = 1.0,
                  **extra: object) -> tuple[PlcSimulator, EdgeProcess]:
    """A PLC simulator for the county's gateway GW and its agent (not started) on broker port `port` (the broker's
    or a LoopbackProxy's), with short keepalive and backoff so that the faults are noticed within a test."""
    sim = PlcSimulator(site_plc_tags(COUNTY, GW), log_path=tmp_path / "plc.jsonl", modbus_port=free_port(),
                       opcua_port=free_port(), update_s=plc_update_s)
    pw = tmp_path / "edge.password"
    pw.write_text(site.credentials[GW])
    pw.chmod(0o600)
    url = f"mqtts://{GW}@127.0.0.1:{port}?cafile={site.broker.cafile}"
    cfg = sim.edge_config(GW, url, tmp_path / "edge-buffer.sqlite", password_file=pw, extra={
        "broker": {"keepalive_s": 10, "backoff_max_s": 5.0},
        "publish": {"resend_after_s": 10.0}, "health": {"status_interval_s": 5.0}, **extra})
    return sim, EdgeProcess(cfg, tmp_path)


class Closable(Protocol):
    def close(self) -> None: ...


@contextlib.contextmanager
def running(sim: PlcSimulator, agent: EdgeProcess, *also: Closable, clean_exit: bool = True) -> Iterator[None]:
    """The PLC's thread runs for the block; however the block ends, the agent is stopped (SIGTERM), then the PLC,
    then `also` (an observer, a proxy) in that order, so that no test leaves a process or thread behind for the
    next. `clean_exit`: the agent's stop must exit 0; checked after the teardown and only when the block passed,
    so that it neither hides the test's own failure nor leaves the rest running."""
    sim.start_thread()
    code: int | None = None
    try:
        yield
    finally:
        if agent.alive():
            code = agent.stop()
        sim.stop_thread()
        for c in also:
            c.close()
    if clean_exit:
        assert code in (None, 0), f"edge agent stopped with {code}:\n{agent.log.read_text()[-3000:]}"


def start_polled(sim: PlcSimulator, agent: EdgeProcess) -> int:
    """Agent up and reading both servers before the PLC produces anything more, so that no value goes unpolled.
    Returns the start's wall-clock time in ms: compare() allows a repeated Modbus value just after a restart."""
    sim.paused = True
    agent.start()
    started = int(time.time() * 1000)
    agent.wait_log("source plc-modbus: connected")
    agent.wait_log("source plc-opcua: connected")
    time.sleep(1.5)  # the first polls and the subscription's initial value
    sim.paused = False
    return started


def kill_and_restart(sim: PlcSimulator, agent: EdgeProcess) -> int:
    """A power cut of the box: the agent SIGKILLed while the PLC holds still, then started and polling again.
    Returns the restart's time in ms, as start_polled()."""
    sim.paused = True
    agent.kill()
    return start_polled(sim, agent)


def drain(sim: PlcSimulator, agent: EdgeProcess, timeout: float = 180) -> None:
    """The PLC holds still and the agent's buffer empties: from here the PLC's log is final and all of it should
    be stored."""
    sim.paused = True
    time.sleep(2)  # the last polls of the held values
    wait_for(lambda: agent.buffered() == 0, timeout=timeout, interval=0.5, message="agent buffer drained")


def soak_with_faults(site: Site, proxy: LoopbackProxy, sim: PlcSimulator, agent: EdgeProcess,
                     soak_s: float) -> list[int]:
    """Issue 18's acceptance run, for any publish format: the agent started and connected through `proxy`, then
    over `soak_s` the broker SIGKILLed and restarted at 10 % (it loses what it acknowledged since its last save),
    the agent's link blackholed for 60 s from 20 % (no byte passes: only its keepalive finds out), the agent
    SIGKILLed and restarted at 80 %, then the buffer drained. Checks that the agent did connect three times at
    least; returns its restart times for check_exactly_once()."""
    start_polled(sim, agent)
    agent.wait_log(f"{GW}: connected to 127.0.0.1:{proxy.port}")
    t0 = time.monotonic()

    def at(frac: float) -> None:
        left = t0 + frac * soak_s - time.monotonic()
        if left > 0:
            time.sleep(left)

    at(0.1)
    site.broker.stop(signal.SIGKILL)
    site.broker.start()
    at(0.2)
    proxy.cut("blackhole")
    time.sleep(60)
    proxy.restore()
    at(0.8)
    restarts = [kill_and_restart(sim, agent)]
    at(1.0)
    drain(sim, agent)
    log = agent.log.read_text()
    assert log.count(f"{GW}: connected to 127.0.0.1:{proxy.port}") >= 3, log[-3000:]
    return restarts


def bad_then_malformed_opcua(sim: PlcSimulator, agent: EdgeProcess) -> None:
    """The agent started and polling, then the OPC UA server reports Bad for one tag and a non-number for another
    for a few seconds, then both read again, then the buffer drains; check_bad_quality_stored() then holds the
    store to what the PLC produced. The same run for every publish format, so the formats are held to one rule."""
    bad_tag, odd_tag = [t.tag for t in sim.tags if t.protocol == "opcua"][:2]
    start_polled(sim, agent)
    time.sleep(2)
    sim.faults[bad_tag] = "bad"
    sim.faults[odd_tag] = "malformed"
    agent.wait_log(f"tag {odd_tag}: value '##ERR' (str) is not a number", timeout=20)
    time.sleep(3)
    sim.faults.clear()
    agent.wait_log(f"tag {odd_tag}: reading again", timeout=20)
    time.sleep(2)
    drain(sim, agent)


def check_exactly_once(sim: PlcSimulator, db_url: str, restarts_ms: list[int] | None = None
                       ) -> tuple[list[LogEntry], dict[str, list[tuple[int, float, int]]]]:
    """Every value the PLC's own log says it produced is stored once for GW (compare() empty). Returns the log
    and the stored readings for the test's further checks."""
    produced = read_log(sim.log_path)
    got = stored(db_url, GW)
    problems = compare(produced, got, restarts_ms=restarts_ms or [])
    assert not problems, "\n".join(problems)
    return produced, got


def check_bad_quality_stored(sim: PlcSimulator, db_url: str) -> None:
    """After bad_then_malformed_opcua(): bad values stored with quality 2 at their PLC times (one row each),
    malformed ones not at all, nothing dead-lettered."""
    produced, _got = check_exactly_once(sim, db_url)
    assert any(e.q == "bad" for e in produced) and any(e.q == "malformed" for e in produced)
    assert sql_one(db_url, "SELECT count(*) FROM readings WHERE quality = 2") == sum(
        1 for e in produced if e.q == "bad")
    assert sql_one(db_url, "SELECT count(*) FROM dead_letters") == 0
