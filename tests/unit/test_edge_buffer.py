"""The SQLite buffer: a confirmation deletes exactly the seqs it lists (only up to its seq when it lists none), a
hole holds the watermark, a restart keeps and re-sends the rest, the size bound drops by policy, and
confirmations that cannot be ours are ignored."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import orjson
import pytest

from ingest.edge.buffer import Buffer
from ingest.edge.formats import Reading


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def readings(n: int, t0: int = 1_800_000_000_000, tag: str = "TT-101") -> list[Reading]:
    return [Reading(tag, t0 + i, float(i)) for i in range(n)]


def test_seal_numbers_messages_and_confirm_deletes_only_up_to_its_seq(tmp_path: Path) -> None:
    clock = FakeClock()
    b = Buffer(tmp_path / "b.sqlite", clock=clock)
    first = b.last_seq + 1
    assert first == int(clock.t * 1_000_000)  # a fresh buffer numbers from the wall clock in µs
    seqs = []
    for k in range(5):
        b.add(readings(10, 1_800_000_000_000 + 100 * k))
        s = b.seal(max_readings=4)
        while s is not None:
            seqs.append(s)
            s = b.seal(max_readings=4)
    assert seqs == list(range(first, first + 15))  # 10 readings -> 4+4+2, five times
    doc = orjson.loads(b.after(first - 1, 1)[0][1])
    assert doc["seq"] == first and [r["v"] for r in doc["readings"]] == [0.0, 1.0, 2.0, 3.0]
    assert doc["readings"][0]["ts"] == 1_800_000_000_000 and "q" not in doc["readings"][0]
    res = b.confirm(first + 6)
    assert (res.outcome, res.deleted) == ("advanced", 7)
    assert [s for s, _ in b.after(b.confirmed_seq, 100)] == list(range(first + 7, first + 15))
    assert b.depth().messages == 8 and b.depth().readings == 50 - 4 - 4 - 2 - 4 - 4 - 2 - 4
    # lower or equal confirmations change nothing; one above the last seq sent is not ours
    assert b.confirm(first + 3).outcome == "stale"
    assert b.confirm(first + 1000).outcome == "ahead"
    assert b.depth().messages == 8
    # a PUBACK is not a confirmation: nothing else deletes messages
    b.close()


def test_restart_keeps_unconfirmed_messages_and_staged_readings_and_continues_numbering(tmp_path: Path) -> None:
    clock = FakeClock()
    b = Buffer(tmp_path / "b.sqlite", clock=clock)
    b.add(readings(6))
    s1 = b.seal(3)
    s2 = b.seal(3)
    assert s1 is not None and s2 == s1 + 1
    b.confirm(s1)
    b.add(readings(2, 1_900_000_000_000))  # staged, not sealed yet
    payload2 = b.after(s1, 10)[0][1]
    b.close()
    clock.t += 3600  # a restart an hour later must not renumber from the clock
    b = Buffer(tmp_path / "b.sqlite", clock=clock)
    assert b.confirmed_seq == s1 and b.last_seq == s2
    assert b.after(b.confirmed_seq, 10) == [(s2, payload2)]  # byte-identical re-send
    assert b.depth().readings == 5
    s3 = b.seal(100)
    assert s3 == s2 + 1
    assert [r["ts"] for r in orjson.loads(b.after(s2, 1)[0][1])["readings"]] == [1_900_000_000_000, 1_900_000_000_001]


def _writer(path: str, n: int) -> None:
    b = Buffer(path)
    for i in range(n):
        b.add(readings(1, 1_800_000_000_000 + i))
        if i % 10 == 9:
            b.seal(10)
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no clean shutdown


def test_sigkilled_writer_loses_no_committed_reading(tmp_path: Path) -> None:
    path = str(tmp_path / "b.sqlite")
    p = multiprocessing.get_context("fork").Process(target=_writer, args=(path, 105))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    b = Buffer(path)
    d = b.depth()
    assert (d.messages, d.readings) == (10, 105)
    ts = []
    for _s, payload in b.after(b.confirmed_seq, 100):
        ts += [r["ts"] for r in orjson.loads(payload)["readings"]]
    assert ts == [1_800_000_000_000 + i for i in range(100)]


@pytest.mark.parametrize("policy", ["drop_oldest", "refuse"])
def test_bounded_buffer_drops_by_policy_and_counts(tmp_path: Path, policy: str) -> None:
    b = Buffer(tmp_path / "b.sqlite", max_readings=100, when_full=policy)  # type: ignore[arg-type]
    for k in range(3):
        b.add(readings(40, 1_800_000_000_000 + 1000 * k))
        b.seal(40)
    d = b.depth()
    kept = []
    for _s, payload in b.after(b.confirmed_seq, 10):
        kept += [r["ts"] for r in orjson.loads(payload)["readings"]]
    if policy == "drop_oldest":
        # the oldest whole message (40 readings) went to make room for the newest
        assert (d.readings, d.dropped) == (80, 40)
        assert kept[0] == 1_800_000_001_000 and kept[-1] == 1_800_000_002_039
    else:
        # the oldest stay; of the newest 40 only 20 fitted
        assert (d.readings, d.dropped) == (100, 20)
        assert kept[0] == 1_800_000_000_000 and kept[-1] == 1_800_000_002_019
    assert b.add(readings(500, 1_900_000_000_000)) > 0
    assert b.depth().readings <= 100


def test_quality_is_carried_in_the_json_v1_q_field(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.sqlite")
    b.add([Reading("TT-1", 1_800_000_000_000, 1.0, 2), Reading("TT-1", 1_800_000_000_001, 2.0, 1)])
    b.seal(10)
    doc = orjson.loads(b.after(b.confirmed_seq, 1)[0][1])
    assert [r.get("q") for r in doc["readings"]] == ["bad", "uncertain"]


def sealed(b: Buffer, n: int) -> list[int]:
    """n one-reading messages; their seqs."""
    out = []
    for i in range(n):
        b.add(readings(1, 1_800_000_000_000 + i))
        s = b.seal(10)
        assert s is not None
        out.append(s)
    return out


def held(b: Buffer) -> list[int]:
    return [s for s, _ in b.after(0, 1000)]


def test_listed_seqs_are_deleted_exactly_and_a_hole_holds_the_watermark(tmp_path: Path) -> None:
    """A confirmation with `seqs` deletes those messages only: its `seq` (the highest ever stored) says nothing
    about a lower seq the broker dropped. The watermark stays below the hole until the hole is confirmed."""
    b = Buffer(tmp_path / "b.sqlite", clock=FakeClock())
    s = sealed(b, 10)
    res = b.confirm(s[9], [(s[0], s[2]), (s[4], s[9])])  # s[3] was dropped by the broker
    assert (res.outcome, res.deleted) == ("advanced", 9)
    assert held(b) == [s[3]] and b.confirmed_seq == s[2] and b.depth().readings == 1
    # later confirmations above the hole do not move the watermark: the publisher's stall clock sees no progress
    s += sealed(b, 3)
    res = b.confirm(s[12], [(s[10], s[12])])
    assert (res.outcome, res.deleted) == ("beyond_gap", 3)
    assert held(b) == [s[3]] and b.confirmed_seq == s[2]
    # the re-sent hole, stored as duplicates and listed again, below the unchanged `seq`
    res = b.confirm(s[12], [(s[3], s[3])])
    assert (res.outcome, res.deleted) == ("advanced", 1)
    assert held(b) == [] and b.confirmed_seq == b.last_seq == s[12]
    # listing what is gone already changes nothing
    assert b.confirm(s[12], [(s[0], s[12])]).outcome == "stale"


def test_confirmation_without_seqs_keeps_the_old_meaning_and_ahead_is_ignored_whole(tmp_path: Path) -> None:
    b = Buffer(tmp_path / "b.sqlite", clock=FakeClock())
    s = sealed(b, 6)
    assert b.confirm(s[1], [(s[3], s[4])]).outcome == "beyond_gap"
    assert held(b) == [s[0], s[1], s[2], s[5]]
    res = b.confirm(s[2])  # an older collector: everything up to its seq
    assert (res.outcome, res.deleted) == ("advanced", 3) and held(b) == [s[5]] and b.confirmed_seq == s[4]
    # a `seq` above the last handed out (a previous installation's numbering, or forged): nothing deleted, even
    # what its list names
    assert b.confirm(s[5] + 1, [(s[5], s[5])]).outcome == "ahead"
    assert held(b) == [s[5]]
    b.close()
    b = Buffer(tmp_path / "b.sqlite", clock=FakeClock(1_900_000_000.0))  # the watermark survives a restart
    assert b.confirmed_seq == s[4] and b.last_seq == s[5]


def test_unusable_seqs_void_the_whole_confirmation() -> None:
    from ingest.edge.publisher import stored_ranges

    assert stored_ranges([[1, 3], [5, 5]], 5) == [(1, 3), (5, 5)]
    assert stored_ranges([], 5) == []
    for bad in ([[1, 6]], [[3, 1]], [[1]], [[1, 2.0]], "1-3", None, [[True, 2]]):
        assert stored_ranges(bad, 5) == "bad", bad
