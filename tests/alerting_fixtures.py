"""Real far ends for the alert channels: an SMTP sink (aiosmtpd) and an HTTP receiver, both on loopback.

Plain classes, usable outside pytest (`SmtpSink().start()`, `HttpReceiver().start()`), plus the
`smtp_sink` and `http_receiver` fixtures. The receiver's answer (status, body, delay) can be changed
while it runs, and `down()` / `up()` close and re-bind the same port to play a receiver that is away.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from core.services import free_port
from simulators.sinks import Arrivals


class _Recorder(Arrivals):
    """The demo sinks' arrival list, with a wait that fails the test instead of answering False."""

    def wait(self, n: int = 1, timeout: float = 5.0) -> list[Any]:  # type: ignore[override]
        """Block until at least `n` items arrived; AssertionError after `timeout` seconds."""
        if not super().wait(n, timeout):
            raise AssertionError(f"{type(self).__name__}: {len(self)} of {n} arrived in {timeout}s")
        return self._snapshot()


# --- SMTP -------------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float = field(default_factory=time.time)


class SmtpSink(_Recorder):
    """aiosmtpd on a free loopback port. `reject` addresses get "550 5.1.1"; `data_reply` overrides the DATA reply."""

    def __init__(self, *, reject: set[str] | None = None, data_reply: str | None = None):
        super().__init__()
        self.reject = set(reject or ())
        self.data_reply = data_reply  # e.g. "451 4.3.0 try again later"
        self.port = free_port()
        self._controller: Controller | None = None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self._snapshot()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.reject:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self._add(ReceivedMail(envelope.mail_from or "", list(envelope.rcpt_tos), msg))
        return "250 2.0.0 queued"

    def start(self) -> SmtpSink:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# --- HTTP -------------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, str]  # last value of each parameter
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if len(body) < length:
            return  # the sender died mid-request (a crash test): nothing was delivered
        url = urllib.parse.urlsplit(self.path)
        receiver._add(ReceivedRequest(
            method=self.command, path=url.path,
            query=dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()}, body=body))
        status, answer, delay = receiver.status, receiver.body, receiver.delay
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:  # the client gave up waiting
            pass

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class HttpReceiver(_Recorder):
    """A ThreadingHTTPServer on loopback that records every request and answers `status`/`body` after `delay`."""

    def __init__(self, status: int = 200, body: bytes = b'{"errcode":0}', delay: float = 0):
        super().__init__()
        self.status = status
        self.body = body
        self.delay = delay
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self._snapshot()

    def start(self) -> HttpReceiver:
        return self.up()

    def up(self) -> HttpReceiver:
        """Listen again, on the same port after a `down()`."""
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name=f"http-receiver-{self.port}", daemon=True)
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

    stop = down


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()
