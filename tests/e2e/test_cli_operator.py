"""The operator's CLI (issue 16), through the installed `riskwatch` command at 80 columns:

- every list command prints every id it lists in full, and `--json` is an array of objects;
- `alarms ack` takes the target `alarms list` printed (GW/TAG), the old `GW TAG` form still works;
- the ledger steps take a ticket from candidate to closed with the API's refusals and audit;
- a command never starts the private services it finds stopped, and says how to start them;
- `--log-format json` writes one JSON object per line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from core import accounts, registry
from core.services import COLLECTOR_USER, LocalMosquitto, LocalServices
from hazards import workflow
from hazards.model import Actor, Plan
from tests.conftest import FIXTURES

pytestmark = pytest.mark.integration

RISKWATCH = str(Path(sys.executable).parent / "riskwatch")
LONG_GW = "gw-zhangjiagang-jinfeng-foundry-01"  # 33 characters: no table may cut it
LONG_TAG = "CO-101-OUTLET-NORTH"
LONG_RULE = "it.co.outlet-north:hi-hi"
ENT_A = "ent-a"


def _env(db_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    env.update({"RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": "mqtt://u:p@127.0.0.1:1",
                "RISKWATCH_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "80", "USER": "tester"})
    env.update(extra)
    return env


def rw(env: dict[str, str], *args: str, code: int | None = 0, stdin: str | None = None
       ) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([RISKWATCH, *args], env=env, capture_output=True, text=True, timeout=120, input=stdin)
    if code is not None:
        assert res.returncode == code, f"riskwatch {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


def _site(tmp_path: Path) -> Path:
    text = (FIXTURES / "mini_site.yaml").read_text(encoding="utf-8")
    text = text.replace("gw-a1", LONG_GW).replace("CO-101", LONG_TAG)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> dict[str, str]:
    """The mini site with a long gateway id and tag, two alarms, a candidate ticket, a token, a user and a
    notification: one row for every list command."""
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(_site(tmp_path)))
        pid = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s",
                           (LONG_GW, LONG_TAG)).fetchone()[0]  # type: ignore[index]
        for rule, subject, point, gw in ((LONG_RULE, f"p:{pid}", pid, LONG_GW),
                                         ("it.gateway.silent", "g:gw-a2", None, "gw-a2")):
            conn.execute(
                """INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity,
                       candidate, active, state, cond, activated_at, value, reason)
                   VALUES (%s, %s, %s, %s, 'plant-a', 'v1', 'high', true, true, 'unack', true, now(), 31.5,
                           '出口CO浓度超过高高限并持续超过设定时间，需要立即到现场确认 CO above high-high for long')""",
                (rule, subject, point, gw))
            conn.execute(
                """INSERT INTO alarm_events (time, rule_id, subject, point_id, gateway_id, plant_id, event,
                       from_state, to_state, annunciate, severity, catalog_version) VALUES (now(), %s, %s, %s, %s,
                       'plant-a', 'activate', 'normal', 'unack', true, 'high', 'v1')""", (rule, subject, point, gw))
        conn.execute(
            """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id,
                   enterprise_id, basis, title_zh, title_en, catalog_version, evidence)
               VALUES (now(), %s, %s, %s, %s, 'plant-a', %s, '判定标准第六条第（一）项',
                       '一氧化碳浓度超限且联锁未动作，长标题用于检验八十列终端下的折行显示', 'CO high, no interlock',
                       'v1', '{}')""", (LONG_RULE, f"p:{pid}", pid, LONG_GW, ENT_A))
        gid = conn.execute(
            """INSERT INTO alert_groups (route, receiver, group_key, group_wait, group_interval, repeat_interval,
                   created_at) VALUES ('root.0', 'county-duty-officer-on-call', 'k', 0, 0, 0, now()) RETURNING id"""
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            """INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel, address,
                   items, message, status, attempts, next_attempt_at, last_error, created_at)
               VALUES ('n1', %s, 1, 'firing', 'group_wait', 'county-duty-officer-on-call', 'email',
                       'duty@example.cn', '[]', '{"subject": "报警 CO"}', 'dead', 5, now(), 'smtp 550', now())""",
            (gid,))
        conn.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        accounts.create_user(conn, "county-duty-officer-zhang", "a long enough passphrase 1", "admin",
                             display_name="张值班", created_by="test")
    return {"point": str(pid)}


def test_every_list_command_shows_every_id_in_full_at_80_columns(db_url: str, tmp_path: Path,
                                                                 site: dict[str, str]) -> None:
    env = _env(db_url, tmp_path)
    rw(env, "hazards", "intake")
    rw(env, "token", "create", "--role", "enterprise", "--enterprise", ENT_A, "--name", "甲企业安全科")
    rw(env, "alarms", "ack", "it.gateway.silent", "gw-a2")  # something in the flood and history too

    cases = {  # command -> (ids it must print in full, JSON keys every object has)
        ("alarms", "list"): ([LONG_RULE, f"{LONG_GW}/{LONG_TAG}", "it.gateway.silent", "gw-a2"],
                             {"rule_id", "target", "gateway_id", "tag", "device", "state", "severity"}),
        ("alarms", "list", "--all"): ([LONG_RULE, f"{LONG_GW}/{LONG_TAG}"], {"rule_id", "target"}),
        ("alarms", "flood"): (["plant-a"], {"plant_id", "count", "flooding"}),
        ("hazards", "list"): (["1"], {"id", "status", "enterprise_id", "title"}),
        ("token", "list"): (["1", ENT_A], {"id", "name", "role", "enterprise_id", "prefix"}),
        ("users", "list"): (["county-duty-officer-zhang"], {"id", "username", "role", "active"}),
        ("alerting", "notifications"): (["1"], {"id", "receiver", "channel", "status", "last_error"}),
    }
    for args, (ids, keys) in cases.items():
        out = rw(env, *args).stdout
        assert "…" not in out, f"{args} cut a cell:\n{out}"
        for ident in ids:
            assert re.search(rf"(?<![\w./-]){re.escape(ident)}(?![\w./-])", out), f"{args}: {ident} not whole:\n{out}"
        assert max(len(line) for line in out.splitlines()) <= 80, f"{args} wider than 80 columns:\n{out}"
        rows = json.loads(rw(env, *args, "--json").stdout)
        assert isinstance(rows, list) and rows and all(keys <= set(r) for r in rows), (args, rows)
    alarms = json.loads(rw(env, "alarms", "list", "--json").stdout)
    assert {a["target"] for a in alarms} == {f"{LONG_GW}/{LONG_TAG}", "gw-a2"}
    assert not any(str(v).startswith(("p:", "g:")) for a in alarms for v in a.values()), "internal subject shown"
    assert "coal-bf" in {a["device"] for a in alarms}


def test_ids_wider_than_the_terminal_are_still_whole(db_url: str, tmp_path: Path, site: dict[str, str]) -> None:
    out = rw(_env(db_url, tmp_path, COLUMNS="40"), "alarms", "list").stdout
    assert f"{LONG_GW}/{LONG_TAG}" in out and LONG_RULE in out


def test_alarms_ack_takes_what_alarms_list_printed(db_url: str, tmp_path: Path, site: dict[str, str]) -> None:
    env = _env(db_url, tmp_path)
    # at 80 columns these ids are too wide for a table: one block per alarm, ids whole
    listed = rw(env, "alarms", "list").stdout
    pairs = list(zip(re.findall(r"规则 rule: (\S+)", listed), re.findall(r"对象 target: (\S+)", listed), strict=True))
    assert (LONG_RULE, f"{LONG_GW}/{LONG_TAG}") in pairs and ("it.gateway.silent", "gw-a2") in pairs, listed
    # on a wider terminal, a table: 级别 severity (high ★), 状态 state, rule, target
    wide = rw({**env, "COLUMNS": "160"}, "alarms", "list").stdout
    line = next(ln for ln in wide.splitlines() if LONG_RULE in ln)
    rule, target = line.split()[3:5]
    assert (rule, target) == (LONG_RULE, f"{LONG_GW}/{LONG_TAG}"), wide
    assert "unack -> ack" in rw(env, "alarms", "ack", rule, target, "--by", "值班员张").stdout
    again = rw(env, "alarms", "ack", rule, target, code=2)
    assert "nothing to acknowledge" in again.stderr
    hist = rw(env, "alarms", "history", rule, target).stdout
    assert "值班员张" in hist
    # the old form keeps working; the message names what the operator typed, never p:<id>
    assert "unack -> ack" in rw(env, "alarms", "ack", "it.gateway.silent", "gw-a2").stdout
    wrong = rw(env, "alarms", "ack", LONG_RULE, "gw-a2/TT-201", code=2)
    assert "gw-a2/TT-201" in wrong.stderr and "p:" not in wrong.stderr
    forged = rw(env, "alarms", "ack", LONG_RULE, "gw-b1/" + LONG_TAG, code=2)  # another plant's gateway
    assert "no point" in forged.stderr
    assert "unknown" not in rw(env, "alarms", "ack", LONG_RULE, f"p:{site['point']}", code=2).stderr


def _api_refusal(db_url: str, action: workflow.Action, actor: Actor) -> str:
    """The message the API's routes return for the same refusal: both apply the pure workflow to the stored
    ticket."""
    from hazards import store
    from hazards.errors import HazardError

    with psycopg.connect(db_url) as conn:
        rec = store.get(conn, 1, None)
    assert rec is not None
    try:
        workflow.apply(rec.ticket(), action, actor, time.time())
    except HazardError as exc:
        return exc.message
    raise AssertionError("the workflow allowed it")


def test_the_ledger_cli_takes_a_ticket_from_candidate_to_closed(db_url: str, tmp_path: Path,
                                                                site: dict[str, str]) -> None:
    env = _env(db_url, tmp_path)
    rw(env, "hazards", "intake")
    ent = ("--role", "enterprise", "--enterprise", ENT_A, "--as", "甲企业安全员")

    # refusals: the API's own words, exit 1, nothing changes
    refused = rw(env, "hazards", "plan", "1", "--role", "bureau", "--person", "王强", "--measures", "换探头",
                 "--funds", "3000", "--deadline", "2030-01-31", "--contingency", "人工巡检", code=1)
    said = " ".join(refused.stderr.split())
    assert _api_refusal(db_url, workflow.FilePlan(Plan("王强", "换探头", Decimal(3000), 0, "人工巡检")),
                        Actor("x", "bureau")) in said
    assert "无权" in said and "may not" in said  # Chinese and English
    early = " ".join(rw(env, "hazards", "verify", "1", code=1).stderr.split())
    assert _api_refusal(db_url, workflow.Verify(), Actor("x", "bureau")) in early
    rw(env, "hazards", "dismiss", "1", code=1)  # a dismissal needs a reason
    rw(env, "hazards", "confirm", "1", "--role", "enterprise", "--enterprise", "ent-b", code=1)  # not theirs
    rw(env, "hazards", "confirm", "1", "--role", "enterprise", code=2)  # enterprise role names its enterprise
    rw(env, "hazards", "confirm", "1", "--role", "root", code=2)
    rw(env, "hazards", "confirm", "999", code=1)

    assert "candidate → confirmed" in rw(env, "hazards", "confirm", "1", "--comment", "现场核实").stdout
    rw(env, "hazards", "plan", "1", *ent, "--person", "王强", code=1)  # 五落实 incomplete: the schema says what
    plan = tmp_path / "plan.yaml"
    plan.write_text("responsible_person: 王强（设备部经理）\nresponsible_phone: '13900000003'\n"
                    "measures: 更换CO探头并恢复联锁\nfunds_yuan: 3000.00\ndeadline: 2030-01-31\n"
                    "contingency_plan: 整改期间人工巡检每小时一次\n", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- not\n- a mapping\n", encoding="utf-8")
    rw(env, "hazards", "plan", "1", *ent, "--file", str(bad), code=2)
    huge = tmp_path / "huge.yaml"
    huge.write_text("measures: " + "x" * 70_000 + "\n", encoding="utf-8")
    rw(env, "hazards", "plan", "1", *ent, "--file", str(huge), code=2)
    extra = tmp_path / "extra.yaml"
    extra.write_text(plan.read_text(encoding="utf-8") + "status: closed\n", encoding="utf-8")
    assert "status" in rw(env, "hazards", "plan", "1", *ent, "--file", str(extra), code=1).stderr
    assert "confirmed → plan_filed" in rw(env, "hazards", "plan", "1", *ent, "--file", str(plan)).stdout
    assert "plan_filed → rectifying" in rw(env, "hazards", "start", "1", *ent).stdout
    rw(env, "hazards", "submit", "1", *ent, code=1)  # what was done is required
    assert "rectifying → submitted" in rw(env, "hazards", "submit", "1", *ent, "--comment", "已更换").stdout
    assert "submitted → rectifying" in rw(env, "hazards", "send-back", "1", "--reason", "缺调试记录").stdout
    rw(env, "hazards", "submit", "1", *ent, "--comment", "已补调试记录")
    rw(env, "hazards", "verify", "1", *ent, code=1)  # the enterprise may not close its own ticket
    assert "submitted → closed" in rw(env, "hazards", "verify", "1").stdout

    with psycopg.connect(db_url) as conn:
        events = conn.execute("SELECT action, actor, actor_role FROM hazard_events WHERE hazard_id = 1"
                              " ORDER BY id").fetchall()
        plan_row = conn.execute("SELECT plan_deadline, status FROM hazards WHERE id = 1").fetchone()
        audit = conn.execute("SELECT actor, role, enterprise_id, status, route FROM audit_log WHERE method = 'CLI'"
                             " ORDER BY id").fetchall()
    assert [e[0] for e in events if e[0] != "create"][-7:] == [
        "confirm", "file_plan", "start_rectification", "submit", "send_back", "submit", "verify"]
    assert ("confirm", "tester (cli)", "bureau") in events and ("file_plan", "甲企业安全员", "enterprise") in events
    assert plan_row is not None and plan_row[1] == "closed" and plan_row[0].year == 2030
    assert ("tester (cli)", "bureau", None, 403, "hazards plan") in audit  # the refusal is audited too
    assert ("甲企业安全员", "enterprise", ENT_A, 200, "hazards plan") in audit
    assert sum(a[3] == 200 for a in audit) == 7
    assert "已关闭" in rw(env, "hazards", "list", "--all").stdout or "closed" in rw(
        env, "hazards", "list", "--all", "--json").stdout


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "rw"
    yield d
    LocalServices(d).destroy()


def test_a_command_never_starts_stopped_private_services(data_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKWATCH_")}
    env.update({"RISKWATCH_DATA_DIR": str(data_dir), "COLUMNS": "80"})
    for args in (("alarms", "list"), ("migrate",), ("registry", "load", str(FIXTURES / "mini_site.yaml"))):
        res = rw(env, *args, code=3)
        assert "riskwatch services up" in res.stderr and "not running" in res.stderr, res.stderr
    assert not (data_dir / "services.json").exists()

    exports = dict(line.removeprefix("export ").split("=", 1)
                   for line in rw(env, "services", "up", "--env").stdout.strip().splitlines())
    sourced = {**env, **{k: v.strip("'") for k, v in exports.items()}}
    # after sourcing `services up --env` the URLs are set, yet they are still the private broker's
    out = rw(sourced, "registry", "load", str(FIXTURES / "mini_site.yaml")).stdout
    assert "external broker" not in out
    rw(sourced, "gateway", "add", "gw-new", "--plant", "plant-a")
    broker_dir = LocalServices(data_dir).mqtt
    assert "gw-new:" in broker_dir.passwd.read_text()

    rw(env, "services", "down")
    res = rw(env, "hazards", "list", code=3)
    assert "riskwatch services up" in res.stderr
    rw(sourced, "hazards", "list", code=2)  # the URL given: a database error, not a started database
    assert LocalServices(data_dir).status() == {"postgres": False, "mosquitto": False}


@pytest.mark.parametrize("argv", [["--log-format", "json", "-v", "collect"], ["-v", "collect", "--log-format", "json"]],
                         ids=["global", "after-the-command"])
def test_json_logs_parse(argv: list[str], db_url: str, broker: LocalMosquitto, tmp_path: Path) -> None:
    broker.write_auth([])
    broker.reload()
    env = {**os.environ, "RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": broker.url(COLLECTOR_USER),
           "RISKWATCH_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([RISKWATCH, *argv], env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "MQTT connected" in line:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)[1], None
        lines += (rest or "").splitlines(keepends=True)
    objs = [json.loads(line) for line in lines if line.strip()]
    assert objs and all({"time", "level", "logger", "event"} <= set(o) for o in objs), lines
    assert any("MQTT connected" in o["event"] for o in objs), lines
    assert any(o["logger"] == "riskwatch.cli" and "collector stopped" in o["event"] for o in objs), lines
    assert "u:p@" not in "".join(lines) and broker.state.collector_password not in "".join(lines)
