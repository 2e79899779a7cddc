"""`riskwatch serve` over HTTPS, behind a proxy, and its refusal to e-mail links nobody can open (issue #11, item 10).

Real processes: `riskwatch serve` in a subprocess on the test's PostgreSQL and
Mosquitto. The certificates are made here with `cryptography` (a private CA and
a server certificate for 127.0.0.1), and the client trusts that CA only.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.services import COLLECTOR_USER, LocalMosquitto, free_port
from tests.conftest import sql_one

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from api.cli import main; main()"]


def make_certs(where: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 / localhost signed by it: (ca, cert, key)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "riskwatch test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = where / "ca.crt", where / "server.crt", where / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class Serve:
    """`riskwatch serve` in a subprocess, its output in a log file."""

    def __init__(self, db_url: str, mqtt_url: str, workdir: Path):
        self.env = {**os.environ, "RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": mqtt_url,
                    "RISKWATCH_DATA_DIR": str(workdir / "data")}
        self.env.pop("RISKWATCH_PUBLIC_URL", None)
        self.port = free_port()
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self, *args: str) -> str:
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen([*CLI, "serve", "--port", str(self.port), "--no-collector", *args],
                                         env=self.env, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            text = self.log.read_text(errors="replace")
            if "就绪 ready" in text:
                return text
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start ({self.proc.poll()}):\n{text[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def serve(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[Serve]:
    s = Serve(db_url, broker.url(COLLECTOR_USER), tmp_path)
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def test_serve_speaks_https_with_the_given_certificate_and_nothing_else(serve: Serve, tmp_path: Path) -> None:
    ca, cert, key = make_certs(tmp_path)
    log = serve.start("--certfile", str(cert), "--keyfile", str(key))
    assert f"就绪 ready https://127.0.0.1:{serve.port}" in log
    base = f"https://127.0.0.1:{serve.port}"

    trusted = ssl.create_default_context(cafile=str(ca))
    r = httpx.get(f"{base}/healthz", verify=trusted, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["database"]["ok"] is True

    # the certificate is checked: a client that does not trust our CA refuses the server
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        httpx.get(f"{base}/healthz", verify=ssl.create_default_context(), timeout=10)
    # plain HTTP to the HTTPS port gets no answer
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{serve.port}/healthz", timeout=10)
    # and without --proxy-headers a forged X-Forwarded-For is not believed (the audit log records the peer)
    admin = serve.cli("token", "create", "--role", "admin", "--name", "运维 ops")
    assert admin.returncode == 0, admin.stderr
    r = httpx.post(f"{base}/api/v1/tokens", json={"name": "值班室", "role": "bureau"}, verify=trusted, timeout=30,
                   headers={"Authorization": f"Bearer {admin.stdout.strip()}", "X-Forwarded-For": "203.0.113.7"})
    assert r.status_code == 201, r.text
    assert sql_one(serve.env["RISKWATCH_DB_URL"], "SELECT client FROM audit_log WHERE method = 'POST'"
                   " ORDER BY id DESC LIMIT 1") == "127.0.0.1"
    assert serve.stop() == 0


def test_behind_a_proxy_the_forwarded_client_is_recorded(serve: Serve) -> None:
    serve.start("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    admin = serve.cli("token", "create", "--role", "admin", "--name", "运维 ops")
    assert admin.returncode == 0, admin.stderr
    r = httpx.post(f"http://127.0.0.1:{serve.port}/api/v1/tokens", json={"name": "值班室", "role": "bureau"},
                   timeout=30, headers={"Authorization": f"Bearer {admin.stdout.strip()}",
                                        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    assert r.status_code == 201, r.text
    assert sql_one(serve.env["RISKWATCH_DB_URL"], "SELECT client FROM audit_log WHERE method = 'POST'"
                   " ORDER BY id DESC LIMIT 1") == "203.0.113.7"
    assert serve.stop() == 0


def test_refuses_to_start_where_e_mailed_links_would_point_at_itself(db_url: str, tmp_path: Path) -> None:
    s = Serve(db_url, "mqtt://riskwatch-collector:x@127.0.0.1:1", tmp_path)
    res = s.cli("serve", "--host", "0.0.0.0", "--port", str(s.port), "--no-collector", timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "未设置 RISKWATCH_PUBLIC_URL" in res.stderr and "--no-alerting" in res.stderr
    assert "Traceback" not in res.stderr
    # half a pair of TLS files, or a key that is not the certificate's, is refused just as clearly
    ca, cert, key = make_certs(tmp_path)
    res = s.cli("serve", "--port", str(s.port), "--certfile", str(cert), timeout=60)
    assert res.returncode == 2 and "--keyfile" in res.stderr, res.stderr
    res = s.cli("serve", "--port", str(s.port), "--certfile", str(cert), "--keyfile", str(ca), timeout=60)
    assert res.returncode == 2 and "证书或私钥无效" in res.stderr, res.stderr
