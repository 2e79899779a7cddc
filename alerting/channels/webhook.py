"""Signed JSON webhook: one POST per message to a receiver the bureau or an integrator runs.

The body is serialised once and signed as sent: `X-Riskwatch-Signature: sha256=<hex>` is
HMAC-SHA256(secret, f"{timestamp}.".encode() + body), with the timestamp in `X-Riskwatch-Timestamp`,
so a receiver can reject both tampered bodies and replays (`verify_signature`).
`Idempotency-Key` lets the receiver drop the duplicates a retry after a lost answer produces.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from alerting.channels import _http
from alerting.channels.base import Contact, Message, Receipt, SecretField, redact_url, secret_value

log = logging.getLogger("riskwatch.alerting.channels")


class WebhookConfig(SecretField, BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs may be secrets

    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None
    #: Extra headers (e.g. Authorization); values are secrets: `${ENV}` accepted, hidden from repr.
    headers: dict[str, SecretStr] = {}
    timeout_s: float = 10

    _url = field_validator("url")(_http.check_url)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Riskwatch-Signature` value."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, *,
                     now: float | None = None, tolerance_s: float = 300) -> bool:
    """For receivers: the signature matches and the timestamp is within `tolerance_s` of now."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), header)


class WebhookChannel:
    per_contact = False

    def __init__(self, name: str, cfg: WebhookConfig, *, clock: Callable[[], float] = time.time):
        self.name = name
        self._cfg = cfg
        self._clock = clock
        self._client = _http.client(cfg.timeout_s)

    def address(self, contact: Contact) -> str | None:
        return None

    def send(self, msg: Message, to: list[Contact]) -> Receipt:
        payload = {
            "idempotency_key": msg.idempotency_key,
            "subject": msg.subject,
            "text": msg.text,
            "ack_url": msg.ack_url,
            "recipients": [{"id": c.id, "name": c.name, "phone": c.phone, "email": c.email} for c in to],
            "data": msg.data,
        }
        body = json.dumps(payload, ensure_ascii=False, default=str).encode()
        timestamp = str(int(self._clock()))
        headers = {k: v.get_secret_value() for k, v in self._cfg.headers.items()}
        headers |= {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": msg.idempotency_key,
            "X-Riskwatch-Timestamp": timestamp,
        }
        secret = secret_value(self._cfg.secret)
        if secret:
            headers["X-Riskwatch-Signature"] = sign(secret, timestamp, body)
        resp = _http.request(self._client, self.name, "POST", self._cfg.url, content=body, headers=headers)
        log.info("%s: webhook %s accepted %s", self.name, redact_url(self._cfg.url), msg.idempotency_key)
        return Receipt(detail=f"{resp.status_code} {resp.reason_phrase}")

    def close(self) -> None:
        self._client.close()
