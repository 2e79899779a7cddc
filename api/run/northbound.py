"""Composing the northbound forwarder (issue 18): which file, and the supervised task `serve` runs.

The file is named by RISKWATCH_NORTHBOUND (docs/northbound.md); with none, nothing is forwarded and
the triggers owe nothing (no target is registered). A bad file refuses to start serve, as a bad
routing file does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from alerting.northbound import Forwarder
from alerting.northbound_config import NorthboundConfig, load_northbound
from api.http import Metrics, StatsExporter
from api.run.supervisor import Running
from core.clock import Clock

__all__ = ["ENV", "configured_file", "load_configured", "northbound_task"]

log = logging.getLogger("riskwatch.northbound")

ENV = "RISKWATCH_NORTHBOUND"


def configured_file() -> Path | None:
    """The northbound file named by RISKWATCH_NORTHBOUND, or None (forwarding off)."""
    value = os.environ.get(ENV, "").strip()
    return Path(value) if value else None


def northbound_task(db_url: str, cfg: NorthboundConfig, clock: Clock,
                    metrics: Metrics | None = None) -> Callable[[], Running]:
    """A factory of forwarders for the supervisor (a crashed forwarder is restarted; nothing is lost)."""
    current: dict[str, Forwarder] = {}

    def factory() -> Running:
        f = Forwarder(db_url, cfg, clock=clock)
        current["f"] = f

        def run() -> None:
            try:
                f.run()
            finally:
                f.close()
        return Running(run, f.stop)

    def read() -> dict[str, tuple[str, float]]:
        f = current.get("f")
        if f is None:
            return {}
        s = f.stats
        return {"sent_total": ("counter", s.sent), "failed_attempts_total": ("counter", s.failed),
                "dead_total": ("counter", s.dead)}

    if metrics is not None:
        metrics.add(StatsExporter("riskwatch_northbound", read))
    return factory


def load_configured() -> NorthboundConfig | None:
    """The configured northbound file, validated (SourceError on a bad one), or None."""
    path = configured_file()
    if path is None:
        return None
    cfg = load_northbound(path)
    log.info("northbound: %d target(s) from %s", len(cfg.targets), path)
    return cfg
