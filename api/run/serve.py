"""`riskwatch serve`: the API, the collector (with the rule engine and hazard intake) and the hazards
tick in one process, under one supervisor.

Each background part is a named task of the `Supervisor` (api.run.supervisor): a failing task is
restarted with backoff and never takes the API down with it; /healthz shows it as not ok while it is
down. The API runs on the main thread (uvicorn); SIGTERM or Ctrl-C stops uvicorn, then the tasks — the
collector flushes what it holds. The catalog, the clock and the settings are built once here (through
api.run.compose) and injected into every part.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
import uvicorn

from alerting.ack import link_secret
from alerting.config import load_alerting
from alerting.dispatcher import Dispatcher
from api.http import Check, Metrics, StatsExporter, create_app
from api.http.ingest_bridge import BridgeSettings, IngestBridge
from api.run import compose
from api.run.northbound import load_configured as load_northbound_configured
from api.run.northbound import northbound_task
from api.run.serve_config import DEFAULT_FORWARDED_ALLOW_IPS, ServeNetwork, check_network
from api.run.supervisor import Running, Supervisor
from core.clock import Clock
from core.services import BRIDGE_USER, LocalMosquitto
from core.settings import Settings
from core.tls import ClientCerts
from hazards import ledger, workflow
from hazards.intake import open_or_attach
from hazards.risk.model import default_model
from hazards.risk.store import AvailabilityCache
from ingest.collector import Collector
from rules.engine import RuleEngine
from rules.model import Catalog

log = logging.getLogger("riskwatch.serve")


class HazardTicker:
    """The ledger's clock-driven work: list overdue tickets for supervision, take up stray candidates.

    The clock is injected, so tests move a FakeClock and call `once()` instead of waiting a day.
    """

    def __init__(self, db_url: str, clock: Clock, metrics: Metrics, interval_s: float = 60.0,
                 city_after_s: float = workflow.CITY_AFTER_S):
        self.db_url = db_url
        self.clock = clock
        self.metrics = metrics
        self.interval_s = interval_s
        self.city_after_s = city_after_s
        self._stop = threading.Event()

    def once(self, conn: psycopg.Connection) -> tuple[int, int]:
        """(tickets listed for supervision, candidates taken up)."""
        t0 = time.perf_counter()
        swept = ledger.sweep_candidates(conn)
        done = ledger.tick(conn, self.clock.now(), self.city_after_s)
        self.metrics.hazard_tick_latency.observe(time.perf_counter() - t0)
        self.metrics.hazard_ticks.labels("ok").inc()
        self.metrics.swept.inc(len(swept))
        for _, e in done:
            self.metrics.supervised.labels(str(e.data.get("level"))).inc()
        return len(done), len(swept)

    def run(self) -> None:
        self._stop.clear()
        with psycopg.connect(self.db_url, application_name="riskwatch-hazards") as conn:
            while not self._stop.is_set():
                try:
                    self.once(conn)
                except psycopg.OperationalError:
                    self.metrics.hazard_ticks.labels("error").inc()
                    raise  # the supervisor reconnects with backoff
                except psycopg.Error as exc:
                    self.metrics.hazard_ticks.labels("error").inc()
                    log.error("hazards tick failed: %s", exc)
                    conn.rollback()
                self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()


def tick_hazards_once(db_url: str, clock: Clock) -> tuple[int, int]:
    """`riskwatch hazards tick`: the ticker's work once, at `clock`'s time. (supervised, candidates taken up)."""
    with psycopg.connect(db_url) as conn:
        return HazardTicker(db_url, clock, Metrics()).once(conn)


def _collector_task(settings: Settings, catalog: Catalog, clock: Clock, metrics: Metrics) -> Callable[[], Running]:
    """A factory of collectors (with the rule engine and the ledger's intake hook); a restart gets a new one,
    which rebuilds its state from the database. Its counters are exported under riskwatch_collector_*."""
    assert settings.db_url and settings.mqtt_url
    current: dict[str, Collector | RuleEngine] = {}

    def factory() -> Running:
        # The hook's result (the ticket id) is ignored by the engine.
        engine = compose.build_engine(catalog, clock, on_candidate=open_or_attach)
        col = compose.build_collector(settings, clock, engine)
        current["col"], current["engine"] = col, engine
        return Running(col.run, col.stop)

    def read() -> dict[str, tuple[str, float]]:
        col, engine = current.get("col"), current.get("engine")
        out: dict[str, tuple[str, float]] = {}
        if isinstance(col, Collector):
            s = col.stats
            out.update({"messages_total": ("counter", s.messages), "readings_stored_total": ("counter",
                        s.readings_stored), "readings_duplicate_total": ("counter", s.readings_duplicate),
                        "dead_letters_total": ("counter", s.dead_letters), "unmapped_total": ("counter", s.unmapped),
                        "batches_total": ("counter", s.batches), "db_errors_total": ("counter", s.db_errors),
                        "mqtt_connects_total": ("counter", s.mqtt_connects),
                        "last_commit_timestamp_seconds": ("gauge", s.last_commit_s)})
        if isinstance(engine, RuleEngine):
            e = engine.stats
            out.update({"alarm_activations_total": ("counter", e.activations),
                        "alarm_clears_total": ("counter", e.clears),
                        "hazard_candidates_total": ("counter", e.candidates),
                        "rule_eval_seconds_total": ("counter", e.eval_s)})
        return out

    metrics.add(StatsExporter("riskwatch_collector", read))
    return factory


def _alerting_task(settings: Settings, public_url: str, titles: compose.Titles, clock: Clock,
                   metrics: Metrics) -> Callable[[], Running]:
    """A factory of dispatchers; the routing file is loaded (and a bad one refused) before serve starts.
    `titles` come from the catalog the collector runs: notices name alarms by its rules."""
    assert settings.db_url
    cfg = load_alerting(settings.routing_file())
    key = link_secret(settings.link_secret, settings.data_dir)
    if not cfg.receivers:
        log.warning("no alerting routing file (RISKWATCH_ALERTING or %s): notifications go nowhere",
                    settings.data_dir / "alerting.yaml")
    current: dict[str, Dispatcher] = {}

    def factory() -> Running:
        d = compose.build_dispatcher(settings.db_url or "", cfg, clock, titles, public_url=public_url, link_secret=key)
        current["d"] = d

        def stop() -> None:
            d.stop()

        def run() -> None:
            try:
                d.run()
            finally:
                d.close()
        return Running(run, stop)

    def read() -> dict[str, tuple[str, float]]:
        d = current.get("d")
        if d is None:
            return {}
        s = d.stats
        return {"routed_total": ("counter", s.routed), "notifications_total": ("counter", s.notifications),
                "sent_total": ("counter", s.sent), "failed_attempts_total": ("counter", s.failed),
                "dead_total": ("counter", s.dead), "unrouted_total": ("counter", s.unrouted)}

    metrics.add(StatsExporter("riskwatch_alerting", read))
    return factory


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8080, catalog: Path | None = None,
          collector: bool = True, hazard_tick_s: float = 60.0, alerting: bool = True,
          broker_sync: Callable[[psycopg.Connection], object] | None = None, clock: Clock | None = None,
          log_level: str = "info", ready: Callable[[], None] | None = None,
          certfile: Path | None = None, keyfile: Path | None = None, proxy_headers: bool = False,
          forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS, broker: LocalMosquitto | None = None) -> None:
    """Run everything until SIGTERM / SIGINT. `settings` must have both URLs resolved.

    HTTPS directly with `certfile`/`keyfile`, or behind a proxy trusted for X-Forwarded-* from
    `forwarded_allow_ips` (api.run.serve_config); refuses (ConfigError) before starting anything when
    alerting would e-mail links to an address only this machine can reach.
    """
    assert settings.db_url is not None
    net = ServeNetwork(host, port, certfile, keyfile, proxy_headers, forwarded_allow_ips)
    check_network(net, alerting=alerting, public_url=settings.public_url)
    clock = clock or compose.build_clock()
    rules = compose.load_rule_catalog(catalog) if collector or alerting else None
    metrics = Metrics()
    sup = Supervisor(metrics)
    if collector and rules is not None:
        sup.add("collector", _collector_task(settings, rules, clock, metrics))
    ticker = HazardTicker(settings.db_url, clock, metrics, hazard_tick_s)
    sup.add("hazards-tick", lambda: Running(ticker.run, ticker.stop))
    if settings.public_url is None:
        settings = replace(settings, public_url=net.own_url())  # loopback only (checked above) or no alerting
    if alerting and rules is not None:
        sup.add("alerting", _alerting_task(settings, settings.public_url or "", compose.rule_titles(rules), clock,
                                           metrics))
    northbound = load_northbound_configured()  # RISKWATCH_NORTHBOUND; a bad file refuses to start (file:line)
    if northbound is not None:
        sup.add("northbound", northbound_task(settings.db_url or "", northbound, clock, metrics))
    checks: dict[str, Callable[[], Check]] = {}
    if broker is not None:
        checks["mosquitto"] = _watch_broker(sup, broker)
    if broker is not None and broker_sync is not None:
        # The private broker's files from the registry as they stand, so they hold the bridge account (issue 18)
        # even when nothing changed since a version without it wrote them.
        assert settings.db_url is not None
        with psycopg.connect(settings.db_url) as conn:
            broker_sync(conn)
    bridge = _ingest_bridge(sup, metrics, broker)
    checks.update({name: sup.check(name) for name in sup.tasks})
    app = create_app(settings, clock=clock, metrics=metrics, broker_sync=broker_sync, checks=checks,
                     ingest_bridge=bridge)
    refresher = RiskInputsRefresher(settings.db_url or "", app.state.ctx.risk_cache, clock)
    sup.add("risk-inputs", lambda: Running(refresher.run, refresher.stop))
    if broker is not None and broker.state.mqtt_mtls_port:  # gateways attached in the console get a certificate
        app.state.ctx.client_certs = ClientCerts(broker.ca, broker.state.mqtt_mtls_port)
    from api.web import PREFIX, create_console  # the console face, on the same context (issue 13)

    app.mount(PREFIX, create_console(app.state.ctx, catalog=catalog))
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=10, **net.uvicorn_kwargs())
    server = uvicorn.Server(config)

    def _signal(_sig: int, _frame: object) -> None:
        server.should_exit = True

    # uvicorn restores these after its own handling and re-raises the signal into them.
    signal.signal(signal.SIGTERM, _signal)
    signal.signal(signal.SIGINT, _signal)
    sup.start()
    if ready is not None:
        threading.Thread(target=_when_started, args=(server, ready), daemon=True, name="rw-ready").start()
    try:
        server.run()
    finally:
        log.info("stopping background tasks")
        sup.stop()


class RiskInputsRefresher:
    """Keeps the risk rating's costly inputs (availability over the model's window, the mandatory gaps) fresh in
    the cache the API and the console share, every half of its lifetime: the board's pages read them, never
    compute them (at 100,000 points the availability report takes seconds). The first page after start may
    still compute them once, if it comes before the first refresh."""

    def __init__(self, db_url: str, cache: AvailabilityCache, clock: Clock):
        self.db_url, self.cache, self.clock = db_url, cache, clock
        self.hours = default_model().availability_window_hours
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                with psycopg.connect(self.db_url, autocommit=True) as conn:
                    self.cache.refresh(conn, self.clock.now(), self.hours)
                log.debug("risk inputs refreshed in %.2f s", time.monotonic() - t)
            except psycopg.Error as exc:  # the database away: the next round tries again
                log.warning("risk inputs not refreshed: %s", exc)
            self._stop.wait(self.cache.ttl_s / 2)

    def stop(self) -> None:
        self._stop.set()


def _ingest_bridge(sup: Supervisor, metrics: Metrics, broker: LocalMosquitto | None) -> IngestBridge | None:
    """HTTP ingest's connection to the broker (issue 18), a supervised task "http-bridge": the private broker's
    bridge account, or RISKWATCH_MQTT_BRIDGE_URL for an external one (docs/http-ingest.md). None: no account
    configured, POST /api/v1/ingest answers 503."""
    cfg = BridgeSettings.from_env(dict(os.environ), broker.url(BRIDGE_USER) if broker is not None else None)
    if cfg.url is None:
        log.info("HTTP ingest off: no bridge account (RISKWATCH_MQTT_BRIDGE_URL)")
        return None
    bridge = IngestBridge(cfg)
    sup.add("http-bridge", lambda: Running(bridge.run, bridge.stop))
    s = bridge.stats
    metrics.add(StatsExporter("riskwatch_http_ingest", lambda: {
        "published_total": ("counter", s.published), "confirmed_total": ("counter", s.confirmed),
        "already_stored_total": ("counter", s.already_covered), "timeouts_total": ("counter", s.timeouts),
        "unavailable_total": ("counter", s.unavailable), "connected": ("gauge", float(bridge.connected()))}))
    return bridge


def _watch_broker(sup: Supervisor, broker: LocalMosquitto) -> Callable[[], Check]:
    """The private broker under supervision: restarted when it dies; /healthz says whether it runs and how often it
    had to be started again."""
    stop = threading.Event()

    def run() -> None:
        stop.clear()
        broker.watch(stop)

    sup.add("broker-watch", lambda: Running(run, stop.set))

    def check() -> Check:
        up = broker.running()
        detail = "private broker running" if up else "private broker down; restarting"
        if broker.restarts:
            at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(broker.last_restart_at or 0))
            detail += f" (restarted {broker.restarts} time(s), last at {at})"
        return Check(up, None, detail)

    return check


def _when_started(server: uvicorn.Server, ready: Callable[[], None]) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        ready()
