"""A private certificate authority for the broker: its server certificate and gateways' client certificates.

`riskwatch services up` makes the CA and the broker's server certificate under
`<data dir>/mosquitto/tls/`; `riskwatch gateway add --cert` signs a client
certificate whose subject CN is the gateway id, which the broker's mutual-TLS
listener (`use_identity_as_username`) takes as the MQTT username. Keys are
EC P-256, certificates X.509 v3 made with the `cryptography` package (no
openssl subprocess). Private keys are written with mode 0600 from the start.

Renewal: the server certificate is re-issued when it has less than 30 days
left (checked on every `services up`); the CA lasts ten years.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.reserved import reserved_user

CA_DAYS = 3650
SERVER_DAYS = 825
CLIENT_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class ClientCerts:
    """Where gateway client certificates come from when the mutual-TLS listener is on: the private CA that
    signs them (CN = gateway id, which that listener takes as the username) and the listener's port."""

    ca: PrivateCA
    port: int

    def issue(self, gateway_id: str) -> Issued:
        return self.ca.issue_client(gateway_id)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a file atomically with its final mode from the first byte (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # umask may have narrowed it; never widened
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, org: str = "riskwatch") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str = "riskwatch private CA") -> Issued:
    key = _key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _load(ca: Issued) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    return cert, key


def _leaf(ca: Issued, cn: str, days: int, *, server: bool, hosts: list[str] | None = None) -> Issued:
    ca_cert, ca_key = _load(ca)
    key = _key()
    now = _now()
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                              else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        names: list[x509.GeneralName] = []
        for h in hosts or ["localhost", "127.0.0.1"]:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def make_server(ca: Issued, hosts: list[str], cn: str | None = None) -> Issued:
    """A server certificate for these host names / IP addresses (subjectAltName)."""
    return _leaf(ca, cn or hosts[0], SERVER_DAYS, server=True, hosts=hosts)


def make_client(ca: Issued, gateway_id: str) -> Issued:
    """A client certificate whose CN is the gateway id (the broker's `use_identity_as_username`)."""
    return _leaf(ca, gateway_id, CLIENT_DAYS, server=False)


def expires(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def common_name(cert_pem: bytes) -> str:
    attrs = x509.load_pem_x509_certificate(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


class PrivateCA:
    """The CA and the broker's server certificate kept in one directory."""

    def __init__(self, directory: Path):
        self.dir = directory

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    def exists(self) -> bool:
        return self.ca_cert.exists() and self.ca_key.exists()

    def ca(self) -> Issued:
        return Issued(self.ca_cert.read_bytes(), self.ca_key.read_bytes())

    def ensure(self, hosts: list[str]) -> None:
        """Create the CA if missing; (re-)issue the server certificate if missing, expiring or for other hosts."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not self.exists():
            ca = make_ca()
            write_private(self.ca_key, ca.key_pem)
            write_private(self.ca_cert, ca.cert_pem, 0o644)
            self.server_cert.unlink(missing_ok=True)
        if self._server_ok(hosts):
            return
        srv = make_server(self.ca(), hosts)
        write_private(self.server_key, srv.key_pem)
        write_private(self.server_cert, srv.cert_pem, 0o644)

    def _server_ok(self, hosts: list[str]) -> bool:
        if not (self.server_cert.exists() and self.server_key.exists()):
            return False
        cert = x509.load_pem_x509_certificate(self.server_cert.read_bytes())
        if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
            return False
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        return set(hosts) <= have

    def issue_client(self, gateway_id: str) -> Issued:
        """A client certificate for a gateway; never for a name the service keeps for itself: the mutual-TLS
        listener takes the CN as the username, so a `riskwatch-collector` certificate would be the collector."""
        if reserved_user(gateway_id) or not gateway_id:
            raise ValueError(f"{gateway_id!r} is reserved for the service: no client certificate")
        if not self.exists():
            raise FileNotFoundError(f"no private CA under {self.dir}: run `riskwatch services up`")
        return make_client(self.ca(), gateway_id)
