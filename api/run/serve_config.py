"""How `riskwatch serve` faces the network: HTTPS, a reverse proxy, and where e-mailed links point.

Checked before anything starts, so a misconfigured production server refuses to
start with a sentence saying why instead of running with links nobody can open:

- HTTPS directly: ``--certfile`` and ``--keyfile`` (PEM) are handed to uvicorn
  (``ssl_certfile`` / ``ssl_keyfile``); the pair is loaded here first so a wrong
  path or a key that does not match the certificate is a clear error.
- Behind a reverse proxy (nginx terminating TLS): ``--proxy-headers`` makes
  uvicorn take the client address and scheme from ``X-Forwarded-For`` /
  ``X-Forwarded-Proto``, but only from ``--forwarded-allow-ips`` (default
  127.0.0.1). Off by default: headers from anyone else are not believed.
- Acknowledgement links in e-mails point at ``RISKWATCH_PUBLIC_URL``. Without
  it they would point at the address `serve` binds, which no one else can reach
  unless that is a loopback address on a developer's machine — so a server
  bound to a non-loopback address that runs alerting needs it set.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError

DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1"


@dataclass(frozen=True)
class ServeNetwork:
    """The listening side of `serve`: TLS material and whom to trust for proxy headers."""

    host: str = "127.0.0.1"
    port: int = 8080
    certfile: Path | None = None
    keyfile: Path | None = None
    proxy_headers: bool = False
    forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS

    @property
    def https(self) -> bool:
        return self.certfile is not None

    @property
    def scheme(self) -> str:
        return "https" if self.https else "http"

    def own_url(self) -> str:
        """The address serve listens on, as a URL (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def uvicorn_kwargs(self) -> dict[str, Any]:
        """The uvicorn.Config arguments for TLS and proxy headers."""
        out: dict[str, Any] = {"proxy_headers": self.proxy_headers,
                               "forwarded_allow_ips": self.forwarded_allow_ips}
        if self.https:
            out["ssl_certfile"] = str(self.certfile)
            out["ssl_keyfile"] = str(self.keyfile)
        return out


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; 0.0.0.0, :: and other names listen beyond this machine."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_network(net: ServeNetwork, *, alerting: bool, public_url: str | None) -> None:
    """Refuse what would start a server that is wrong for its users (ConfigError, Chinese first)."""
    if (net.certfile is None) != (net.keyfile is None):
        raise ConfigError("--certfile 与 --keyfile 须同时给出 --certfile and --keyfile go together (PEM files)")
    if net.certfile is not None and net.keyfile is not None:
        for opt, path in (("--certfile", net.certfile), ("--keyfile", net.keyfile)):
            if not path.is_file():
                raise ConfigError(f"{opt} 文件不存在 file not found: {path}")
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(net.certfile), str(net.keyfile))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"证书或私钥无效 cannot use certificate {net.certfile} with key {net.keyfile}: "
                              f"{exc}") from exc
    if not net.forwarded_allow_ips.strip():
        raise ConfigError("--forwarded-allow-ips 不能为空 must name the proxy's addresses (e.g. 127.0.0.1)")
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise ConfigError(f"RISKWATCH_PUBLIC_URL 须以 http:// 或 https:// 开头 must be an http(s) URL: {public_url!r}")
    if alerting and public_url is None and not is_loopback(net.host):
        raise ConfigError(
            f"未设置 RISKWATCH_PUBLIC_URL：预警邮件中的确认链接将指向 {net.own_url()}，外部无法访问 — "
            f"RISKWATCH_PUBLIC_URL is unset while serve listens on {net.host} with alerting: every e-mailed "
            "acknowledgement link would point at this server's own address. Set RISKWATCH_PUBLIC_URL to the "
            "address users reach (e.g. https://riskwatch.example.gov.cn), or run with --no-alerting.")
