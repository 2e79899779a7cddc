"""The bench's own bookkeeping (issue 15): C-client input lines, the breach accounting, the lease spread check.

Pure helpers of simulators.bench: a wrong count here would turn a lost reading or an undetected breach into a
figure that looks fine, so each is checked against what it must reject as well as what it must accept.
"""

from __future__ import annotations

import orjson
import pytest

from core.settings import IngestLimits
from ingest import decode
from simulators.bench.cclients import MAX_LINES, chunks, client_args, drain_rate, reading_lines
from simulators.bench.harness import Breach, LatencyRun, account_breaches, fair_spread
from simulators.bench.run import PARTS


def test_single_reading_lines_are_json_v1_one_distinct_reading_each() -> None:
    tags = ["T0", "T1", "T2"]
    lines = reading_lines(tags, 7, start_ms=1_000, value=42.0)
    assert len(lines) == 7
    docs = [orjson.loads(x) for x in lines]
    assert all(b"\n" not in x for x in lines)
    assert docs[0] == {"tag": "T0", "v": 42.0, "ts": 1_000}
    # tag k % 3 at start + k // 3: the publisher's scheme, so every (tag, ts) is distinct
    assert [(d["tag"], d["ts"]) for d in docs] == [(tags[k % 3], 1_000 + k // 3) for k in range(7)]
    assert len({(d["tag"], d["ts"]) for d in docs}) == 7


def test_batched_lines_hold_every_reading_once_and_a_short_last_line() -> None:
    lines = reading_lines([f"T{i}" for i in range(4)], 250, start_ms=0, batch=100)
    docs = [orjson.loads(x)["readings"] for x in lines]
    assert [len(d) for d in docs] == [100, 100, 50]
    flat = [(r["tag"], r["ts"]) for d in docs for r in d]
    assert len(flat) == len(set(flat)) == 250
    # an offset continues the sequence where another run stopped
    more = [orjson.loads(x) for x in reading_lines([f"T{i}" for i in range(4)], 2, start_ms=0, offset=250)]
    assert [(m["tag"], m["ts"]) for m in more] == [("T2", 62), ("T3", 62)]


def test_lines_are_what_the_collector_decodes() -> None:
    """The payloads are the ingest contract v1 the real decoder accepts, not a look-alike."""
    now_ms = 1_800_000_000_000
    (single,) = reading_lines(["TT-1"], 1, start_ms=now_ms)
    (batched,) = reading_lines(["TT-1", "TT-2"], 2, start_ms=now_ms, batch=2)
    for payload, tags in ((single, ["TT-1"]), (batched, ["TT-1", "TT-2"])):
        got = decode.decode_json_v1(payload, now_ms / 1000, IngestLimits())
        assert got.rejected == [] and got.tags == tags
        assert got.times_us == [now_ms * 1000] * len(tags) and got.values == [50.0] * len(tags)


def test_reading_lines_refuse_what_would_publish_nothing() -> None:
    with pytest.raises(ValueError):
        reading_lines([], 10, start_ms=0)
    with pytest.raises(ValueError):
        reading_lines(["T0"], 10, start_ms=0, batch=0)
    assert reading_lines(["T0"], 0, start_ms=0) == []


def test_chunks_stay_below_the_message_id_wrap_and_lose_no_line() -> None:
    lines = [b"x%d" % i for i in range(MAX_LINES * 2 + 5)]
    blobs = chunks(lines)
    assert MAX_LINES < 65_535
    assert [b.count(b"\n") for b in blobs] == [MAX_LINES, MAX_LINES, 5]
    assert b"".join(blobs).split(b"\n")[:-1] == lines  # in order, every line newline-terminated
    assert chunks([]) == []
    with pytest.raises(ValueError):
        chunks(lines, 0)


def test_client_args_carry_tls_login_and_the_ca() -> None:
    args = client_args("mqtts://gw-1:s3cret@127.0.0.1:18883?cafile=/tmp/ca.crt")
    assert args[args.index("-h") + 1] == "127.0.0.1" and args[args.index("-p") + 1] == "18883"
    assert args[args.index("-u") + 1] == "gw-1" and args[args.index("-i") + 1] == "gw-1"
    assert args[args.index("-P") + 1] == "s3cret"
    assert args[args.index("--cafile") + 1] == "/tmp/ca.crt"
    assert "--cafile" not in client_args("mqtt://gw-1:x@127.0.0.1:1883")  # plain TCP: no TLS arguments


def test_drain_rate_counts_stamps_and_ignores_blank_lines() -> None:
    r = drain_rate(["100.0", "100.5", "", "101.0"], messages=4)
    assert (r.received, r.first, r.last) == (3, 100.0, 101.0)
    assert r.rate == pytest.approx(2.0)  # two intervals in one second
    assert drain_rate([], 10).rate == 0.0 and drain_rate(["5.0"], 10).rate == 0.0


def test_every_breach_accounted_for() -> None:
    published = {1_000: 10.0, 1_250: 10.25, 1_500: 10.5}
    detected = {1_000: 10.1, 1_500: 10.9, 7_777: 11.0}
    acc = account_breaches(published, detected)
    assert acc.latencies == pytest.approx([0.1, 0.4])
    assert acc.missing == [1_250]
    assert acc.unexpected == [7_777]
    assert account_breaches(published, {**detected, 1_250: 10.3}).missing == []


def test_a_latency_run_names_the_breaches_it_missed_and_counts_the_late_ones() -> None:
    b = {t: Breach("bench-gw-00", "T00000", t, 150.0) for t in (1_700_000_000_000, 1_700_000_000_250)}
    run = LatencyRun(b, {t: t / 1000 for t in b}, {1_700_000_000_000: 1_700_000_000.4}, window_end=1_700_000_000.3)
    run.evidence[1_700_000_000_250] = "reading stored: yes, 150.0; alarm events within ±1 s: none"
    (line,) = run.missing_lines()
    assert "bench-gw-00/T00000" in line and "1700000000250" in line and "value 150" in line
    assert "reading stored: yes" in line
    # heard after the last breach's window: a bench that stopped listening there would have missed it
    assert run.late == 1


def test_fair_spread_only_when_every_member_holds_its_share() -> None:
    members = ["riskwatch-collector", "riskwatch-collector-2", "riskwatch-collector-3"]
    assert fair_spread(dict.fromkeys(members, 2), members, 6)
    assert not fair_spread({members[0]: 4, members[1]: 1, members[2]: 1}, members, 6)  # not spread yet
    assert not fair_spread({members[0]: 3, members[1]: 3}, members, 6)  # a member holds nothing
    assert not fair_spread(dict.fromkeys(members, 2), members, 7)  # a gateway unheld
    assert fair_spread({members[0]: 4, members[1]: 3}, members[:2], 7)


def test_scale_is_a_part_after_the_others() -> None:
    assert PARTS[-1] == "scale" and {"broker", "latency", "e2e"} <= set(PARTS)
