"""The pure parts of the operator's CLI (issue 16): JSON log lines, the routing file's environment, the
80-column list printer, and whether a URL names this data dir's private services (recorded, not guessed)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console

from alerting.envrefs import env_refs, missing
from api.cli import context as cli_context
from api.cli.context import Col, Context, print_list
from api.cli.logfmt import JsonFormatter, JsonLines
from core.services import ServicesState
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("riskwatch.ingest", logging.WARNING, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_a_json_log_line_has_the_stable_keys_and_the_records_extras() -> None:
    line = JsonFormatter().format(_record("dead letter from %s", "gw-a1", gateway="gw-a1", rule="it.co:hi",
                                          blob=object()))
    obj = json.loads(line)
    assert obj["level"] == "warning" and obj["logger"] == "riskwatch.ingest"
    assert obj["event"] == "dead letter from gw-a1" and obj["gateway"] == "gw-a1" and obj["rule"] == "it.co:hi"
    assert obj["time"].endswith("+00:00") and "T" in obj["time"]
    assert obj["blob"].startswith("<object")  # not JSON-able: its repr, the line still parses
    assert "\n" not in line


def test_an_exception_stays_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        rec = _record("failed")
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "ValueError" in json.loads(line)["exc"]


def test_status_lines_become_json_objects() -> None:
    out = io.StringIO()
    s = JsonLines(out)
    s.write("collector: mqtts://riskwatch-collector:***@127.0.0.1:1 -> database\nerror half")
    s.write(" a line\n\n")
    objs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [o["event"] for o in objs] == ["collector: mqtts://riskwatch-collector:***@127.0.0.1:1 -> database",
                                          "error half a line"]
    assert [o["level"] for o in objs] == ["info", "error"]


def test_every_unset_or_empty_variable_is_listed_with_its_line() -> None:
    path = ROOT / "deploy" / "alerting.example.yaml"
    refs = env_refs(path)
    names = [r.name for r in refs]
    assert {"RW_SMTP_PASSWORD", "RW_SMS_TOKEN", "RW_DINGTALK_URL", "RW_DINGTALK_SECRET", "RW_PLATFORM_SECRET"} <= set(
        names)
    text = path.read_text(encoding="utf-8").splitlines()
    for r in refs:
        assert r.line is not None and "${" + r.name + "}" in text[r.line - 1], r
    gaps = missing(refs, {"RW_SMTP_PASSWORD": "x", "RW_SMS_TOKEN": ""})
    assert ("RW_SMS_TOKEN", "empty") in [(r.name, why) for r, why in gaps]
    assert "RW_SMTP_PASSWORD" not in [r.name for r, _ in gaps]
    assert {r.name for r, why in gaps if why == "unset"} >= {"RW_DINGTALK_URL", "RW_DINGTALK_SECRET"}


def test_an_empty_secret_is_refused_at_load_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from alerting.channels.base import expand_secret

    monkeypatch.setenv("RW_TEST_EMPTY", "")
    with pytest.raises(ValueError, match="RW_TEST_EMPTY is not set \\(it is empty\\)"):
        expand_secret("${RW_TEST_EMPTY}")


def test_a_reference_outside_channels_is_not_a_secret(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text("version: 1\nnote: '${NOT_A_SECRET}'\nchannels:\n  hook:\n    type: webhook\n"
                 "    headers: {X-Key: '${RW_HOOK_KEY}'}\n", encoding="utf-8")
    assert [(r.name, r.line, r.setting) for r in env_refs(f)] == [("RW_HOOK_KEY", 6, "channels.hook.headers.X-Key")]


def test_the_list_printer_keeps_ids_whole_and_prints_no_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.StringIO()
    monkeypatch.setattr(cli_context, "console", Console(file=buf, width=80, soft_wrap=True))
    rows = [{"id": f"mach.cooling.diff:hi-{i}", "subject": f"gw-foundry-{i:02d}/FT-601",
             "title": "[red]注入[/] " + "很长的说明文字 " * 12} for i in range(3)]
    print_list("t", [Col("id", "规则 rule", ident=True), Col("subject", "对象 target", ident=True),
                     Col("title", "说明 reason")], rows, as_json=False)
    out = buf.getvalue()
    assert all(r["id"] in out and r["subject"] in out for r in rows), out
    assert "[red]注入[/]" in out and "…" not in out
    assert max(len(x) for x in out.splitlines()) <= 80


def test_the_json_printer_is_an_array_of_objects(capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime
    from decimal import Decimal

    print_list("t", [], [{"id": 1, "at": datetime(2026, 1, 1, tzinfo=UTC), "funds": Decimal("1.50")}], as_json=True)
    assert json.loads(capsys.readouterr().out) == [{"id": 1, "at": "2026-01-01T00:00:00+00:00", "funds": "1.50"}]


def _ctx(tmp_path: Path, **env: str) -> Context:
    return Context(Settings.from_env({"RISKWATCH_DATA_DIR": str(tmp_path), **env}))


def test_private_is_recorded_not_guessed(tmp_path: Path) -> None:
    db = "postgresql://riskwatch:pw@127.0.0.1:{}/riskwatch"
    mq = "mqtts://riskwatch-collector:pw@127.0.0.1:{}?cafile=/x/ca.crt"
    assert _ctx(tmp_path).private  # nothing set: the data dir's services
    # no record: a set URL is external, whatever it looks like
    assert not _ctx(tmp_path, RISKWATCH_DB_URL=db.format(5432), RISKWATCH_MQTT_URL=mq.format(8883)).private
    ServicesState(pg_dir=str(tmp_path / "pg"), pg_port=41001, pg_password="p", mqtt_port=41002,
                  collector_password="c", mqtt_mtls_port=41003).save(tmp_path / "services.json")
    sourced = _ctx(tmp_path, RISKWATCH_DB_URL=db.format(41001), RISKWATCH_MQTT_URL=mq.format(41002))
    assert sourced.private and sourced.db_private and sourced.mqtt_private
    other = _ctx(tmp_path, RISKWATCH_DB_URL=db.format(41001), RISKWATCH_MQTT_URL=mq.format(8883))
    assert other.db_private and not other.mqtt_private
    remote = _ctx(tmp_path, RISKWATCH_DB_URL="postgresql://u:p@db.example.cn:41001/r",
                  RISKWATCH_MQTT_URL="mqtts://u:p@mqtt.example.cn:41002")
    assert not remote.private  # the same port on another host is not ours
