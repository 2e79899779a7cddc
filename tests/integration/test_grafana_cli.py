"""`riskwatch grafana render`, `grafana push` (against a stand-in Grafana API, tests/fake_grafana.py) and
`grafana grants` (the SQL for an external database, run with psql; `--apply`)."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from api.cli.grafana import register
from api.grafana.push import GrafanaPushError
from core import registry
from core.services import pg_bindir
from simulators.run import default_site_path
from tests.fake_grafana import FakeGrafana

pytestmark = pytest.mark.integration

UIDS = {"rw-bureau", "rw-point", "rw-plant-qsl-p1", "rw-plant-hx-p1", "rw-plant-dy-p1"}


@pytest.fixture
def app(db_url: str) -> typer.Typer:
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(default_site_path()))
    a = typer.Typer()

    @a.callback()
    def _main(ctx: typer.Context) -> None:
        ctx.obj = SimpleNamespace(db_url=db_url)  # what api.cli.context.Context offers

    register(a)
    return a


def test_render_writes_valid_dashboards(app: typer.Typer, tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["grafana", "render", str(tmp_path / "dash")])
    assert out.exit_code == 0, out.output
    files = sorted((tmp_path / "dash").glob("*.json"))
    assert {f.stem for f in files} == UIDS
    for f in files:
        d = json.loads(f.read_text(encoding="utf-8"))
        assert d["uid"] == f.stem and d["title"] and d["schemaVersion"] >= 36
        assert "riskwatch" in d["tags"]
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)) and ids
        for p in d["panels"]:
            assert p["type"] in ("row", "timeseries", "table", "stat", "state-timeline", "bargauge"), p["type"]
            assert {"x", "y", "w", "h"} <= set(p["gridPos"])
            for t in p.get("targets", []):
                assert t["rawSql"] and t["format"] in ("time_series", "table") and t["refId"]
                assert t["datasource"] == {"type": "grafana-postgresql-datasource", "uid": "riskwatch-tsdb"}
    plant = json.loads((tmp_path / "dash" / "rw-plant-dy-p1.json").read_text(encoding="utf-8"))
    assert plant["title"].startswith("鼎业铸造厂")  # Chinese first
    assert [a["name"] for a in plant["annotations"]["list"]] == ["报警 Alarm activated", "恢复 Alarm cleared"]
    # a value panel of a point with rule setpoints draws them as thresholds
    steps = [p["fieldConfig"]["defaults"]["thresholds"]["steps"] for p in plant["panels"]
             if p["type"] == "timeseries" and p["title"].startswith("FT-601")][0]
    assert len(steps) >= 2 and steps[0]["value"] is None
    point = json.loads((tmp_path / "dash" / "rw-point.json").read_text(encoding="utf-8"))
    assert [v["name"] for v in point["templating"]["list"]] == ["plant", "point"]

    # a second render into the same place replaces the files (and drops ours no longer generated)
    (tmp_path / "dash" / "rw-plant-gone.json").write_text("{}")
    (tmp_path / "dash" / "mine.json").write_text("{}")
    assert CliRunner().invoke(app, ["grafana", "render", str(tmp_path / "dash")]).exit_code == 0
    assert {f.stem for f in (tmp_path / "dash").glob("*.json")} == UIDS | {"mine"}


def test_push_twice_is_idempotent(app: typer.Typer) -> None:
    with FakeGrafana(token="s3cret") as grafana:
        args = ["grafana", "push", "--url", grafana.url, "--token", "s3cret"]
        first = CliRunner().invoke(app, args)
        assert first.exit_code == 0, first.output
        assert list(grafana.folders) == ["riskwatch"]
        assert set(grafana.dashboards) == UIDS
        assert all(d["folderUid"] == "riskwatch" and d["version"] == 1 for d in grafana.dashboards.values())
        ids = {u: d["id"] for u, d in grafana.dashboards.items()}

        grafana.folders["riskwatch"]["title"] = "renamed by hand"
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 0, second.output
        assert list(grafana.folders) == ["riskwatch"] and grafana.folders["riskwatch"]["title"].endswith("riskwatch")
        assert set(grafana.dashboards) == UIDS
        assert {u: d["id"] for u, d in grafana.dashboards.items()} == ids
        assert all(d["version"] == 2 for d in grafana.dashboards.values())
        assert ("POST", "/api/folders") in grafana.requests
        assert grafana.requests.count(("POST", "/api/folders")) == 1

        bad = CliRunner().invoke(app, ["grafana", "push", "--url", grafana.url, "--token", "wrong"])
        assert bad.exit_code != 0 and isinstance(bad.exception, GrafanaPushError)
        assert "401" in str(bad.exception) or "Unauthorized" in str(bad.exception)


def test_grants_prints_sql_that_makes_a_read_only_grafana_login(app: typer.Typer, db_url: str,
                                                                 tmp_path: Path) -> None:
    login, password = f"gf_cli_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    out = CliRunner().invoke(app, ["grafana", "grants", "--login", login])
    assert out.exit_code == 0, out.output
    assert "grafana_reader" in out.output and password not in out.output
    script = tmp_path / "grafana-roles.sql"
    script.write_text(out.output, encoding="utf-8")
    try:
        res = subprocess.run([str(pg_bindir() / "psql"), db_url, "-X", "-q", "-v", "ON_ERROR_STOP=1",
                              "-v", f"grafana_password={password}", "-f", str(script)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "grafana_reader" in res.stdout  # the membership check it prints
        parts = urlsplit(db_url)
        url = urlunsplit((parts.scheme, f"{login}:{password}@{parts.hostname}:{parts.port}", parts.path, "", ""))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM grafana.plants").fetchone() == (3,)
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            conn.rollback()
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT token_hash FROM api_tokens")
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{login}"')


def test_grants_apply_revokes_a_stray_grant_and_checks(app: typer.Typer, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON api_tokens, audit_log TO grafana_reader")
    out = CliRunner().invoke(app, ["grafana", "grants", "--apply"])
    assert out.exit_code == 0, out.output
    assert "grafana.readings" in out.output and "grafana.open_hazards" in out.output
    assert "public.api_tokens" in out.output and "public.audit_log" in out.output  # what it took away
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT has_table_privilege('grafana_reader', 'api_tokens', 'SELECT')").fetchone() == (
            False,)
    again = CliRunner().invoke(app, ["grafana", "grants", "--apply"])
    assert again.exit_code == 0 and "revoked 0 other grants" in again.output


def test_rendered_bureau_dashboard_has_the_alarm_health_row(app: typer.Typer, tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["grafana", "render", str(tmp_path / "dash")])
    assert out.exit_code == 0, out.output
    bureau = json.loads((tmp_path / "dash" / "rw-bureau.json").read_text(encoding="utf-8"))
    titles = [p["title"] for p in bureau["panels"]]
    row = titles.index("报警系统健康 Alarm-system health (ISA-18.2 / EEMUA 191)")
    assert [p["type"] for p in bureau["panels"][row:]] == ["row", "timeseries", "bargauge", "stat", "table"]
    # the row sits below every earlier panel of the overview (Grafana lays out by gridPos)
    below = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in bureau["panels"][:row])
    assert bureau["panels"][row]["gridPos"]["y"] >= below
