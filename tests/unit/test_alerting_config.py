"""The routing file: durations, the example file, every validation error at its line, the hazard floor."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.config import (
    LABELS,
    EscalationStep,
    Target,
    Timing,
    default_config_text,
    load_alerting,
    load_config,
    parse_duration,
)
from core.errors import SourceError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "alerting.example.yaml"
EXAMPLE_ENV = {
    "RW_SMTP_PASSWORD": "smtp-pass",
    "RW_SMS_TOKEN": "sms-token",
    "RW_DINGTALK_URL": "https://oapi.dingtalk.com/robot/send?access_token=t0ken",
    "RW_DINGTALK_SECRET": "SECabc",
    "RW_PLATFORM_SECRET": "platform-secret",
}

# Line numbers matter: the cases below replace one line and expect problems at given lines.
BASE = """\
version: 1
timezone: Asia/Shanghai
defaults:
  group_by: [enterprise, plant]
  group_wait: 10s
channels:
  email: {type: smtp, host: 127.0.0.1, sender: "rw <rw@example.gov.cn>"}
  sms: {type: sms, url: "http://127.0.0.1:9/sms", body: '{"phone": "{phone}", "text": "{text}"}'}
  hook: {type: webhook, url: "http://127.0.0.1:9/hook"}
people:
  zhangwei: {name: 张伟, phone: "13800000001"}
  chenjie: {name: 陈杰, email: chenjie@example.gov.cn}
rosters:
  duty:
    shifts:
      - {days: [mon, tue], from: "08:30", to: "17:30", people: [zhangwei]}
    fallback: [chenjie]
receivers:
  duty: {to: [{roster: duty}], via: [sms, email]}
  chief: {to: [{person: chenjie}], via: [email]}
  leaders: {to: [{enterprise: principal}, {enterprise: controller}], via: [sms]}
  ops: {via: [hook]}
routes:
  receiver: duty
  escalation:
    - {after: 15m, receiver: chief}
  routes:
    - match: {kind: hazard, event: confirmed}
      receiver: [duty, leaders]
    - match: {severity: [urgent, high]}
      group_wait: 0s
"""


def edited(*edits: tuple[str, str]) -> str:
    text = BASE
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def problems(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(SourceError) as exc:
        load_config("alerting.yaml", text)
    assert all(p.path == "alerting.yaml" for p in exc.value.problems)
    return [(p.line, p.message) for p in exc.value.problems]


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    ("500ms", 0.5), ("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("0", 0), ("90", 90), (" 2.5s ", 2.5), (15, 15), (0.25, 0.25), (None, 0),
])
def test_parse_duration(value: str | int | float | None, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["10 sec", "5x", "", "m", "-5s", "-1", "inf", "nan", True, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)  # type: ignore[arg-type]


# --- files that load ----------------------------------------------------------------------------


def test_base_loads_and_resolves() -> None:
    cfg = load_config("alerting.yaml", BASE)
    assert cfg.source == "alerting.yaml"
    assert str(cfg.tz) == "Asia/Shanghai"
    assert cfg.defaults == Timing(("enterprise", "plant"), 10.0, 120.0, 1800.0)
    assert cfg.delivery.max_attempts == 8 and cfg.delivery.ack_link_ttl == 86400
    duty = cfg.rosters["duty"]
    assert duty.shifts[0].days == (0, 1) and (duty.shifts[0].start, duty.shifts[0].end) == (510, 1050)
    assert duty.fallback == ("chenjie",)
    assert cfg.receivers["leaders"].to == (Target(enterprise="principal"), Target(enterprise="controller"))
    assert cfg.channels["hook"].type == "webhook"
    root = cfg.routes
    assert (root.path, root.receivers) == ("root", ("duty",))
    assert root.timing.escalation == (EscalationStep(after=900, receiver="chief"),)
    first, second = root.routes
    assert (first.path, first.receivers, first.match) == ("root.0", ("duty", "leaders"),
                                                          {"kind": ("hazard",), "event": ("confirmed",)})
    assert second.receivers == ("duty",) and second.timing.group_wait == 0
    assert second.timing.escalation == root.timing.escalation


def test_labels() -> None:
    assert LABELS == ("kind", "event", "severity", "industry", "enterprise", "plant", "rule", "subject", "source",
                      "hazard")


def test_default_config_sends_nothing() -> None:
    cfg = load_config("(built-in)", default_config_text())
    assert cfg.receivers == {} and cfg.channels == {}
    assert cfg.routes.receivers == () and cfg.routes.routes == ()


def test_load_alerting_without_a_file_sends_nothing(tmp_path: Path) -> None:
    assert load_alerting(None).routes.receivers == ()
    f = tmp_path / "alerting.yaml"
    f.write_text(BASE, encoding="utf-8")
    assert load_alerting(f).source == str(f)
    with pytest.raises(SourceError, match="cannot read"):
        load_alerting(tmp_path / "missing.yaml")


def test_example_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in EXAMPLE_ENV.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(EXAMPLE)
    assert set(cfg.receivers) == {"bureau-duty", "section-chief", "bureau-leader", "enterprise-leaders",
                                  "emergency-platform"}
    assert cfg.channels["sms"].type == "sms"
    assert [s.after for s in cfg.routes.timing.escalation] == [900, 1800]
    # Every day of the week starts with some shift: the template leaves no gap for the fallback.
    assert {d for s in cfg.rosters["bureau-duty"].shifts for d in s.days} == set(range(7))


def test_example_file_needs_its_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in EXAMPLE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RW_SMS_TOKEN")
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    channel_line = next(i for i, s in enumerate(lines, 1) if s.startswith("  sms:"))
    token_line = next(i for i, s in enumerate(lines, 1) if "${RW_SMS_TOKEN}" in s)
    with pytest.raises(SourceError) as exc:
        load_config(EXAMPLE)
    [p] = exc.value.problems
    # The channel reports it (at the channel, or at the field itself).
    assert p.line is not None and channel_line <= p.line <= token_line
    assert "RW_SMS_TOKEN is not set" in p.message
    assert "sms-token" not in str(exc.value)


# --- validation errors, each at its line ---------------------------------------------------------

CASES = [
    # (id, edits, [(line, fragment), ...])
    ("unknown top-level key", [("timezone: Asia", "timezon: Asia")], [(2, "Extra inputs")]),
    ("bad time zone", [("Asia/Shanghai", "Mars/Olympus")], [(2, "unknown time zone")]),
    ("wrong version", [("version: 1", "version: 2")], [(1, "Input should be 1")]),
    ("unknown label in group_by", [("[enterprise, plant]", "[enterprise, colour]")], [(4, "'kind', 'event'")]),
    ("bad duration", [("group_wait: 10s", "group_wait: 10 sec")], [(5, "invalid duration '10 sec'")]),
    ("channel missing a field", [('{type: webhook, url: "http://127.0.0.1:9/hook"}', "{type: webhook}")],
     [(9, "url: Field required")]),
    ("channel of unknown type", [('{type: webhook, url: "http://127.0.0.1:9/hook"}', "{type: pigeon, url: x}")],
     [(9, "'pigeon'")]),
    ("channel secret not in the environment", [('url: "http://127.0.0.1:9/hook"}', 'url: "${RW_UNSET_TEST_VAR}"}')],
     [(9, "RW_UNSET_TEST_VAR is not set")]),
    ("person with neither email nor phone", [('{name: 张伟, phone: "13800000001"}', "{name: 张伟}")],
     [(11, "email or a phone")]),
    ("unquoted phone", [('phone: "13800000001"', "phone: 13800000001")], [(11, "quotes")]),
    ("bad email", [("email: chenjie@example.gov.cn", "email: chenjie")], [(12, "email")]),
    ("bad day", [("days: [mon, tue]", "days: [mon, tuesday]")], [(16, "invalid day 'tuesday'")]),
    ("bad time", [('from: "08:30"', 'from: "8.30"')], [(16, "invalid time '8.30'")]),
    ("time out of range", [('to: "17:30"', 'to: "24:00"')], [(16, "invalid time '24:00'")]),
    ("unquoted time", [('to: "17:30"', "to: 17:30")], [(16, "write times in quotes")]),
    ("unknown key in a shift", [("people: [zhangwei]}", "people: [zhangwei], note: x}")], [(16, "Extra inputs")]),
    ("unknown person on a shift", [("people: [zhangwei]}", "people: [zhangwei, nobody]}")],
     [(16, "unknown person 'nobody'")]),
    ("unknown fallback person", [("fallback: [chenjie]", "fallback: [nobody]")], [(17, "unknown person 'nobody'")]),
    ("unknown roster", [("{roster: duty}", "{roster: night}")], [(19, "unknown roster 'night'")]),
    ("unknown person in to", [("{person: chenjie}", "{person: nobody}")], [(20, "unknown person 'nobody'")]),
    ("target with two keys", [("{person: chenjie}", "{person: chenjie, roster: duty}")], [(20, "exactly one")]),
    ("unknown enterprise role", [("{enterprise: controller}", "{enterprise: boss}")], [(21, "'controller'")]),
    ("unknown channel", [("via: [email]}", "via: [email, fax]}")], [(20, "unknown channel 'fax'")]),
    ("receiver with only per-contact channels and nobody", [("ops: {via: [hook]}", "ops: {via: [email]}")],
     [(22, "nobody to send to")]),
    ("receiver without channels", [("ops: {via: [hook]}", "ops: {to: [{person: chenjie}]}")],
     [(22, "no channels")]),
    ("unknown receiver at root", [("  receiver: duty\n", "  receiver: nobody\n")],
     [(24, "unknown receiver 'nobody'")]),
    ("unknown escalation receiver", [("receiver: chief}", "receiver: boss}")], [(26, "unknown receiver 'boss'")]),
    ("escalation not increasing",
     [("    - {after: 15m, receiver: chief}\n", "    - {after: 15m, receiver: chief}\n"
                                             "    - {after: 10m, receiver: ops}\n")],
     [(27, "strictly later")]),
    ("escalation at zero", [("after: 15m", "after: 0")], [(26, "strictly later")]),
    ("unknown label in match", [("{kind: hazard, event: confirmed}", "{kind: hazard, colour: red}")],
     [(28, "'kind', 'event'")]),
    ("a value a label never has", [("[urgent, high]", "[urgent, hgih]")], [(30, "severity is never 'hgih'")]),
    ("unknown key in a route", [("group_wait: 0s", "group_wiat: 0s")], [(31, "Extra inputs")]),
    ("empty receiver list below the root", [("group_wait: 0s", "receiver: []")], [(31, "empty receiver list")]),
    ("unknown receiver in a child", [("[duty, leaders]", "[duty, leaderz]")], [(29, "unknown receiver 'leaderz'")]),
    ("root without receiver and with match", [("  receiver: duty\n", "  match: {kind: alarm}\n")],
     [(23, "root route needs a receiver"), (24, "always matches")]),
    ("continue on the root", [("  receiver: duty\n", "  receiver: duty\n  continue: true\n")],
     [(25, "continue means nothing")]),
    ("several problems at once",
     [("people: [zhangwei]}", "people: [nobody]}"), ("via: [email]}", "via: [fax]}"), ("group_wait: 0s", "x: 1")],
     [(31, "Extra inputs")]),  # pydantic problems first; cross-references are checked on a valid file
    ("several cross-reference problems at once",
     [("people: [zhangwei]}", "people: [nobody]}"), ("via: [email]}", "via: [fax]}"),
      ("after: 15m, receiver: chief", "after: 15m, receiver: boss")],
     [(16, "unknown person"), (20, "unknown channel"), (26, "unknown receiver")]),
]


@pytest.mark.parametrize(("edits", "expected"), [pytest.param(e, x, id=i) for i, e, x in CASES])
def test_validation_error_lines(edits: list[tuple[str, str]], expected: list[tuple[int, str]]) -> None:
    got = problems(edited(*edits))
    assert [line for line, _ in got] == [line for line, _ in expected], got
    for (_, message), (_, fragment) in zip(got, expected, strict=True):
        assert fragment in message


# --- the regulatory floor: confirmed major hazards reach both enterprise leaders ----------------

FLOOR = "确认的重大事故隐患必须经短信或邮件通知企业主要负责人和实际控制人"


@pytest.mark.parametrize(("edits", "fragments", "absent"), [
    pytest.param([("receiver: [duty, leaders]", "receiver: [duty]")],
                 ["via root.0", "no principal responsible person and actual controller", "every industry and source"],
                 [],
                 id="hazard route without the leaders"),
    pytest.param([("{enterprise: principal}, {enterprise: controller}", "{enterprise: principal}")],
                 ["未通知实际控制人", "reaches no actual controller", "every industry and source"],
                 ["no principal"], id="controller left out"),
    pytest.param([("via: [sms]}", "via: [sms]}\n  leaders-robot: {to: [{enterprise: principal},"
                                  " {enterprise: controller}], via: [hook]}"),
                   ("receiver: [duty, leaders]", "receiver: [duty, leaders-robot]")],
                 ["by SMS or e-mail", "every industry and source"], [],
                 id="leaders only through a group channel"),
    pytest.param([("  routes:\n    - match: {kind: hazard",
                   "  routes:\n    - match: {source: public_tip}\n      receiver: chief\n    - match: {kind: hazard")],
                 ["via root.0", "cement/public_tip, lime/public_tip", "machinery/public_tip)"],
                 ["sensor", "every industry"], id="public tips caught by an earlier route"),
    pytest.param([("{kind: hazard, event: confirmed}", "{kind: hazard, event: confirmed, industry: cement}")],
                 ["via root.1", "lime/sensor", "machinery/public_tip"], ["cement/"],
                 id="only cement hazards reach the leaders"),
])
def test_hazard_floor_fails(edits: list[tuple[str, str]], fragments: list[str], absent: list[str]) -> None:
    got = problems(edited(*edits))
    routes_line = next(i for i, s in enumerate(edited(*edits).splitlines(), 1) if s == "routes:")
    assert [line for line, _ in got] == [routes_line]
    message = got[0][1]
    assert FLOOR in message and "a confirmed major hazard must reach" in message
    for f in fragments:
        assert f in message
    for f in absent:
        assert f not in message


@pytest.mark.parametrize("edits", [
    pytest.param([], id="base: a dedicated hazard route"),
    pytest.param([("  receiver: duty\n", "  receiver: [duty, leaders]\n"),
                  ("    - match: {kind: hazard, event: confirmed}\n      receiver: [duty, leaders]\n", "")],
                 id="root sends everything to the leaders too"),
    pytest.param([("{enterprise: principal}, {enterprise: controller}], via: [sms]}",
                   "{enterprise: principal}], via: [sms]}\n  ctl: {to: [{enterprise: controller}], via: [email]}"),
                  ("receiver: [duty, leaders]", "receiver: [duty, leaders, ctl]")],
                 id="principal and controller through different receivers"),
    pytest.param([("  routes:\n    - match: {kind: hazard",
                   "  routes:\n    - match: {source: public_tip}\n      receiver: chief\n      continue: true\n"
                   "    - match: {kind: hazard")],
                 id="an earlier route that continues"),
])
def test_hazard_floor_holds(edits: list[tuple[str, str]]) -> None:
    load_config("alerting.yaml", edited(*edits))
