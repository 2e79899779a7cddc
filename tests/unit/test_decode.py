"""JSON v1 decoding: table-driven, pure."""

from __future__ import annotations

import pytest

from core.settings import IngestLimits
from ingest.decode import MessageRejected, decode_json_v1, decode_status, parse_time_us

NOW = 1_764_460_800.0  # 2025-11-30T00:00:00Z
NOW_MS = int(NOW * 1000)
LIMITS = IngestLimits()


@pytest.mark.parametrize(
    ("ts", "expected_us"),
    [
        (NOW_MS, NOW_MS * 1000),
        (NOW_MS + 0.5, NOW_MS * 1000 + 500),
        ("2025-11-30T00:00:00.5Z", NOW_MS * 1000 + 500_000),
        ("2025-11-30T08:00:00+08:00", NOW_MS * 1000),
        ("2025-11-30T00:00:00", None),  # no offset: not RFC 3339
        ("yesterday", None),
        (True, None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_parse_time(ts: object, expected_us: int | None) -> None:
    assert parse_time_us(ts) == expected_us


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{", "invalid_json"),
        (b"\xff\xfe", "invalid_utf8"),
        (b"3", "bad_schema"),
        (b'{"readings": {}}', "bad_schema"),
        (b'{"readings": []}', "no_readings"),
        (b'{"x": 1}', "bad_schema"),
        (b'{"readings": [' + b",".join([b"{}"] * 5001) + b"]}", "too_many_readings"),
        (b" " * (256 * 1024 + 1), "payload_too_large"),
    ],
)
def test_message_rejected(payload: bytes, reason: str) -> None:
    with pytest.raises(MessageRejected) as exc:
        decode_json_v1(payload, NOW, LIMITS)
    assert exc.value.reason == reason


def test_valid_message_with_overrides() -> None:
    payload = (
        b'{"ts": %d, "seq": 1, "readings": [{"tag": "TT-101", "v": 71.2},'
        b' {"tag": "PDT-101", "v": 1180, "ts": "2025-11-30T00:00:00.5Z", "q": "bad"}]}' % NOW_MS
    )
    d = decode_json_v1(payload, NOW, LIMITS)
    assert d.tags == ["TT-101", "PDT-101"]
    assert d.times_us == [NOW_MS * 1000, NOW_MS * 1000 + 500_000]
    assert d.values == [71.2, 1180.0]
    assert d.qualities == [0, 2]
    assert d.rejected == []


def test_bare_reading() -> None:
    d = decode_json_v1(b'{"tag": "TT-101", "v": 1, "ts": %d}' % NOW_MS, NOW, LIMITS)
    assert d.tags == ["TT-101"] and d.values == [1.0]


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (b'{"tag": "A", "v": NaN}', "non_finite_value"),
        (b'{"tag": "A", "v": -Infinity}', "non_finite_value"),
        (b'{"tag": "A", "v": "1"}', "bad_value_type"),
        (b'{"tag": "A", "v": true}', "bad_value_type"),
        (b'{"tag": "A"}', "bad_value_type"),
        (b'{"tag": "", "v": 1}', "bad_tag"),
        (b'{"v": 1}', "bad_tag"),
        (b'{"tag": "A", "v": 1, "q": "ok"}', "bad_quality"),
        (b'{"tag": "A", "v": 1, "ts": "noon"}', "bad_timestamp"),
        (b'{"tag": "A", "v": 1, "ts": %d}' % (NOW_MS - 8 * 86400 * 1000), "timestamp_out_of_range"),
        (b'{"tag": "A", "v": 1, "ts": %d}' % (NOW_MS + 301_000), "timestamp_out_of_range"),
        (b'"A"', "bad_schema"),
    ],
)
def test_bad_reading_rejected_rest_kept(reading: bytes, reason: str) -> None:
    payload = b'{"ts": %d, "readings": [%s, {"tag": "OK", "v": 2}]}' % (NOW_MS, reading)
    d = decode_json_v1(payload, NOW, LIMITS)
    assert [r.reason for r in d.rejected] == [reason]
    assert d.rejected[0].index == 0
    assert d.tags == ["OK"]


def test_missing_timestamp_everywhere() -> None:
    d = decode_json_v1(b'{"readings": [{"tag": "A", "v": 1}]}', NOW, LIMITS)
    assert [r.reason for r in d.rejected] == ["missing_timestamp"]


def test_limits_are_configurable() -> None:
    small = IngestLimits(max_readings=1)
    with pytest.raises(MessageRejected):
        decode_json_v1(b'{"ts": %d, "readings": [{"tag": "A", "v": 1}, {"tag": "B", "v": 1}]}' % NOW_MS, NOW, small)


def test_status() -> None:
    assert decode_status(b'{"online": false}') is False
    assert decode_status(b'{"online": true}') is True
    with pytest.raises(MessageRejected):
        decode_status(b'{"online": 1}')


@pytest.mark.parametrize(
    ("seq", "expected"),
    [(42, 42), (0, 0), (2**63 - 1, 2**63 - 1), (2**63, None), (-1, None), (True, None), (4.0, None), ("7", None),
     (None, None)],
)
def test_message_seq_is_kept_only_when_usable(seq: object, expected: int | None) -> None:
    """Issue 15: `seq` feeds the end-to-end confirmation; an odd one confirms nothing but rejects nothing."""
    import time as _time

    import orjson

    now = _time.time()
    doc: dict[str, object] = {"ts": int(now * 1000), "readings": [{"tag": "TT-101", "v": 1.0}]}
    if seq is not None:
        doc["seq"] = seq
    d = decode_json_v1(orjson.dumps(doc), now, IngestLimits())
    assert d.seq == expected and d.tags == ["TT-101"]
