"""Site files: validation with file and line for every problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import SourceError
from core.registry import parse_site

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

BAD = """\
version: 1
enterprises:
  - id: e1
    name: 甲
    principal: {name: 张三}
    controller: {name: 李四}
    plants:
      - id: p1
        name: 一厂
        industry: steel
        gateways:
          - id: g1
        devices:
          - code: d1
            name: 设备
            kind: bag_filter
            gateway: g9
            points:
              - tag: TT-1
                quantity: temperature
                kind: analogue
              - tag: TT-1
                quantity: temperature
                colour: red
"""


def test_fixture_site_is_valid() -> None:
    site = parse_site(FIXTURES / "mini_site.yaml")
    assert len(site.points()) == 7
    assert {g.id for _, g in site.gateways()} == {"gw-a1", "gw-a2", "gw-a-off", "gw-b1"}


def test_every_schema_error_has_its_line() -> None:
    with pytest.raises(SourceError) as exc:
        parse_site("bad.yaml", BAD)
    found = {(p.line, p.message.split(":")[0]) for p in exc.value.problems}
    assert (10, "enterprises.0.plants.0.industry") in found
    assert (21, "enterprises.0.plants.0.devices.0.points.0.kind") in found
    assert (24, "enterprises.0.plants.0.devices.0.points.1.colour") in found
    assert all(str(p).startswith("bad.yaml:") for p in exc.value.problems)


def test_semantic_errors_have_lines() -> None:
    fixed = BAD.replace("industry: steel", "industry: cement").replace("kind: analogue", "kind: analog")
    fixed = fixed.replace("                colour: red\n", "")
    with pytest.raises(SourceError) as exc:
        parse_site("bad.yaml", fixed)
    msgs = {(p.line, p.message) for p in exc.value.problems}
    assert any(line == 17 and "gateway 'g9'" in m for line, m in msgs)
    assert any(line == 22 and "duplicate tag" in m and "line 19" in m for line, m in msgs)


def test_yaml_syntax_error_has_line() -> None:
    with pytest.raises(SourceError) as exc:
        parse_site("broken.yaml", "version: 1\nenterprises:\n  - id: [unclosed\n")
    assert exc.value.problems[0].line is not None and "YAML syntax" in exc.value.problems[0].message


def test_duplicate_key_is_an_error() -> None:
    with pytest.raises(SourceError) as exc:
        parse_site("dup.yaml", "version: 1\nversion: 1\nenterprises: []\n")
    assert exc.value.problems[0].line == 2
