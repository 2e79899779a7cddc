"""The edge agent's Sparkplug B format (issue 18): what it puts on the wire, read back through the Tahu pb2 and
through the host's own decoder; aliases that survive restarts and config changes; the 0-255 seq stamped at send
time (a message buffered across sessions never carries an old number) and wrapping at 255; the NDEATH will and
its persisted bdSeq; rebirth commands, forged or malformed ones included; the config rules; and a buffer that
switches format with data in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import SourceError
from ingest.edge.buffer import Buffer
from ingest.edge.config import load_config
from ingest.edge.formats import CommandError, JsonV1, Reading, SparkplugB, decode_stored
from ingest.sparkplug import payload as host_payload
from ingest.sparkplug import sparkplug_b_pb2 as pb

GW = "gw-a1"
T0 = 1_800_000_000_000
TAGS = ["TT-101", "PT-101", "RUN-101"]


class FakeClock:
    def __init__(self, t: float = T0 / 1000):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path, tags: list[str] = TAGS, name: str = "b.sqlite") -> tuple[Buffer, SparkplugB]:
    buf = Buffer(tmp_path / name, clock=FakeClock())
    fmt = SparkplugB("Plant A", tags, buf, clock=FakeClock())
    buf.use_format(fmt)
    return buf, fmt


def parse(data: bytes) -> pb.Payload:
    return pb.Payload.FromString(data)


def by_name(p: pb.Payload) -> dict[str, pb.Payload.Metric]:
    return {m.name: m for m in p.metrics if m.name}


def test_ndata_round_trip_carries_aliases_only_and_the_buffer_seq(tmp_path: Path) -> None:
    buf, fmt = make(tmp_path)
    fmt.will(GW)
    fmt.birth(GW)
    buf.add([Reading("TT-101", T0 + 1, 21.5), Reading("PT-101", T0 + 2, -0.25, q=1),
             Reading("RUN-101", T0 + 3, 1.0, q=2)])
    seq = buf.seal(100)
    assert seq is not None
    [(stored_seq, stored)] = buf.after(seq - 1, 10)
    assert stored_seq == seq
    assert not parse(stored).HasField("seq")  # the stored form has no Sparkplug seq: it is stamped when sent
    wire = fmt.outgoing(stored)
    p = parse(wire)
    assert p.seq == 1 and p.timestamp == T0  # NBIRTH had 0; the payload time is the seal time
    rw, *metrics = p.metrics
    assert rw.name == "riskwatch/seq" and rw.datatype == pb.UInt64 and rw.long_value == seq
    assert not rw.HasField("alias")
    assert [(m.HasField("name"), m.alias, m.datatype, m.timestamp, m.double_value) for m in metrics] == [
        (False, fmt.aliases["TT-101"], pb.Double, T0 + 1, 21.5),
        (False, fmt.aliases["PT-101"], pb.Double, T0 + 2, -0.25),
        (False, fmt.aliases["RUN-101"], pb.Double, T0 + 3, 1.0)]
    assert not metrics[0].HasField("properties")  # good quality: no property
    assert [(list(m.properties.keys), m.properties.values[0].type, m.properties.values[0].int_value)
            for m in metrics[1:]] == [(["Quality"], pb.Int32, 64), (["Quality"], pb.Int32, 0)]
    # the host's decoder reads the same bytes alike
    hp = host_payload.decode(wire, 1 << 20)
    assert hp.seq == 1 and hp.timestamp_ms == T0
    assert [(m.name, m.alias, m.datatype, m.timestamp_ms, m.value, m.quality) for m in hp.metrics] == [
        ("riskwatch/seq", None, 8, None, seq, 0), (None, fmt.aliases["TT-101"], 10, T0 + 1, 21.5, 0),
        (None, fmt.aliases["PT-101"], 10, T0 + 2, -0.25, 1), (None, fmt.aliases["RUN-101"], 10, T0 + 3, 1.0, 2)]
    # and the stored form decodes back to what was buffered
    assert decode_stored("sparkplug_b", stored, {a: t for t, a in fmt.aliases.items()}) == (seq, T0, [
        Reading("TT-101", T0 + 1, 21.5), Reading("PT-101", T0 + 2, -0.25, 1), Reading("RUN-101", T0 + 3, 1.0, 2)])


def test_nbirth_declares_every_tag_with_alias_and_datatype_and_no_value(tmp_path: Path) -> None:
    buf, fmt = make(tmp_path)
    will_topic, will, retain = fmt.will(GW)
    topic, birth, b_retain = fmt.birth(GW)
    assert topic == "spBv1.0/Plant A/NBIRTH/gw-a1" and not b_retain
    p = parse(birth)
    assert p.seq == 0 and p.timestamp == T0
    m = by_name(p)
    assert m["bdSeq"].datatype == pb.Int64 and m["bdSeq"].long_value == fmt.bdseq
    assert m["Node Control/Rebirth"].datatype == pb.Boolean and m["Node Control/Rebirth"].boolean_value is False
    declared = {n: (x.alias, x.datatype, x.is_null, x.WhichOneof("value"), x.HasField("timestamp"))
                for n, x in m.items() if n in TAGS}
    assert declared == {t: (fmt.aliases[t], pb.Double, True, None, False) for t in TAGS}
    assert sorted(fmt.aliases.values()) == [1, 2, 3]  # unique, from 1 (0 reads as "no alias" to some hosts)
    assert m["riskwatch/seq"].datatype == pb.UInt64 and not m["riskwatch/seq"].HasField("alias")


def test_seq_wraps_at_255_and_a_rebirth_restarts_it(tmp_path: Path) -> None:
    buf, fmt = make(tmp_path)
    fmt.will(GW)
    assert parse(fmt.birth(GW)[1]).seq == 0
    buf.add([Reading("TT-101", T0, 1.0)])
    seq = buf.seal(10)
    assert seq is not None
    [(_, stored)] = buf.after(seq - 1, 1)
    seqs = [parse(fmt.outgoing(stored)).seq for _ in range(300)]
    assert seqs == [n % 256 for n in range(1, 301)]
    assert 255 in seqs and seqs[seqs.index(255) + 1] == 0
    [(_, rebirth, _)] = fmt.rebirth_messages(GW)
    assert parse(rebirth).seq == 0 and parse(fmt.outgoing(stored)).seq == 1


def test_seq_is_assigned_at_send_time_so_a_message_buffered_across_sessions_shows_no_gap(tmp_path: Path) -> None:
    """Sealed during session 1 (never sent: the broker was away), sent hours later in session 3 right after its
    birth: it carries 1, the successor of that birth's 0, whatever was sent before."""
    buf, fmt = make(tmp_path)
    fmt.will(GW)
    fmt.birth(GW)
    buf.add([Reading("TT-101", T0, 1.0)])
    first = buf.seal(10)
    buf.add([Reading("TT-101", T0 + 1000, 2.0)])
    second = buf.seal(10)
    assert first is not None and second is not None
    for _ in range(7):  # session 1 sent other traffic
        fmt.outgoing(b"")
    buf.close()
    buf2, fmt2 = make(tmp_path)  # the agent restarted
    fmt2.will(GW)
    fmt2.birth(GW)
    fmt2.will(GW)  # session 2 never got its CONNACK; session 3:
    assert parse(fmt2.birth(GW)[1]).seq == 0
    sent = [parse(fmt2.outgoing(p)) for _s, p in buf2.after(buf2.confirmed_seq, 10)]
    assert [p.seq for p in sent] == [1, 2]
    assert [by_name(p)["riskwatch/seq"].long_value for p in sent] == [first, second]
    # the bytes stored are untouched by sending
    assert all(not parse(p).HasField("seq") for _s, p in buf2.after(buf2.confirmed_seq, 10))


def test_will_is_an_ndeath_with_the_birth_bdseq_incremented_per_connect_and_persisted(tmp_path: Path) -> None:
    buf, fmt = make(tmp_path)
    bdseqs = []
    for _ in range(3):
        topic, will, retain = fmt.will(GW)
        assert topic == "spBv1.0/Plant A/NDEATH/gw-a1" and retain is False
        p = parse(will)
        assert not p.HasField("seq")  # Sparkplug: an NDEATH has no seq
        [m] = p.metrics
        assert m.name == "bdSeq" and m.datatype == pb.Int64
        assert by_name(parse(fmt.birth(GW)[1]))["bdSeq"].long_value == m.long_value  # same as its session's birth
        bdseqs.append(m.long_value)
    assert bdseqs == [0, 1, 2]
    [(stop_topic, stop, _)] = fmt.on_stop_messages(GW)
    assert stop_topic == topic and by_name(parse(stop))["bdSeq"].long_value == 2
    buf.close()
    buf2, fmt2 = make(tmp_path)
    assert by_name(parse(fmt2.will(GW)[1]))["bdSeq"].long_value == 3  # a restart goes on from the last connect
    for _ in range(252):
        fmt2.will(GW)
    assert fmt2.bdseq == 255
    fmt2.will(GW)
    assert fmt2.bdseq == 0  # wraps as Sparkplug says
    with pytest.raises(RuntimeError, match="birth before will"):
        SparkplugB("g", TAGS, buf2).birth(GW)


def test_aliases_are_stable_across_restarts_and_config_changes_while_data_is_buffered(tmp_path: Path) -> None:
    buf, fmt = make(tmp_path)
    before = dict(fmt.aliases)
    buf.add([Reading("RUN-101", T0, 1.0)])
    seq = buf.seal(10)
    buf.close()
    # restart with RUN-101 removed and a new tag in front: old aliases kept, RUN-101's too (a buffered message
    # uses it), the new tag gets a fresh one
    buf2, fmt2 = make(tmp_path, ["NEW-1", "TT-101", "PT-101"])
    assert {t: fmt2.aliases[t] for t in TAGS} == before
    assert fmt2.aliases["NEW-1"] == 4
    birth = by_name(parse((fmt2.will(GW), fmt2.birth(GW))[1][1]))
    assert birth["RUN-101"].alias == before["RUN-101"]  # still declared, so the buffered NDATA resolves
    [(s, payload)] = buf2.after(buf2.confirmed_seq, 10)
    assert s == seq and parse(payload).metrics[1].alias == before["RUN-101"]
    assert buf2.confirm(s).outcome == "advanced"
    buf2.close()
    # buffer empty: the removed tag is forgotten at the next start; nothing else moves
    buf3, fmt3 = make(tmp_path, ["NEW-1", "TT-101", "PT-101"])
    assert fmt3.aliases == {"NEW-1": 4, "TT-101": before["TT-101"], "PT-101": before["PT-101"]}
    assert len(set(fmt3.aliases.values())) == len(fmt3.aliases)


def test_rebirth_command_and_what_is_not_one(tmp_path: Path) -> None:
    _buf, fmt = make(tmp_path)
    assert fmt.command_topics(GW) == ["spBv1.0/Plant A/NCMD/gw-a1"]
    assert fmt.command(host_payload.rebirth_request(T0)) == "rebirth"  # the host's own NCMD
    no = pb.Payload(timestamp=T0)
    no.metrics.add(name="Node Control/Rebirth", datatype=pb.Boolean, boolean_value=False)
    assert fmt.command(no.SerializeToString()) is None
    as_int = pb.Payload(timestamp=T0)
    as_int.metrics.add(name="Node Control/Rebirth", datatype=pb.Int32, int_value=1)
    with pytest.raises(CommandError, match="must be a Boolean"):
        fmt.command(as_int.SerializeToString())
    other = pb.Payload(timestamp=T0)
    other.metrics.add(name="Node Control/Reboot", datatype=pb.Boolean, boolean_value=True)
    with pytest.raises(CommandError, match="Node Control/Reboot"):
        fmt.command(other.SerializeToString())
    with pytest.raises(CommandError, match="not a Sparkplug B payload"):
        fmt.command(b"\xff\xff\xff garbage")
    with pytest.raises(CommandError, match="no metrics"):
        fmt.command(b"")


def test_on_connect_clears_a_retained_json_status_and_births_and_status_is_not_retained(tmp_path: Path) -> None:
    _buf, fmt = make(tmp_path)
    fmt.will(GW)
    (clear_topic, clear, clear_retain), (birth_topic, _b, _r) = fmt.on_connect_messages(GW)
    assert (clear_topic, clear, clear_retain) == ("rw/v1/gw-a1/status", b"", True)
    assert birth_topic.endswith("/NBIRTH/gw-a1") and fmt.telemetry_topic(GW) == "spBv1.0/Plant A/NDATA/gw-a1"
    assert fmt.status_retained is False and JsonV1().status_retained is True


def test_a_buffer_switching_format_re_encodes_what_it_holds(tmp_path: Path) -> None:
    buf = Buffer(tmp_path / "b.sqlite", clock=FakeClock())  # json_v1, as every buffer before Sparkplug
    buf.add([Reading("TT-101", T0, 1.5), Reading("PT-101", T0 + 1, 2.5, q=2), Reading("OLD-1", T0 + 2, 7.0)])
    seq = buf.seal(10)
    buf.close()
    buf2, fmt = make(tmp_path)  # OLD-1 is no longer configured
    [(s, payload)] = buf2.after(seq - 1, 10)  # type: ignore[operator]
    assert s == seq
    p = parse(fmt.outgoing(payload))
    assert by_name(p)["riskwatch/seq"].long_value == seq
    assert [(m.alias, m.name, m.datatype, m.double_value) for m in p.metrics[1:]] == [
        (fmt.aliases["TT-101"], "", pb.Double, 1.5), (fmt.aliases["PT-101"], "", pb.Double, 2.5),
        (0, "OLD-1", pb.Double, 7.0)]  # a tag without an alias goes by name (self-describing for the host)
    assert not p.metrics[3].HasField("alias")
    assert buf2.use_format(fmt) == 0  # already Sparkplug: nothing to do
    assert buf2.use_format(JsonV1()) == 1  # and back
    [(_, back)] = buf2.after(seq - 1, 10)  # type: ignore[operator]
    assert decode_stored("json_v1", back, {}) == (seq, T0, [Reading("TT-101", T0, 1.5),
                                                            Reading("PT-101", T0 + 1, 2.5, 2),
                                                            Reading("OLD-1", T0 + 2, 7.0)])
    # a corrupt stored message: the switch fails as a whole, the buffer keeps what it had and its format
    buf2._db.execute("UPDATE messages SET payload = ? WHERE seq = ?", (b'{"seq": 1, "ts": 0, "readings": []}', seq))
    with pytest.raises(ValueError, match="corrupt"):
        buf2.use_format(fmt)
    assert isinstance(buf2.fmt, JsonV1) and buf2.after(seq - 1, 10)[0][1].startswith(b'{"seq": 1')  # type: ignore[operator]
    assert buf2.use_format(JsonV1()) == 0


CONFIG = """\
version: 1
gateway: gw-a1
broker:
  url: mqtts://gw-a1@broker.example:8883?cafile=/etc/riskwatch/ca.crt
buffer:
  path: /var/lib/riskwatch-edge/buffer.sqlite
publish:
  format: sparkplug_b
  group_id: Plant A
sources:
  - kind: modbus
    name: plc
    host: 10.0.0.5
    tags:
      - {tag: TT-101, address: 0, type: float32}
"""


def test_config_sparkplug_b_needs_a_usable_group_id() -> None:
    cfg = load_config("edge.yaml", CONFIG)
    assert cfg.publish.format == "sparkplug_b" and cfg.publish.group_id == "Plant A" and cfg.tags() == ["TT-101"]

    def problems(text: str) -> list[tuple[int | None, str]]:
        with pytest.raises(SourceError) as ei:
            load_config("edge.yaml", text)
        return [(p.line, p.message) for p in ei.value.problems]

    [(line, msg)] = problems(CONFIG.replace("  group_id: Plant A\n", ""))
    assert line == 8 and "needs group_id" in msg
    for bad in ("Plant/A", "Plant+", "#", " Plant", ""):
        [(line, msg)] = problems(CONFIG.replace("group_id: Plant A", f"group_id: '{bad}'"))
        assert line == 9 and "group_id must be" in msg, (bad, msg)
    [(line, msg)] = problems(CONFIG.replace("format: sparkplug_b", "format: json_v1"))
    assert line == 8 and "applies to format sparkplug_b only" in msg
    [(line, msg)] = problems(CONFIG.replace("format: sparkplug_b", "format: sparkplug_a"))
    assert line == 8 and "publish.format" in msg


def test_riskwatch_edge_check_names_the_sparkplug_group(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli import app

    cfg = tmp_path / "edge.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    ok = CliRunner().invoke(app, ["edge", str(cfg), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "OK (1 tags, gateway gw-a1; sparkplug_b, group 'Plant A')" in ok.output
    cfg.write_text(CONFIG.replace("  group_id: Plant A\n", ""), encoding="utf-8")
    res = CliRunner().invoke(app, ["edge", str(cfg), "--check"])
    assert res.exit_code == 2 and ":8" in res.output and "needs group_id" in res.output


def test_health_reports_the_sparkplug_session(tmp_path: Path) -> None:
    _buf, fmt = make(tmp_path)
    fmt.will(GW)
    fmt.birth(GW)
    fmt.rebirth_messages(GW)
    assert fmt.health() == {"format": "sparkplug_b", "sparkplug": {"group_id": "Plant A", "bdseq": 0, "births": 2,
                                                                   "metrics": 3}}
    assert JsonV1().health() == {"format": "json_v1"}


def test_status_document_names_the_format_and_counts_commands(tmp_path: Path) -> None:
    from core.settings import MqttUrl
    from ingest.edge.publisher import Publisher

    buf, fmt = make(tmp_path)
    pub = Publisher(GW, MqttUrl.parse("mqtts://gw-a1@127.0.0.1:8883"), buf, fmt, clock=FakeClock())
    pub.state.rebirths, pub.state.commands_rejected = 2, 5
    doc = pub._status_doc()
    assert doc["commands"] == {"rebirths": 2, "rejected": 5}
    assert doc["format"] == "sparkplug_b" and doc["sparkplug"]["group_id"] == "Plant A"
    assert doc["online"] is True and doc["buffer"]["messages"] == 0
