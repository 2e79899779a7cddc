"""The hazard workflow over HTTP: every allowed transition answers 200 with the ticket and its event, every
disallowed one answers 409 `application/problem+json` with a Chinese and English message; sources, evidence,
interviews, rewards and the whistle-blower's privacy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fix_api import T0, Api, api_fixture, plan_body  # noqa: F401

pytestmark = pytest.mark.integration

STATUSES = ["candidate", "confirmed", "dismissed", "plan_filed", "rectifying", "submitted", "closed"]
#: endpoint -> (role that may take it, body, {from status: to status})
ACTIONS: dict[str, tuple[str, Any, dict[str, str]]] = {
    "confirm": ("bureau", {"comment": "核实"}, {"candidate": "confirmed"}),
    "dismiss": ("bureau", {"reason": "误报"}, {"candidate": "dismissed"}),
    "plan": ("ent_a", "PLAN", {"confirmed": "plan_filed"}),
    "start": ("ent_a", {}, {"plan_filed": "rectifying"}),
    "submit": ("ent_a", {"comment": "已整改"}, {"rectifying": "submitted"}),
    "verify": ("bureau", {"comment": "验收合格"}, {"submitted": "closed"}),
    "send-back": ("bureau", {"reason": "资料不全"}, {"submitted": "rectifying"}),
    "supervise": ("bureau", {"level": "county", "reason": "滞后"},
                  {s: s for s in ("confirmed", "plan_filed", "rectifying", "submitted")}),
    "comments": ("ent_a", {"text": "备注"}, {s: s for s in STATUSES}),
}


def body_for(api: Api, body: Any) -> Any:
    return plan_body(api.clock.now()) if body == "PLAN" else body


def is_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status and doc["title"] and doc["instance"] == r.request.url.path
    return doc


@pytest.mark.parametrize("endpoint", sorted(ACTIONS))
def test_every_transition_over_http(api: Api, endpoint: str) -> None:
    role, body, moves = ACTIONS[endpoint]
    for status in STATUSES:
        tid = api.new_ticket("ent-a", status)
        r = api.post(f"/api/v1/hazards/{tid}/{endpoint}", role, json=body_for(api, body))
        if status in moves:
            assert r.status_code in (200, 201), (status, r.text)
            out = r.json()
            assert out["hazard"]["status"] == moves[status]
            assert out["event"]["from_status"] == status and out["event"]["to_status"] == moves[status]
            assert out["event"]["actor"] == f"{role} 测试" and out["event"]["id"]
        else:
            doc = is_problem(r, 409)
            assert doc["code"] == "transition-not-allowed" and doc["current_status"] == status
            assert "不允许的操作" in doc["detail"] and "Transition not allowed" in doc["detail"], doc
            assert api.ok("GET", f"/api/v1/hazards/{tid}")["status"] == status  # nothing changed


def test_roles_on_transitions(api: Api) -> None:
    tid = api.new_ticket("ent-a", "candidate")
    doc = is_problem(api.post(f"/api/v1/hazards/{tid}/confirm", "ent_a", json={}), 403)
    assert "无权" in doc["detail"] and "may not" in doc["detail"]
    api.drive(tid, "ent-a", "confirmed")
    is_problem(api.post(f"/api/v1/hazards/{tid}/plan", "bureau", json=plan_body(api.clock.now())), 403)
    is_problem(api.post(f"/api/v1/hazards/{tid}/plan", "ent_b", json=plan_body(api.clock.now())), 404)
    doc = is_problem(api.post(f"/api/v1/hazards/{tid}/plan", "ent_a",
                              json=plan_body(api.clock.now(), days=-1)), 422)
    assert "期限" in doc["detail"]
    doc = is_problem(api.post(f"/api/v1/hazards/{tid}/plan", "ent_a", json={"responsible_person": "x"}), 422)
    assert doc["code"] == "validation-error" and {tuple(e["loc"])[-1] for e in doc["errors"]} >= {
        "measures", "funds_yuan", "deadline", "contingency_plan"}
    is_problem(api.post("/api/v1/hazards/999999/confirm", "bureau", json={}), 404)
    is_problem(api.post(f"/api/v1/hazards/{tid}/confirm", None, json={}), 401)


def test_next_actions_follow_the_caller(api: Api) -> None:
    tid = api.new_ticket("ent-a", "candidate")
    assert set(api.ok("GET", f"/api/v1/hazards/{tid}", "bureau")["next_actions"]) == {
        "confirm", "dismiss", "comment", "add_evidence", "interview", "set_reward"} - {"set_reward"}
    assert set(api.ok("GET", f"/api/v1/hazards/{tid}", "ent_a")["next_actions"]) == {"comment", "add_evidence"}
    api.drive(tid, "ent-a", "confirmed")
    assert "file_plan" in api.ok("GET", f"/api/v1/hazards/{tid}", "ent_a")["next_actions"]


def test_sources(api: Api) -> None:
    self_report = api.ok("POST", "/api/v1/hazards/self-reports", "ent_a",
                         json={"title": "煤粉仓CO探头失效", "plant_id": "plant-a"})
    assert (self_report["enterprise_id"], self_report["source"], self_report["status"]) == (
        "ent-a", "self_report", "candidate")
    assert self_report["source_label"] == "企业自查" and self_report["created_by"] == "ent_a 测试"
    # an enterprise reports only for itself, and cannot name another's plant
    is_problem(api.post("/api/v1/hazards/self-reports", "ent_a", json={"title": "x", "enterprise_id": "ent-b"}), 404)
    is_problem(api.post("/api/v1/hazards/self-reports", "ent_a", json={"title": "x", "plant_id": "plant-b"}), 404)
    is_problem(api.post("/api/v1/hazards/self-reports", "bureau", json={"title": "x"}), 422)

    insp = api.ok("POST", "/api/v1/hazards/inspections", "bureau",
                  json={"enterprise_id": "ent-b", "title": "电熔炉冷却水无联锁", "inspection_team": "第二检查组",
                        "point_id": api.point_id("gw-b1", "FT-301")})
    assert insp["status"] == "confirmed" and insp["plant_id"] == "plant-b" and insp["inspection_team"] == "第二检查组"
    assert insp["location"] and "FT-301" in insp["location"]
    events = api.ok("GET", f"/api/v1/hazards/{insp['id']}/events", "ent_b")
    assert [(e["action"], e["actor"]) for e in events] == [("create", "bureau 测试"), ("confirm", "bureau 测试")]
    is_problem(api.post("/api/v1/hazards/inspections", "ent_a",
                        json={"enterprise_id": "ent-a", "title": "x", "inspection_team": "t"}), 403)

    tip = api.ok("POST", "/api/v1/hazards/public-tips", "bureau",
                 json={"enterprise_id": "ent-a", "title": "燃气切断阀被短接", "reporter_name": "李某",
                       "reporter_contact": "139xxxx", "reporter_internal": True})
    assert tip["tip"] == {"reporter_name": "李某", "reporter_contact": "139xxxx", "internal": True,
                          "reward_status": "pending", "reward_amount_yuan": None, "reward_note": ""}
    # the enterprise sees the hazard, never who reported it or the reward
    seen = api.ok("GET", f"/api/v1/hazards/{tip['id']}", "ent_a")
    assert seen["tip"] is None and "李某" not in str(seen)
    is_problem(api.post(f"/api/v1/hazards/{tip['id']}/reward", "bureau",
                        json={"status": "approved", "amount_yuan": "2000"}), 409)  # not verified yet
    api.ok("POST", f"/api/v1/hazards/{tip['id']}/confirm", "bureau", json={})
    out = api.ok("POST", f"/api/v1/hazards/{tip['id']}/reward", "bureau",
                 json={"status": "approved", "amount_yuan": "2000.00", "note": "局务会同意"})
    assert (out["hazard"]["tip"]["reward_status"], out["hazard"]["tip"]["reward_amount_yuan"]) == ("approved",
                                                                                                   "2000.00")
    is_problem(api.post(f"/api/v1/hazards/{tip['id']}/reward", "ent_a", json={"status": "paid"}), 403)
    assert "set_reward" not in [e["action"] for e in api.ok("GET", f"/api/v1/hazards/{tip['id']}/events", "ent_a")]
    assert "set_reward" in [e["action"] for e in api.ok("GET", f"/api/v1/hazards/{tip['id']}/events", "bureau")]


def test_evidence(api: Api) -> None:
    tid = api.new_ticket("ent-a", "confirmed")
    pid = api.point_id("gw-a1", "TT-101")
    api.sql("INSERT INTO readings (time, point_id, value) SELECT to_timestamp(%s) + g * interval '1 s', %s, 60 + g"
            " FROM generate_series(0, 59) g", (T0 - 120, pid))
    api.sql("""INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity, active,
                   state, activated_at) VALUES ('bm.coal.temp:hi', %s, %s, 'gw-a1', 'plant-a', 'v1', 'high', true,
                   'unack', to_timestamp(%s))""", (f"p:{pid}", pid, T0 - 60))
    t = datetime.fromtimestamp
    readings = api.ok("POST", f"/api/v1/hazards/{tid}/evidence", "ent_a", json={
        "kind": "readings", "point_ids": [pid], "window_from": t(T0 - 120, UTC).isoformat(),
        "window_to": t(T0 - 91, UTC).isoformat(), "note": "超温前后"})
    assert readings["readings_count"] == 30 and readings["readings"] is None
    alarm = api.ok("POST", f"/api/v1/hazards/{tid}/evidence", "bureau", json={
        "kind": "alarm", "rule_id": "bm.coal.temp:hi", "subject": f"p:{pid}"})
    assert alarm["alarm_time"].startswith("2025-11-29T23:59:00")
    att = api.ok("POST", f"/api/v1/hazards/{tid}/evidence", "ent_a", json={
        "kind": "attachment", "filename": "整改前照片.jpg", "content_type": "image/jpeg", "size_bytes": 1024})
    assert att["attachment"]["filename"] == "整改前照片.jpg"
    items = api.ok("GET", f"/api/v1/hazards/{tid}/evidence?include_readings=true", "ent_a")
    assert [e["kind"] for e in items] == ["readings", "alarm", "attachment"] and len(items[0]["readings"]) == 30
    assert api.ok("GET", f"/api/v1/hazards/{tid}")["evidence_count"] == 3
    # another enterprise's point or alarm cannot be attached, nor can B touch A's ticket
    b_point = api.point_id("gw-b1", "FT-301")
    is_problem(api.post(f"/api/v1/hazards/{tid}/evidence", "bureau", json={
        "kind": "readings", "point_ids": [b_point], "window_from": t(T0 - 60, UTC).isoformat(),
        "window_to": t(T0, UTC).isoformat()}), 404)
    is_problem(api.post(f"/api/v1/hazards/{tid}/evidence", "ent_b", json={
        "kind": "attachment", "filename": "x"}), 404)
    api.drive(tid, "ent-a", "closed")
    is_problem(api.post(f"/api/v1/hazards/{tid}/evidence", "ent_a", json={"kind": "attachment", "filename": "x"}), 409)


def test_interviews(api: Api) -> None:
    tid = api.new_ticket("ent-a", "rectifying")
    body = {"enterprise_id": "ent-a", "hazard_id": tid, "held_at": "2025-12-05T09:30:00+08:00",
            "interviewer": "县工信局 李局长", "interviewees": "主要负责人 张三", "reason": "重大事故隐患整改滞后",
            "summary": "责令10日内完成"}
    iv = api.ok("POST", "/api/v1/interviews", "bureau", json=body)
    assert iv["recorded_by"] == "bureau 测试"
    assert api.ok("GET", f"/api/v1/hazards/{tid}/events")[-1]["action"] == "interview"
    is_problem(api.post("/api/v1/interviews", "ent_a", json=body), 403)
    is_problem(api.post("/api/v1/interviews", "bureau", json={**body, "enterprise_id": "ent-b"}), 422)
    assert api.ok("GET", "/api/v1/interviews", "ent_a")["total"] == 1
    assert api.ok("GET", "/api/v1/interviews", "ent_b")["total"] == 0
    is_problem(api.get(f"/api/v1/interviews/{iv['id']}", "ent_b"), 404)


def test_list_filters_and_pagination(api: Api) -> None:
    ids = [api.new_ticket("ent-a", s) for s in ("candidate", "confirmed", "rectifying", "closed")]
    ids.append(api.new_ticket("ent-b", "candidate"))
    page = api.ok("GET", "/api/v1/hazards?limit=2&order=id")
    assert page["total"] == 5 and [h["id"] for h in page["items"]] == ids[:2] and page["limit"] == 2
    assert [h["id"] for h in api.ok("GET", "/api/v1/hazards?limit=2&offset=4&order=id")["items"]] == ids[4:]
    assert api.ok("GET", "/api/v1/hazards?status=candidate&status=closed")["total"] == 3
    assert api.ok("GET", "/api/v1/hazards?open=true")["total"] == 4
    assert api.ok("GET", "/api/v1/hazards?enterprise_id=ent-b")["total"] == 1
    assert api.ok("GET", "/api/v1/hazards?industry=refractory")["total"] == 1
    assert api.ok("GET", "/api/v1/hazards", "ent_a")["total"] == 4
    assert api.ok("GET", "/api/v1/hazards?enterprise_id=ent-b", "ent_a")["total"] == 0
    assert api.ok("GET", "/api/v1/hazards?q=rectifying")["total"] == 1
    api.clock.advance(40 * 86400)
    overdue = api.ok("GET", "/api/v1/hazards?overdue=true")
    assert [h["id"] for h in overdue["items"]] == [ids[2]] and overdue["items"][0]["overdue"] is True
