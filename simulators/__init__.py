"""Simulated plants and gateways: signal models, a real MQTT gateway client, sample sites.

Test and demo tooling only: production code must not import this package.
"""

from simulators.gateway import (
    GatewayAuthError,
    GatewayConnectError,
    GatewayError,
    GatewayPublisher,
    GatewayStats,
    PayloadTooLarge,
    encode_telemetry,
    tls_context,
)
from simulators.models import SignalModel, SimConfigError, build_models
from simulators.run import (
    GatewayResult,
    Publisher,
    PublisherFactory,
    SimProgress,
    SimResult,
    default_site_path,
    load_site,
    sample_times_ms,
    simulate,
    site_models,
)
from simulators.scenarios import SCENARIOS, Expected, Scenario, ScenarioError, get_scenario

__all__ = [
    "SCENARIOS",
    "Expected",
    "GatewayAuthError",
    "GatewayConnectError",
    "GatewayError",
    "GatewayPublisher",
    "GatewayResult",
    "GatewayStats",
    "PayloadTooLarge",
    "Publisher",
    "PublisherFactory",
    "Scenario",
    "ScenarioError",
    "SignalModel",
    "SimConfigError",
    "SimProgress",
    "SimResult",
    "build_models",
    "default_site_path",
    "encode_telemetry",
    "get_scenario",
    "load_site",
    "sample_times_ms",
    "simulate",
    "site_models",
    "tls_context",
]
