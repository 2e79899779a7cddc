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
)
from simulators.models import SignalModel, SimConfigError, build_models
from simulators.run import (
    GatewayResult,
    Publisher,
    SimProgress,
    SimResult,
    default_site_path,
    load_site,
    sample_times_ms,
    simulate,
    site_models,
)

__all__ = [
    "GatewayAuthError",
    "GatewayConnectError",
    "GatewayError",
    "GatewayPublisher",
    "GatewayResult",
    "GatewayStats",
    "PayloadTooLarge",
    "Publisher",
    "SignalModel",
    "SimConfigError",
    "SimProgress",
    "SimResult",
    "build_models",
    "default_site_path",
    "encode_telemetry",
    "load_site",
    "sample_times_ms",
    "simulate",
    "site_models",
]
