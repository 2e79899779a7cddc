"""The records' HTTP routes: every route under /api/v1/records called with no token, as admin, bureau, and an
enterprise-A token on objects of A and of B — the authorisation matrix of issue 17 — plus round trips of the
JSON and XLSX reports. Enterprise A never sees anything of B, and a forged id answers 404 like a missing one.

The router is included here when the app does not wire it yet (the lead wires it in api/http/app.py)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from starlette.routing import NoMatchFound

from api.http.app import create_app
from api.http.routers import records as records_router
from core.clock import FakeClock
from core.settings import Settings
from hazards.model import Actor
from hazards.records import service, store
from hazards.records.service import NewFinding
from tests.fix_api import T0, Api, load_site, make_tokens

pytestmark = pytest.mark.integration
PREFIX = "/api/v1/records"
OWNERS = {"A": "ent-a", "B": "ent-b"}
PLANTS = {"A": "plant-a", "B": "plant-b"}


@pytest.fixture(name="api")
def records_api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    load_site(db_url)
    clock = FakeClock(T0)
    app = create_app(Settings(data_dir=tmp_path, db_url=db_url), clock=clock)
    try:
        app.url_path_for("list_inspections")
    except NoMatchFound:
        app.include_router(records_router.router)
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Api(client, db_url, clock, make_tokens(db_url))


@dataclass
class World:
    inspection: dict[str, int]
    finding: dict[str, int]
    hazard: dict[str, int]
    drill: dict[str, int]
    training: dict[str, int]
    meeting: dict[str, int]


def world(api: Api) -> World:
    import psycopg

    out = World({}, {}, {}, {}, {}, {})
    with psycopg.connect(api.db_url, autocommit=True) as conn:
        for o, ent in OWNERS.items():
            actor = Actor(f"{o} safety", "enterprise", ent)
            i = service.record_inspection(conn, store.NewInspection(ent, "plant", date(2025, 11, 3), "检查人",
                                                                    plant_id=PLANTS[o]),
                                          [NewFinding(f"{o} 发现项", open_hazard=True), NewFinding(f"{o} 二")],
                                          actor, T0)
            out.inspection[o], out.hazard[o], out.finding[o] = i.id, i.findings[0].hazard_id or 0, i.findings[1].id
            out.drill[o] = service.record_drill(conn, store.NewDrill(ent, date(2025, 11, 4), "演练", 10), [],
                                                actor, T0).id
            out.training[o] = service.record_training(conn, store.NewTraining(ent, date(2025, 11, 5), "课程",
                                                                              [store.Attendee("1")]), actor, T0)
            out.meeting[o] = service.record_meeting(conn, store.NewMeeting(ent, date(2025, 11, 6), ["甲"]), actor,
                                                    T0).id
            service.define_position(conn, f"cr-{o.lower()}-fixed", f"{o} 中控室", ent, [PLANTS[o]],
                                    Actor("局", "bureau"))
    return out


Build = Callable[[World, str], tuple[str, str, Any]]  # (method, path, json) for objects of owner "A" or "B"
ALL = {"admin", "bureau", "ent_a"}
BUREAU = {"admin", "bureau"}
HEALTH_Q = "from=2025-11-29T00:00:00%2B08:00"


@dataclass(frozen=True)
class Spec:
    kind: str  # list | object | create
    roles: set[str]
    build: Build
    ok: int = 200


SPECS: dict[tuple[str, str], Spec] = {
    ("GET", "/inspections"): Spec("list", ALL, lambda w, o: ("GET", "/inspections", None)),
    ("POST", "/inspections"): Spec("create", ALL, lambda w, o: ("POST", "/inspections", {
        "enterprise_id": OWNERS[o], "plant_id": PLANTS[o], "level": "plant", "inspected_on": "2025-11-20",
        "inspector": "王工", "findings": [{"description": "x", "open_hazard": True}]}), 201),
    ("GET", "/inspections/{inspection_id}"): Spec("object", ALL, lambda w, o: (
        "GET", f"/inspections/{w.inspection[o]}", None)),
    ("POST", "/findings/{finding_id}/hazard"): Spec("object", ALL, lambda w, o: (
        "POST", f"/findings/{w.finding[o]}/hazard", {"title": "隐患"}), 201),
    ("GET", "/findings/by-hazard/{hazard_id}"): Spec("object", ALL, lambda w, o: (
        "GET", f"/findings/by-hazard/{w.hazard[o]}", None)),
    ("GET", "/compliance"): Spec("list", ALL, lambda w, o: ("GET", "/compliance?year=2025", None)),
    ("GET", "/drills"): Spec("list", ALL, lambda w, o: ("GET", "/drills", None)),
    ("POST", "/drills"): Spec("create", ALL, lambda w, o: ("POST", "/drills", {
        "enterprise_id": OWNERS[o], "held_on": "2025-11-21", "scenario": "粉尘爆炸", "participants": 5}), 201),
    ("GET", "/drills/{drill_id}"): Spec("object", ALL, lambda w, o: ("GET", f"/drills/{w.drill[o]}", None)),
    ("GET", "/trainings"): Spec("list", ALL, lambda w, o: ("GET", "/trainings", None)),
    ("POST", "/trainings"): Spec("create", ALL, lambda w, o: ("POST", "/trainings", {
        "enterprise_id": OWNERS[o], "held_on": "2025-11-21", "course": "有限空间",
        "attendees": [{"person_key": "7"}]}), 201),
    ("GET", "/trainings/{training_id}"): Spec("object", ALL, lambda w, o: (
        "GET", f"/trainings/{w.training[o]}", None)),
    ("PUT", "/headcounts/{enterprise_id}/{year}"): Spec("object", ALL, lambda w, o: (
        "PUT", f"/headcounts/{OWNERS[o]}/2025", {"headcount": 30}), 204),
    ("GET", "/meetings"): Spec("list", ALL, lambda w, o: ("GET", "/meetings", None)),
    ("POST", "/meetings"): Spec("create", ALL, lambda w, o: ("POST", "/meetings", {
        "enterprise_id": OWNERS[o], "held_on": "2025-11-21", "attendees": ["张三"], "decisions": ["整改"]}), 201),
    ("GET", "/meetings/{meeting_id}"): Spec("object", ALL, lambda w, o: ("GET", f"/meetings/{w.meeting[o]}", None)),
    ("GET", "/reports/annual"): Spec("list", ALL, lambda w, o: ("GET", "/reports/annual?year=2025", None)),
    ("GET", "/reports/evaluation"): Spec("list", ALL, lambda w, o: ("GET", "/reports/evaluation", None)),
    ("GET", "/alarm-health/positions"): Spec("list", ALL, lambda w, o: ("GET", "/alarm-health/positions", None)),
    ("PUT", "/alarm-health/positions/{position_id}"): Spec("object", BUREAU, lambda w, o: (
        "PUT", f"/alarm-health/positions/cr-{o.lower()}-main", {
            "name": "中控室", "enterprise_id": OWNERS[o], "plant_ids": [PLANTS[o]]})),
    ("GET", "/alarm-health/report"): Spec("list", ALL, lambda w, o: ("GET", f"/alarm-health/report?{HEALTH_Q}",
                                                                     None)),
    ("GET", "/alarm-health/{position_id}"): Spec("object", ALL, lambda w, o: (
        "GET", f"/alarm-health/cr-{o.lower()}-fixed?{HEALTH_Q}", None)),
}


def operations(api: Api) -> set[tuple[str, str]]:
    """(method, path below /api/v1/records) of every records operation in the OpenAPI document."""
    doc = api.client.get("/openapi.json").json()
    return {(m.upper(), p.removeprefix(PREFIX)) for p, ops in doc["paths"].items() if p.startswith(PREFIX)
            for m in ops}


def test_every_records_route_is_in_the_matrix(api: Api) -> None:
    assert operations(api) == set(SPECS)


def b_markers(w: World) -> list[str]:
    return ["ent-b", "plant-b", "乙耐材", "乙厂", "B 发现项"]


def test_authorisation_matrix(api: Api) -> None:
    w = world(api)
    for key, spec in SPECS.items():
        for who in ("admin", "bureau", "ent_a", None):
            for owner in ("A", "B"):
                method, path, body = spec.build(w, owner)
                r = api.call(method, PREFIX + path, who, json=body)
                if who is None:
                    want = 401
                elif who == "ent_a" and owner == "B" and spec.kind != "list":
                    want = 404  # another enterprise's object: as if it did not exist, whatever the role
                elif who not in spec.roles:
                    want = 403
                else:
                    want = spec.ok
                assert r.status_code == want, (key, who, owner, r.status_code, r.text[:300])
                if who == "ent_a" and r.status_code < 300 and r.content and "json" in r.headers["content-type"]:
                    leaked = [m for m in b_markers(w) if m in r.text]
                    assert not leaked, (key, owner, leaked, r.text[:500])


def test_forged_and_oversized_input(api: Api) -> None:
    world(api)
    for path in ("/inspections/999999", "/drills/999999", "/trainings/999999", "/meetings/999999",
                 "/findings/by-hazard/999999", f"/alarm-health/cr-nope?{HEALTH_Q}"):
        assert api.get(PREFIX + path, "bureau").status_code == 404, path
    assert api.post(PREFIX + "/findings/999999/hazard", "ent_a").status_code == 404
    big = {"enterprise_id": "ent-a", "level": "plant", "inspected_on": "2025-11-20", "inspector": "x",
           "findings": [{"description": "x"}] * 201}
    assert api.post(PREFIX + "/inspections", "ent_a", json=big).status_code == 422
    assert api.post(PREFIX + "/inspections", "ent_a", json={**big, "findings": [{"description": "长" * 2001}]}
                    ).status_code == 422
    assert api.post(PREFIX + "/inspections", "ent_a", json={**big, "findings": [], "inspector": "\x00"}
                    ).status_code == 422
    assert api.post(PREFIX + "/inspections", "ent_a", json={**big, "findings": [], "level": "board"}
                    ).status_code == 422
    assert api.post(PREFIX + "/trainings", "ent_a", json={"held_on": "2025-11-20", "course": "c",
                                                          "attendees": [{"person_key": "k"}] * 5001}).status_code == 422
    assert api.get(PREFIX + "/alarm-health/report?from=2020-01-01T00:00:00%2B08:00", "bureau").status_code == 422
    # the bureau's county meeting: bureau only
    assert api.post(PREFIX + "/meetings", "bureau", json={"held_on": "2025-11-20", "attendees": ["局长"]}
                    ).status_code == 201
    # an enterprise token omitting enterprise_id writes its own; it never reads the bureau's meeting
    assert api.post(PREFIX + "/meetings", "ent_a", json={"held_on": "2025-11-20", "attendees": ["甲"]}
                    ).json()["enterprise_id"] == "ent-a"
    assert {m["enterprise_id"] for m in api.get(PREFIX + "/meetings", "ent_a").json()["items"]} == {"ent-a"}


def test_reports_in_json_and_xlsx(api: Api) -> None:
    world(api)
    bureau = api.ok("GET", PREFIX + "/reports/evaluation", "bureau")
    ent = api.ok("GET", PREFIX + "/reports/evaluation", "ent_a")
    y25 = next(y for y in bureau["years"] if y["year"] == 2025)
    assert "public_tips" in y25 and "rewards_approved_yuan" in y25
    assert all("public_tips" not in y and "rewards_approved_yuan" not in y for y in ent["years"])
    assert y25["hazards_found"] == 2 and next(y for y in ent["years"] if y["year"] == 2025)["hazards_found"] == 1
    r = api.get(PREFIX + "/reports/annual?year=2025&format=xlsx", "ent_a")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxml")
    wb = load_workbook(io.BytesIO(r.content))
    assert {row[1] for row in wb["自查 cadence"].iter_rows(min_row=2, values_only=True)} == {"ent-a"}
    h = api.get(PREFIX + f"/alarm-health/report?{HEALTH_Q}&format=xlsx", "bureau")
    assert h.status_code == 200
    ids = [row[0] for row in load_workbook(io.BytesIO(h.content)).active.iter_rows(min_row=2, values_only=True)]
    assert ids == ["bureau-desk", "cr-a-fixed", "cr-b-fixed"]
    assert [p["id"] for p in api.ok("GET", PREFIX + "/alarm-health/positions", "ent_a")] == ["cr-a-fixed"]
