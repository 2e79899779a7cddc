"""The authorisation matrix: every operation in the OpenAPI document, called as admin, bureau and an
enterprise-A token on resources of enterprise A and of enterprise B (and with no token), gets the
outcome the policy below says — and enterprise A never sees anything of B in any list or lookup.

Policy, in words:
- no token: 401 everywhere but /healthz and /metrics;
- a role outside an operation's roles: 403;
- an enterprise token naming another enterprise's object (path, query or body): 404, exactly as if
  it did not exist, whatever its role could otherwise do;
- lists answer 200 and hold only what the caller may see;
- supervision an enterprise cannot weaken: an enterprise token changing a field only the bureau may change
  (setpoints, required, interval, states, a plant's industry, a device's kind, the principal's or actual
  controller's contact, the credit code, disabling a gateway that feeds a required point) gets 202 and a
  pending change request — never the change itself; the bureau's approval applies it. An enterprise never
  decides a change request (403 on its own, 404 on another's). `Spec.enterprise` is the status an
  enterprise token gets on its own object when it is not the operation's documented success status.

A new route without a line in SPECS fails `test_every_route_is_in_the_matrix`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.fix_api import T0, Api, api_fixture, plan_body  # noqa: F401

pytestmark = pytest.mark.integration

ALL = frozenset({"admin", "bureau", "enterprise"})
BUREAU = frozenset({"admin", "bureau"})
ADMIN = frozenset({"admin"})
RECTIFY = frozenset({"admin", "enterprise"})
OWNERS = {"A": "ent-a", "B": "ent-b"}
PLANTS = {"A": "plant-a", "B": "plant-b"}
GATEWAYS = {"A": "gw-a1", "B": "gw-b1"}
TAGS = {"A": "TT-101", "B": "FT-301"}


@dataclass
class Req:
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True)
class Spec:
    kind: str  # list | object | create | global | public
    roles: frozenset[str]
    build: Callable[[World, str], Req]
    enterprise: int | None = None  # an enterprise token's status on its own object, if not the success status


class World:
    """Fresh objects of enterprise A or B for each call, so a state change by one call cannot make the
    next answer 409 for reasons unrelated to authorisation."""

    def __init__(self, api: Api):
        self.api = api
        self.n = itertools.count(1)
        self.point = {o: api.point_id(GATEWAYS[o], TAGS[o]) for o in OWNERS}
        self.device = {o: int(api.sql("SELECT device_id FROM points WHERE id = %s", (self.point[o],))[0][0])
                       for o in OWNERS}
        for o in OWNERS:
            api.sql("INSERT INTO readings (time, point_id, value) SELECT to_timestamp(%s) - g * interval '1 s', %s, g"
                    " FROM generate_series(1, 120) g", (T0, self.point[o]))
        self.alarm = {o: self.new_alarm(o) for o in OWNERS}
        self.ticket = {o: api.new_ticket(OWNERS[o], "confirmed") for o in OWNERS}
        self.interview = {o: self.new_interview(o) for o in OWNERS}
        self.notification = {o: self.new_notification(o) for o in OWNERS}
        self.change_request = {o: self.new_change_request(o) for o in OWNERS}
        # an overdue ticket each, for the overdue report
        for o in OWNERS:
            tid = api.new_ticket(OWNERS[o], "confirmed")
            api.ok("POST", f"/api/v1/hazards/{tid}/plan", f"ent_{o.lower()}", json=plan_body(api.clock.now(), 1))
        api.clock.advance(2 * 86400)

    def uid(self, prefix: str) -> str:
        return f"{prefix}-{next(self.n)}"

    def new_alarm(self, o: str, shelved: bool = False) -> tuple[str, str]:
        rule = self.uid("test.rule")
        p = self.point[o]
        self.api.sql(
            """INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity, active,
                   state, activated_at, shelved_until, shelved_by, shelve_reason)
               VALUES (%s, %s, %s, %s, %s, 'v1', 'high', true, 'unack', to_timestamp(%s),
                       CASE WHEN %s THEN to_timestamp(%s) END, CASE WHEN %s THEN 'x' END, CASE WHEN %s THEN 'y' END)""",
            (rule, f"p:{p}", p, GATEWAYS[o], PLANTS[o], T0 - 60, shelved, T0 + 3600, shelved, shelved))
        return rule, f"p:{p}"

    def new_candidate(self, o: str) -> int:
        p = self.point[o]
        return int(self.api.sql(
            """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id,
                   enterprise_id, basis, title_zh, title_en, catalog_version, evidence)
               VALUES (to_timestamp(%s), %s, %s, %s, %s, %s, %s, 'basis', '候选', 'candidate', 'v1', '{}')
               RETURNING id""",
            (T0, self.uid("test.cand"), f"p:{p}", p, GATEWAYS[o], PLANTS[o], OWNERS[o]))[0][0])

    def new_interview(self, o: str) -> int:
        return int(self.api.ok("POST", "/api/v1/interviews", "bureau", json={
            "enterprise_id": OWNERS[o], "held_at": "2025-11-29T09:00:00+08:00", "interviewer": "局长",
            "interviewees": f"{OWNERS[o]} 负责人", "reason": "整改滞后"})["id"])

    def ticket_in(self, o: str, status: str, source: str = "self_report") -> int:
        return self.api.new_ticket(OWNERS[o], status, source)

    def new_notification(self, o: str) -> int:
        """A notification about enterprise o's alarm that could not be delivered (dead: it can be retried)."""
        rule, subject = self.alarm[o] if hasattr(self, "alarm") else self.new_alarm(o)
        gid = int(self.api.sql(
            """INSERT INTO alert_groups (route, receiver, group_key, enterprise_id, group_wait, group_interval,
                   repeat_interval, created_at) VALUES ('root', 'bureau-duty', %s, %s, 0, 60, 0, to_timestamp(%s))
               RETURNING id""", (self.uid("key"), OWNERS[o], T0))[0][0])
        key = self.uid(f"rw-{gid}")
        return int(self.api.sql(
            """INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel,
                   contact_id, enterprise_id, items, message, status, attempts, next_attempt_at, last_error,
                   created_at)
               VALUES (%s, %s, 1, 'firing', 'group_wait 0s', 'enterprise-principal', 'hook', %s, %s, %s, %s,
                       'dead', 8, to_timestamp(%s), 'HTTP 503', to_timestamp(%s)) RETURNING id""",
            (key, gid, f"enterprise:{OWNERS[o]}:principal", OWNERS[o], json.dumps([f"alarm:{rule}|{subject}"]),
             json.dumps({"idempotency_key": key, "subject": f"【高报警】{rule}", "text": "", "html": "",
                         "markdown": "", "short": "", "ack_url": None, "data": {}}), T0, T0))[0][0])

    def new_change_request(self, o: str) -> int:
        """A pending request of enterprise o: its token asks for a new setpoint on its point."""
        r = self.api.call("PATCH", f"/api/v1/points/{self.point[o]}", f"ent_{o.lower()}",
                          json={"setpoints": {"test.cr.hi": next(self.n)}, "change_reason": "更换传感器"})
        assert r.status_code == 202, r.text
        return int(r.json()["id"])

    def new_supervised_gateway(self, o: str) -> str:
        """A fresh enabled gateway of enterprise o feeding a required point (disabling it needs the bureau)."""
        gw = self.uid(f"gw-req-{o.lower()}")
        self.api.sql("INSERT INTO gateways (id, plant_id) VALUES (%s, %s)", (gw, PLANTS[o]))
        self.api.sql("INSERT INTO points (device_id, gateway_id, tag, quantity, kind, required)"
                     " VALUES (%s, %s, 'REQ-1', 'temperature', 'analog', true)", (self.device[o], gw))
        return gw

    def new_disposal(self, o: str) -> int:
        """An unanswered warning of enterprise o awaiting its disposal feedback (issue 14)."""
        rule, subject = self.new_alarm(o)
        return int(self.api.sql(
            """INSERT INTO alarm_disposals (rule_id, subject, activated_at, plant_id, enterprise_id, severity, due_at,
                   next_at) VALUES (%s, %s, to_timestamp(%s), %s, %s, 'high', to_timestamp(%s), to_timestamp(%s))
               RETURNING id""", (rule, subject, T0 - 60, PLANTS[o], OWNERS[o], T0 + 7200, T0 + 7200))[0][0])

    def new_stop(self, o: str) -> int:
        """A production stop filed by enterprise o, awaiting the bureau's decision (issue 14)."""
        return int(self.api.ok("POST", "/api/v1/stops", f"ent_{o.lower()}", json=self.stop_body(o))["id"])

    def stop_body(self, o: str) -> dict[str, Any]:
        now = self.api.clock.now()
        return {"plant_id": PLANTS[o], "reason": "停产检修", "starts_at": datetime.fromtimestamp(now, UTC).isoformat(),
                "ends_at": datetime.fromtimestamp(now + 86400, UTC).isoformat()}

    def new_token(self) -> int:
        body = {"name": self.uid("tok"), "role": "bureau"}
        return int(self.api.ok("POST", "/api/v1/tokens", "admin", json=body)["id"])


H = "/api/v1/hazards"


def _action(status: str, action: str, body: Any, source: str = "self_report") -> Callable[[World, str], Req]:
    def build(w: World, o: str) -> Req:
        b = plan_body(w.api.clock.now()) if body == "PLAN" else body
        return Req("POST", f"{H}/{w.ticket_in(o, status, source)}/{action}", json=b)
    return build


def _alarm(action: str, body: Any = None, shelved: bool = False) -> Callable[[World, str], Req]:
    def build(w: World, o: str) -> Req:
        rule, subject = w.new_alarm(o, shelved)
        return Req("POST", f"/api/v1/alarms/{rule}/{subject}/{action}", json=body)
    return build


SPECS: dict[str, Spec] = {
    # registry
    "enterprises_list_enterprises": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/enterprises")),
    "enterprises_create_enterprise": Spec("global", BUREAU, lambda w, o: Req("POST", "/api/v1/enterprises", json={
        "id": w.uid("ent-new"), "name": "新企业", "principal": {"name": "甲"}, "controller": {"name": "乙"}})),
    "enterprises_get_enterprise": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/enterprises/{OWNERS[o]}")),
    "enterprises_update_enterprise": Spec("object", ALL, lambda w, o: Req(
        "PATCH", f"/api/v1/enterprises/{OWNERS[o]}", json={"address": "工业园区1号"})),
    "plants_list_plants": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/plants")),
    "plants_create_plant": Spec("create", BUREAU, lambda w, o: Req("POST", "/api/v1/plants", json={
        "id": w.uid("plant-new"), "enterprise_id": OWNERS[o], "name": "新厂", "industry": "cement"})),
    "plants_get_plant": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/plants/{PLANTS[o]}")),
    "plants_update_plant": Spec("object", ALL, lambda w, o: Req("PATCH", f"/api/v1/plants/{PLANTS[o]}",
                                                                 json={"address": "二号路"})),
    "gateways_list_gateways": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/gateways")),
    "gateways_create_gateway": Spec("create", ALL, lambda w, o: Req("POST", "/api/v1/gateways", json={
        "id": w.uid("gw-new"), "plant_id": PLANTS[o]})),
    "gateways_get_gateway": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/gateways/{GATEWAYS[o]}")),
    "gateways_update_gateway": Spec("object", ALL, lambda w, o: Req("PATCH", f"/api/v1/gateways/{GATEWAYS[o]}",
                                                                     json={"name": "网关"})),
    "gateways_issue_credentials": Spec("object", ALL, lambda w, o: Req(
        "POST", f"/api/v1/gateways/{GATEWAYS[o]}/credentials")),
    "gateways_disable_gateway": Spec("object", ALL, lambda w, o: Req(
        "POST", f"/api/v1/gateways/{w.new_supervised_gateway(o)}/disable"), enterprise=202),
    "gateways_enable_gateway": Spec("object", ALL, lambda w, o: Req(
        "POST", f"/api/v1/gateways/{GATEWAYS[o]}/enable")),
    "gateways_issue_http_token": Spec("object", ALL, lambda w, o: Req(
        "POST", f"/api/v1/gateways/{GATEWAYS[o]}/http-token")),
    "devices_list_devices": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/devices")),
    "devices_create_device": Spec("create", ALL, lambda w, o: Req("POST", "/api/v1/devices", json={
        "plant_id": PLANTS[o], "code": w.uid("dev"), "name": "设备", "kind": "kiln"})),
    "devices_get_device": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/devices/{w.device[o]}")),
    "devices_update_device": Spec("object", ALL, lambda w, o: Req("PATCH", f"/api/v1/devices/{w.device[o]}",
                                                                   json={"name": "设备二"})),
    "points_list_points": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/points")),
    "points_create_point": Spec("create", ALL, lambda w, o: Req("POST", "/api/v1/points", json={
        "device_id": w.device[o], "gateway_id": GATEWAYS[o], "tag": w.uid("TT"), "quantity": "temperature"})),
    "points_get_point": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/points/{w.point[o]}")),
    "points_update_point": Spec("object", ALL, lambda w, o: Req("PATCH", f"/api/v1/points/{w.point[o]}",
                                                                 json={"setpoints": {"x.hi": next(w.n)}}),
                                enterprise=202),
    "change-requests_list_change_requests": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/change-requests")),
    "change-requests_get_change_request": Spec("object", ALL, lambda w, o: Req(
        "GET", f"/api/v1/change-requests/{w.change_request[o]}")),
    "change-requests_approve_change_request": Spec("object", BUREAU, lambda w, o: Req(
        "POST", f"/api/v1/change-requests/{w.new_change_request(o)}/approve", json={"comment": "同意"})),
    "change-requests_reject_change_request": Spec("object", BUREAU, lambda w, o: Req(
        "POST", f"/api/v1/change-requests/{w.new_change_request(o)}/reject", json={"comment": "依据不足"})),
    # telemetry
    "readings_raw": Spec("object", ALL, lambda w, o: Req("GET", "/api/v1/readings", {"point_id": w.point[o]})),
    "readings_buckets": Spec("object", ALL, lambda w, o: Req("GET", "/api/v1/readings/buckets",
                                                              {"point_id": w.point[o], "bucket_s": 60})),
    "alarms_list_alarms": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/alarms")),
    "alarms_get_alarm": Spec("object", ALL, lambda w, o: Req("GET", "/api/v1/alarms/{}/{}".format(*w.alarm[o]))),
    "alarms_alarm_events": Spec("object", ALL, lambda w, o: Req("GET", "/api/v1/alarms/{}/{}/events".format(
        *w.alarm[o]))),
    "alarms_acknowledge": Spec("object", ALL, _alarm("ack", {"comment": "已知悉"})),
    "alarms_shelve": Spec("object", ALL, _alarm("shelve", {"minutes": 30, "reason": "校准"})),
    "alarms_unshelve": Spec("object", ALL, _alarm("unshelve", None, shelved=True)),
    # hazards
    "hazards_list_hazards": Spec("list", ALL, lambda w, o: Req("GET", H)),
    "hazards_create_self_report": Spec("create", ALL, lambda w, o: Req("POST", f"{H}/self-reports", json={
        "enterprise_id": OWNERS[o], "title": f"自查 {OWNERS[o]}", "plant_id": PLANTS[o]})),
    "hazards_create_inspection": Spec("create", BUREAU, lambda w, o: Req("POST", f"{H}/inspections", json={
        "enterprise_id": OWNERS[o], "title": f"检查 {OWNERS[o]}", "inspection_team": "检查组"})),
    "hazards_create_public_tip": Spec("create", BUREAU, lambda w, o: Req("POST", f"{H}/public-tips", json={
        "enterprise_id": OWNERS[o], "title": f"举报 {OWNERS[o]}", "reporter_name": "匿名"})),
    "hazards_take_up_candidate": Spec("object", BUREAU, lambda w, o: Req(
        "POST", f"{H}/from-candidate/{w.new_candidate(o)}")),
    "hazards_get_hazard": Spec("object", ALL, lambda w, o: Req("GET", f"{H}/{w.ticket[o]}")),
    "hazards_hazard_events": Spec("object", ALL, lambda w, o: Req("GET", f"{H}/{w.ticket[o]}/events")),
    "hazards_hazard_evidence": Spec("object", ALL, lambda w, o: Req("GET", f"{H}/{w.ticket[o]}/evidence")),
    "hazards_add_evidence": Spec("object", ALL, lambda w, o: Req("POST", f"{H}/{w.ticket[o]}/evidence", json={
        "kind": "attachment", "filename": "照片.jpg"})),
    "hazards_comment": Spec("object", ALL, lambda w, o: Req("POST", f"{H}/{w.ticket[o]}/comments",
                                                            json={"text": "备注"})),
    "hazards_confirm": Spec("object", BUREAU, _action("candidate", "confirm", {})),
    "hazards_dismiss": Spec("object", BUREAU, _action("candidate", "dismiss", {"reason": "误报"})),
    "hazards_file_plan": Spec("object", RECTIFY, _action("confirmed", "plan", "PLAN")),
    "hazards_start_rectification": Spec("object", RECTIFY, _action("plan_filed", "start", {})),
    "hazards_submit": Spec("object", RECTIFY, _action("rectifying", "submit", {"comment": "已整改"})),
    "hazards_verify": Spec("object", BUREAU, _action("submitted", "verify", {})),
    "hazards_send_back": Spec("object", BUREAU, _action("submitted", "send-back", {"reason": "不全"})),
    "hazards_supervise": Spec("object", BUREAU, _action("confirmed", "supervise",
                                                        {"level": "county", "reason": "滞后"})),
    "hazards_set_reward": Spec("object", BUREAU, _action("confirmed", "reward", {"status": "declined"},
                                                         "public_tip")),
    "interviews_list_interviews": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/interviews")),
    "interviews_create_interview": Spec("create", BUREAU, lambda w, o: Req("POST", "/api/v1/interviews", json={
        "enterprise_id": OWNERS[o], "held_at": "2025-11-29T10:00:00+08:00", "interviewer": "局长",
        "interviewees": "负责人", "reason": "逾期"})),
    "interviews_get_interview": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/interviews/{w.interview[o]}")),
    # reports
    "reports_summary": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/reports/summary",
                                                            {"group_by": "enterprise"})),
    "reports_open_major": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/reports/open-major")),
    "reports_overdue": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/reports/overdue")),
    "reports_monthly": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/reports/monthly",
                                                            {"year": 2025, "month": 11, "format": "csv"})),
    "reports_annual": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/reports/annual", {"year": 2025})),
    "reports_risk_report": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/reports/risk")),
    # warning disposal and production stops (issue 14)
    "disposals_list_disposals": Spec("list", ALL, lambda w, o: (w.new_disposal("A"), w.new_disposal("B"), Req(
        "GET", "/api/v1/disposals", {"status": "all"}))[-1]),
    "disposals_disposal_policy": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/disposals/policy")),
    "disposals_disposal_stats": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/disposals/stats")),
    "disposals_get_disposal": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/disposals/{w.new_disposal(o)}")),
    "disposals_give_feedback": Spec("object", ALL, lambda w, o: Req(
        "POST", f"/api/v1/disposals/{w.new_disposal(o)}/feedback",
        json={"cause": "equipment_fault", "measures": "已停机检修", "handled_by": "值班长"})),
    "stops_list_stops": Spec("list", ALL, lambda w, o: (w.new_stop("A"), w.new_stop("B"), Req(
        "GET", "/api/v1/stops"))[-1]),
    "stops_file_stop": Spec("create", ALL, lambda w, o: Req("POST", "/api/v1/stops", json=w.stop_body(o))),
    "stops_get_stop": Spec("object", ALL, lambda w, o: Req("GET", f"/api/v1/stops/{w.new_stop(o)}")),
    "stops_approve_stop": Spec("object", BUREAU, lambda w, o: Req("POST", f"/api/v1/stops/{w.new_stop(o)}/approve",
                                                                  json={"comment": "同意"})),
    "stops_reject_stop": Spec("object", BUREAU, lambda w, o: Req("POST", f"/api/v1/stops/{w.new_stop(o)}/reject",
                                                                 json={"comment": "缺方案"})),
    "stops_withdraw_stop": Spec("object", ALL, lambda w, o: Req("POST", f"/api/v1/stops/{w.new_stop(o)}/withdraw")),
    # data availability and mandatory points (issue 14)
    "availability_points": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/availability/points")),
    "availability_gateways": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/availability/gateways")),
    "availability_enterprises": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/availability/enterprises")),
    "availability_mandatory_missing": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/registry/mandatory-missing")),
    # data problems: dead letters, unmapped tags, mapping a tag (issue 13)
    "data-problems_list_dead_letters": Spec("list", ALL, lambda w, o: (data_problem(w, "A"), data_problem(w, "B"),
                                                                       Req("GET", "/api/v1/dead-letters"))[-1]),
    "data-problems_list_unmapped": Spec("list", ALL, lambda w, o: (data_problem(w, "A"), data_problem(w, "B"),
                                                                   Req("GET", "/api/v1/unmapped"))[-1]),
    "data-problems_map_unmapped": Spec("object", ALL, lambda w, o: Req(
        "POST", f"/api/v1/unmapped/{GATEWAYS[o]}/{data_problem(w, o)}/map",
        json={"device_id": w.device[o], "quantity": "temperature", "unit": "degC"})),
    # tokens and audit
    "tokens_whoami": Spec("global", ALL, lambda w, o: Req("GET", "/api/v1/tokens/me")),
    "tokens_list_tokens": Spec("global", ADMIN, lambda w, o: Req("GET", "/api/v1/tokens")),
    "tokens_create_token": Spec("global", ADMIN, lambda w, o: Req("POST", "/api/v1/tokens", json={
        "name": w.uid("tok"), "role": "enterprise", "enterprise_id": "ent-a"})),
    "tokens_revoke_token": Spec("global", ADMIN, lambda w, o: Req("DELETE", f"/api/v1/tokens/{w.new_token()}")),
    "notifications_list_notifications": Spec("list", ALL, lambda w, o: Req("GET", "/api/v1/notifications")),
    "notifications_get_notification": Spec("object", ALL, lambda w, o: Req(
        "GET", f"/api/v1/notifications/{w.notification[o]}")),
    "notifications_retry_notification": Spec("object", BUREAU, lambda w, o: Req(
        "POST", f"/api/v1/notifications/{w.new_notification(o)}/retry")),
    "audit_list_audit": Spec("global", ADMIN, lambda w, o: Req("GET", "/api/v1/audit")),
    "system_healthz": Spec("public", ALL, lambda w, o: Req("GET", "/healthz")),
    "system_metrics": Spec("public", ALL, lambda w, o: Req("GET", "/metrics")),
}

def data_problem(w: World, o: str) -> str:
    """A fresh unmapped tag (one quarantined reading) and a dead letter on owner o's gateway; the tag."""
    tag = w.uid(f"XQ-{o}")
    w.api.sql("INSERT INTO unmapped_points VALUES (%s, %s, to_timestamp(%s), to_timestamp(%s), 1, 1.5)",
              (GATEWAYS[o], tag, T0, T0))
    w.api.sql("INSERT INTO quarantined_readings (gateway_id, tag, ts, value) VALUES (%s, %s, to_timestamp(%s), 1.5)",
              (GATEWAYS[o], tag, T0))
    w.api.sql("INSERT INTO dead_letters (gateway_id, topic, reason, detail, payload) VALUES (%s, %s, 'invalid_json',"
              " 'x', 'not json')", (GATEWAYS[o], f"rw/v1/{GATEWAYS[o]}/telemetry"))
    return tag


ROLE_TOKENS = {"admin": "admin", "bureau": "bureau", "enterprise": "ent_a"}


def operations(api: Api) -> dict[str, tuple[str, str, int]]:
    """operationId -> (method, path, documented success status), from the OpenAPI document."""
    doc = api.client.get("/openapi.json").json()
    out = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = min(int(c) for c in op["responses"] if c.startswith("2"))
            out[op["operationId"]] = (method.upper(), path, ok)
    return out


def test_every_route_is_in_the_matrix(api: Api) -> None:
    """Every operation is in SPECS, except the records' routes: tests/integration/test_records_api.py holds
    their matrix (same policy, its own fixtures), and its SPECS must name each of them."""
    from tests.integration.test_records_api import PREFIX as RECORDS
    from tests.integration.test_records_api import SPECS as RECORD_SPECS

    ops = operations(api)
    records = {(m, p.removeprefix(RECORDS)) for m, p, _ in ops.values() if p.startswith(RECORDS + "/")}
    assert records == set(RECORD_SPECS)
    # POST /api/v1/ingest takes a gateway's token, not a role's: tests/integration/test_http_ingest.py holds it
    assert {op for op, (_, p, _) in ops.items()
            if not p.startswith(RECORDS + "/") and op != "ingest_ingest"} == set(SPECS)


def b_markers(w: World) -> list[str]:
    return ["ent-b", "plant-b", "gw-b1", "乙耐材", "乙厂", "FT-301", f"p:{w.point['B']}"]


def enterprises_in(body: Any) -> set[str]:
    items = body["items"] if isinstance(body, dict) and "items" in body else body
    return {str(i.get("enterprise_id", i.get("id"))) for i in items}


def test_authorisation_matrix(api: Api) -> None:
    w = World(api)
    ops = operations(api)
    failures: list[str] = []
    calls = 0

    def check(op: str, role: str | None, owner: str | None, want: int) -> Any:
        nonlocal calls
        spec = SPECS[op]
        req = spec.build(w, owner or "A")
        method, template, _ = ops[op]
        assert req.method == method, (op, req.method, method)
        r = api.call(req.method, req.path, ROLE_TOKENS.get(role or "", None), params=req.params, json=req.json)
        calls += 1
        if r.status_code != want:
            failures.append(f"{op} as {role} on {owner}: {r.status_code} (want {want}) {r.text[:200]}")
            return None
        if want >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), (op, r.headers)
        if role == "enterprise" and r.status_code < 300:
            leaked = [m for m in b_markers(w) if m in r.text]
            if leaked:
                failures.append(f"{op} as enterprise A on {owner}: response shows B's {leaked}")
        return r

    for op, spec in SPECS.items():
        ok = ops[op][2]
        if spec.kind == "public":
            for role in (None, *ROLE_TOKENS):
                check(op, role, None, ok)
            continue
        check(op, None, "A", 401)
        owners: tuple[str | None, ...] = ("A", "B") if spec.kind in ("object", "create") else (None,)
        for role in ROLE_TOKENS:
            for owner in owners:
                if role == "enterprise" and owner == "B":
                    want = 404  # another enterprise's object: as if it did not exist
                elif role == "enterprise" and spec.enterprise is not None:
                    want = spec.enterprise  # a supervised change: filed for the bureau, not applied
                else:
                    want = ok if role in spec.roles else 403
                r = check(op, role, owner, want)
                if r is not None and spec.kind == "list" and want == ok:
                    seen = enterprises_in(r.json())
                    expect = {"ent-a"} if role == "enterprise" else {"ent-a", "ent-b"}
                    if not expect <= seen or (role == "enterprise" and seen != {"ent-a"}):
                        failures.append(f"{op} as {role}: list shows enterprises {seen}, want {expect}")
    assert not failures, f"{len(failures)} of {calls} calls wrong:\n" + "\n".join(failures)
    assert calls > 300


FILTERS = {"/api/v1/hazards": ("enterprise_id", "plant_id"), "/api/v1/alarms": ("enterprise_id", "plant_id"),
           "/api/v1/plants": ("enterprise_id",), "/api/v1/gateways": ("enterprise_id", "plant_id"),
           "/api/v1/devices": ("plant_id",), "/api/v1/points": ("plant_id",), "/api/v1/interviews": ("enterprise_id",)}


@pytest.mark.parametrize("path", sorted(FILTERS))
def test_filtering_on_another_enterprise_shows_nothing(api: Api, path: str) -> None:
    w = World(api)
    for key in FILTERS[path]:
        r = api.get(path, "ent_a", params={key: {"enterprise_id": "ent-b", "plant_id": "plant-b"}[key]})
        assert r.status_code == 200 and r.json()["items"] == [] and r.json()["total"] == 0, (path, key, r.text)
        assert not any(m in r.text for m in b_markers(w))
        assert api.ok("GET", path, "bureau", params={key: {"enterprise_id": "ent-b", "plant_id": "plant-b"}[key]}
                      )["total"] > 0


def test_reports_are_scoped(api: Api) -> None:
    w = World(api)
    for group_by in ("industry", "enterprise", "status", "source"):
        rows = api.ok("GET", "/api/v1/reports/summary", "ent_a", params={"group_by": group_by})
        all_rows = api.ok("GET", "/api/v1/reports/summary", "bureau", params={"group_by": group_by})
        assert sum(r["total"] for r in rows) < sum(r["total"] for r in all_rows)
    mine = api.ok("GET", "/api/v1/reports/open-major", "ent_a")
    assert [e["enterprise_id"] for e in mine["by_enterprise"]] == ["ent-a"]
    xlsx = api.get("/api/v1/reports/annual", "ent_a", params={"year": 2025, "format": "xlsx"}).content
    import io

    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(xlsx))
    text = " ".join(str(c.value) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value)
    assert "ent-a" in text or "甲水泥" in text
    assert not any(m in text for m in b_markers(w))


def test_tokens_are_hashed_at_rest_and_revocable(api: Api) -> None:
    stored = " ".join(str(r) for r in api.sql("SELECT * FROM api_tokens"))
    for token in api.tokens.values():
        assert token not in stored and token[4:] not in stored
    import hashlib

    digest = hashlib.sha256(api.tokens["ent_a"].encode()).hexdigest()
    assert api.sql("SELECT role, enterprise_id FROM api_tokens WHERE token_hash = %s", (digest,)) == [
        ("enterprise", "ent-a")]
    me = api.ok("GET", "/api/v1/tokens/me", "ent_a")
    api.ok("DELETE", f"/api/v1/tokens/{me['token_id']}", "admin")
    assert api.get("/api/v1/tokens/me", "ent_a").status_code == 401
    expired = api.ok("POST", "/api/v1/tokens", "admin", json={
        "name": "临时", "role": "bureau", "expires_at": datetime.fromtimestamp(T0, UTC).isoformat()})
    assert api.client.get("/api/v1/tokens/me", headers={"Authorization": f"Bearer {expired['token']}"}
                          ).status_code == 401  # expiry is judged by the database clock: long past
    assert api.client.get("/api/v1/hazards", headers={"Authorization": "Bearer rwt_nope"}).status_code == 401


def test_every_mutating_call_is_audited(api: Api) -> None:
    tid = api.new_ticket("ent-a", "candidate")  # 1 POST
    api.post(f"/api/v1/hazards/{tid}/confirm", "ent_a", json={})  # 403
    api.post(f"/api/v1/hazards/{tid}/confirm", "ent_b", json={})  # 404
    api.post(f"/api/v1/hazards/{tid}/verify", "bureau", json={})  # 409
    api.post(f"/api/v1/hazards/{tid}/confirm", None, json={})  # 401
    api.call("PATCH", "/api/v1/plants/plant-a", "ent_a", json={"address": "新地址"})  # 200
    api.get("/api/v1/hazards", "ent_a")  # not mutating: not audited
    rows = api.sql("SELECT method, route, status, actor, role, enterprise_id FROM audit_log ORDER BY id")
    assert [(r[0], r[2]) for r in rows] == [("POST", 201), ("POST", 403), ("POST", 404), ("POST", 409),
                                            ("POST", 401), ("PATCH", 200)]
    assert rows[1][1] == "/api/v1/hazards/{hazard_id}/confirm"
    assert rows[1][3:] == ("ent_a 测试", "enterprise", "ent-a") and rows[4][3:] == ("anonymous", None, None)
    assert api.ok("GET", "/api/v1/audit", "admin")["total"] == 6


# --- supervision an enterprise cannot weaken (issue #11 item 7) ---------------------------------------------


def _supervised_cases(api: Api) -> list[tuple[str, str, str, Any, str, tuple[Any, ...]]]:
    """(what, method, path, body, SQL reading the field, its parameters): every bureau-only field."""
    pt = api.point_id("gw-a1", "TT-101")
    dev = int(api.sql("SELECT device_id FROM points WHERE id = %s", (pt,))[0][0])
    ent = "SELECT {} FROM enterprises WHERE id = 'ent-a'"
    return [
        ("setpoint", "PATCH", f"/api/v1/points/{pt}", {"setpoints": {"bm.coal.temp.hi": 100000}},
         "SELECT setpoints FROM points WHERE id = %s", (pt,)),
        ("required flag", "PATCH", f"/api/v1/points/{pt}", {"required": False},
         "SELECT required FROM points WHERE id = %s", (pt,)),
        ("interval", "PATCH", f"/api/v1/points/{pt}", {"interval_s": 3600},
         "SELECT interval_s FROM points WHERE id = %s", (pt,)),
        ("states", "PATCH", f"/api/v1/points/{pt}", {"states": {"0": "停", "1": "运行"}},
         "SELECT states FROM points WHERE id = %s", (pt,)),
        ("plant industry", "PATCH", "/api/v1/plants/plant-a", {"industry": "lime"},
         "SELECT industry FROM plants WHERE id = 'plant-a'", ()),
        ("device kind", "PATCH", f"/api/v1/devices/{dev}", {"kind": "misc"},
         "SELECT kind FROM devices WHERE id = %s", (dev,)),
        ("principal's phone", "PATCH", "/api/v1/enterprises/ent-a",
         {"principal": {"name": "张三", "phone": "13999999999", "email": "a-principal@example.cn"}},
         ent.format("principal_name, principal_phone, principal_email"), ()),
        ("controller's e-mail", "PATCH", "/api/v1/enterprises/ent-a",
         {"controller": {"name": "李四", "phone": "13800000002", "email": "nobody@example.cn"}},
         ent.format("controller_name, controller_phone, controller_email"), ()),
        ("credit code", "PATCH", "/api/v1/enterprises/ent-a", {"credit_code": "91330000MA2XXXXXX9"},
         ent.format("credit_code"), ()),
        ("disabling a gateway feeding a required point", "POST", "/api/v1/gateways/gw-a1/disable",
         {"reason": "检修"}, "SELECT enabled FROM gateways WHERE id = 'gw-a1'", ()),
    ]


def test_enterprise_cannot_weaken_supervision_and_the_bureau_decides(api: Api) -> None:
    """Each bureau-only field, as enterprise A: 202 and a pending request, the row unchanged, B cannot see
    it, A cannot approve it; the bureau's approval applies it, and the audit log says what changed."""
    for what, method, path, body, query, args in _supervised_cases(api):
        before = api.sql(query, args)
        r = api.call(method, path, "ent_a", json=body)
        assert r.status_code == 202, (what, r.status_code, r.text)
        assert r.headers["location"] == f"/api/v1/change-requests/{r.json()['id']}"
        cr = r.json()
        assert cr["status"] == "pending" and cr["enterprise_id"] == "ent-a" and cr["requested_by"] == "ent_a 测试"
        assert "待监管部门审批" in cr["message"], cr
        assert api.sql(query, args) == before, f"{what}: an enterprise's PATCH changed the row"
        audit = api.sql("SELECT status, changes FROM audit_log ORDER BY id DESC LIMIT 1")[0]
        assert audit[0] == 202 and audit[1]["change_request"]["id"] == cr["id"], (what, audit)
        assert set(audit[1]["change_request"]["fields"]) == set(cr["changes"]), (what, audit)
        cid = cr["id"]
        assert api.get(f"/api/v1/change-requests/{cid}", "ent_a").status_code == 200
        assert api.get(f"/api/v1/change-requests/{cid}", "ent_b").status_code == 404
        assert api.post(f"/api/v1/change-requests/{cid}/approve", "ent_b", json={}).status_code == 404
        own = api.post(f"/api/v1/change-requests/{cid}/approve", "ent_a", json={})
        assert own.status_code == 403 and own.json()["title"] == "无权操作 Forbidden", own.text
        assert api.post(f"/api/v1/change-requests/{cid}/reject", "ent_a", json={"comment": "x"}).status_code == 403
        assert api.sql(query, args) == before, f"{what}: a refused decision changed the row"
        done = api.ok("POST", f"/api/v1/change-requests/{cid}/approve", "bureau", json={"comment": "同意"})
        assert done["status"] == "approved" and done["decided_by"] == "bureau 测试" and done["decided_at"]
        after = api.sql(query, args)
        assert after != before, f"{what}: approval did not apply the change"
        audit = api.sql("SELECT route, status, role, changes FROM audit_log ORDER BY id DESC LIMIT 1")[0]
        assert audit[:3] == ("/api/v1/change-requests/{request_id}/approve", 200, "bureau"), audit
        assert audit[3]["change_request"] == {"id": cid, "status": "approved"} and audit[3]["applied"], audit
        again = api.post(f"/api/v1/change-requests/{cid}/approve", "bureau", json={})
        assert again.status_code == 409 and again.json()["code"] == "change-request-decided", again.text
    pt = api.point_id("gw-a1", "TT-101")
    assert api.sql("SELECT setpoints, required, interval_s FROM points WHERE id = %s", (pt,)) == [
        ({"bm.coal.temp.hi": 100000.0}, False, 3600.0)]
    assert api.sql("SELECT enabled FROM gateways WHERE id = 'gw-a1'") == [(False,)]


def test_rejection_changes_nothing_and_is_final(api: Api) -> None:
    pt = api.point_id("gw-a1", "TT-101")
    cid = api.call("PATCH", f"/api/v1/points/{pt}", "ent_a", json={"required": False}).json()["id"]
    assert api.post(f"/api/v1/change-requests/{cid}/reject", "bureau", json={}).status_code == 422  # a reason
    rej = api.ok("POST", f"/api/v1/change-requests/{cid}/reject", "bureau", json={"comment": "必测点不得取消"})
    assert rej["status"] == "rejected" and rej["decision_comment"] == "必测点不得取消"
    assert api.sql("SELECT required FROM points WHERE id = %s", (pt,)) == [(True,)]
    assert api.post(f"/api/v1/change-requests/{cid}/approve", "bureau", json={}).status_code == 409
    assert api.sql("SELECT required FROM points WHERE id = %s", (pt,)) == [(True,)]
    seen = api.ok("GET", f"/api/v1/change-requests/{cid}", "ent_a")  # the enterprise reads the decision
    assert seen["status"] == "rejected" and seen["decision_comment"] == "必测点不得取消"


def test_mixed_patch_applies_free_fields_and_files_the_rest(api: Api) -> None:
    pt = api.point_id("gw-a1", "TT-101")
    r = api.call("PATCH", f"/api/v1/points/{pt}", "ent_a",
                 json={"name": "袋收尘器入口温度", "unit": "°C", "setpoints": {"bm.coal.temp.hi": 500},
                       "change_reason": "工艺调整"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["applied"] == {"name": "袋收尘器入口温度", "unit": "°C"}
    assert body["changes"] == {"setpoints": {"bm.coal.temp.hi": 500.0}} and body["old_values"] == {"setpoints": None}
    assert body["reason"] == "工艺调整"
    assert api.sql("SELECT name, unit, setpoints FROM points WHERE id = %s", (pt,)) == [
        ("袋收尘器入口温度", "°C", None)]
    # a supervised field set to what it already is files nothing
    same = api.call("PATCH", f"/api/v1/points/{pt}", "ent_a", json={"required": True, "interval_s": 1})
    assert same.status_code == 200 and same.json()["required"] is True, same.text
    assert api.sql("SELECT count(*) FROM change_requests") == [(1,)]


def test_free_fields_and_added_supervision_stay_open_to_the_enterprise(api: Api) -> None:
    pt = api.point_id("gw-a1", "TT-101")
    assert api.ok("PATCH", f"/api/v1/points/{pt}", "ent_a", json={"name": "入口温度2"})["name"] == "入口温度2"
    plant = api.ok("PATCH", "/api/v1/plants/plant-a", "ent_a", json={"name": "甲一线", "address": "一路"})
    assert (plant["name"], plant["address"]) == ("甲一线", "一路")
    ent = api.ok("PATCH", "/api/v1/enterprises/ent-a", "ent_a", json={
        "address": "园区二路", "routine_contacts": [{"name": "值班室", "phone": "0571-1234567"}]})
    assert ent["routine_contacts"] == [{"name": "值班室", "phone": "0571-1234567", "email": None}]
    assert ent["principal"]["phone"] == "13800000001"
    dev = api.ok("POST", "/api/v1/devices", "ent_a", json={"plant_id": "plant-a", "code": "new-bf", "name": "新除尘器",
                                                           "kind": "bag_filter"})
    new_pt = api.ok("POST", "/api/v1/points", "ent_a", json={"device_id": dev["id"], "gateway_id": "gw-a2",
                                                             "tag": "CO-9", "quantity": "co", "required": True})
    assert new_pt["required"] is True
    # gw-a2 feeds no required point... until now: CO-9 is required, so turning gw-a2 off needs the bureau
    assert api.post("/api/v1/gateways/gw-a2/disable", "ent_a").status_code == 202
    api.sql("UPDATE points SET required = false WHERE id = %s", (new_pt["id"],))
    off = api.post("/api/v1/gateways/gw-a2/disable", "ent_a")
    assert off.status_code == 200 and off.json()["enabled"] is False, off.text
    assert api.ok("POST", "/api/v1/gateways/gw-a2/enable", "ent_a")["enabled"] is True
    assert api.sql("SELECT count(*) FROM change_requests") == [(1,)]


def test_bureau_patch_applies_at_once_and_is_audited(api: Api) -> None:
    pt = api.point_id("gw-a1", "TT-101")
    got = api.ok("PATCH", f"/api/v1/points/{pt}", "bureau", json={"setpoints": {"bm.coal.temp.hi": 80},
                                                                  "required": False})
    assert got["setpoints"] == {"bm.coal.temp.hi": 80.0} and got["required"] is False
    changes = api.sql("SELECT changes FROM audit_log WHERE method = 'PATCH' ORDER BY id DESC LIMIT 1")[0][0]
    assert changes["object"] == {"kind": "point", "id": str(pt)}
    assert changes["applied"] == {"setpoints": {"old": None, "new": {"bm.coal.temp.hi": 80.0}},
                                  "required": {"old": True, "new": False}}
    assert api.sql("SELECT count(*) FROM change_requests") == [(0,)]
    ent = api.ok("PATCH", "/api/v1/enterprises/ent-a", "bureau", json={"principal": {"name": "张三丰"}})
    assert ent["principal"] == {"name": "张三丰", "phone": None, "email": None}


def test_a_request_overtaken_by_another_change_cannot_be_approved(api: Api) -> None:
    cid = api.call("PATCH", "/api/v1/plants/plant-a", "ent_a", json={"industry": "lime"}).json()["id"]
    api.ok("PATCH", "/api/v1/plants/plant-a", "bureau", json={"industry": "machinery"})
    r = api.post(f"/api/v1/change-requests/{cid}/approve", "bureau", json={})
    assert r.status_code == 409 and r.json()["code"] == "change-request-stale" and r.json()["fields"] == ["industry"]
    assert api.sql("SELECT industry FROM plants WHERE id = 'plant-a'") == [("machinery",)]
    assert api.ok("GET", f"/api/v1/change-requests/{cid}", "bureau")["status"] == "pending"


def test_change_request_lists_are_scoped_and_filtered(api: Api) -> None:
    pa, pb = api.point_id("gw-a1", "TT-101"), api.point_id("gw-b1", "FT-301")
    a = api.call("PATCH", f"/api/v1/points/{pa}", "ent_a", json={"required": False}).json()["id"]
    b = api.call("PATCH", f"/api/v1/points/{pb}", "ent_b", json={"required": False}).json()["id"]
    api.ok("POST", f"/api/v1/change-requests/{b}/reject", "bureau", json={"comment": "否"})
    assert [i["id"] for i in api.ok("GET", "/api/v1/change-requests", "ent_a")["items"]] == [a]
    assert [i["id"] for i in api.ok("GET", "/api/v1/change-requests", "ent_b")["items"]] == [b]
    assert api.ok("GET", "/api/v1/change-requests", "ent_a", params={"enterprise_id": "ent-b"})["total"] == 0
    assert [i["id"] for i in api.ok("GET", "/api/v1/change-requests", "bureau")["items"]] == [b, a]
    assert [i["id"] for i in api.ok("GET", "/api/v1/change-requests", "bureau",
                                    params={"status": "pending"})["items"]] == [a]
    assert api.ok("GET", "/api/v1/change-requests", "bureau", params={"object_kind": "plant"})["total"] == 0
    # decided rows are the bureau's record: the database refuses to change them
    with pytest.raises(Exception, match="decided"):
        api.sql("UPDATE change_requests SET status = 'approved' WHERE id = %s", (b,))


def test_the_audit_api_shows_what_changed(api: Api) -> None:
    api.ok("PATCH", "/api/v1/plants/plant-a", "ent_a", json={"address": "新地址", "industry": "lime"})
    row = api.ok("GET", "/api/v1/audit", "admin")["items"][0]
    assert row["status"] == 202 and row["changes"]["applied"] == {"address": {"old": None, "new": "新地址"}}
    assert row["changes"]["change_request"]["fields"] == {"industry": {"old": "cement", "new": "lime"}}
