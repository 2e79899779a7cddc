"""Local far ends of the alert channels: an SMTP sink and an HTTP receiver, both on loopback.

The demo shows what its incident notified through them, the bench times publish → webhook with
the receiver, and the tests' receivers (tests/alerting_fixtures.py) subclass them to add fault
switches. Each keeps what arrived in memory, stamped with the wall-clock time it arrived
(`time.time()`, comparable with a publish time taken in another thread or process). Nothing is
relayed anywhere. Subclasses change the answers through `_rcpt_reply`, `_data_reply` (SMTP) and
`_answer` (HTTP); by default everything is accepted.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from alerting.channels.webhook import verify_signature
from core.services import free_port

__all__ = ["Arrivals", "HttpSink", "Mail", "Request", "SmtpSink", "WebhookCall", "WebhookReceiver"]

#: What the HTTP receivers answer unless told otherwise (a WeCom-style "ok").
OK_BODY = b'{"errcode":0}'


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
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")


class SmtpSink(Arrivals):
    """aiosmtpd on a free loopback port; every message is accepted and kept (`mails`)."""

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._controller: Controller | None = None

    @property
    def mails(self) -> list[Mail]:
        return self._snapshot()

    def _rcpt_reply(self, address: str) -> str | None:
        """The reply refusing `address` at RCPT TO, or None to accept it."""
        return None

    def _data_reply(self) -> str | None:
        """The reply refusing the message at DATA, or None to keep it."""
        return None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        refused = self._rcpt_reply(address)
        if refused is not None:
            return refused
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        refused = self._data_reply()
        if refused is not None:
            return refused
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self._add(Mail(envelope.mail_from or "", list(envelope.rcpt_tos), msg))
        return "250 2.0.0 queued"

    def start(self) -> SmtpSink:
        if not self.port:
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
class Request:
    method: str
    path: str
    query: dict[str, str]  # last value of each parameter
    headers: dict[str, str]  # names lower-cased
    body: bytes
    signed: bool | None = None  # the signature checked by a WebhookReceiver; None when nothing was checked
    received_at: float = field(default_factory=time.time)  # when the whole request had been read

    def json(self) -> Any:
        return json.loads(self.body)


#: What the webhook receiver keeps of each call (the same record).
WebhookCall = Request


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        at = time.time()
        if len(body) < length:
            return  # the sender died mid-request: nothing was delivered
        url = urllib.parse.urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        receiver._add(Request(
            method=self.command, path=url.path,
            query=dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            headers=headers, body=body, signed=receiver._verify(headers, body), received_at=at))
        status, answer, delay = receiver._answer()
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:  # the sender gave up waiting
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the owner reports what arrived


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpSink


class HttpSink(Arrivals):
    """A ThreadingHTTPServer on a free loopback port that records every request (`requests`) and answers 200.

    `down()` / `up()` close and re-bind the same port, to play a receiver that is away.
    """

    def __init__(self) -> None:
        super().__init__()
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        return self._snapshot()

    def _answer(self) -> tuple[int, bytes, float]:
        """(status, body, delay in seconds before answering) for the request just recorded."""
        return 200, OK_BODY, 0.0

    def _verify(self, headers: dict[str, str], body: bytes) -> bool | None:
        """Whether the request's signature holds; None when this receiver checks none."""
        return None

    def start(self) -> HttpSink:
        return self.up()

    def up(self) -> HttpSink:
        """Listen (again, on the same port after a `down()`)."""
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"http-sink-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening: connections to the port are refused until `up()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def stop(self) -> None:
        self.down()


class WebhookReceiver(HttpSink):
    """The receiver of riskwatch's webhook channel at `/riskwatch`, checking each call's signature with `secret`."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret

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
        self.up()
        return self
