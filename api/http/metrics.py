"""Prometheus metrics: request counters and latency histograms, ledger counters, collector figures.

Each app gets its own CollectorRegistry (not prometheus_client's global one),
so two apps in one process — tests build many — never share or clash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("riskwatch_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("riskwatch_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], buckets=_BUCKETS, registry=r)
        self.hazard_actions = Counter("riskwatch_hazard_actions", "Hazard workflow actions taken through the API",
                                      ["action"], registry=r)
        self.hazard_refusals = Counter("riskwatch_hazard_refusals", "Hazard actions refused (403/409/422)",
                                       ["code"], registry=r)
        self.audit_failures = Counter("riskwatch_audit_write_failures", "Audit rows that could not be written",
                                      registry=r)
        self.hazard_ticks = Counter("riskwatch_hazard_ticks", "Runs of the hazards tick", ["outcome"], registry=r)
        self.hazard_tick_latency = Histogram("riskwatch_hazard_tick_duration_seconds", "Hazards tick duration",
                                             buckets=_BUCKETS, registry=r)
        self.supervised = Counter("riskwatch_hazards_supervised", "Tickets listed for supervision by the tick",
                                  ["level"], registry=r)
        self.swept = Counter("riskwatch_hazard_candidates_swept", "Candidates taken up by the sweep", registry=r)
        self.task_restarts = Counter("riskwatch_task_restarts", "Restarts of supervised background tasks",
                                     ["task"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def add(self, collector: Collector) -> None:
        self.registry.register(collector)


class StatsExporter(Collector):
    """Exposes a running component's own counters (collector, rule engine) at scrape time."""

    def __init__(self, prefix: str, read: Callable[[], dict[str, tuple[str, float]]]):
        self.prefix = prefix
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for name, (kind, value) in self.read().items():
            full = f"{self.prefix}_{name}"
            if kind == "counter":
                yield CounterMetricFamily(full, f"{self.prefix} {name}", value=value)
            else:
                yield GaugeMetricFamily(full, f"{self.prefix} {name}", value=value)

    def describe(self) -> Iterator[Metric]:
        return iter(())


#: Methods counted under their own name; any other method string a client sends is counted as "other",
#: so a client cannot mint label values (each one a new time series kept for the process's life).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
UNMATCHED = "<unmatched>"


def method_label(method: object) -> str:
    m = str(method)
    return m if m in METHODS else OTHER


class MetricsMiddleware:
    """Counts and times every HTTP request by method and route template — both from closed sets, so the
    label cardinality stays bounded whatever clients send (unknown methods: "other"; unknown paths:
    "<unmatched>")."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = route_template(scope)
            method = method_label(scope.get("method", ""))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/v1/hazards/{hazard_id}`), never the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if isinstance(path, str) and path else UNMATCHED
