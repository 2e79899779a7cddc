"""Local far ends of the alert channels: an SMTP sink and a webhook receiver, both on loopback.

The demo shows what its incident notified through them, and the bench times publish → webhook
with the receiver. Each keeps what arrived in memory, stamped with the wall-clock time it arrived
(`time.time()`, comparable with a publish time taken in another thread or process). Nothing is
relayed anywhere; they accept everything they are sent.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from alerting.channels.webhook import verify_signature
from core.services import free_port

__all__ = ["Arrivals", "Mail", "SmtpSink", "WebhookCall", "WebhookReceiver"]


class Arrivals:
    """A list appended from server threads that a caller can wait on."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._items: list[Any] = []

    def _add(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def _snapshot(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def wait(self, n: int, timeout: float) -> bool:
        """True once at least `n` have arrived; False if `timeout` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._items) >= n, timeout)


# --- SMTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    received_at: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")


class SmtpSink(Arrivals):
    """aiosmtpd on a free loopback port; every message is accepted and kept."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._controller: Controller | None = None

    @property
    def mails(self) -> list[Mail]:
        return self._snapshot()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self._add(Mail(time.time(), envelope.mail_from or "", tuple(envelope.rcpt_tos), msg))
        return "250 2.0.0 queued"

    def start(self) -> SmtpSink:
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# --- HTTP -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookCall:
    received_at: float  # when the whole request (headers and body) had been read
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    signed: bool | None  # the signature checked against `secret`; None when the receiver has no secret

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        at = time.time()
        receiver = self.server.receiver
        headers = {k.lower(): v for k, v in self.headers.items()}
        receiver._add(WebhookCall(at, self.path, headers, body, receiver._verify(headers, body)))
        answer = b'{"errcode":0}'
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:  # the sender gave up waiting
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the owner reports what arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver


class WebhookReceiver(Arrivals):
    """A ThreadingHTTPServer on a free loopback port that answers every POST with 200 and keeps it."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/riskwatch"

    @property
    def calls(self) -> list[WebhookCall]:
        return self._snapshot()

    def _verify(self, headers: dict[str, str], body: bytes) -> bool | None:
        if self.secret is None:
            return None
        return verify_signature(self.secret, headers.get("x-riskwatch-timestamp", ""), body,
                                headers.get("x-riskwatch-signature", ""))

    def start(self) -> WebhookReceiver:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.1,), name=f"webhook-sink-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
