"""`riskwatch bench` part ``alerting``: breach published → webhook received, under moderate load.

The whole path runs for real: Mosquitto, the collector with the rule engine (a subprocess), the
transactional outbox, and a `Dispatcher` (router, groups, 4 delivery workers) posting signed webhooks
to a loopback receiver. Each breach lands on a point of its own, and the routing groups by rule and
subject with no group wait and no reminders, so every breach is exactly one webhook, recognised by
the alarm it names (`data.items[0].item` = ``alarm:<rule>|p:<point id>``).

Two stamps split the latency where the pipeline hands over: the alarm's commit (LISTEN on
``riskwatch_alarm``, which PostgreSQL delivers only at commit) and the webhook's arrival. All three
stamps are wall-clock times taken on this machine, so the differences need no clock agreement.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import secrets
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import psycopg

from alerting import backlog
from alerting.config import load_config
from alerting.dispatcher import Dispatcher
from core import registry
from core.clock import SystemClock
from simulators.bench.harness import Bench, Figures, gateway_client, pct, publisher
from simulators.fakes.sinks import WebhookReceiver

RULE = "bench.temp:hi"
#: Above `hi` (100) and below `hihi` (120): one alarm, so one webhook, per breach.
BREACH_VALUE = 110.0
TARGET_P99_S = 1.0

ROUTING = """\
# riskwatch bench: every breach is one webhook (grouped by rule and subject, no wait, no reminders).
version: 1
timezone: Asia/Shanghai
defaults:
  group_by: [rule, subject]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 0
delivery: {{max_attempts: 3, backoff_initial: 1s, backoff_max: 5s}}
channels:
  hook: {{type: webhook, url: "{url}", secret: "{secret}", timeout_s: 5}}
  # The loader insists that confirmed hazards reach the enterprise leaders by e-mail or SMS. The
  # bench raises no hazards, so nothing is ever sent here.
  email: {{type: smtp, host: 127.0.0.1, port: 25, sender: "riskwatch bench <bench@example.invalid>"}}
receivers:
  bench-hook: {{via: [hook]}}
  enterprise-leaders: {{to: [{{enterprise: principal}}, {{enterprise: controller}}], via: [email]}}
routes:
  receiver: bench-hook
  routes:
    - match: {{kind: hazard, event: [confirmed, supervised]}}
      receiver: [enterprise-leaders]
"""


@dataclass
class AlertRun:
    """Wall-clock stamps per breach, keyed by point id."""

    published: dict[int, float] = field(default_factory=dict)
    committed: dict[int, float] = field(default_factory=dict)
    received: dict[int, float] = field(default_factory=dict)
    unexpected: int = 0  # webhooks naming no breach of this run, or a breach a second time
    unsigned: int = 0  # webhooks whose signature did not verify
    sent: int = 0  # notifications the dispatcher delivered
    failed: int = 0  # failed delivery attempts
    last_error: str | None = None

    @property
    def missing(self) -> list[int]:
        return sorted(set(self.published) - set(self.received))

    def total(self) -> list[float]:
        return [self.received[p] - t for p, t in self.published.items() if p in self.received]

    def to_commit(self) -> list[float]:
        return [self.committed[p] - t for p, t in self.published.items() if p in self.committed]

    def commit_to_webhook(self) -> list[float]:
        return [self.received[p] - t for p, t in self.committed.items() if p in self.received]


class _QuietLogs:
    """The dispatcher logs each notice at INFO and each failed attempt at WARNING: into a file, not the table."""

    def __init__(self, path: str):
        self.handler = logging.FileHandler(path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger = logging.getLogger("riskwatch.alerting")

    def __enter__(self) -> None:
        self.saved = self.logger.propagate, self.logger.level
        self.logger.addHandler(self.handler)
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate, level = self.saved
        self.logger.setLevel(level)
        self.handler.close()


def _point_ids(db_url: str, gateway: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        return {tag: pid for pid, tag in conn.execute("SELECT id, tag FROM points WHERE gateway_id = %s", (gateway,))}


def _skip_backlog(db_url: str) -> int:
    """Mark what earlier parts owe (the latency part's alarms) as routed, so only this part's breaches are sent."""
    with psycopg.connect(db_url) as conn:
        return backlog.skip_unrouted(conn)


def alert_latency(bench: Bench, creds: dict[str, str], site: registry.SiteSpec, *, load_rate: float,
                  breaches: int, interval_s: float, progress: Callable[[str], None]) -> AlertRun:
    """Publish `breaches` breaches, each on a point of its own, while the other gateways publish background load."""
    db_url = bench.services.db_url
    gws = [g.id for _, g in site.gateways()]
    tags = {d.gateway: [p.tag for p in d.points] for e in site.enterprises for pl in e.plants for d in pl.devices}
    probe_gw, load_gws = gws[0], gws[1:]
    ids = _point_ids(db_url, probe_gw)
    # Point 0 of the probe gateway is the latency part's: its alarm may still be in the tables.
    probe_tags = tags[probe_gw][1:breaches + 2]
    if len(probe_tags) <= breaches:
        raise ValueError(f"alerting: {breaches} breaches need {breaches + 2} points on {probe_gw}, it has "
                         f"{len(tags[probe_gw])}")
    warm_tag = probe_tags.pop()  # one untimed breach first: the collector and dispatcher reach steady state
    subject_of = {f"p:{ids[t]}": ids[t] for t in probe_tags}

    secret = secrets.token_urlsafe(16)
    receiver = WebhookReceiver(secret=secret).start()
    path = bench.dir / "bench-alerting.yaml"
    path.write_text(ROUTING.format(url=receiver.url, secret=secret), encoding="utf-8")
    cfg = load_config(path)
    skipped = _skip_backlog(db_url)
    if skipped:
        progress(f"alerting: {skipped} outbox rows of earlier parts marked routed, not sent")
    run = AlertRun()
    with _QuietLogs(str(bench.dir / "dispatcher.log")):
        disp = Dispatcher(db_url, cfg, public_url="http://127.0.0.1:8080", link_secret=secrets.token_bytes(32),
                          clock=SystemClock(), titles={RULE: ("温度高", "benchmark only")}, workers=4)
        d_thread = threading.Thread(target=disp.run, name="bench-dispatcher", daemon=True)
        d_thread.start()
        seconds = breaches * interval_s + 5
        counter = mp.Value("q", 0)
        procs = [mp.Process(target=publisher, args=(bench.gateway_url(g, creds[g]), tags[g],
                                                      load_rate / len(load_gws), 100, seconds, counter), daemon=True)
                 for g in load_gws]
        for p in procs:
            p.start()
        probe = gateway_client(bench.gateway_url(probe_gw, creds[probe_gw]))  # not a load gateway: its own account
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("LISTEN riskwatch_alarm")

                def drain(until: float) -> None:
                    while True:
                        left = until - time.time()
                        r, _, _ = select.select([conn.fileno()], [], [], max(0.0, left))
                        if r:
                            now = time.time()
                            for n in conn.notifies(timeout=0):
                                d = orjson.loads(n.payload)
                                pid = subject_of.get(d["subject"])
                                if d["event"] == "activate" and d["rule"] == RULE and pid is not None:
                                    run.committed.setdefault(pid, now)
                        if left <= 0:
                            return

                def breach(tag: str) -> None:
                    ts = int(time.time() * 1000)
                    probe.publish(f"rw/v1/{probe_gw}/telemetry",
                                  orjson.dumps({"readings": [{"tag": tag, "v": BREACH_VALUE, "ts": ts}]}), qos=1)

                drain(time.time() + 2.0)  # the load running
                # Untimed: the first alarm after start-up pays for warming up (a large registry takes seconds).
                t_warm = time.time()
                breach(warm_tag)
                if not receiver.wait(1, 120):
                    raise RuntimeError("alerting: the warm-up breach never reached the webhook in 120 s")
                progress(f"alerting: warm-up breach reached the webhook in {time.time() - t_warm:.1f} s (not timed)")
                drain(time.time() + 1.0)
                for b, tag in enumerate(probe_tags):
                    run.published[ids[tag]] = time.time()
                    breach(tag)
                    drain(time.time() + interval_s)
                    if (b + 1) % 20 == 0:
                        progress(f"alerting: {b + 1}/{breaches} breaches, {len(receiver) - 1} webhooks received")
                # the last ones on their way: wait for every commit and webhook, or give up after 30 s
                deadline = time.time() + 30
                while time.time() < deadline and (len(run.committed) < breaches or len(receiver) <= breaches):
                    drain(min(deadline, time.time() + 0.2))
        finally:
            probe.disconnect()
            probe.loop_stop()
            for p in procs:
                p.join(seconds + 60)
            disp.stop()
            d_thread.join(30)
            disp.close()
            receiver.stop()
    for call in receiver.calls:
        try:
            item = str(call.json()["data"]["items"][0]["item"])
        except (ValueError, KeyError, IndexError, TypeError):
            run.unexpected += 1
            continue
        if item == f"alarm:{RULE}|p:{ids[warm_tag]}":
            continue
        pid = subject_of.get(item.rsplit("|", 1)[-1])
        if pid is None or pid in run.received or not item.startswith(f"alarm:{RULE}|"):
            run.unexpected += 1
            continue
        run.received[pid] = call.received_at
        run.unsigned += call.signed is not True
    run.sent, run.failed, run.last_error = disp.stats.sent, disp.stats.failed, disp.stats.last_error
    if run.missing:
        progress(f"alerting: FAILED — {len(run.missing)} of {breaches} breaches never reached the webhook "
                 f"(points {', '.join(f'p:{p}' for p in run.missing[:10])}{' …' if len(run.missing) > 10 else ''}); "
                 f"{len(run.committed)} alarms committed, {run.sent} notifications delivered, {run.failed} failed "
                 f"attempts (last error: {run.last_error})")
        for line in _problems(bench.dir / "dispatcher.log")[-5:]:
            progress(f"  dispatcher: {line}")
    return run


def _problems(log: Path) -> list[str]:
    """The dispatcher's warnings and errors (the bench's directory is removed at the end)."""
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    return [x for x in lines if " WARNING " in x or " ERROR " in x]


def add_figures(fig: Figures, run: AlertRun, *, breaches: int, load: float) -> None:
    total, to_commit, to_hook = run.total(), run.to_commit(), run.commit_to_webhook()
    p99, got = pct(total, 99), len(run.received)
    fig.add("alert_latency_p50_ms", "越限→Webhook送达 breach→webhook received p50", pct(total, 50) * 1000, "ms",
            f"{breaches} breaches, 1 webhook each, at {load:,.0f} readings/s")
    fig.add("alert_latency_p99_ms", "越限→Webhook送达 breach→webhook received p99", p99 * 1000, "ms",
            f"target ≤ {TARGET_P99_S * 1000:.0f} ms")
    fig.add("alert_latency_max_ms", "越限→Webhook送达 breach→webhook received max",
            (max(total) if total else float("nan")) * 1000, "ms", "")
    # A webhook that never came is infinitely late: the percentiles above cover only those that did.
    met = "✓ met" if p99 <= TARGET_P99_S and got == breaches else "✗ missed"
    fig.add("alert_latency_p99_of_target", "比值 p99 ÷ 1 s target", p99 / TARGET_P99_S * 100, "%",
            f"{met} (≤ 100 % meets the target)")
    verdict = "✓" if got == breaches else f"✗ {breaches - got} MISSING"
    extra = (f"; {run.unexpected} unexpected" if run.unexpected else "") + \
            (f"; {run.unsigned} with a bad signature" if run.unsigned else "")
    fig.data.update(alert_webhooks_sent=breaches, alert_webhooks_received=got, alert_webhooks_missing=breaches - got,
                    alert_webhooks_unexpected=run.unexpected, alert_webhooks_bad_signature=run.unsigned,
                    alert_delivery_failed_attempts=run.failed)
    fig.rows.append(("  Webhook 收到/发送 webhooks received / breaches sent", f"{got} / {breaches}",
                     verdict + extra + (f"; {run.failed} failed attempts" if run.failed else "")))
    fig.add("alert_to_commit_p50_ms", "  其中 越限→报警提交 publish→alarm committed p50", pct(to_commit, 50) * 1000,
            "ms", "collector + rule engine + commit")
    fig.add("alert_to_commit_p99_ms", "  其中 越限→报警提交 publish→alarm committed p99", pct(to_commit, 99) * 1000,
            "ms", "")
    fig.add("alert_commit_to_hook_p50_ms", "  其中 提交→Webhook送达 committed→webhook p50",
            pct(to_hook, 50) * 1000, "ms", "outbox → route → group → deliver")
    fig.add("alert_commit_to_hook_p99_ms", "  其中 提交→Webhook送达 committed→webhook p99",
            pct(to_hook, 99) * 1000, "ms", "")

