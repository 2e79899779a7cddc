"""The Sparkplug B host's session state machine (ingest.sparkplug.host) and payload codec, without MQTT.

Payloads are built with the same encoder the edge agent and the integration tests use, then decoded from bytes,
so every test goes through the protobuf wire format.
"""

from __future__ import annotations

import pytest

from core.settings import IngestLimits
from ingest.decode import MessageRejected
from ingest.reasons import REASONS
from ingest.sparkplug import payload as sp
from ingest.sparkplug import topics as spt
from ingest.sparkplug.host import Host, Outcome
from ingest.sparkplug.payload import DataType as DT
from ingest.sparkplug.payload import MetricOut as M

NOW = 1_780_000_000.0
NOW_MS = int(NOW * 1000)
GW = "gw-1"


def topic(kind: str, device: str | None = None, group: str = "plant") -> spt.Topic:
    t = f"spBv1.0/{group}/{kind}/{GW}" + (f"/{device}" if device else "")
    parsed = spt.parse(t)
    assert isinstance(parsed, spt.Topic), parsed
    return parsed


def msg(metrics: list[M], seq: int | None = None, ts: int | None = NOW_MS) -> sp.Payload:
    return sp.decode(sp.encode(metrics, seq=seq, timestamp_ms=ts), 256 * 1024)


def nbirth(host: Host, seq: int = 0, bdseq: int = 7, now: float = NOW) -> Outcome:
    return host.handle(GW, topic("NBIRTH"), msg([
        M(sp.BDSEQ, bdseq, DT.UInt64),
        M("Node Control/Rebirth", False, DT.Boolean),
        M("temp", 21.5, DT.Double, alias=1),
        M("level", 3, DT.Int32, alias=2),
        M("label", "hello", DT.String, alias=3),
    ], seq=seq), now)


def test_nbirth_learns_aliases_stores_values_and_goes_online() -> None:
    h = Host()
    out = nbirth(h)
    assert out.online is True and out.rebirth is None
    assert [(r.tag, r.value, r.t_us) for r in out.readings] == [("temp", 21.5, NOW_MS * 1000), ("level", 3.0,
                                                                                                 NOW_MS * 1000)]
    # the string metric is a reading-level dead letter; bdSeq and Node Control/* are neither readings nor letters
    assert [(r.reason, r.index) for r in out.rejected] == [("sparkplug_type", 4)]
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=22.0), M(alias=2, value=-4)], seq=1), NOW + 1)
    assert [(r.tag, r.value) for r in out.readings] == [("temp", 22.0), ("level", -4.0)]
    assert out.rejected == [] and out.rebirth is None


def test_device_metrics_are_tagged_device_colon_name_and_share_the_node_alias_table() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("DBIRTH", "pump1"), msg([M("rpm", 1450, DT.UInt16, alias=10)], seq=1), NOW)
    assert [(r.tag, r.value) for r in out.readings] == [("pump1:rpm", 1450.0)]
    out = h.handle(GW, topic("DDATA", "pump1"), msg([M(alias=10, value=1460)], seq=2), NOW)
    assert [(r.tag, r.value) for r in out.readings] == [("pump1:rpm", 1460.0)]
    # by name too, resolved with the device prefix; the node's alias 1 still means the node metric
    out = h.handle(GW, topic("DDATA", "pump1"), msg([M("rpm", 1470)], seq=3), NOW)
    assert [(r.tag, r.value) for r in out.readings] == [("pump1:rpm", 1470.0)]
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=4), NOW)
    assert [r.tag for r in out.readings] == ["temp"]


def test_seq_gap_requests_exactly_one_rebirth_until_nbirth_or_hold_expires() -> None:
    h = Host()
    nbirth(h, seq=0)
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=1), NOW).rebirth is None
    gap = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=2.0)], seq=5), NOW + 1)
    assert gap.rebirth == "plant"
    assert [r.value for r in gap.readings] == [2.0]  # what could be decoded is kept
    # more gaps within the hold: no second request
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=3.0)], seq=9), NOW + 2).rebirth is None
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=3.0)], seq=20), NOW + 9.9).rebirth is None
    # 10 s later a new gap asks again
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=3.0)], seq=40), NOW + 11.5).rebirth == "plant"
    # an NBIRTH ends the wait: the very next gap asks at once
    nbirth(h, seq=100, now=NOW + 12)
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=4.0)], seq=101), NOW + 12).rebirth is None
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=4.0)], seq=103), NOW + 12.5).rebirth == "plant"
    assert h.stats["rebirth_requests"] == 0  # counted only at commit
    h.commit()
    assert h.stats["rebirth_requests"] == 3 and h.stats["seq_gaps"] >= 4


def test_seq_wraps_at_256() -> None:
    h = Host()
    nbirth(h, seq=254)
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=255), NOW).rebirth is None
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=0), NOW).rebirth is None
    assert h.handle(GW, topic("DBIRTH", "d"), msg([M("x", 1.0, DT.Float)], seq=1), NOW).rebirth is None
    assert h.handle(GW, topic("DDEATH", "d"), msg([], seq=2), NOW).rebirth is None
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=2), NOW).rebirth == "plant"  # a repeat


def test_data_before_birth_asks_once_and_keeps_self_describing_metrics() -> None:
    h = Host()
    out = h.handle(GW, topic("NDATA", group="g2"), msg([M(alias=1, value=1.0), M("flow", 4.5, DT.Double),
                                                        M(alias=2, value=3)], seq=17), NOW)
    assert out.rebirth == "g2"
    assert [(r.tag, r.value) for r in out.readings] == [("flow", 4.5)]
    assert [(r.reason, r.index) for r in out.rejected] == [("sparkplug_alias", 0), ("sparkplug_alias", 2)]
    again = h.handle(GW, topic("DDATA", "dev", group="g2"), msg([M(alias=5, value=1.0)], seq=18), NOW + 1)
    assert again.rebirth is None and [r.reason for r in again.rejected] == ["sparkplug_alias"]
    dbirth = h.handle(GW, topic("DBIRTH", "dev", group="g2"), msg([M("a", 1.0, DT.Double)], seq=19), NOW + 2)
    assert dbirth.rebirth is None  # still within the hold


def test_unknown_alias_after_birth_is_dead_lettered_and_asks_for_a_rebirth() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M(alias=99, value=1.0), M(alias=1, value=5.0)], seq=1), NOW)
    assert out.rebirth == "plant"
    assert [(r.reason, r.index) for r in out.rejected] == [("sparkplug_alias", 0)]
    assert "99" in out.rejected[0].detail
    assert [r.value for r in out.readings] == [5.0]


def test_ndeath_with_current_bdseq_goes_offline_and_forgets_aliases() -> None:
    h = Host()
    nbirth(h, bdseq=7)
    out = h.handle(GW, topic("NDEATH"), sp.decode(sp.encode_ndeath(7), 1000), NOW)
    assert out.online is False and not out.stale_death
    after = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=1), NOW + 1)
    assert after.rebirth == "plant" and [r.reason for r in after.rejected] == ["sparkplug_alias"]


def test_stale_ndeath_of_an_older_connection_is_ignored() -> None:
    h = Host()
    nbirth(h, bdseq=8)
    out = h.handle(GW, topic("NDEATH"), sp.decode(sp.encode_ndeath(7), 1000), NOW)
    assert out.online is None and out.stale_death
    h.commit()
    assert h.stats["stale_deaths"] == 1
    assert [r.value for r in h.handle(GW, topic("NDATA"), msg([M(alias=1, value=9.0)], seq=1), NOW).readings] == [9.0]


def test_ndeath_without_a_known_birth_goes_offline() -> None:
    out = Host().handle(GW, topic("NDEATH"), sp.decode(sp.encode_ndeath(3), 1000), NOW)
    assert out.online is False


def test_new_nbirth_replaces_the_alias_table() -> None:
    h = Host()
    nbirth(h)
    h.handle(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 8, DT.UInt64), M("other", 1.0, DT.Double, alias=1)], seq=0), NOW)
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=2.0), M(alias=2, value=3)], seq=1), NOW)
    assert [r.tag for r in out.readings] == ["other"]
    assert [(r.reason, r.index) for r in out.rejected] == [("sparkplug_alias", 1)]


@pytest.mark.parametrize(("dt", "value", "expected"), [
    (DT.Int8, -1, -1.0), (DT.Int8, 127, 127.0), (DT.Int8, -128, -128.0),
    (DT.Int16, -300, -300.0), (DT.Int32, -2_000_000_000, -2_000_000_000.0),
    (DT.Int64, -5, -5.0), (DT.Int64, 2**62, float(2**62)),
    (DT.UInt8, 255, 255.0), (DT.UInt16, 65535, 65535.0), (DT.UInt32, 4_000_000_000, 4_000_000_000.0),
    (DT.UInt64, 2**63 + 1, float(2**63 + 1)),
    (DT.Float, 1.25, 1.25), (DT.Double, -0.1, -0.1), (DT.Boolean, True, 1.0), (DT.Boolean, False, 0.0),
])
def test_numeric_datatypes(dt: DT, value: float, expected: float) -> None:
    h = Host()
    out = h.handle(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 0, DT.UInt64), M("m", value, dt, alias=1)], seq=0), NOW)
    assert [r.value for r in out.readings] == [expected]
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=value, datatype=dt)], seq=1), NOW)
    assert [r.value for r in out.readings] == [expected]


def test_width_wrapped_signed_ints_decode_like_sign_extended_ones() -> None:
    """pysparkplug and Tahu Python send Int8 -1 as 255; Tahu Java as 0xFFFFFFFF: both are -1."""
    from ingest.sparkplug import sparkplug_b_pb2 as pb

    for wire in (255, 0xFFFF_FFFF):
        p = pb.Payload(seq=0, timestamp=NOW_MS)
        m = p.metrics.add()
        m.name, m.datatype, m.int_value = "t", DT.Int8, wire
        out = Host().handle(GW, topic("NBIRTH"), sp.decode(p.SerializeToString(), 1000), NOW)
        assert [r.value for r in out.readings] == [-1.0]


@pytest.mark.parametrize("dt", [DT.String, DT.Text, DT.DateTime, DT.UUID, DT.Bytes, DT.Int32Array, DT.DataSet])
def test_non_numeric_datatypes_are_reading_level_dead_letters(dt: DT) -> None:
    h = Host()
    value: object = {DT.String: "x", DT.Text: "x", DT.UUID: "u", DT.DateTime: NOW_MS, DT.Bytes: b"\x01",
                     DT.Int32Array: b"\x01\x00\x00\x00"}.get(dt)
    out = h.handle(GW, topic("NBIRTH"), msg([M("bad", value, dt, alias=1),  # type: ignore[arg-type]
                                             M("good", 1.0, DT.Double, alias=2)], seq=0), NOW)
    if value is None:
        assert out.rejected == []  # a DataSet declared without a value: a definition, nothing to store
    else:
        assert [(r.reason, r.index) for r in out.rejected] == [("sparkplug_type", 0)]
    assert [r.tag for r in out.readings] == ["good"]


def test_is_null_is_a_reading_level_dead_letter_and_the_rest_is_kept() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, is_null=True), M(alias=2, value=5)], seq=1), NOW)
    assert [(r.reason, r.index) for r in out.rejected] == [("sparkplug_null", 0)]
    assert [r.value for r in out.readings] == [5.0]


def test_value_in_a_field_that_cannot_hold_the_datatype() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M(alias=2, value="12", datatype=DT.String)], seq=1), NOW)
    assert [r.reason for r in out.rejected] == ["sparkplug_type"]


def test_nan_is_non_finite() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=float("nan"))], seq=1), NOW)
    assert [r.reason for r in out.rejected] == ["non_finite_value"]


def test_timestamps_metric_first_then_payload_else_missing() -> None:
    h = Host()
    nbirth(h)
    own = NOW_MS - 5000
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0, timestamp_ms=own), M(alias=2, value=2)], seq=1),
                   NOW)
    assert [r.t_us for r in out.readings] == [own * 1000, NOW_MS * 1000]
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0), M(alias=2, value=2, timestamp_ms=own)], seq=2,
                                           ts=None), NOW)
    assert [r.t_us for r in out.readings] == [own * 1000]
    assert [(r.reason, r.index) for r in out.rejected] == [("missing_timestamp", 0)]
    far = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=3, ts=NOW_MS + 3_600_000), NOW)
    assert [r.reason for r in far.rejected] == ["timestamp_out_of_range"]


def test_riskwatch_seq_is_the_confirmation_not_a_reading() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 2**40 + 3, DT.UInt64), M(alias=1, value=1.0)], seq=1), NOW)
    assert out.rw_seq == 2**40 + 3
    assert [r.tag for r in out.readings] == ["temp"] and out.rejected == []
    # declared in the birth with an alias, then sent by alias
    h.handle(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 1, DT.UInt64), M(sp.RW_SEQ, 10, DT.UInt64, alias=50)], seq=0),
             NOW)
    out = h.handle(GW, topic("DDATA", "d"), msg([M(alias=50, value=11)], seq=1), NOW)
    assert out.rw_seq == 11 and out.readings == [] and out.rejected == []


def test_ignored_names_are_neither_readings_nor_dead_letters() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M("Properties/Hardware Make", "x", DT.String),
                                            M("Device Control/Reboot", False), M(sp.BDSEQ, 3)], seq=1), NOW)
    assert out.readings == [] and out.rejected == [] and out.rebirth is None


def test_long_tag_is_bad_tag() -> None:
    h = Host()
    nbirth(h)
    out = h.handle(GW, topic("DDATA", "d" * 40), msg([M("n" * 40, 1.0, DT.Double)], seq=1), NOW)
    assert [r.reason for r in out.rejected] == ["bad_tag"]


def test_rollback_undoes_a_batch_so_the_retry_sees_the_same_state() -> None:
    h = Host()
    h.begin()
    nbirth(h)
    h.commit()
    h.begin()
    first = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=3), NOW)  # a gap
    assert first.rebirth == "plant"
    h.handle(GW + "-new", topic("NBIRTH"), msg([M(sp.BDSEQ, 0, DT.UInt64)], seq=0), NOW)
    h.rollback()
    assert GW + "-new" not in h.sessions
    h.begin()
    again = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=3), NOW)
    assert again.rebirth == "plant"  # the failed attempt armed nothing
    h.commit()
    assert h.stats["rebirth_requests"] == 1
    h.begin()
    ok = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=4), NOW)
    assert ok.rebirth is None and ok.rejected == []


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b'{"readings": []}', b"\x0a\x05ab", bytes(range(256))])
def test_malformed_protobuf_is_a_message_level_rejection(data: bytes) -> None:
    with pytest.raises(MessageRejected) as err:
        sp.decode(data, 256 * 1024)
    assert err.value.reason == "sparkplug_decode"


def test_too_large_payload() -> None:
    with pytest.raises(MessageRejected) as err:
        sp.decode(sp.encode([M("x", 1.0, DT.Double)] * 100), 64)
    assert err.value.reason == "payload_too_large"


def test_rebirth_request_payload() -> None:
    p = sp.decode(sp.rebirth_request(NOW_MS), 1000)
    assert [(m.name, m.datatype, m.value) for m in p.metrics] == [(sp.REBIRTH, DT.Boolean, True)]


@pytest.mark.parametrize(("t", "expected"), [
    ("spBv1.0/g/NBIRTH/gw", spt.Topic("g", "NBIRTH", "gw")),
    ("spBv1.0/g/DDATA/gw/dev", spt.Topic("g", "DDATA", "gw", "dev")),
    ("spBv1.0/STATE/riskwatch", spt.State("riskwatch")),
])
def test_topics_parse(t: str, expected: object) -> None:
    assert spt.parse(t) == expected


@pytest.mark.parametrize("t", ["spBv1.0/g/NDATA/gw/dev", "spBv1.0/g/DDATA/gw", "spBv1.0/g/FOO/gw",
                               "spBv1.0/g/NDATA", "spBv1.0//NDATA/gw", "spBv1.0/g/NDATA/gw/d/x", "spBv1.0/STATE/"])
def test_bad_topics(t: str) -> None:
    assert isinstance(spt.parse(t), spt.Bad)


def test_every_sparkplug_reason_has_a_text() -> None:
    for code in ("sparkplug_decode", "sparkplug_topic", "sparkplug_type", "sparkplug_null", "sparkplug_alias"):
        assert code in REASONS


def test_limits_apply() -> None:
    h = Host(IngestLimits(max_past_s=10))
    nbirth(h)
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=1, ts=NOW_MS - 60_000), NOW)
    assert [r.reason for r in out.rejected] == ["timestamp_out_of_range"]


def test_confirmation_is_held_from_a_loss_until_the_next_nbirth() -> None:
    """The edge agent drops what riskwatch/seq confirms: nothing past a lost reading may be confirmed."""
    h = Host()
    nbirth(h)
    ok = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 10, DT.UInt64), M(alias=1, value=1.0)], seq=1), NOW)
    assert ok.rw_seq == 10
    unknown = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 11, DT.UInt64), M(alias=42, value=1.0)], seq=2), NOW)
    assert unknown.rw_seq is None and unknown.rebirth == "plant"
    later = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 12, DT.UInt64), M(alias=1, value=1.0)], seq=3), NOW)
    assert later.rw_seq is None and [r.value for r in later.readings] == [1.0]  # stored, not confirmed
    nbirth(h)
    again = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 11, DT.UInt64), M(alias=1, value=1.0)], seq=1), NOW)
    assert again.rw_seq == 11


@pytest.mark.parametrize("first", ["gap", "before_birth"])
def test_gap_and_data_before_birth_hold_the_confirmation(first: str) -> None:
    h = Host()
    if first == "gap":
        nbirth(h)
        out = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 5, DT.UInt64)], seq=7), NOW)
    else:
        out = h.handle(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 5, DT.UInt64), M("TT", 1.0, DT.Double)], seq=7), NOW)
        assert [r.tag for r in out.readings] == ["TT"]
    assert out.rw_seq is None and out.rebirth == "plant"


def test_birth_metrics_declared_null_or_without_value_are_declarations() -> None:
    h = Host()
    out = h.handle(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 1, DT.Int64), M("a", None, DT.Double, alias=1, is_null=True),
                                             M("b", None, DT.Double, alias=2)], seq=0, ts=None), NOW)
    assert out.readings == [] and out.rejected == []
    out = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=2.0, timestamp_ms=NOW_MS), M(alias=2, is_null=True)],
                                           seq=1), NOW)
    assert [(r.tag, r.value) for r in out.readings] == [("a", 2.0)]
    assert [r.reason for r in out.rejected] == ["sparkplug_null"]  # in DATA a null is a dead letter


@pytest.mark.parametrize(("code", "quality"), [(192, 0), (216, 0), (64, 1), (100, 1), (0, 2), (8, 2), (-1, 2)])
def test_quality_property_maps_to_reading_quality(code: int, quality: int) -> None:
    from ingest.sparkplug import sparkplug_b_pb2 as pb

    p = pb.Payload(seq=0, timestamp=NOW_MS)
    m = p.metrics.add()
    m.name, m.datatype, m.double_value = "t", DT.Double, 1.0
    m.properties.keys.append("Quality")
    pv = m.properties.values.add()
    pv.type = DT.Int32
    pv.int_value = code & 0xFFFF_FFFF
    out = Host().handle(GW, topic("NBIRTH"), sp.decode(p.SerializeToString(), 1000), NOW)
    assert [r.quality for r in out.readings] == [quality]


def test_encoder_writes_quality_as_the_property() -> None:
    p = sp.decode(sp.encode([M("t", 1.0, DT.Double, quality=2), M("u", 1.0, DT.Double)], timestamp_ms=NOW_MS), 1000)
    assert [m.quality for m in p.metrics] == [2, 0]


def test_group_filters_and_service_traffic_of_the_collector() -> None:
    from ingest.collector import _gateway_filters, _service_traffic

    assert _gateway_filters("gw-1") == ["rw/v1/gw-1/#", "spBv1.0/+/+/gw-1", "spBv1.0/+/+/gw-1/+"]
    for t in ("spBv1.0/STATE/riskwatch", "spBv1.0/g/NCMD/gw-1", "spBv1.0/g/DCMD/gw-1/d", "rw/v1/gw-1/stored",
              "rw/v1/gw-1/cmd/x"):
        assert _service_traffic(t), t
    for t in ("spBv1.0/g/NDATA/gw-1", "spBv1.0/g/DDEATH/gw-1/d", "spBv1.0/g/FOO/gw-1", "rw/v1/gw-1/telemetry",
              "other/topic"):
        assert not _service_traffic(t), t


def test_ddeath_in_sequence_takes_the_device_offline_and_its_birth_or_data_brings_it_back() -> None:
    h = Host()
    nbirth(h)
    assert h.handle(GW, topic("DBIRTH", "plc1"), msg([M("rpm", 1450, DT.UInt16, alias=10)], seq=1), NOW).device \
        == ("plc1", True)
    assert h.handle(GW, topic("DDATA", "plc1"), msg([M(alias=10, value=1460)], seq=2), NOW).device == ("plc1", True)
    death = h.handle(GW, topic("DDEATH", "plc1"), msg([], seq=3), NOW + 1)
    assert death.device == ("plc1", False) and death.online is None  # the edge node itself stays online
    assert "plc1" not in h.sessions[GW].devices
    assert h.handle(GW, topic("DBIRTH", "plc1"), msg([M("rpm", 0, DT.UInt16, alias=10)], seq=4), NOW + 2).device \
        == ("plc1", True)
    # node messages say nothing of a device; NDEATH neither (the gateway's offline state covers its devices)
    assert h.handle(GW, topic("NDATA"), msg([M(alias=1, value=1.0)], seq=5), NOW).device is None
    assert h.handle(GW, topic("NDEATH"), msg([M(sp.BDSEQ, 7, DT.UInt64)]), NOW).device is None


@pytest.mark.parametrize("case", ["seq gap", "redelivered", "before any NBIRTH"])
def test_a_ddeath_out_of_sequence_or_outside_the_session_says_nothing_of_the_device(case: str) -> None:
    h = Host()
    if case != "before any NBIRTH":
        nbirth(h)
        h.handle(GW, topic("DBIRTH", "plc1"), msg([M("rpm", 1450, DT.UInt16, alias=10)], seq=1), NOW)
    seq = {"seq gap": 5, "redelivered": 1, "before any NBIRTH": 3}[case]
    h.begin()
    out = h.handle(GW, topic("DDEATH", "plc1"), msg([], seq=seq), NOW)
    h.commit()
    assert out.device is None
    assert out.rebirth == "plant"  # the births it asks for show which devices are alive
    assert h.stats["device_deaths_ignored"] == 1
    # nor does data before any NBIRTH say a device is alive: the host does not know the node's session
    if case == "before any NBIRTH":
        assert h.handle(GW, topic("DDATA", "plc1"), msg([M(alias=10, value=1)], seq=4), NOW).device is None


def test_a_data_message_rejected_as_a_whole_lists_its_riskwatch_seq_and_takes_its_seq() -> None:
    h = Host()
    h.handle(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 1, DT.UInt64), M(sp.RW_SEQ, 10, DT.UInt64, alias=50),
                                       M("temp", 1.0, DT.Double, alias=1)], seq=0), NOW)
    by_alias = h.rejected(GW, topic("NDATA"), msg([M(alias=1, value=2.0), M(alias=50, value=11)], seq=1), NOW)
    assert by_alias.rw_seq == 11 and by_alias.readings == [] and by_alias.rejected == []
    assert by_alias.rebirth is None
    by_name = h.rejected(GW, topic("DDATA", "bf1"), msg([M(sp.RW_SEQ, 12, DT.UInt64)], seq=2), NOW)
    assert by_name.rw_seq == 12
    after = h.handle(GW, topic("NDATA"), msg([M(alias=1, value=3.0), M(alias=50, value=13)], seq=3), NOW)
    assert after.rebirth is None and after.rw_seq == 13  # the rejected messages took their seqs: no gap


def test_a_rejected_message_after_a_loss_or_of_another_kind_lists_nothing() -> None:
    h = Host()
    early = h.rejected(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 5, DT.UInt64)], seq=4), NOW)
    assert early.rw_seq is None and early.rebirth == "plant"  # before any NBIRTH: a loss
    h.handle(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 1, DT.UInt64)], seq=0), NOW)
    gap = h.rejected(GW, topic("NDATA"), msg([M(sp.RW_SEQ, 6, DT.UInt64)], seq=5), NOW + 60)
    assert gap.rw_seq is None and gap.rebirth == "plant"
    birth = h.rejected(GW, topic("NBIRTH"), msg([M(sp.BDSEQ, 2, DT.UInt64), M(sp.RW_SEQ, 7, DT.UInt64)], seq=0), NOW)
    assert birth == Outcome()
