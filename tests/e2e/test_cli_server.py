"""The CLI commands of this issue (`token ...`, `hazards ...`) through the real `riskwatch` Typer app."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from typer.testing import CliRunner

from api import cli
from api.cli import server as cli_server
from api.run.demo import show_sensor_tickets
from hazards import ledger
from hazards import workflow as wf
from hazards.model import Actor, Plan
from tests.fix_api import T0, load_site

pytestmark = pytest.mark.integration


@pytest.fixture
def run(db_url: str, tmp_path):  # type: ignore[no-untyped-def]
    cli_server.register(cli.app)
    cli_server.register(cli.app)  # idempotent
    assert sum(c.name == "serve" for c in cli.app.registered_commands) == 1
    load_site(db_url)
    env = {"RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": "mqtt://u:p@127.0.0.1:1",
           "RISKWATCH_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "240"}

    def _run(*args: str, code: int = 0) -> str:
        res = CliRunner().invoke(cli.app, list(args), env=env, catch_exceptions=False)
        assert res.exit_code == code, res.output
        return res.output

    return _run


def test_token_commands(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    out = run("token", "create", "--role", "enterprise", "--enterprise", "ent-a", "--name", "甲企业安全科")
    token = next(line for line in out.splitlines() if line.startswith("rwt_"))
    with psycopg.connect(db_url) as conn:
        assert token not in str(conn.execute("SELECT * FROM api_tokens").fetchall())
    assert "甲企业安全科" in run("token", "list")
    run("token", "create", "--role", "enterprise", "--name", "x", code=2)  # enterprise needs --enterprise
    run("token", "create", "--role", "bureau", "--enterprise", "ent-a", code=2)
    run("token", "create", "--role", "enterprise", "--enterprise", "ghost", code=2)
    assert "revoked" in run("token", "revoke", "1")
    run("token", "revoke", "99", code=2)


def test_hazards_commands(run, db_url: str) -> None:  # type: ignore[no-untyped-def]
    with psycopg.connect(db_url) as conn:
        pid = conn.execute("SELECT id FROM points WHERE tag = 'TT-101'").fetchone()[0]  # type: ignore[index]
        for i in range(2):  # raised before the ledger took candidates up: the sweep does
            conn.execute(
                """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id,
                       enterprise_id, basis, title_zh, title_en, catalog_version, evidence)
                   VALUES (to_timestamp(%s), 'bm.coal.temp.stale', %s, %s, 'gw-a1', 'plant-a', 'ent-a',
                           '判定标准第六条第（一）项', '温度测点失效', 'temperature point stale', 'v1', '{}')""",
                (T0 + i, f"p:{pid}", pid))
        conn.commit()
    assert "into 1 ticket(s): [1]" in run("hazards", "intake")
    listed = run("hazards", "list")
    assert "温度测点失效" in listed and "待判定" in listed
    with psycopg.connect(db_url, autocommit=True) as conn:
        bureau, ent = Actor("值班员", "bureau"), Actor("甲企业", "enterprise", "ent-a")
        ledger.act(conn, 1, wf.Confirm(), bureau, T0)
        ledger.act(conn, 1, wf.FilePlan(Plan("王强", "更换探头", Decimal(3000), T0 + 86400, "人工巡检")), ent, T0)
    shown = run("hazards", "show", "1")
    assert "确认为重大事故隐患" in shown and "值班员 (bureau)" in shown and "occurrences: 2" in shown
    later = datetime.fromtimestamp(T0 + 3 * 86400, UTC).isoformat()
    assert "listed for supervision: 1" in run("hazards", "tick", "--at", later)
    assert "listed for supervision: 0" in run("hazards", "tick", "--at", later)
    assert "county" in run("hazards", "list")
    run("hazards", "show", "42", code=2)


def test_the_demo_table_of_sensor_tickets(db_url: str) -> None:
    from io import StringIO

    from rich.console import Console

    from hazards import intake

    load_site(db_url)
    with psycopg.connect(db_url) as conn:
        pid = conn.execute("SELECT id FROM points WHERE tag = 'TT-101'").fetchone()[0]  # type: ignore[index]
        with conn.transaction():
            cid = conn.execute(
                """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id,
                       enterprise_id, basis, title_zh, title_en, catalog_version, evidence)
                   VALUES (now(), 'mach.cooling.interlock', %s, %s, 'gw-a1', 'plant-a', 'ent-a',
                           '判定标准第七条第（四）项', '冷却水联锁未动作', 'cooling interlock', 'v1', '{}')
                   RETURNING id""", (f"p:{pid}", pid)).fetchone()[0]  # type: ignore[index]
            intake.open_or_attach(conn, cid)
    out = StringIO()
    n = show_sensor_tickets(Console(file=out, width=240), db_url, since=0.0)
    assert n == 1 and "冷却水联锁未动作" in out.getvalue() and "待判定" in out.getvalue()
    assert "/api/v1/hazards/1/confirm" in out.getvalue()
