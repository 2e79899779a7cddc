"""Test harness for the edge agent: a loopback TCP proxy that can refuse or blackhole, the agent as a real
subprocess (`python -m ingest.edge CONFIG`), and the comparison of the PLC simulator's log with stored readings."""

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
from pathlib import Path
from typing import Literal

import psycopg
import yaml

from core.services import free_port
from simulators.plc import LogEntry

ROOT = Path(__file__).resolve().parents[2]


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
