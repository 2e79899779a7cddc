"""Real far ends for the alert channels, with fault switches: an SMTP sink (aiosmtpd) and an HTTP receiver.

The sinks themselves are the demo's (`simulators.fakes.sinks`); this module adds only what tests need
to play a failing far end, plus the `smtp_sink` and `http_receiver` fixtures. `SmtpSink(reject=...,
data_reply=...)` refuses recipients or messages; the receiver's answer (status, body, delay) can be
changed while it runs, and `down()` / `up()` close and re-bind the same port to play a receiver that
is away. `wait()` fails the test instead of answering False.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simulators.fakes import sinks
from simulators.fakes.sinks import Mail as ReceivedMail
from simulators.fakes.sinks import Request as ReceivedRequest

__all__ = ["HttpReceiver", "ReceivedMail", "ReceivedRequest", "SmtpSink", "http_receiver", "smtp_sink"]


def _wait_or_fail(arrivals: sinks.Arrivals, n: int, timeout: float) -> list[Any]:
    """Block until at least `n` items arrived; AssertionError after `timeout` seconds."""
    if not sinks.Arrivals.wait(arrivals, n, timeout):
        raise AssertionError(f"{type(arrivals).__name__}: {len(arrivals)} of {n} arrived in {timeout}s")
    return arrivals._snapshot()


class SmtpSink(sinks.SmtpSink):
    """The demo's SMTP sink. `reject` addresses get "550 5.1.1"; `data_reply` overrides the DATA reply."""

    def __init__(self, *, reject: set[str] | None = None, data_reply: str | None = None):
        super().__init__()
        self.reject = set(reject or ())
        self.data_reply = data_reply  # e.g. "451 4.3.0 try again later"

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.mails

    def _rcpt_reply(self, address: str) -> str | None:
        return "550 5.1.1 mailbox unavailable" if address in self.reject else None

    def _data_reply(self) -> str | None:
        return self.data_reply or None

    def wait(self, n: int = 1, timeout: float = 5.0) -> list[Any]:  # type: ignore[override]
        return _wait_or_fail(self, n, timeout)

    def start(self) -> SmtpSink:
        super().start()
        return self


class HttpReceiver(sinks.HttpSink):
    """The demo's HTTP sink answering `status`/`body` after `delay` (each may change while it runs)."""

    def __init__(self, status: int = 200, body: bytes = sinks.OK_BODY, delay: float = 0):
        super().__init__()
        self.status = status
        self.body = body
        self.delay = delay

    def _answer(self) -> tuple[int, bytes, float]:
        return self.status, self.body, self.delay

    def wait(self, n: int = 1, timeout: float = 5.0) -> list[Any]:  # type: ignore[override]
        return _wait_or_fail(self, n, timeout)

    def start(self) -> HttpReceiver:
        self.up()
        return self

    def up(self) -> HttpReceiver:
        super().up()
        return self


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
