"""E-mail through an SMTP relay (stdlib smtplib): multipart/alternative, plain text and HTML, UTF-8.

One connection per send: alerts are rare and a held connection would only go stale between them.
`Message-ID: <{idempotency_key}@riskwatch>` lets mail systems and readers see a retried duplicate.
Replies are mapped by their class: 5xx is permanent, 4xx and a lost connection are transient.

A channel that logs in (`username`) must encrypt the connection (`ssl: true` or `starttls: true`):
AUTH over plain TCP sends the password in clear. `allow_plaintext_auth: true` is the explicit
opt-out for a lab relay; the config is refused at load otherwise, and `send` refuses too
(permanently) should such a config ever be built without validation.
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from alerting.channels.base import (
    Contact,
    DeliveryError,
    Message,
    PermanentError,
    Receipt,
    SecretField,
    TransientError,
    secret_value,
)

log = logging.getLogger("riskwatch.alerting.channels")


class SmtpConfig(SecretField, BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs may be secrets

    type: Literal["smtp"] = "smtp"
    host: str
    port: int = 25
    sender: str  # "riskwatch 预警 <alerts@example.gov.cn>"
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    ssl: bool = False  # implicit TLS (port 465)
    #: Lab relays only: log in over an unencrypted connection (the password crosses the network in clear).
    allow_plaintext_auth: bool = False
    timeout_s: float = 10

    @field_validator("sender")
    @classmethod
    def _check_sender(cls, v: str) -> str:
        if "@" not in email.utils.parseaddr(v)[1]:
            raise ValueError(f"sender {v!r} has no e-mail address")
        return v

    @model_validator(mode="after")
    def _check_tls(self) -> SmtpConfig:
        if self.starttls and self.ssl:
            raise ValueError("choose one of starttls and ssl")
        if self.username and self.password is None:
            raise ValueError("username is set but password is not")
        if plaintext_auth(self):
            raise ValueError(PLAINTEXT_AUTH)
        return self


PLAINTEXT_AUTH = ("用户名密码不能通过明文连接发送 AUTH over plain TCP would send the password in clear: "
                  "set ssl: true (port 465) or starttls: true, or allow_plaintext_auth: true for a lab relay")


def plaintext_auth(cfg: SmtpConfig) -> bool:
    """True when this config would log in over an unencrypted connection without being told it may."""
    return bool(cfg.username) and not (cfg.ssl or cfg.starttls or cfg.allow_plaintext_auth)


class _DataReply:
    """Keeps the server's reply to DATA ("250 2.0.0 queued as ..."), which sendmail drops."""

    data_reply = ""

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        code, text = super().data(msg)  # type: ignore[misc]
        self.data_reply = f"{code} {text.decode(errors='replace')}"
        return code, text


class _SMTP(_DataReply, smtplib.SMTP):  # type: ignore[misc]  # data() narrows SMTP.data, on purpose
    pass


class _SMTPS(_DataReply, smtplib.SMTP_SSL):  # type: ignore[misc]  # as _SMTP
    pass


def _by_code(code: int, message: str, detail: str) -> DeliveryError:
    return PermanentError(message, detail=detail) if code >= 500 else TransientError(message, detail=detail)


class SmtpChannel:
    per_contact = True

    def __init__(self, name: str, cfg: SmtpConfig):
        self.name = name
        self._cfg = cfg

    def address(self, contact: Contact) -> str | None:
        return contact.email

    def _compose(self, msg: Message, to: list[Contact]) -> EmailMessage:
        em = EmailMessage()
        em["Subject"] = msg.subject
        em["From"] = self._cfg.sender
        try:
            em["To"] = tuple(Address(c.name, addr_spec=c.email) for c in to if c.email)
        except (ValueError, IndexError) as exc:
            raise PermanentError(f"{self.name}: bad e-mail address", detail=str(exc)) from exc
        em["Date"] = email.utils.formatdate(localtime=True)
        em["Message-ID"] = f"<{msg.idempotency_key}@riskwatch>"
        em["X-Riskwatch-Idempotency-Key"] = msg.idempotency_key
        em.set_content(msg.text)
        if msg.html:
            em.add_alternative(msg.html, subtype="html")
        return em

    def send(self, msg: Message, to: list[Contact]) -> Receipt:
        rcpts = [c.email for c in to if c.email]
        if not rcpts:
            raise PermanentError(f"{self.name}: no recipient has an e-mail address")
        em = self._compose(msg, to)
        cfg = self._cfg
        where = f"{self.name}: SMTP {cfg.host}:{cfg.port}"
        if plaintext_auth(cfg):  # only a config built without validation (model_construct) gets here
            raise PermanentError(f"{where}: {PLAINTEXT_AUTH}")
        try:
            if cfg.ssl:
                smtp: _SMTP | _SMTPS = _SMTPS(cfg.host, cfg.port, timeout=cfg.timeout_s,
                                              context=ssl.create_default_context())
            else:
                smtp = _SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            with smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.username:
                    smtp.login(cfg.username, secret_value(cfg.password) or "")
                refused = smtp.send_message(em, from_addr=email.utils.parseaddr(cfg.sender)[1], to_addrs=rcpts)
                reply = smtp.data_reply
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {addr: code for addr, (code, _) in exc.recipients.items()}
            raise _by_code(max(codes.values()), f"{where}: recipients refused", str(exc.recipients)) from exc
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise _by_code(exc.smtp_code, f"{where}: {exc.smtp_code} {text}", f"{exc.smtp_code} {text}") from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientError(f"{where}: server disconnected", detail=str(exc)) from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{where}: TLS certificate rejected", detail=str(exc)) from exc
        except smtplib.SMTPException as exc:  # STARTTLS or AUTH not offered: configuration, not weather
            raise PermanentError(f"{where}: {exc}", detail=str(exc)) from exc
        except OSError as exc:  # refused, unreachable, timed out
            raise TransientError(f"{where}: {type(exc).__name__}", detail=str(exc)) from exc
        if refused:
            log.warning("%s: some recipients refused for %s: %s", self.name, msg.idempotency_key, refused)
            reply += f" (refused: {', '.join(refused)})"
        log.info("%s: mail %s to %d recipient(s) accepted: %s", self.name, msg.idempotency_key, len(rcpts), reply)
        return Receipt(detail=reply)

    def close(self) -> None:
        pass  # no connection outlives a send
