"""Console fixtures: the HTTP app with the console mounted, on a fresh migrated database with the mini site,
a fake clock, console accounts for every role, and alarms of both enterprises.

Import into a test module: `from tests.web.fix_console import console_fixture  # noqa: F401` (named `console`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.http.app import create_app
from api.web import PREFIX, create_console
from core import accounts, registry
from core.clock import FakeClock
from core.settings import Settings
from tests.conftest import FIXTURES

T0 = 1_764_460_800.0  # 2025-11-30T00:00:00Z
PASSWORD = "correct-horse-42"
USERS = {  # username: (role, enterprise)
    "admin": ("admin", None),
    "duty": ("duty_officer", None),
    "chief": ("section_chief", None),
    "ea": ("enterprise_officer", "ent-a"),
    "eb": ("enterprise_officer", "ent-b"),
}
# One alarm per enterprise; rule ids carry the enterprise so a leak is visible in any page or stream.
ALARM_A = ("test.a.rule", "ent-a")
ALARM_B = ("test.b.secret-rule", "ent-b")


def insert_alarm(db_url: str, rule_id: str, gateway: str, tag: str, plant: str, now: float) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        pid = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway, tag)).fetchone()
        assert pid is not None
        subject = f"p:{pid[0]}"
        at = datetime.fromtimestamp(now, UTC)
        conn.execute("""INSERT INTO alarms (rule_id, subject, point_id, plant_id, catalog_version, severity,
                            candidate, active, state, cond, activated_at, value, reason)
                        VALUES (%s,%s,%s,%s,'test','high',false,true,'unack',true,%s,99.5,'超过上限 above limit')""",
                     (rule_id, subject, pid[0], plant, at))
        conn.execute("""INSERT INTO alarm_events (time, rule_id, subject, point_id, plant_id, event, from_state,
                            to_state, severity, catalog_version) VALUES (%s,%s,%s,%s,%s,'activate','normal','unack',
                            'high','test')""", (at, rule_id, subject, pid[0], plant))
    return subject


@dataclass
class Console:
    client: TestClient
    db_url: str
    clock: FakeClock
    subjects: dict[str, str]

    def url(self, path: str) -> str:
        return PREFIX + path

    def login_csrf(self, client: TestClient | None = None) -> str:
        r = (client or self.client).get(self.url("/login"))
        assert r.status_code == 200
        m = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert m is not None
        return m.group(1)

    def login(self, username: str, password: str = PASSWORD, client: TestClient | None = None) -> Any:
        c = client or self.client
        token = self.login_csrf(c)
        return c.post(self.url("/login"), data={"csrf": token, "username": username, "password": password},
                      follow_redirects=False)

    def csrf_of(self, html: str) -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', html)
        assert m is not None
        return m.group(1)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def new_client(self) -> TestClient:
        return TestClient(self.client.app, raise_server_exceptions=True)


def load_site(db_url: str, path: Path = FIXTURES / "mini_site.yaml") -> None:
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(path))


def make_users(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return {u: accounts.create_user(conn, u, PASSWORD, role, enterprise_id=ent, display_name=f"{u} 测试").id
                for u, (role, ent) in USERS.items()}


@pytest.fixture(name="console")
def console_fixture(db_url: str, tmp_path: Path) -> Iterator[Console]:
    load_site(db_url)
    make_users(db_url)
    clock = FakeClock(T0)
    subjects = {"a": insert_alarm(db_url, ALARM_A[0], "gw-a1", "TT-101", "plant-a", T0 - 60),
                "b": insert_alarm(db_url, ALARM_B[0], "gw-b1", "FT-301", "plant-b", T0 - 60)}
    app = create_app(Settings(data_dir=tmp_path, db_url=db_url), clock=clock)
    app.mount(PREFIX, create_console(app.state.ctx, titles={}))
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Console(client, db_url, clock, subjects)
