"""`riskwatch grafana render` and `grafana push` (against a stand-in Grafana API, tests/fake_grafana.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from api.cli_grafana import register
from api.grafana.push import GrafanaPushError
from core import registry
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
        ctx.obj = SimpleNamespace(db_url=db_url)  # what api.cli's Context offers

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
            assert p["type"] in ("row", "timeseries", "table", "stat", "state-timeline"), p["type"]
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
