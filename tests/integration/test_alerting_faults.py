"""Alerting under faults, with a real dispatcher process (`riskwatch alerting dispatch`), real PostgreSQL, a real
HTTP receiver and a real SMTP server on loopback.

The issue's criterion: the dispatcher killed between sending and recording, and a receiver down for 30 s —
every notification is delivered at least once, repeats carry the same idempotency key (and the same body),
none is lost. Delivery claims a notification and holds its row lock while it sends; a SIGKILL in between
leaves nothing recorded, so the next dispatcher sends it again with the key it had.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.conftest import VENV_BIN, wait_for
from tests.fix_alerting import load_site, raise_alarm

pytestmark = pytest.mark.integration

SECRET = "webhook-secret"
LINK_KEY = "link-key-for-tests"
TAGS = ("CO-101", "TT-101", "PDT-101", "TT-201", "RUN-201")
STARTED = "riskwatch alerting dispatch:"


def routing_text(smtp: SmtpSink, hook: HttpReceiver, *, max_attempts: int = 8, backoff_initial: str = "1s",
                 backoff_max: str = "5s") -> str:
    """Each alarm its own group (so its own notifications), no waiting, no reminders: one e-mail and one
    webhook per alarm, nothing else."""
    return f"""
version: 1
timezone: Asia/Shanghai
defaults:
  group_by: [rule, subject]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 0
delivery:
  max_attempts: {max_attempts}
  backoff_initial: {backoff_initial}
  backoff_max: {backoff_max}
  ack_link_ttl: 24h
channels:
  email: {{type: smtp, host: 127.0.0.1, port: {smtp.port}, sender: "县工信局风险预警 <riskwatch@example.gov.cn>",
          timeout_s: 5}}
  hook: {{type: webhook, url: "{hook.url}/alerts", secret: "{SECRET}", timeout_s: 10}}
people:
  duty: {{name: 值班员张伟, email: duty@example.gov.cn}}
receivers:
  bureau-duty: {{to: [{{person: duty}}], via: [email, hook]}}
  enterprise-leaders: {{to: [{{enterprise: principal}}, {{enterprise: controller}}], via: [email]}}
routes:
  receiver: bureau-duty
  routes:
    - match: {{kind: hazard, event: [confirmed, supervised]}}
      receiver: [bureau-duty, enterprise-leaders]
"""


class DispatcherProcess:
    """`riskwatch alerting dispatch` in a subprocess, so a test can SIGKILL it and start another."""

    def __init__(self, db_url: str, routing: Path, workdir: Path):
        self.env = {
            **os.environ,
            "RISKWATCH_DB_URL": db_url,
            # Never connected to by the dispatcher; without it the CLI would start private services.
            "RISKWATCH_MQTT_URL": "mqtt://127.0.0.1:1",
            "RISKWATCH_ALERTING": str(routing),
            "RISKWATCH_DATA_DIR": str(workdir / "data"),
            "RISKWATCH_LINK_SECRET": LINK_KEY,
        }
        self.log = workdir / "dispatch.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def _section(self) -> str:
        return self.log.read_text(errors="replace").split(f"--- start {self.starts}\n")[-1]

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as f:
            f.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "riskwatch"), "-v", "alerting", "dispatch", "--public-url", "http://riskwatch.test",
                 "--workers", "4"], env=self.env, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while STARTED not in self._section():
            if self.proc.poll() is not None:
                raise AssertionError(f"dispatcher exited with {self.proc.returncode}:\n{self._section()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"dispatcher did not start:\n{self._section()[-3000:]}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@dataclass
class Env:
    db_url: str
    points: dict[str, int]
    smtp: SmtpSink
    hook: HttpReceiver
    tmp: Path
    d: DispatcherProcess | None = None

    def dispatcher(self, **delivery: object) -> DispatcherProcess:
        path = self.tmp / "alerting.yaml"
        path.write_text(routing_text(self.smtp, self.hook, **delivery), encoding="utf-8")  # type: ignore[arg-type]
        self.d = DispatcherProcess(self.db_url, path, self.tmp)
        return self.d

    def raise_alarms(self, conn: psycopg.Connection, n: int, prefix: str) -> None:
        for i in range(n):
            raise_alarm(conn, self.points[TAGS[i % len(TAGS)]], time.time(), rule_id=f"{prefix}.{i}")

    def notifications(self) -> dict[str, tuple[int, str, str, int]]:
        """idempotency key -> (id, channel, status, attempts)."""
        with psycopg.connect(self.db_url) as conn:
            return {r[0]: (r[1], r[2], r[3], r[4]) for r in conn.execute(
                "SELECT idempotency_key, id, channel, status, attempts FROM notifications")}

    def deliveries(self) -> dict[str, list[tuple[int, bool, bool | None, float]]]:
        """idempotency key -> [(attempt, ok, transient, started epoch)] in attempt order."""
        out: dict[str, list[tuple[int, bool, bool | None, float]]] = defaultdict(list)
        with psycopg.connect(self.db_url) as conn:
            for key, attempt, ok, transient, started in conn.execute(
                    """SELECT n.idempotency_key, d.attempt, d.ok, d.transient, extract(epoch FROM d.started_at)
                       FROM deliveries d JOIN notifications n ON n.id = d.notification_id
                       ORDER BY n.id, d.attempt"""):
                out[key].append((attempt, ok, transient, float(started)))
        return out

    def all_sent(self, alarms: int) -> bool:
        """Every alarm has its e-mail and webhook notification, and all are sent."""
        notes = self.notifications()
        return len(notes) == 2 * alarms and all(status == "sent" for _, _, status, _ in notes.values())

    def received(self) -> tuple[Counter[str], dict[str, set[bytes]]]:
        """Keys received (webhook and e-mail together) with their counts, and the distinct bodies of each."""
        counts: Counter[str] = Counter()
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for r in self.hook.requests:
            key = r.headers["idempotency-key"]
            assert r.json()["idempotency_key"] == key
            counts[key] += 1
            bodies[key].add(r.body)
        for m in self.smtp.messages:
            key = str(m.message["X-Riskwatch-Idempotency-Key"])
            assert str(m.message["Message-ID"]) == f"<{key}@riskwatch>"
            counts[key] += 1
            plain = m.message.get_body(("plain",))
            assert plain is not None
            bodies[key].add(f"{m.message['Subject']}\n{m.rcpt_tos}\n{plain.get_content()}".encode())
        return counts, bodies

    def check_at_least_once(self, items: int) -> Counter[str]:
        """Every notification sent and received at least once, always with one body; nothing unknown received;
        one e-mail and one webhook notification per alarm. The keys received more than once, with their counts."""
        notes = self.notifications()
        assert Counter(ch for _, ch, _, _ in notes.values()) == {"email": items, "hook": items}
        assert {k: s for k, (_, _, s, _) in notes.items() if s != "sent"} == {}
        counts, bodies = self.received()
        assert set(counts) - set(notes) == set(), "received keys the database does not know"
        assert set(notes) - set(counts) == set(), "lost: sent in the database, never received"
        assert {k: len(b) for k, b in bodies.items() if len(b) > 1} == {}, "a repeat differs from the first"
        # at least once sent, exactly once recorded as sent: one ok attempt, the last one
        for key, rows in self.deliveries().items():
            assert [ok for _, ok, _, _ in rows].count(True) == 1 and rows[-1][1], (key, rows)
            assert [a for a, *_ in rows] == list(range(1, len(rows) + 1)), (key, rows)
        return Counter({k: c for k, c in counts.items() if c > 1})


@pytest.fixture
def env(db_url: str, tmp_path: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> Iterator[Env]:
    e = Env(db_url, load_site(db_url), smtp_sink, http_receiver, tmp_path)
    yield e
    if e.d is not None and e.d.alive():
        e.d.kill()


def test_killed_between_sending_and_recording_sends_again_with_the_same_key(env: Env) -> None:
    d = env.dispatcher()
    env.hook.delay = 3.0  # the receiver takes its time to answer: the dispatcher is killed while it waits
    with psycopg.connect(env.db_url) as conn:
        env.raise_alarms(conn, 3, "crash")
    d.start()
    env.hook.wait(1, timeout=30)
    d.kill()
    in_flight = {r.headers["idempotency-key"]: r.body for r in env.hook.requests}
    assert in_flight

    # the killed attempts left nothing behind: not recorded, not counted, still due
    notes = env.notifications()
    recorded = env.deliveries()
    for key in in_flight:
        assert notes[key][2:] == ("pending", 0) and recorded.get(key, []) == [], (key, notes[key], recorded.get(key))

    env.hook.delay = 0
    d.start()
    wait_for(lambda: env.all_sent(3), timeout=30, message="every notification sent after the restart")
    repeats = env.check_at_least_once(3)
    for key, body in in_flight.items():
        again = [r.body for r in env.hook.requests if r.headers["idempotency-key"] == key]
        assert len(again) >= 2 and set(again) == {body}, (key, len(again))
        assert repeats[key] >= 2
        # the attempt that counts is the one after the restart, and it is the first one recorded
        assert [(a, ok) for a, ok, _, _ in env.deliveries()[key]] == [(1, True)]
    print(f"\nkilled with {len(in_flight)} webhook(s) in flight; received again: {dict(repeats)}")
    assert d.stop() == 0
    assert "Traceback" not in d.log.read_text()


def test_receiver_down_for_30_seconds_then_everything_arrives_once_it_is_back(env: Env) -> None:
    d = env.dispatcher(max_attempts=30, backoff_initial="1s", backoff_max="5s")
    env.hook.down()
    env.smtp.stop()
    d.start()
    down_at = time.time()
    with psycopg.connect(env.db_url) as conn:
        env.raise_alarms(conn, 20, "down")
    time.sleep(max(0.0, down_at + 30 - time.time()))
    assert env.hook.requests == [] and env.smtp.messages == []
    notes = env.notifications()
    assert len(notes) == 40 and all(s == "pending" and n >= 3 for _, _, s, n in notes.values()), notes

    env.hook.up()
    env.smtp.start()
    up_at = time.time()
    wait_for(lambda: env.all_sent(20), timeout=30, message="every notification sent once the receivers are back")
    delivered_in = max(r.received_at for r in [*env.hook.requests, *env.smtp.messages]) - up_at
    repeats = env.check_at_least_once(20)

    attempts = []
    for key, rows in env.deliveries().items():
        *failed, last = rows
        assert failed and all(not ok and transient for _, ok, transient, _ in failed), (key, rows)
        assert all(started < up_at + 0.5 for *_, started in failed), (key, rows)  # no failure after it was back
        assert last[1] and last[3] > up_at - 0.5, (key, rows)
        attempts.append(len(rows))
    assert min(attempts) >= 4  # it kept trying, with backoff capped at 5 s, and never gave up
    assert max(attempts) < 30
    print(f"\n40 notifications, {sum(attempts)} attempts ({min(attempts)}..{max(attempts)} each);"
          f" all delivered {delivered_in:.1f} s after the receivers came back; repeats: {dict(repeats)}")
    assert d.stop() == 0


def test_random_kills_during_a_stream_of_alarms_lose_nothing(env: Env) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    d = env.dispatcher()
    env.hook.delay = 0.05  # a short wait for the answer, so a kill is likely to find sends in flight
    n_alarms, span_s = 150, 10.0
    failed: list[BaseException] = []

    def stream() -> None:
        try:
            with psycopg.connect(env.db_url) as conn:
                for i in range(n_alarms):
                    raise_alarm(conn, env.points[TAGS[i % len(TAGS)]], time.time(), rule_id=f"stream.{i}")
                    time.sleep(span_s / n_alarms)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failed.append(exc)

    d.start()
    producer = threading.Thread(target=stream, name="alarm-stream", daemon=True)
    producer.start()
    kills = []
    for _ in range(3):
        time.sleep(rng.uniform(0.5, 3.0))
        kills.append(len(env.hook.requests) + len(env.smtp.messages))
        d.kill()
        d.start()
    producer.join(60)
    assert not producer.is_alive() and not failed, failed
    wait_for(lambda: env.all_sent(n_alarms), timeout=60, message="every notification sent")
    repeats = env.check_at_least_once(n_alarms)
    print(f"\nseed {seed}: killed 3 times (after {kills} deliveries); {len(env.hook.requests)} webhooks and"
          f" {len(env.smtp.messages)} e-mails for {2 * n_alarms} notifications; duplicates:"
          f" {sum(repeats.values()) - len(repeats)} ({dict(repeats)})")
    assert d.stop() == 0
