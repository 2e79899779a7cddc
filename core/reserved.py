"""Broker account names the service keeps for itself; a leaf module, so that the certificate authority
(core.tls) and the broker's account files (core.services) both refuse them without importing each other."""

from __future__ import annotations

__all__ = ["RESERVED_PREFIX", "reserved_user"]

#: Names the service keeps for itself: no gateway id may start with this (case-insensitive).
RESERVED_PREFIX = "riskwatch"


def reserved_user(name: str) -> bool:
    """True for a broker username the service keeps for itself (the collector's, the health check's, ...)."""
    return name.lower().startswith(RESERVED_PREFIX) or name.startswith("$")
