"""`riskwatch users …` end to end: the first admin is created from the command line (password from stdin,
never an argument), can log in to the console, and a deactivation from the CLI ends the session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.web import PREFIX, create_console
from core.settings import Settings
from tests.web.fix_console import Console, load_site

pytestmark = pytest.mark.integration

# The CLI with the users group registered (a no-op wrapper once api.cli.main registers it itself).
CLI = [sys.executable, "-c", "import importlib\nfrom api.cli import users\n"
       "m = importlib.import_module('api.cli.main')\n"
       "if not any(g.name == 'users' for g in m.app.registered_groups): users.register(m.app)\n"
       "m.main()"]


def run(db_url: str, tmp: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RISKWATCH_DB_URL": db_url, "RISKWATCH_DATA_DIR": str(tmp / "data")}
    return subprocess.run([*CLI, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120)


def test_first_admin_from_the_cli(db_url: str, tmp_path: Path) -> None:
    load_site(db_url)
    res = run(db_url, tmp_path, "users", "add", "root-admin", "--role", "admin", "--name", "管理员",
              "--password-stdin", stdin="a-long-admin-password\n")
    assert res.returncode == 0, res.stderr
    assert "a-long-admin-password" not in res.stdout + res.stderr
    bad = run(db_url, tmp_path, "users", "add", "e1", "--role", "enterprise_officer", "--password-stdin",
              stdin="a-long-admin-password\n")
    assert bad.returncode == 2 and "企业角色" in bad.stderr  # an enterprise role needs its enterprise
    app = create_app(Settings(data_dir=tmp_path, db_url=db_url))
    app.mount(PREFIX, create_console(app.state.ctx, titles={}))
    with TestClient(app) as client:
        c = Console(client, db_url, None, {})  # type: ignore[arg-type]
        r: httpx.Response = c.login("root-admin", "a-long-admin-password")
        assert r.status_code == 303
        assert client.get("/console/admin/users").status_code == 200
        assert run(db_url, tmp_path, "users", "deactivate", "root-admin").returncode == 0
        assert client.get("/console/admin/users", follow_redirects=False).status_code == 303
    listed = run(db_url, tmp_path, "users", "list")
    assert "root-admin" in listed.stdout and "inactive" in listed.stdout
