"""Health checks: the database answers a query, the broker accepts the service's own MQTT login.

The broker check speaks just enough MQTT 3.1.1 (CONNECT, CONNACK, DISCONNECT)
over a socket: a TCP connect alone would call a broker healthy that refuses
the service's credentials, which is exactly the outage worth seeing. For an
`mqtts://` URL the socket is wrapped in the URL's verifying TLS context (CA and
host name), so an expired or foreign broker certificate is reported as such
("TLS: certificate verify failed ...") instead of as a dead broker.

The login uses a clean session and is meant for an account of its own (the
health account, `core.services.HEALTH_USER`): the broker binds client ids to
usernames, so a login under the collector's name would take over its session.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from core.settings import MqttUrl

_CONNACK = {0: "accepted", 1: "bad protocol version", 2: "client id rejected", 3: "server unavailable",
            4: "bad user name or password", 5: "not authorised"}

_CLOSED = "connection closed before CONNACK"


@dataclass(frozen=True)
class Check:
    ok: bool
    latency_ms: float | None = None
    detail: str | None = None


def database(pool: ConnectionPool, timeout: float = 2.0) -> Check:
    t0 = time.perf_counter()
    try:
        with pool.connection(timeout=timeout) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return Check(False, None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return Check(True, (time.perf_counter() - t0) * 1000)


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def broker(url: MqttUrl, timeout: float = 2.0) -> Check:
    """Log in to the broker (TLS when the URL says `mqtts://`) and log out again."""
    t0 = time.perf_counter()
    flags = 0x02  # clean session
    payload = _string(f"riskwatch-health-{os.getpid()}-{time.monotonic_ns() % 1_000_000}")
    if url.username:
        flags |= 0x80
        payload += _string(url.username)
        if url.password is not None:
            flags |= 0x40
            payload += _string(url.password)
    var = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", 10)
    packet = bytes([0x10]) + _remaining(len(var) + len(payload)) + var + payload
    try:
        ctx = url.ssl_context()
    except (OSError, ssl.SSLError, ValueError) as exc:  # a missing or unreadable cafile / client certificate
        return Check(False, None, f"TLS: cannot load the CA or client certificate: {exc}")
    try:
        raw = socket.create_connection((url.host, url.port), timeout=timeout)
    except OSError as exc:
        return Check(False, None, f"{url.host}:{url.port} unreachable: {exc}")
    with raw:
        raw.settimeout(timeout)
        try:
            s = raw if ctx is None else ctx.wrap_socket(raw, server_hostname=url.host)
            try:
                c = _login(s, packet, t0)
            finally:
                if s is not raw:
                    s.close()
        except ssl.SSLCertVerificationError as exc:
            return Check(False, None, f"TLS: certificate verify failed ({exc.verify_message})")
        except ssl.SSLError as exc:
            return Check(False, None, f"TLS: {exc.reason or exc}")
        except OSError as exc:  # reset or timed out after the TCP connect: the broker is there but did not answer
            c = Check(False, None, f"{_CLOSED} ({exc})")
    if not c.ok and ctx is None and str(c.detail).startswith(_CLOSED):
        return Check(False, None, f"{c.detail}: a TLS listener? the URL says mqtt://, try mqtts://")
    return c


def _login(s: socket.socket, packet: bytes, t0: float) -> Check:
    """CONNECT, wait for CONNACK, DISCONNECT; OSError (and ssl.SSLError) propagate to the caller."""
    s.sendall(packet)
    ack = b""
    while len(ack) < 4:
        chunk = s.recv(4 - len(ack))
        if not chunk:
            return Check(False, None, _CLOSED)
        ack += chunk
    if ack[0] != 0x20:
        return Check(False, None, f"unexpected reply 0x{ack[0]:02x}")
    rc = ack[3]
    if rc != 0:
        return Check(False, None, f"CONNACK refused: {_CONNACK.get(rc, rc)}")
    s.sendall(b"\xe0\x00")  # DISCONNECT
    return Check(True, (time.perf_counter() - t0) * 1000, "CONNACK accepted")
