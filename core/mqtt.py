"""One way to point a paho client at a broker URL: credentials and, for `mqtts://`, a verifying TLS context.

Every MQTT client riskwatch runs — the collector, the simulators, the bench,
the edge agent — goes through `configure`, so none of them can forget to
verify the broker's certificate.
"""

from __future__ import annotations

import paho.mqtt.client as mqtt

from core.settings import MqttUrl


def configure(client: mqtt.Client, url: MqttUrl) -> None:
    """Set the client's username/password and TLS context from the URL (call before connect)."""
    if url.username:
        client.username_pw_set(url.username, url.password)
    ctx = url.ssl_context()
    if ctx is not None:
        client.tls_set_context(ctx)


__all__ = ["configure"]
