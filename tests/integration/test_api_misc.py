"""The rest of the API against real services: overdue supervision on a fake clock, readings (raw and
time_bucket), alarm actions through the pure lifecycle, registry writes and gateway credentials, reports
and exports, /healthz against a real broker, /metrics, and the OpenAPI document itself."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from api.http.app import create_app
from api.http.metrics import Metrics
from api.run.serve import HazardTicker
from core.clock import FakeClock
from core.services import COLLECTOR_USER, HEALTH_USER, LocalMosquitto, free_port
from core.settings import Settings
from tests.fix_api import T0, Api, api_fixture, load_site, make_tokens, plan_body  # noqa: F401

pytestmark = pytest.mark.integration
DAY = 86400.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def test_overdue_ticket_is_supervised_by_the_tick_on_a_fake_clock(api: Api) -> None:
    tid = api.new_ticket("ent-a", "confirmed")
    api.ok("POST", f"/api/v1/hazards/{tid}/plan", "ent_a", json=plan_body(api.clock.now(), days=10))
    api.ok("POST", f"/api/v1/hazards/{tid}/start", "ent_a", json={})
    ticker = HazardTicker(api.db_url, api.clock, Metrics())
    with psycopg.connect(api.db_url) as conn:
        api.clock.advance(9 * DAY)
        assert ticker.once(conn) == (0, 0)
        assert api.ok("GET", f"/api/v1/hazards/{tid}")["supervision"] is None
        api.clock.advance(2 * DAY)
        assert ticker.once(conn) == (1, 0)
    h = api.ok("GET", f"/api/v1/hazards/{tid}", "ent_a")
    assert h["overdue"] is True
    assert (h["supervision"]["level"], h["supervision"]["label"], h["supervision"]["by"], h["supervision"]["active"]) \
        == ("county", "县级挂牌督办", "system", True)
    assert [x["id"] for x in api.ok("GET", "/api/v1/hazards?supervised=true")["items"]] == [tid]
    assert [x["id"] for x in api.ok("GET", "/api/v1/reports/overdue")["items"]] == [tid]
    major = api.ok("GET", "/api/v1/reports/open-major")
    assert (major["count"], major["supervised"], major["overdue"]) == (1, 1, 1)
    event = api.ok("GET", f"/api/v1/hazards/{tid}/events")[-1]
    assert (event["action"], event["actor"], event["data"]["level"]) == ("supervise", "system", "county")
    assert "逾期" in event["comment"]


def test_readings_raw_and_bucketed(api: Api) -> None:
    pid = api.point_id("gw-a1", "TT-101")
    api.sql("""INSERT INTO readings (time, point_id, value, quality)
               SELECT to_timestamp(%s) + g * interval '1 s', %s, g, CASE WHEN g = 5 THEN 2 ELSE 0 END
               FROM generate_series(0, 179) g""", (T0 - 180, pid))
    raw = api.ok("GET", "/api/v1/readings", "ent_a", params={"point_id": pid, "limit": 10})
    assert raw["tag"] == "TT-101" and raw["unit"] == "degC" and [r["value"] for r in raw["items"]] == list(range(10))
    assert raw["items"][5]["quality"] == 2
    newest = api.ok("GET", "/api/v1/readings", params={"point_id": pid, "limit": 1, "order": "desc"})
    assert newest["items"][0]["value"] == 179
    b = api.ok("GET", "/api/v1/readings/buckets", params={"point_id": pid, "bucket_s": 60, "from": iso(T0 - 180),
                                                         "to": iso(T0)})
    assert [(x["min"], x["max"], x["count"], x["last"]) for x in b["items"]] == [
        (0, 59, 59, 59), (60, 119, 60, 119), (120, 179, 60, 179)]  # the bad reading is left out
    assert b["items"][1]["avg"] == pytest.approx(89.5)
    with_bad = api.ok("GET", "/api/v1/readings/buckets", params={"point_id": pid, "bucket_s": 60,
                                                                 "from": iso(T0 - 180), "to": iso(T0),
                                                                 "include_bad": "true"})
    assert with_bad["items"][0]["count"] == 60
    assert api.get("/api/v1/readings", params={"point_id": pid, "from": iso(T0), "to": iso(T0 - 1)}).status_code == 422
    assert api.get("/api/v1/readings", params={"point_id": pid, "from": iso(T0 - 40 * DAY)}).status_code == 422
    assert api.get("/api/v1/readings/buckets", params={"point_id": pid, "bucket_s": 1,
                                                       "from": iso(T0 - 30 * DAY)}).status_code == 422
    assert api.get("/api/v1/readings", "ent_b", params={"point_id": pid}).status_code == 404


def test_alarm_actions_use_the_lifecycle(api: Api) -> None:
    pid = api.point_id("gw-a1", "CO-101")
    api.sql("""INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity, active,
                   state, activated_at, value, reason) VALUES ('bm.coal.co:hi', %s, %s, 'gw-a1', 'plant-a', 'v1',
                   'urgent', true, 'unack', to_timestamp(%s), 31, 'CO 31 ppm >= 24')""", (f"p:{pid}", pid, T0 - 60))
    base = f"/api/v1/alarms/bm.coal.co:hi/p:{pid}"
    listed = api.ok("GET", "/api/v1/alarms", "ent_a", params={"severity": "urgent"})
    assert [(a["rule_id"], a["tag"], a["state"]) for a in listed["items"]] == [("bm.coal.co:hi", "CO-101", "unack")]
    assert api.ok("GET", "/api/v1/alarms", params={"state": "ack"})["total"] == 0
    acked = api.ok("POST", f"{base}/ack", "ent_a", json={"comment": "已通知中控"})
    assert acked["alarm"]["state"] == "ack" and acked["alarm"]["acked_by"] == "ent_a 测试"
    assert [(e["event"], e["from_state"], e["to_state"]) for e in acked["events"]] == [("ack", "unack", "ack")]
    again = api.post(f"{base}/ack", "ent_a", json={})
    assert again.status_code == 409 and "nothing to acknowledge" in again.json()["detail"]
    shelved = api.ok("POST", f"{base}/shelve", "bureau", json={"minutes": 30, "reason": "校准 calibration"})
    assert shelved["alarm"]["shelved_until"] == iso(T0 + 1800).replace("+00:00", "Z")
    assert api.post(f"{base}/shelve", json={"minutes": 0, "reason": "x"}).status_code == 422
    api.ok("POST", f"{base}/unshelve", "ent_a")
    assert api.post(f"{base}/unshelve", "ent_a").status_code == 409
    history = api.ok("GET", f"{base}/events")
    assert [e["event"] for e in history] == ["unshelve", "shelve", "ack"]
    assert api.post(f"{base}/ack", "ent_b", json={}).status_code == 404
    assert api.get("/api/v1/alarms/no.such:rule/p:1").status_code == 404


def test_registry_writes(api: Api) -> None:
    ent = api.ok("POST", "/api/v1/enterprises", "bureau", json={
        "id": "new-co", "name": "新材料有限公司", "principal": {"name": "周一", "phone": "13811112222"},
        "controller": {"name": "周二"}})
    assert ent["plants"] == 0 and ent["principal"]["phone"] == "13811112222"
    dup = api.post("/api/v1/enterprises", "bureau", json={"id": "new-co", "name": "x", "principal": {"name": "a"},
                                                          "controller": {"name": "b"}})
    assert dup.status_code == 409 and dup.json()["code"] == "already-exists"
    api.ok("POST", "/api/v1/plants", "bureau", json={"id": "new-p1", "enterprise_id": "new-co", "name": "一号厂",
                                                     "industry": "lime"})
    patched = api.ok("PATCH", "/api/v1/plants/new-p1", "bureau", json={"name": None, "address": "园区路1号"})
    assert patched["name"] == "一号厂" and patched["address"] == "园区路1号"  # null leaves a required field alone
    assert api.post("/api/v1/plants", "bureau", json={"id": "p2", "enterprise_id": "ghost", "name": "x",
                                                      "industry": "lime"}).status_code == 404
    gw = api.ok("POST", "/api/v1/gateways", "bureau", json={"id": "gw-new-1", "plant_id": "new-p1"})
    assert gw["enterprise_id"] == "new-co" and gw["has_credentials"] is False
    dev = api.ok("POST", "/api/v1/devices", "bureau", json={"plant_id": "new-p1", "code": "kiln-1", "name": "石灰窑",
                                                            "kind": "kiln"})
    pt = api.ok("POST", "/api/v1/points", "bureau", json={
        "device_id": dev["id"], "gateway_id": "gw-new-1", "tag": "TT-1", "quantity": "temperature", "unit": "degC",
        "setpoints": {"bm.kiln.temp.hi": 950}})
    assert pt["setpoints"] == {"bm.kiln.temp.hi": 950.0} and pt["enterprise_id"] == "new-co"
    wrong = api.post("/api/v1/points", "bureau", json={"device_id": dev["id"], "gateway_id": "gw-a1", "tag": "X",
                                                       "quantity": "temperature"})
    assert wrong.status_code == 422 and wrong.json()["code"] == "gateway-not-in-plant"
    assert api.ok("PATCH", f"/api/v1/points/{pt['id']}", json={"interval_s": 5})["interval_s"] == 5
    # an enterprise asks to change its principal's contact (the bureau approves it: 202, unchanged meanwhile),
    # not another's, and registers no plants
    filed = api.call("PATCH", "/api/v1/enterprises/ent-a", "ent_a",
                     json={"principal": {"name": "张三", "phone": "13900001111"}})
    assert filed.status_code == 202 and filed.json()["status"] == "pending", filed.text
    assert api.ok("GET", "/api/v1/enterprises/ent-a", "ent_a")["principal"]["phone"] == "13800000001"
    assert api.call("PATCH", "/api/v1/enterprises/new-co", "ent_a", json={"address": "x"}).status_code == 404
    assert api.post("/api/v1/plants", "ent_a", json={"id": "p9", "enterprise_id": "ent-a", "name": "x",
                                                     "industry": "lime"}).status_code == 403


def test_gateway_credentials_sync_the_broker(db_url: str, tmp_path: Path) -> None:
    load_site(db_url)
    synced: list[str] = []
    app = create_app(Settings(data_dir=tmp_path, db_url=db_url), clock=FakeClock(T0),
                     broker_sync=lambda conn: synced.append("sync"))
    tokens = make_tokens(db_url)
    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {tokens['ent_a']}"}
        first = client.post("/api/v1/gateways/gw-a1/credentials", headers=h)
        assert first.status_code == 201, first.text
        creds = first.json()
        assert creds["username"] == "gw-a1" and creds["telemetry_topic"] == "rw/v1/gw-a1/telemetry"
        with psycopg.connect(db_url) as conn:
            stored = conn.execute("SELECT credential_hash FROM gateways WHERE id = 'gw-a1'").fetchone()
        assert stored and stored[0].startswith("$7$") and creds["password"] not in stored[0]
        second = client.post("/api/v1/gateways/gw-a1/credentials", headers=h).json()
        assert second["password"] != creds["password"]  # rotated
        # gw-a2 feeds no required point: the enterprise may turn it off itself
        assert client.post("/api/v1/gateways/gw-a2/disable", headers=h).json()["enabled"] is False
        assert client.post("/api/v1/gateways/gw-a2/enable", headers=h).json()["enabled"] is True
        assert client.post("/api/v1/gateways/gw-b1/disable", headers=h).status_code == 404
    assert synced == ["sync"] * 4


def test_period_exports(api: Api) -> None:
    closed = api.new_ticket("ent-a", "closed")
    api.new_ticket("ent-b", "rectifying", source="inspection")
    api.new_ticket("ent-a", "dismissed")
    month = api.ok("GET", "/api/v1/reports/monthly", params={"year": 2025, "month": 11})
    assert month["period"] == "2025-11" and month["start"].startswith("2025-11-01")
    t = month["totals"]
    assert (t["new"], t["confirmed"], t["dismissed"], t["closed"], t["open_at_end"]) == (3, 2, 1, 1, 1)
    assert t["funds_yuan"] == "170000.00"
    assert {r["key"]: r["new"] for r in month["by_source"]} == {"inspection": 1, "self_report": 2}
    assert {r["key"] for r in month["by_industry"]} == {"cement", "refractory"}
    assert api.ok("GET", "/api/v1/reports/monthly", params={"year": 2025, "month": 10})["totals"]["new"] == 0
    csv = api.get("/api/v1/reports/monthly", params={"year": 2025, "month": 11, "format": "csv"})
    assert csv.headers["content-disposition"] == 'attachment; filename="hazards-monthly-2025-11.csv"'
    text = csv.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("重大事故隐患月度汇总 2025-11") and "新增 new" in text
    assert "水泥 cement" in text and "企业自查 self_report" in text
    xlsx = api.get("/api/v1/reports/annual", params={"year": 2025, "format": "xlsx"})
    wb = load_workbook(io.BytesIO(xlsx.content))
    assert wb.sheetnames == ["汇总 summary", "台账 ledger", "预警处置 disposal"]
    ledger = list(wb["台账 ledger"].iter_rows(values_only=True))
    assert ledger[0][0] == "编号 id" and len(ledger) == 1 + 3  # every ticket open at some time in the period
    assert closed in [row[0] for row in ledger[1:]]
    annual = api.ok("GET", "/api/v1/reports/annual", params={"year": 2025})
    assert annual["totals"]["new"] == 3 and annual["tickets"] == 3

    # 17:00 UTC on 30 November is 01:00 on 1 December in the county: December's
    api.clock.set(T0 + 17 * 3600)
    tip = api.new_ticket("ent-a", "confirmed", source="public_tip")
    api.ok("POST", f"/api/v1/hazards/{tip}/reward", "bureau", json={"status": "approved", "amount_yuan": "1500"})
    assert api.ok("GET", "/api/v1/reports/monthly", params={"year": 2025, "month": 11})["totals"]["new"] == 3
    dec = api.ok("GET", "/api/v1/reports/monthly", params={"year": 2025, "month": 12})
    assert dec["totals"]["new"] == 1 and dec["rewards_approved_yuan"] == "1500.00" and dec["start"].endswith("+08:00")
    assert api.ok("GET", "/api/v1/reports/annual", params={"year": 2025})["rewards_approved_yuan"] == "1500.00"


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    import secrets

    from core.services import ServicesState

    m = LocalMosquitto(tmp_path / "mq", ServicesState(pg_dir="", pg_port=0, pg_password="", mqtt_port=free_port(),
                                                      collector_password=secrets.token_urlsafe(12)))
    m.write_config()
    m.start()
    yield m
    m.stop()


def test_healthz_reports_database_and_broker(db_url: str, tmp_path: Path, mqtt_broker: LocalMosquitto) -> None:
    def health(mqtt_url: str, health_url: str | None = None) -> tuple[int, dict[str, dict[str, object]]]:
        app = create_app(Settings(data_dir=tmp_path, db_url=db_url, mqtt_url=mqtt_url, mqtt_health_url=health_url))
        with TestClient(app) as client:
            r = client.get("/healthz")
        return r.status_code, r.json()["checks"]

    # The login is the health account's (over TLS): never the collector's, whose session it would take over.
    status, checks = health(mqtt_broker.url(COLLECTOR_USER), mqtt_broker.url(HEALTH_USER))
    assert status == 200 and checks["database"]["ok"] and checks["broker"]["ok"]
    assert checks["broker"]["detail"] == "CONNACK accepted"
    status, checks = health(mqtt_broker.url(COLLECTOR_USER), mqtt_broker.url(HEALTH_USER, "wrong-password"))
    assert status == 503 and not checks["broker"]["ok"] and "refused" in str(checks["broker"]["detail"])
    status, checks = health(f"mqtt://u:p@127.0.0.1:{free_port()}")
    assert status == 503 and "unreachable" in str(checks["broker"]["detail"]) and checks["database"]["ok"]


def test_metrics_count_requests_by_route(api: Api) -> None:
    api.get("/api/v1/hazards/1", "ent_a")
    api.get("/api/v1/hazards/2", "ent_a")
    text = api.get("/metrics", None).text
    assert 'riskwatch_http_requests_total{method="GET",route="/api/v1/hazards/{hazard_id}",status="404"} 2.0' in text
    assert 'riskwatch_http_request_duration_seconds_count{method="GET",route="/api/v1/hazards/{hazard_id}"} 2.0' \
        in text


def test_the_openapi_document(api: Api) -> None:
    doc = api.get("/openapi.json", None).json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            for code, resp in op["responses"].items():
                if code[0] in "45":
                    assert resp["content"] == {"application/problem+json": {"schema": problem}}, (method, path, code)
            if path.startswith("/api/"):
                assert {"401", "403", "422"} <= set(op["responses"]), (method, path)
    confirm = doc["paths"]["/api/v1/hazards/{hazard_id}/confirm"]["post"]
    assert "409" in confirm["responses"] and "404" in confirm["responses"]
    plan = doc["components"]["schemas"]["PlanRequest"]
    assert plan["examples"][0]["responsible_person"] and set(plan["required"]) >= {
        "responsible_person", "measures", "funds_yuan", "deadline", "contingency_plan"}
    assert doc["components"]["schemas"]["Problem"]["examples"][0]["status"] == 409
    assert api.get("/docs", None).status_code == 200


def test_api_pool_plans_for_the_actual_parameters(api: Api) -> None:
    """The API's and console's connections never reuse a generic plan: their optional filters
    (`%(scope)s IS NULL OR ...`) only fold away in a plan made for the values (6 ms against 600 ms for the
    bureau's points page at 100k points, with psycopg preparing every query from its fifth run)."""
    from api.http.deps import Database

    db = Database(api.db_url, 1)
    try:
        with db.pool.connection() as conn:
            for _ in range(7):  # past psycopg's prepare threshold
                conn.execute("SELECT count(*) FROM points WHERE (%s::text IS NULL OR tag = %s)", (None, None))
            assert conn.execute("SHOW plan_cache_mode").fetchone() == ("force_custom_plan",)
            assert conn.execute("SHOW jit").fetchone() == ("off",)
    finally:
        db.close()
