"""Mosquitto's own C clients as the bench's load and drain: `mosquitto_pub -l` publishers, `mosquitto_sub` drains.

Python publishers (paho) saturate long before the broker does, so a "broker ceiling" measured with them
measures the publishers. The C clients cost a few per cent of a core at tens of thousands of messages per
second, which leaves the broker as the bound.

Two facts about the Mosquitto 2.0.11 clients shape this module (both checked on this machine):

- ``mosquitto_pub -l`` keeps only the 16-bit message id of its last line and disconnects at the first PUBACK
  carrying that id. Past 65,535 lines ids wrap, so it quits early: 200,000 lines at QoS1 saw 3,395 PUBACKs
  (200,000 mod 65,535) and the rest were lost. Each publisher therefore runs its lines as a sequence of
  processes of at most `MAX_LINES` lines (`chunks`), one connection each.
- Each line read from stdin is one message, so payloads are built here as single JSON lines (`reading_lines`),
  the ingest contract v1 (a bare reading, or ``{"readings": [...]}``).

The accounts: a publisher logs in as a gateway (the ACL lets it write ``rw/v1/{gw}/#``); a drain logs in as
a spare collector-group login (``riskwatch-collector-N``, which reads ``rw/v1/#``) so it takes over no running
collector's session. Passwords travel on the command line (``-P``): the bench's services are private and
thrown away at the end of the run.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from core.settings import MqttUrl

__all__ = ["MAX_LINES", "CPublisher", "DrainResult", "chunks", "client_args", "drain_rate", "reading_lines",
           "start_drain", "subscribe_persistent", "wait_drain", "wipe_session"]

#: Lines per `mosquitto_pub -l` process: below the 65,535 message ids that make 2.0.11 quit early.
MAX_LINES = 60_000


def reading_lines(tags: Sequence[str], readings: int, start_ms: int, batch: int = 1, value: float = 50.0,
                  offset: int = 0) -> list[bytes]:
    """`readings` readings as JSON lines of `batch` readings each (batch 1: a bare reading per line).

    The k-th reading (counting from `offset`) is tag ``k % len(tags)`` at ``start_ms + k // len(tags)``, the
    scheme of `harness.publisher`: every (tag, ts) is distinct, so a stored count can be checked exactly. A
    last line may hold fewer than `batch` readings. No line contains a newline (orjson never writes one).
    """
    if not tags:
        raise ValueError("no tags to publish")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    n = len(tags)
    out: list[bytes] = []
    for first in range(offset, offset + readings, batch):
        ks = range(first, min(first + batch, offset + readings))
        if batch == 1:
            k = ks[0]
            out.append(orjson.dumps({"tag": tags[k % n], "v": value, "ts": start_ms + k // n}))
        else:
            out.append(orjson.dumps({"readings": [{"tag": tags[k % n], "v": value, "ts": start_ms + k // n}
                                                  for k in ks]}))
    return out


def chunks(lines: Sequence[bytes], max_lines: int = MAX_LINES) -> list[bytes]:
    """The lines as stdin blobs of at most `max_lines` newline-terminated lines each (one per process)."""
    if max_lines < 1:
        raise ValueError("max_lines must be at least 1")
    return [b"".join(line + b"\n" for line in lines[i:i + max_lines]) for i in range(0, len(lines), max_lines)]


def client_args(url: str) -> list[str]:
    """`mosquitto_pub`/`mosquitto_sub` connection arguments for an `mqtts://` URL (TLS, the URL's CA)."""
    u = MqttUrl.parse(url)
    args = ["-h", u.host, "-p", str(u.port), "-V", "mqttv311"]
    if u.username:
        args += ["-u", u.username, "-i", u.username]  # the broker makes the id the username anyway
    if u.password:
        args += ["-P", u.password]
    if u.tls:
        if u.cafile:
            args += ["--cafile", u.cafile]
        else:
            args += ["--tls-use-os-certs"]
    return args


def wipe_session(url: str, timeout_s: float = 15.0) -> None:
    """Connect once with a clean session under the URL's login: the broker drops that client's persistent session
    (its subscriptions and anything queued for it). No-op for a login that has none."""
    res = subprocess.run(["mosquitto_sub", *client_args(url), "-t", "rw/v1/bench/none", "-E"],
                         capture_output=True, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"mosquitto_sub (wipe session) failed ({res.returncode}): {res.stderr.decode()[-500:]}")


def subscribe_persistent(url: str, topic: str, timeout_s: float = 15.0) -> None:
    """Create (or keep) a persistent session subscribed to `topic` at QoS1, then leave: the broker queues for it
    from the SUBACK on, so a drain that connects later misses nothing published in between."""
    res = subprocess.run(["mosquitto_sub", *client_args(url), "-c", "-q", "1", "-t", topic, "-E"],
                         capture_output=True, timeout=timeout_s)
    if res.returncode != 0:
        raise RuntimeError(f"mosquitto_sub (subscribe) failed ({res.returncode}): {res.stderr.decode()[-500:]}")


class CPublisher(threading.Thread):
    """One gateway's `mosquitto_pub -l -q 1` processes, run one after another over its stdin blobs.

    A process exits 0 only after the PUBACK of its last line (within MAX_LINES, see the module docstring), so
    when `rc` is 0 every line was acknowledged by the broker. `rc` is the first non-zero exit status, if any.
    """

    def __init__(self, url: str, topic: str, blobs: Sequence[bytes], workdir: Path, name: str,
                 max_inflight: int = 1000):
        super().__init__(name=f"cpub-{name}", daemon=True)
        self.args = ["mosquitto_pub", *client_args(url), "-t", topic, "-q", "1", "-l", "-M", str(max_inflight)]
        self.files = []
        workdir.mkdir(parents=True, exist_ok=True)
        for i, blob in enumerate(blobs):
            f = workdir / f"{name}-{i:03d}.lines"
            f.write_bytes(blob)
            self.files.append(f)
        self.rc = 0
        self.stderr = b""
        self.pids: list[int] = []
        self.cpu_s = 0.0  # user + system seconds of the finished processes (from wait4)

    def run(self) -> None:
        for f in self.files:
            with f.open("rb") as stdin:
                p = subprocess.Popen(self.args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                self.pids.append(p.pid)
                _, err = p.communicate(timeout=900)
            if p.returncode != 0:
                self.rc, self.stderr = p.returncode, err
                return


@dataclass
class DrainResult:
    messages: int  # what the drain was told to receive
    received: int  # receive stamps it wrote
    first: float  # wall-clock second of the first message received
    last: float  # ... and of the last

    @property
    def rate(self) -> float:
        """Messages per second from the first message received to the last (0 if fewer than two)."""
        return (self.received - 1) / (self.last - self.first) if self.received > 1 and self.last > self.first else 0.0


def drain_rate(stamps: Sequence[str], messages: int) -> DrainResult:
    """The drain's `-F %U` output (one ``seconds.nanoseconds`` per message) as counts and first/last stamps."""
    ts = [float(s) for s in stamps if s.strip()]
    return DrainResult(messages, len(ts), min(ts, default=0.0), max(ts, default=0.0))


def start_drain(url: str, topic: str, messages: int, out: Path) -> subprocess.Popen[bytes]:
    """`mosquitto_sub -c -q 1 -C messages` on the persistent session of `subscribe_persistent`, writing one
    receive stamp per message (`-F %U`) to `out`: C stdio, so stamping costs the drain almost nothing."""
    return subprocess.Popen(["mosquitto_sub", *client_args(url), "-c", "-q", "1", "-t", topic, "-C", str(messages),
                             "-F", "%U"], stdout=out.open("wb"), stderr=subprocess.PIPE)


def wait_drain(p: subprocess.Popen[bytes], out: Path, messages: int, timeout_s: float) -> DrainResult:
    """Wait for a drain to have `messages` (or the timeout, then stop it) and read its stamps."""
    try:
        p.wait(timeout_s)
    except subprocess.TimeoutExpired:
        p.terminate()
        p.wait(10)
    time.sleep(0.05)
    return drain_rate(out.read_text().splitlines(), messages)
