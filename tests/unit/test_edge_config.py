"""The agent's YAML: errors carry file and line; cross-field rules (gateway = URL user, TLS, duplicate tags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import SourceError
from ingest.edge.config import load_config

GOOD = """\
version: 1
gateway: gw-a1
broker:
  url: mqtts://gw-a1@broker.example:8883?cafile=/etc/riskwatch/ca.crt
buffer:
  path: /var/lib/riskwatch-edge/buffer.sqlite
sources:
  - kind: modbus
    name: plc
    host: 10.0.0.5
    tags:
      - {tag: TT-101, address: 0, type: float32, word_order: little}
      - {tag: CO-101, function: input, address: 10, type: int16, scale: 0.1}
  - kind: opcua
    name: dcs
    endpoint: opc.tcp://10.0.0.6:4840
    tags:
      - {tag: PT-101, node: "ns=2;s=PT-101", mode: poll, interval_s: 2}
"""


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SourceError) as ei:
        load_config("edge.yaml", text)
    return [(p.line, p.message) for p in ei.value.problems]


def test_a_good_config_loads_with_defaults() -> None:
    cfg = load_config("edge.yaml", GOOD)
    assert cfg.gateway == "gw-a1" and len(cfg.sources) == 2
    mb = cfg.sources[0]
    assert mb.kind == "modbus" and mb.port == 502 and mb.tags[0].count == 2 and mb.tags[1].count == 1
    assert cfg.publish.format == "json_v1" and cfg.buffer.when_full == "drop_oldest"
    url = cfg.mqtt_url()
    assert url.tls and url.username == "gw-a1" and url.cafile == "/etc/riskwatch/ca.crt"


@pytest.mark.parametrize(("old", "new", "line", "needle"), [
    ("type: float32, word_order: little", "type: float31", 12, "sources.0.tags.0.type"),
    ("address: 10,", "address: 70000,", 13, "less than or equal to 65535"),
    ("address: 0, type: float32", "address: 65535, type: float32", 12, "runs past register 65535"),
    ("mode: poll", "mode: sometimes", 18, "sources.1.tags.0.mode"),
    ('node: "ns=2;s=PT-101"', 'node: "PT-101"', 18, "not an OPC UA node id"),
    ("kind: opcua", "kind: bacnet", 14, "sources.1"),
    ("    host: 10.0.0.5\n", "    host: 10.0.0.5\n    hots: x\n", 11, "hots: Extra inputs are not permitted"),
    ("mqtts://gw-a1@broker.example:8883?cafile=/etc/riskwatch/ca.crt", "mqtt://gw-a1@broker.example:1883", 4,
     "must be mqtts://"),
    ("?cafile=", "?cafle=", 4, "unknown parameter 'cafle'"),
    ("mqtts://gw-a1@", "mqtts://gw-b9@", 1, "is not the gateway id"),
    ("gateway: gw-a1", "gateway: 'gw a1/#'", 2, "gateway must be"),
    ("endpoint: opc.tcp://", "endpoint: http://", 16, "sources.1.endpoint"),
])
def test_each_error_points_at_its_line(old: str, new: str, line: int, needle: str) -> None:
    assert old in GOOD
    got = problems(GOOD.replace(old, new, 1))
    assert any(ln == line and needle in msg for ln, msg in got), got


def test_duplicate_tag_names_both_lines() -> None:
    got = problems(GOOD.replace("tag: CO-101", "tag: TT-101"))
    assert got == [(13, "sources.0.tags.1.tag: 'TT-101' already mapped (line 12)")]


def test_yaml_syntax_error_has_a_line() -> None:
    got = problems(GOOD.replace("    name: plc\n", "    name: [plc\n"))
    assert got[0][0] is not None and "YAML syntax" in got[0][1]


def test_missing_password_file_is_reported_at_its_line(tmp_path: Path) -> None:
    p = tmp_path / "edge.yaml"
    p.write_text(GOOD.replace("buffer:\n", f"  password_file: {tmp_path}/nope\nbuffer:\n"))
    with pytest.raises(SourceError) as ei:
        load_config(p)
    (prob,) = ei.value.problems
    assert prob.line == 5 and "does not exist" in prob.message and prob.path == str(p)


def test_password_comes_from_the_file_and_never_shows_in_repr(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pass\n")
    p = tmp_path / "edge.yaml"
    p.write_text(GOOD.replace("buffer:\n", f"  password_file: {pw}\nbuffer:\n"))
    url = load_config(p).mqtt_url()
    assert url.password == "s3cret-pass" and "s3cret" not in repr(url)


def test_oversized_and_hostile_input_is_refused_cleanly() -> None:
    assert problems("- just\n- a list\n")[0][1].startswith("(top)")
    got = problems(GOOD.replace("tag: TT-101,", "tag: " + "X" * 65 + ","))
    assert any(ln == 12 and "at most 64 characters" in msg for ln, msg in got)
    with pytest.raises(SourceError):
        load_config("edge.yaml", "a: &a [*a, *a]\n" * 3)  # anchors / recursion: a YAML error, not a hang


def test_riskwatch_edge_check_validates_through_the_cli(tmp_path: Path) -> None:
    """`riskwatch edge CONFIG --check` is the agent's own command line: OK on a good file, 2 and the line on a bad."""
    from typer.testing import CliRunner

    from api.cli import app

    good, bad = tmp_path / "edge.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD, encoding="utf-8")
    bad.write_text(GOOD.replace("type: float32, word_order: little", "type: float31"), encoding="utf-8")
    ok = CliRunner().invoke(app, ["edge", str(good), "--check"])
    assert ok.exit_code == 0, ok.output
    assert "OK (3 tags, gateway gw-a1)" in ok.output
    res = CliRunner().invoke(app, ["edge", str(bad), "--check"])
    assert res.exit_code == 2
    assert ":12" in res.output and "sources.0.tags.0.type" in res.output
