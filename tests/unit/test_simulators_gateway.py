"""The gateway publisher's MQTT behaviour against a scripted in-process broker.

A real Mosquitto cannot be told "receive these PUBLISHes but never PUBACK
them, then drop the connection", which is exactly the case that decides
whether a broker restart loses data. This ~60-line MQTT 3.1.1 responder can,
so the test pins paho's re-send of unacknowledged QoS 1 messages (with DUP)
and our handling of refused credentials, without any external service.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

import orjson
import pytest

from simulators.gateway import (
    OFFLINE,
    ONLINE,
    GatewayAuthError,
    GatewayPublisher,
    status_topic,
    telemetry_topic,
)


@dataclass
class Publish:
    conn: int
    topic: str
    payload: bytes
    mid: int
    dup: bool
    retain: bool


@dataclass
class FakeBroker:
    """Per connection: CONNACK with ``connack_rc``; ack or withhold PUBACKs; maybe hang up."""

    connack_rc: int = 0
    # conn index -> number of telemetry PUBLISHes after which the broker hangs up, unacked
    drop_after: dict[int, int] = field(default_factory=dict)
    publishes: list[Publish] = field(default_factory=list)
    clean_flags: list[bool] = field(default_factory=list)
    connects: list[tuple[str, str, str]] = field(default_factory=list)  # (client id, user, pw)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._session(conn, n)
            n += 1

    @staticmethod
    def _read(conn: socket.socket, size: int) -> bytes:
        buf = b""
        while len(buf) < size:
            chunk = conn.recv(size - len(buf))
            if not chunk:
                raise ConnectionError
            buf += chunk
        return buf

    def _packet(self, conn: socket.socket) -> tuple[int, bytes]:
        head = self._read(conn, 1)[0]
        length, mult = 0, 1
        while True:
            b = self._read(conn, 1)[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        return head, self._read(conn, length)

    @staticmethod
    def _str(body: bytes, at: int) -> tuple[str, int]:
        n = int.from_bytes(body[at:at + 2], "big")
        return body[at + 2:at + 2 + n].decode(), at + 2 + n

    def _session(self, conn: socket.socket, n: int) -> None:
        try:
            head, body = self._packet(conn)
            assert head >> 4 == 1, "expected CONNECT"
            _, at = self._str(body, 0)  # protocol name
            flags = body[at + 1]
            at += 4  # level, flags, keepalive
            client_id, at = self._str(body, at)
            if flags & 0x04:  # will topic + message
                _, at = self._str(body, at)
                _, at = self._str(body, at)
            user, at = self._str(body, at) if flags & 0x80 else ("", at)
            pw, at = self._str(body, at) if flags & 0x40 else ("", at)
            self.connects.append((client_id, user, pw))
            self.clean_flags.append(bool(flags & 0x02))
            conn.sendall(bytes([0x20, 2, 1 if n > 0 else 0, self.connack_rc]))
            if self.connack_rc:
                return
            telemetry = 0
            while True:
                head, body = self._packet(conn)
                kind = head >> 4
                if kind == 12:  # PINGREQ
                    conn.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return
                elif kind == 3:
                    topic, at = self._str(body, 0)
                    mid = int.from_bytes(body[at:at + 2], "big")
                    self.publishes.append(Publish(n, topic, body[at + 2:], mid, bool(head & 0x08),
                                                  bool(head & 0x01)))
                    if topic.endswith("/telemetry"):
                        telemetry += 1
                        if n in self.drop_after:
                            if telemetry >= self.drop_after[n]:
                                return  # hang up with these unacknowledged
                            continue
                    conn.sendall(bytes([0x40, 2]) + mid.to_bytes(2, "big"))
        except (ConnectionError, OSError):
            return


def _wait(cond: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_unacked_messages_are_resent_with_dup_after_reconnect() -> None:
    broker = FakeBroker(drop_after={0: 5})
    pub = GatewayPublisher("gw-t-01", "s3cret", "127.0.0.1", broker.port)
    try:
        pub.start(5)
        for i in range(5):
            pub.publish_telemetry(["TT-1"], [float(i)], [1_000 + i])
        assert pub.wait_acked(10), pub.stats()
        st = pub.stats()
        assert (st.messages, st.connects, st.disconnects) == (5, 2, 1)
        assert st.acked == st.published
        first = [p for p in broker.publishes if p.conn == 0 and p.topic.endswith("/telemetry")]
        again = [p for p in broker.publishes if p.conn == 1 and p.topic.endswith("/telemetry")]
        assert [p.payload for p in again] == [p.payload for p in first]
        assert all(p.dup for p in again) and not any(p.dup for p in first)
        assert [orjson.loads(p.payload)["seq"] for p in again] == [1, 2, 3, 4, 5]
    finally:
        pub.close()
        broker.close()
    # Persistent session, gateway id as client id and username, password passed.
    assert broker.clean_flags == [False, False]
    assert broker.connects[0] == ("gw-t-01", "gw-t-01", "s3cret")
    topic = status_topic("gw-t-01")
    statuses = [(p.payload, p.retain) for p in broker.publishes if p.topic == topic]
    assert statuses[0] == (ONLINE, True) and statuses[-1] == (OFFLINE, True)


def test_refused_credentials_raise_at_once() -> None:
    broker = FakeBroker(connack_rc=5)
    pub = GatewayPublisher("gw-t-02", "wrong", "127.0.0.1", broker.port)
    t0 = time.monotonic()
    try:
        with pytest.raises(GatewayAuthError, match="gw-t-02.*refused the credentials"):
            pub.start(5)
        assert time.monotonic() - t0 < 2
        time.sleep(0.5)
        assert len(broker.connects) == 1, "must not keep retrying refused credentials"
    finally:
        broker.close()


def test_telemetry_goes_to_the_gateway_topic_at_qos1() -> None:
    broker = FakeBroker()
    pub = GatewayPublisher("gw-t-03", "pw", "127.0.0.1", broker.port)
    try:
        pub.start(5)
        seq = pub.publish_telemetry(["TT-1", "PDT-1"], [71.2, 1180], [5, 6])
        assert seq == 1 and pub.wait_acked(5)
        _wait(lambda: any(p.topic == telemetry_topic("gw-t-03") for p in broker.publishes))
        msg = next(p for p in broker.publishes if p.topic == telemetry_topic("gw-t-03"))
        doc = orjson.loads(msg.payload)
        assert doc["seq"] == 1 and not msg.retain
        assert doc["readings"] == [{"tag": "TT-1", "v": 71.2, "ts": 5},
                                   {"tag": "PDT-1", "v": 1180, "ts": 6}]
    finally:
        pub.close()
        broker.close()
