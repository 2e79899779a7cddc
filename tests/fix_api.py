"""API fixtures: the app on a fresh migrated database with the mini site, a fake clock, and one token
per role — admin, bureau, and enterprise tokens bound to ent-a and ent-b.

Import the fixture into a test module: `from tests.fix_api import api_fixture  # noqa: F401` (it is
named `api`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.http import auth
from api.http.app import create_app
from core import registry
from core.clock import FakeClock
from core.settings import Settings
from tests.conftest import FIXTURES

T0 = 1_764_460_800.0  # 2025-11-30T00:00:00Z
ROLES = ("admin", "bureau", "ent_a", "ent_b")


@dataclass
class Api:
    client: TestClient
    db_url: str
    clock: FakeClock
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}

    def call(self, method: str, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        return self.client.request(method, path, headers=self.headers(role), **kw)

    def get(self, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        return self.call("GET", path, role, **kw)

    def post(self, path: str, role: str | None = "admin", **kw: Any) -> httpx.Response:
        return self.call("POST", path, role, **kw)

    def ok(self, method: str, path: str, role: str | None = "admin", **kw: Any) -> Any:
        r = self.call(method, path, role, **kw)
        assert r.status_code < 300, f"{method} {path} as {role}: {r.status_code} {r.text}"
        return r.json()

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    # --- building blocks ------------------------------------------------------------------

    def point_id(self, gateway: str, tag: str) -> int:
        return int(self.sql("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway, tag))[0][0])

    def new_ticket(self, enterprise: str = "ent-a", status: str = "candidate", source: str = "self_report",
                   **extra: Any) -> int:
        """A ticket driven through the API to the given status."""
        plant = {"ent-a": "plant-a", "ent-b": "plant-b"}[enterprise]
        path = {"self_report": "self-reports", "inspection": "inspections", "public_tip": "public-tips"}[source]
        body = {"enterprise_id": enterprise, "title": f"测试隐患 {enterprise} {status}", "plant_id": plant, **extra}
        if source == "inspection":
            body.setdefault("inspection_team", "检查组 team 1")
        tid = int(self.ok("POST", f"/api/v1/hazards/{path}", "bureau", json=body)["id"])
        self.drive(tid, enterprise, status)
        return tid

    def drive(self, tid: int, enterprise: str, status: str) -> None:
        ent = {"ent-a": "ent_a", "ent-b": "ent_b"}[enterprise]
        steps: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
            "confirmed": [("confirm", "bureau", {})],
            "dismissed": [("dismiss", "bureau", {"reason": "误报 false alarm"})],
            "plan_filed": [("confirm", "bureau", {}), ("plan", ent, plan_body(self.clock.now()))],
            "rectifying": [("confirm", "bureau", {}), ("plan", ent, plan_body(self.clock.now())),
                           ("start", ent, {})],
            "submitted": [("confirm", "bureau", {}), ("plan", ent, plan_body(self.clock.now())), ("start", ent, {}),
                          ("submit", ent, {"comment": "已整改 done"})],
            "closed": [("confirm", "bureau", {}), ("plan", ent, plan_body(self.clock.now())), ("start", ent, {}),
                       ("submit", ent, {"comment": "已整改 done"}), ("verify", "bureau", {})],
        }
        have = self.ok("GET", f"/api/v1/hazards/{tid}")["status"]
        for action, role, body in steps.get(status, []):
            if have == status:
                break
            if action == "confirm" and have != "candidate":
                continue
            self.ok("POST", f"/api/v1/hazards/{tid}/{action}", role, json=body)
            have = self.ok("GET", f"/api/v1/hazards/{tid}")["status"]
        assert have == status, (have, status)


def plan_body(now: float, days: float = 30.0, **extra: Any) -> dict[str, Any]:
    return {"responsible_person": "王强 设备部经理", "responsible_phone": "13900000003",
            "measures": "更换回水管路，加装流量差联锁断电", "funds_yuan": "85000.00",
            "deadline": datetime.fromtimestamp(now + days * 86400, UTC).isoformat(),
            "contingency_plan": "整改期间停用1#中频炉，专人值守", **extra}


def load_site(db_url: str, path: Path = FIXTURES / "mini_site.yaml") -> None:
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(path))


def make_tokens(db_url: str) -> dict[str, str]:
    out = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for role, api_role, ent in (("admin", "admin", None), ("bureau", "bureau", None),
                                    ("ent_a", "enterprise", "ent-a"), ("ent_b", "enterprise", "ent-b")):
            _, out[role] = auth.create_token(conn, api_role, f"{role} 测试", ent)  # type: ignore[arg-type]
    return out


@pytest.fixture(name="api")
def api_fixture(db_url: str, tmp_path: Path) -> Iterator[Api]:
    load_site(db_url)
    clock = FakeClock(T0)
    app = create_app(Settings(data_dir=tmp_path, db_url=db_url), clock=clock)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Api(client, db_url, clock, make_tokens(db_url))
