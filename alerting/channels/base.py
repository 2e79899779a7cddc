"""What every channel shares: the message, the contacts it goes to, the receipt, the errors.

A channel is an adapter: it turns a rendered `Message` into one request to a
real service (an SMTP server, an HTTP endpoint) and maps that library's
errors to `DeliveryError`, which says whether a retry may help.

    DeliveryError
    ├── TransientError    connection refused, timeout, 5xx, 429: retry with backoff
    └── PermanentError    4xx, rejected recipient, bad signature: retrying will not help
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr, model_validator

from core.errors import RiskwatchError
from core.redact import redact_text
from core.redact import redact_url as _redact_url


class DeliveryError(RiskwatchError):
    """A failed send. Message and detail are redacted here, where every channel's errors are made:
    library errors (httpx, smtplib) and servers' answers quote URLs with their credentials, and
    these texts are logged, stored in `deliveries` and `notifications.last_error`."""

    transient = True

    def __init__(self, message: str, *, detail: str = ""):
        super().__init__(redact_text(message))
        self.detail = redact_text(detail)


class TransientError(DeliveryError):
    transient = True


class PermanentError(DeliveryError):
    transient = False


@dataclass(frozen=True)
class Contact:
    """One person a notification reaches (a duty officer, an enterprise's principal, a named user)."""

    id: str
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Message:
    """A notification rendered once for every channel; Chinese first."""

    idempotency_key: str
    subject: str      # e-mail subject, robot title
    text: str         # plain-text body
    html: str         # HTML body (e-mail)
    markdown: str     # DingTalk / WeCom markdown
    short: str        # SMS text (keep within ~300 characters)
    ack_url: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # structured payload for webhooks


@dataclass(frozen=True)
class Receipt:
    """What the far end said when it accepted the message (status line, message id)."""

    detail: str


class Channel(Protocol):
    name: str
    #: True: one send per contact (e-mail, SMS); False: one send per receiver (webhook, group robots).
    per_contact: bool

    def address(self, contact: Contact) -> str | None:
        """The contact's address on this channel (e-mail, phone); None when the contact has none."""
        ...

    def send(self, msg: Message, to: list[Contact]) -> Receipt:
        """Deliver once; raise TransientError / PermanentError."""
        ...

    def close(self) -> None: ...


_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def expand_secret(v: object) -> object:
    """`${NAME}` reads the secret from the environment at load time, so routing files hold no secrets.

    Values of a mapping (extra HTTP headers) are expanded too.
    """
    if isinstance(v, dict):
        return {k: expand_secret(x) for k, x in v.items()}
    if isinstance(v, str):
        m = _ENV_REF.match(v.strip())
        if m:
            value = os.environ.get(m.group(1))
            if not value:  # an empty secret is a missing one (`VAR=` left blank in an env file)
                raise ValueError(f"environment variable {m.group(1)} is not set"
                                 + (" (it is empty)" if value == "" else ""))
            return value
    return v


class SecretField:
    """Mixin for channel configs: every SecretStr field accepts `${ENV}`.

    A model-level validator rather than a per-field one: pydantic refuses a before-validator on
    the `type` discriminator of a tagged union.
    """

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_env(cls, data: object) -> object:
        if isinstance(data, dict):
            return {k: expand_secret(v) for k, v in data.items()}
        return data


def redact_url(url: str) -> str:
    """A URL safe to log: userinfo and query values (access_token, key, sign) replaced (see core.redact)."""
    return _redact_url(url)


def secret_value(s: SecretStr | None) -> str | None:
    return None if s is None else s.get_secret_value()
