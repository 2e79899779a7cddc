"""`riskwatch bench`: throughput, latency and panel-query figures measured on private services.

Production tooling kept apart from the simulators it drives: `harness` (services, collector,
publishers, the throughput and alarm-latency parts), `alert_latency` (breach -> webhook),
`grafana_panels` (panel queries on 30 days of data) and `run` (every part, in order).
"""

from simulators.bench.harness import Figures
from simulators.bench.run import run

__all__ = ["Figures", "run"]
