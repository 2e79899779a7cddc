"""Signed, expiring acknowledgement links.

The token names one notification (by its idempotency key) and an expiry,
signed with HMAC-SHA256 under the service's link key. Holding the link is the
authority to acknowledge what that notification announced — nothing more —
so it carries no API token and grants no read access beyond the ack page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from core.errors import RiskwatchError


class LinkError(RiskwatchError):
    pass


class LinkInvalid(LinkError):
    pass


class LinkExpired(LinkError):
    pass


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@dataclass(frozen=True)
class LinkClaims:
    key: str          # the notification's idempotency key
    expires: float


def sign(secret: bytes, key: str, expires: float) -> str:
    body = _b64(json.dumps({"k": key, "e": int(expires)}, separators=(",", ":")).encode())
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def _canonical(s: str) -> bytes:
    """Decode base64url as `sign` writes it, and nothing else: the decoder is lenient (padding, the `+/`
    alphabet, stray characters, unused low bits), so a token is only accepted if re-encoding what it
    decodes to gives back exactly the text received. One link, one spelling: variants of a token cannot
    dodge a log search, a cache key or a block list."""
    raw = _unb64(s)
    if _b64(raw) != s:
        raise ValueError("not canonical base64url")
    return raw


def verify(secret: bytes, token: str, now: float) -> LinkClaims:
    try:
        if not token.isascii():
            raise ValueError("not ASCII")
        body, mac = token.split(".", 1)
        good = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        _canonical(body)
        if not hmac.compare_digest(good, _canonical(mac)):
            raise LinkInvalid("确认链接无效 the acknowledgement link is not valid")
        data = json.loads(_canonical(body))
        claims = LinkClaims(str(data["k"]), float(data["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise LinkInvalid("确认链接无效 the acknowledgement link is not valid") from exc
    if now > claims.expires:
        raise LinkExpired("确认链接已过期，请登录系统确认 the acknowledgement link has expired; acknowledge in the app")
    return claims


def url(base: str, token: str) -> str:
    return f"{base.rstrip('/')}/ack/{token}"


def link_secret(configured: str | None, data_dir: Path) -> bytes:
    """RISKWATCH_LINK_SECRET, else a key generated once under the data dir (mode 0600)."""
    if configured:
        return configured.encode()
    path = data_dir / "link.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key
