"""Northbound forwarding (issue 18) with real TimescaleDB, the real stores and a real loopback HTTP receiver.

The criterion: a receiver down for 60 s, and a forwarder SIGKILLed mid-send (a `riskwatch northbound run`
subprocess) then restarted — every item arrives at least once, duplicates carry the same idempotency key
(and the same data), nothing is lost. Items are produced through the stores the stages use: readings
through the ingest writer, alarm transitions through the rule engine's store, a ticket through the ledger.
Plus: permanent errors and the N-th failure make items dead with the reason; a bad file fails at file:line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psycopg
import pytest

from alerting.northbound import Forwarder
from alerting.northbound_config import load_northbound
from core.clock import FakeClock
from core.errors import SourceError
from core.readings import Readings
from hazards import ledger, workflow
from hazards.model import Actor
from ingest.writer import write_readings
from tests.alerting_fixtures import HttpReceiver
from tests.conftest import VENV_BIN, wait_for
from tests.fix_alerting import clear_alarm, load_site, raise_alarm

pytestmark = pytest.mark.integration

STARTED = "riskwatch northbound: forwarding"


def config_text(url: str, *, batch_size: int = 5, max_attempts: int = 1000, timeout_s: float = 30,
                send: str = "[readings, alarms, hazards]") -> str:
    return f"""version: 1
targets:
  province:
    kind: http
    url: {url}/push
    headers: {{X-Token: "${{NB_TEST_TOKEN}}"}}
    timeout_s: {timeout_s}
    send: {send}
    batch_size: {batch_size}
    max_attempts: {max_attempts}
    backoff: {{initial_s: 0.5, max_s: 3}}
"""


def produce(db_url: str, points: dict[str, int], t0: float, n: int) -> set[str]:
    """n readings on two required points and one not required, an alarm raised and cleared, a ticket opened.
    Returns the keys owed, derived from the producing rows (not from the northbound tables)."""
    req, other = [points["TT-101"], points["CO-101"]], points["PDT-101"]
    ids = np.array([p for _ in range(n) for p in (*req, other)], dtype=np.int32)
    times = np.array([int((t0 + i) * 1e6) for i in range(n) for _ in range(3)], dtype=np.int64)
    with psycopg.connect(db_url) as conn:
        before_a = conn.execute("SELECT coalesce(max(id), 0) FROM alarm_events").fetchone()[0]  # type: ignore[index]
        before_h = conn.execute("SELECT coalesce(max(id), 0) FROM hazard_events").fetchone()[0]  # type: ignore[index]
        with conn.transaction():
            write_readings(conn, Readings(ids, times, np.arange(len(ids), dtype=np.float64),
                                          np.zeros(len(ids), dtype=np.int16)))
        raise_alarm(conn, points["CO-101"], t0 + 1)
        clear_alarm(conn, points["CO-101"], t0 + 2)
        ledger.open_ticket(conn, ledger.NewTicket(source=workflow.Source.INSPECTION, enterprise_id="ent-a",
                                                  title="除尘器泄爆片锈蚀", plant_id="plant-a"),
                           Actor("局值班员", "bureau"), t0 + 3)
        alarms = [r[0] for r in conn.execute("SELECT id FROM alarm_events WHERE id > %s", (before_a,))]
        hazards = [r[0] for r in conn.execute("SELECT id FROM hazard_events WHERE id > %s", (before_h,))]
    assert alarms and hazards
    return ({f"rw-r-{p}-{int((t0 + i) * 1e6)}" for i in range(n) for p in req}
            | {f"rw-a-{i}" for i in alarms} | {f"rw-h-{i}" for i in hazards})


def received(hook: HttpReceiver) -> dict[str, set[str]]:
    """Key -> the distinct data it arrived with; each request's header keys must match its body's."""
    out: dict[str, set[str]] = defaultdict(set)
    for r in hook.requests:
        body = r.json()
        keys = [i["key"] for i in body["items"]]
        assert r.headers["x-riskwatch-item-keys"].split(",") == keys
        assert r.headers["idempotency-key"] == body["batch_key"]
        assert r.headers["x-token"] == "tok-123"
        for i in body["items"]:
            out[i["key"]].add(json.dumps(i["data"], sort_keys=True))
    return out


def wait_arrived(hook: HttpReceiver, keys: set[str], timeout: float) -> None:
    wait_for(lambda: keys <= set(received(hook)), timeout=timeout,
             message=f"all {len(keys)} keys at the receiver")


class ForwarderProcess:
    """`riskwatch northbound run` in a subprocess, so the test can SIGKILL it and start another."""

    def __init__(self, db_url: str, config: Path, workdir: Path):
        self.env = {**os.environ, "RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": "mqtt://127.0.0.1:1",
                    "RISKWATCH_DATA_DIR": str(workdir / "data"), "RISKWATCH_NORTHBOUND": str(config),
                    "NB_TEST_TOKEN": "tok-123"}
        self.log = workdir / "northbound.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _section(self) -> str:
        return self.log.read_text(errors="replace").split(f"--- start {self.starts}\n")[-1]

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as f:
            f.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen([str(VENV_BIN / "riskwatch"), "northbound", "run", "--poll", "0.2"],
                                         env=self.env, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while STARTED not in self._section():
            if self.proc.poll() is not None:
                raise AssertionError(f"forwarder exited {self.proc.returncode}:\n{self._section()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"forwarder did not start:\n{self._section()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def statuses(db_url: str, keys: set[str]) -> dict[str, str]:
    with psycopg.connect(db_url) as conn:
        return {r[0]: r[1] for r in conn.execute(
            "SELECT key, status FROM northbound_items WHERE target = 'province' AND key = ANY(%s)", (list(keys),))}


@pytest.mark.slow
def test_outage_of_60s_and_sigkill_mid_send_lose_nothing(db_url: str, tmp_path: Path) -> None:
    points = load_site(db_url)
    hook = HttpReceiver().start()
    cfg = tmp_path / "northbound.yaml"
    cfg.write_text(config_text(hook.url))
    fwd = ForwarderProcess(db_url, cfg, tmp_path)
    fwd.start()
    try:
        t0 = time.time() - 3600
        # --- the receiver is away for 60 s: items pile up, retried with backoff, none dead
        hook.down()
        first = produce(db_url, points, t0, 12)
        assert set(statuses(db_url, first)) == first  # owed in the producing transactions, ingest did not wait
        time.sleep(60)
        with psycopg.connect(db_url) as conn:
            tried = conn.execute("SELECT count(DISTINCT item_id), bool_or(ok) FROM northbound_attempts").fetchone()
        assert tried is not None and tried[0] > 0 and tried[1] is False
        assert set(statuses(db_url, first).values()) == {"pending"}
        hook.up()
        wait_arrived(hook, first, timeout=30)
        # --- SIGKILL while a request is in flight (the receiver holds its answer)
        hook.delay = 5.0
        n_before = len(hook.requests)
        second = produce(db_url, points, t0 + 100, 8)
        wait_for(lambda: len(hook.requests) > n_before, timeout=15, message="a request of the second wave")
        in_flight = {i["key"] for r in hook.requests[n_before:] for i in r.json()["items"]}
        fwd.kill()
        assert in_flight and all(statuses(db_url, in_flight)[k] == "pending" for k in in_flight)
        hook.delay = 0
        fwd.start()
        wait_arrived(hook, second, timeout=60)
        got = received(hook)
        assert all(len(got[k]) == 1 for k in first | second), "a key re-sent with other data"
        assert in_flight <= second and all(len([r for r in hook.requests if k in r.body.decode()]) >= 2
                                           for k in in_flight), "the killed send was not repeated"
        wait_for(lambda: set(statuses(db_url, first | second).values()) == {"sent"}, timeout=15,
                 message="every item recorded as sent")
        # nothing that was not owed went upstream: the point not flagged required stayed home
        with psycopg.connect(db_url) as conn:
            owed = {r[0] for r in conn.execute("SELECT key FROM northbound_items")}
        assert owed == first | second
        assert not any(k.startswith(f"rw-r-{points['PDT-101']}-") for k in got)
        assert fwd.stop() == 0
    finally:
        if fwd.proc is not None and fwd.proc.poll() is None:
            fwd.kill()
        hook.stop()


def _forwarder(db_url: str, text: str, tmp_path: Path, clock: FakeClock) -> Forwarder:
    os.environ.setdefault("NB_TEST_TOKEN", "tok-123")
    path = tmp_path / "nb.yaml"
    path.write_text(text)
    f = Forwarder(db_url, load_northbound(path), clock=clock, poll_s=0.05)
    f.register()
    return f


def _item(db_url: str, key_prefix: str) -> tuple[str, int, str | None, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("""SELECT status, attempts, last_error, (SELECT count(*) FROM northbound_attempts a
                              WHERE a.item_id = i.id) FROM northbound_items i WHERE key LIKE %s""",
                           (key_prefix + "%",)).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def test_permanent_error_is_dead_at_once_with_the_reason(db_url: str, tmp_path: Path) -> None:
    points = load_site(db_url)
    hook = HttpReceiver(status=400, body=b'{"error": "bad county code"}').start()
    clock = FakeClock(time.time() + 5)
    try:
        f = _forwarder(db_url, config_text(hook.url, send="[alarms]"), tmp_path, clock)
        with psycopg.connect(db_url) as conn:
            raise_alarm(conn, points["CO-101"], time.time())
            assert f.send_once(conn, f.cfg.targets["province"]) == 1
            assert f.send_once(conn, f.cfg.targets["province"]) == 0  # dead: never tried again
        status, attempts, error, n = _item(db_url, "rw-a-")
        assert (status, attempts, n) == ("dead", 1, 1)
        assert error is not None and "HTTP 400" in error and "permanent" in error
        f.close()
    finally:
        hook.stop()


def test_transient_errors_back_off_then_dead_after_n(db_url: str, tmp_path: Path) -> None:
    points = load_site(db_url)
    hook = HttpReceiver(status=503).start()
    clock = FakeClock(time.time() + 5)
    try:
        f = _forwarder(db_url, config_text(hook.url, send="[alarms]", max_attempts=3), tmp_path, clock)
        target = f.cfg.targets["province"]
        with psycopg.connect(db_url) as conn:
            raise_alarm(conn, points["CO-101"], time.time())
            assert f.send_once(conn, target) == 1
            assert f.send_once(conn, target) == 0  # backing off: not due yet
            assert _item(db_url, "rw-a-")[:2] == ("pending", 1)
            for _ in range(2):
                clock.advance(10)
                assert f.send_once(conn, target) == 1
        status, attempts, error, n = _item(db_url, "rw-a-")
        assert (status, attempts, n) == ("dead", 3, 3)
        assert error is not None and "HTTP 503" in error and "attempt 3 of 3" in error
        assert len(hook.requests) == 3 and len({r.headers["idempotency-key"] for r in hook.requests}) == 1
        f.close()
    finally:
        hook.stop()


READINGS_TRIGGER = ("SELECT count(*) FROM pg_trigger WHERE tgname = 'readings_northbound' "
                    "AND tgrelid = 'readings'::regclass")


def test_without_a_target_nothing_is_owed(db_url: str) -> None:
    """No northbound file: the triggers write nothing, and readings carry no trigger at all."""
    points = load_site(db_url)
    produce(db_url, points, time.time() - 600, 3)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM northbound_items").fetchone() == (0,)
        assert conn.execute(READINGS_TRIGGER).fetchone() == (0,)


def test_the_readings_trigger_exists_only_while_a_target_takes_readings(db_url: str) -> None:
    from alerting.northbound_store import register_targets

    points = load_site(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        register_targets(conn, {"prov": ["alarm", "hazard"]})
        assert conn.execute(READINGS_TRIGGER).fetchone() == (0,)
        register_targets(conn, {"prov": ["reading", "alarm"]})
        register_targets(conn, {"prov": ["reading", "alarm"]})  # again: still one
        assert conn.execute(READINGS_TRIGGER).fetchone() == (1,)
    produce(db_url, points, time.time() - 600, 3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM northbound_items WHERE kind = 'reading'").fetchone()[0] > 0
        register_targets(conn, {"prov": ["alarm"]})
        assert conn.execute(READINGS_TRIGGER).fetchone() == (0,)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: ftp://x\n    send: [alarms]\n", 5, "http"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms, telemetry]\n", 6, "send"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms]\n    batch_size: 100000\n",
     7, "batch_size"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms]\n    retries: 3\n", 7,
     "retries"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms]\n"
     "    headers: {Authorization: '${NB_UNSET_SECRET}'}\n", 7, "NB_UNSET_SECRET"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms]\n"
     "    template: '{\"n\": {{ items | length }}}'\n", 7, "idempotency keys"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms]\n"
     "    template: '{{ items.__class__.__mro__[1].__subclasses__() }}'\n", 7, "template"),
    ("version: 1\ntargets:\n  p:\n    kind: http\n    url: http://x\n    send: [alarms]\n"
     "    template: '{% for i in items %}'\n", 7, "does not render"),
])
def test_bad_file_is_refused_at_file_and_line(text: str, line: int, words: str, tmp_path: Path) -> None:
    os.environ.pop("NB_UNSET_SECRET", None)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SourceError) as exc:
        load_northbound(path)
    assert any(p.line == line and words in p.message for p in exc.value.problems), exc.value.problems
    out = subprocess.run([str(VENV_BIN / "riskwatch"), "northbound", "check", str(path)], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert out.returncode == 2
    assert f"{path}:{line}:" in out.stdout + out.stderr


def test_serve_runs_the_forwarder_as_a_supervised_task(db_url: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """What `serve` does with RISKWATCH_NORTHBOUND set: the file loaded, a `northbound` task that forwards."""
    from api.http import Metrics
    from api.run.northbound import load_configured, northbound_task
    from api.run.supervisor import Supervisor
    from core.clock import SystemClock

    points = load_site(db_url)
    hook = HttpReceiver().start()
    path = tmp_path / "nb.yaml"
    path.write_text(config_text(hook.url, send="[hazards]"))
    monkeypatch.setenv("RISKWATCH_NORTHBOUND", str(path))
    monkeypatch.setenv("NB_TEST_TOKEN", "tok-123")
    cfg = load_configured()
    assert cfg is not None
    metrics = Metrics()
    sup = Supervisor(metrics)
    sup.add("northbound", northbound_task(db_url, cfg, SystemClock(), metrics))
    sup.start()
    try:
        wait_for(lambda: sup.tasks["northbound"].running, timeout=10, message="task running")
        with psycopg.connect(db_url) as conn:
            wait_for(lambda: conn.execute("SELECT count(*) FROM northbound_targets").fetchone() == (1,),
                     timeout=10, message="target registered")
        keys = {k for k in produce(db_url, points, time.time() - 60, 1) if k.startswith("rw-h-")}
        wait_arrived(hook, keys, timeout=20)
    finally:
        sup.stop()
        hook.stop()
