"""The warning-disposal loop end to end, on a fake clock: the real rule engine raises real alarms on the tick,
opens their disposals, escalates them tier by tier into the real outbox; the real dispatcher routes each tier by
the routing file's `disposal:` section to a real SMTP server; the HTTP API takes the enterprise's feedback.
Real PostgreSQL throughout; time moves only when the test says so."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerting.config import load_config
from alerting.dispatcher import Dispatcher
from api.http.app import create_app
from core.clock import FakeClock
from core.settings import Settings
from rules import disposal
from rules.engine import RuleEngine
from rules.model import load_catalog
from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.fix_alerting import load_site, routing_file
from tests.fix_api import make_tokens

pytestmark = pytest.mark.integration

#: Silence rules over the mini site's required points (TT-101, CO-101 of plant-a; FT-301 of plant-b) and its
#: gateways: a real catalog file, loaded as the engine loads the shipped one.
CATALOG = """
catalog: disposal-test
title: {zh: 处置与报备测试, en: Disposal and stop test}
version: "d1"
industries: all
rules:
  - id: dt.never
    title: {zh: 必设监测点从未上报数据, en: Required point has never reported}
    basis: 《工贸企业重大事故隐患判定标准》第六条（未设置监测报警装置或装置未接入）
    applies: {point: {quantity: "*", required_only: true}}
    shape: never_reported
    grace_s: 60
    severity: high
    candidate: true
"""

#: Short limits so a test walks the whole ladder in simulated minutes; the shipped defaults are in
#: rules/disposal.yaml (tested in tests/unit/test_disposal.py).
POLICY = """
version: 1
min_severity: high
limits: {urgent: 5m, high: 10m}
causes: {equipment_fault: 设备故障, sensor_fault: 仪表或传感器故障, other: 其他}
escalation:
  - {tier: principal, after: 0s}
  - {tier: duty_officer, after: 10m}
  - {tier: section_chief, after: 20m}
  - {tier: leader, after: 30m}
"""

DISPOSAL_ROUTING = """
disposal:
  principal: enterprise-leaders
  duty_officer: bureau-duty
  section_chief: chief
  leader: leader
"""


@dataclass
class Env:
    db_url: str
    conn: psycopg.Connection
    clock: FakeClock
    engine: RuleEngine
    dispatcher: Dispatcher
    smtp: SmtpSink
    points: dict[str, int]
    client: TestClient
    tokens: dict[str, str]

    def step(self, seconds: float, every: float = 30.0) -> None:
        """Move the clock, ticking the engine and pumping the dispatcher at each step, as the loops do."""
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(min(every, end - self.clock.now()))
            self.engine.tick(self.conn)
            while self.dispatcher.route_once(self.conn):
                pass
            self.dispatcher.flush_once(self.conn)
            while self.dispatcher.deliver_once(self.conn):
                pass

    def rows(self, q: str, *args: object) -> list[tuple[object, ...]]:
        out = self.conn.execute(q, args).fetchall()  # type: ignore[arg-type]
        self.conn.commit()
        return out

    def disposal_of(self, tag: str) -> int:
        return int(self.rows("SELECT id FROM alarm_disposals WHERE subject = %s", f"p:{self.points[tag]}")[0][0])

    def tiers_told(self, did: int) -> list[tuple[str, str]]:
        """(receiver, tier) of every notification about this disposal, in order."""
        return [(str(r[0]), str(r[1]).rsplit(":", 1)[1]) for r in self.rows(
            """SELECT DISTINCT ON (n.group_id, n.seq) n.receiver, i.item FROM notifications n,
                   jsonb_array_elements_text(n.items) i(item) WHERE i.item LIKE %s ORDER BY n.group_id, n.seq""",
            f"disposal:{did}:%")]

    def post(self, path: str, role: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
        r = self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.tokens[role]}"})
        return r.status_code, r.json()

    def get(self, path: str, role: str, **params: object) -> object:
        r = self.client.get(path, params=params, headers={"Authorization": f"Bearer {self.tokens[role]}"})
        assert r.status_code == 200, r.text
        return r.json()


def make_env(db_url: str, tmp_path: Path, smtp: SmtpSink, hook: HttpReceiver) -> Iterator[Env]:
    points = load_site(db_url)
    (tmp_path / "catalog.yaml").write_text(CATALOG, encoding="utf-8")
    routing = routing_file(tmp_path, smtp_port=smtp.port, webhook_url=hook.url, repeat_interval="0")
    routing.write_text(routing.read_text(encoding="utf-8") + DISPOSAL_ROUTING, encoding="utf-8")
    clock = FakeClock(float(int(time.time())))
    catalog = load_catalog(tmp_path / "catalog.yaml")
    engine = RuleEngine(catalog=catalog, clock=clock, disposal_policy=disposal.load_policy("policy.yaml", POLICY))
    d = Dispatcher(db_url, load_config(routing), public_url="http://riskwatch.test", link_secret=b"k" * 16,
                   clock=clock, rng=random.Random(3), titles=catalog.titles())
    app = create_app(Settings(data_dir=tmp_path / "api", db_url=db_url), clock=clock)
    with psycopg.connect(db_url) as conn, TestClient(app) as client:
        yield Env(db_url, conn, clock, engine, d, smtp, points, client, make_tokens(db_url))
    d.close()


@pytest.fixture
def env(db_url: str, tmp_path: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> Iterator[Env]:
    yield from make_env(db_url, tmp_path, smtp_sink, http_receiver)


def test_an_unanswered_high_alarm_escalates_tier_by_tier_at_the_configured_times_and_feedback_stops_it(
        env: Env) -> None:
    env.engine.tick(env.conn)  # compile; nothing is due yet
    env.step(90)  # grace 60 s passes: the required points "never reported" — high alarms, annunciated
    raised = env.rows("SELECT subject, extract(epoch FROM activated_at) FROM alarm_disposals ORDER BY subject")
    assert {r[0] for r in raised} == {f"p:{env.points[t]}" for t in ("TT-101", "CO-101", "FT-301")}
    t_act = float(raised[0][1])  # type: ignore[arg-type]
    co, tt, ft = env.disposal_of("CO-101"), env.disposal_of("TT-101"), env.disposal_of("FT-301")

    # nothing early: just before the 10 min limit no tier has been told, no disposal item is in the outbox
    env.step(t_act + 600 - 31 - env.clock.now())
    assert env.rows("SELECT count(*) FROM outbox WHERE kind = 'disposal'") == [(0,)]
    assert env.tiers_told(co) == []

    # at the limit: the enterprise's principal (by e-mail, as the routing file's `disposal.principal` says)
    env.step(60)
    assert env.tiers_told(co) == [("enterprise-leaders", "principal")]
    mails = [m for m in env.smtp.messages if "a-principal@example.cn" in m.rcpt_tos]
    assert any(str(m.message["Subject"]).startswith("【处置超时·企业主要负责人】") for m in mails), \
        [str(m.message["Subject"]) for m in mails]

    # the enterprise answers TT-101 now (after the principal was told): its ladder stops there
    code, body = env.post(f"/api/v1/disposals/{tt}/feedback", "ent_a", {
        "cause": "sensor_fault", "measures": "更换温度变送器并校验", "handled_by": "甲厂仪表工 刘强"})
    assert code == 200, body
    assert body["feedback_actor"].startswith("ent_a") and body["overdue"] is True

    # an enterprise cannot answer another enterprise's warning: 404, as if it did not exist; nothing recorded
    code, body = env.post(f"/api/v1/disposals/{ft}/feedback", "ent_a", {
        "cause": "other", "measures": "伪造反馈", "handled_by": "他人"})
    assert code == 404, body
    assert env.rows("SELECT feedback_at FROM alarm_disposals WHERE id = %s", ft) == [(None,)]
    # a cause outside the fixed list is refused
    code, _ = env.post(f"/api/v1/disposals/{co}/feedback", "ent_a", {
        "cause": "aliens", "measures": "x", "handled_by": "y"})
    assert code == 422

    told_at: dict[str, float] = {}
    start = env.clock.now()
    while env.clock.now() < start + 45 * 60:
        env.step(30)
        for _, tier in env.tiers_told(co):
            told_at.setdefault(tier, env.clock.now())
    # each tier within one 30 s step after its configured time (limit + after), never before
    for tier, after in (("duty_officer", 600), ("section_chief", 1200), ("leader", 1800)):
        due = t_act + 600 + after
        assert due <= told_at[tier] < due + 31, (tier, told_at[tier] - t_act)
    assert [t for _, t in env.tiers_told(co)] == ["principal", "duty_officer", "section_chief", "leader"]
    assert [r for r, _ in env.tiers_told(co)] == ["enterprise-leaders", "bureau-duty", "chief", "leader"]
    assert any("leader@example.gov.cn" in m.rcpt_tos and "处置超时" in str(m.message["Subject"])
               for m in env.smtp.messages)
    # TT-101 stopped at the principal; nothing more for it, ever
    assert env.tiers_told(tt) == [("enterprise-leaders", "principal")]
    assert env.rows("SELECT tier_reached, next_at FROM alarm_disposals WHERE id = %s", tt) == [(1, None)]

    # the timeline: each step an alarm event with its actor, the feedback with the enterprise's
    rule, subject = "dt.never", f"p:{env.points['CO-101']}"
    events = env.get(f"/api/v1/alarms/{rule}/{subject}/events", "bureau", limit=50)
    steps = [(e["event"], e["actor"]) for e in events if e["event"].startswith("disposal")]  # type: ignore[union-attr]
    assert steps == [("disposal_escalate", "system")] * 4
    events = env.get(f"/api/v1/alarms/{rule}/p:{env.points['TT-101']}/events", "ent_a", limit=50)
    kinds = [(e["event"], e["actor"]) for e in events]  # type: ignore[union-attr]
    assert ("disposal_escalate", "system") in kinds
    fb = [e for e in events if e["event"] == "disposal_feedback"]  # type: ignore[union-attr]
    assert len(fb) == 1 and fb[0]["actor"].startswith("ent_a") and "更换温度变送器" in fb[0]["reason"]

    # the bureau sees the overdue list of both enterprises; an enterprise only its own
    mine = env.get("/api/v1/disposals", "ent_a", status="overdue")
    assert {i["enterprise_id"] for i in mine["items"]} == {"ent-a"}  # type: ignore[index]
    everyone = env.get("/api/v1/disposals", "bureau", status="overdue")
    assert {i["enterprise_id"] for i in everyone["items"]} == {"ent-a", "ent-b"}  # type: ignore[index]
    # the risk rating reads it: each enterprise with an unanswered warning past its limit says so
    risk = {r["enterprise_id"]: r for r in env.get("/api/v1/reports/risk", "bureau")["items"]}  # type: ignore[index]
    for eid in ("ent-a", "ent-b"):
        assert any(x["input"] == "feedback_overdue" and x["text"].endswith("条预警逾期未反馈处置")
                   for x in risk[eid]["reasons"]), risk[eid]
    # answering twice is a conflict
    code, _ = env.post(f"/api/v1/disposals/{tt}/feedback", "bureau", {
        "cause": "other", "measures": "再次", "handled_by": "局"})
    assert code == 409

    # response statistics per enterprise: ent-a answered 1 of 2, late; ent-b nothing
    stats = {s["enterprise_id"]: s for s in env.get("/api/v1/disposals/stats", "bureau")}  # type: ignore[union-attr]
    assert stats["ent-a"]["total"] == 2 and stats["ent-a"]["answered"] == 1 and stats["ent-a"]["in_time"] == 0
    assert stats["ent-a"]["share_in_time"] == 0.0 and stats["ent-a"]["overdue_open"] == 1
    assert stats["ent-b"]["answered"] == 0
    assert [s["enterprise_id"] for s in env.get("/api/v1/disposals/stats", "ent_a")] == ["ent-a"]  # type: ignore


def test_feedback_in_time_is_counted_in_time_and_no_tier_is_ever_told(env: Env) -> None:
    env.engine.tick(env.conn)
    env.step(90)
    co = env.disposal_of("CO-101")
    code, body = env.post(f"/api/v1/disposals/{co}/feedback", "ent_a", {
        "cause": "equipment_fault", "measures": "停磨检查，清理积粉", "handled_by": "甲厂值班长"})
    assert code == 200 and body["overdue"] is False, body
    env.step(60 * 60, every=60)
    assert env.tiers_told(co) == []
    assert env.tiers_told(env.disposal_of("TT-101"))  # the unanswered one next to it did escalate
    stats = {s["enterprise_id"]: s for s in env.get("/api/v1/disposals/stats", "ent_a")}  # type: ignore[union-attr]
    assert stats["ent-a"]["in_time"] == 1 and stats["ent-a"]["share_in_time"] == 0.5


def test_the_monthly_and_annual_reports_carry_the_disposal_figures(env: Env) -> None:
    """预警处置 in the reports: the month of the warnings shows, per enterprise, what needed feedback, what was
    answered and in time, and the response times — in the JSON, the CSV and an XLSX sheet; scoped."""
    import io
    from datetime import datetime, timedelta, timezone

    from openpyxl import load_workbook

    env.engine.tick(env.conn)
    env.step(90)
    co = env.disposal_of("CO-101")
    code, _ = env.post(f"/api/v1/disposals/{co}/feedback", "ent_a", {
        "cause": "equipment_fault", "measures": "停磨检查，清理积粉", "handled_by": "甲厂值班长"})
    assert code == 200
    env.step(3 * 60 * 60, every=300)  # past every limit: the unanswered ones are overdue
    shown = env.get(f"/api/v1/disposals/{co}", "bureau")
    at = datetime.fromisoformat(shown["activated_at"]).astimezone(timezone(timedelta(hours=8)))  # type: ignore[index]
    month = {"year": at.year, "month": at.month}
    want = {s["enterprise_id"]: s for s in env.get("/api/v1/disposals/stats", "bureau",  # type: ignore[union-attr]
                                                  since=f"{at.year:04d}-{at.month:02d}-01T00:00:00+08:00")}
    got = {d["enterprise_id"]: d for d in env.get("/api/v1/reports/monthly", "bureau", **month)["disposal"]}  # type: ignore[index]
    assert set(got) == {"ent-a", "ent-b"} == set(want)
    for eid, d in got.items():
        for k in ("total", "answered", "in_time", "overdue_open", "share_in_time"):
            assert d[k] == want[eid][k], (eid, k)
        assert d["enterprise_name"] and d["enterprise_name"] != eid
    a = got["ent-a"]
    assert a["answered"] == 1 and a["in_time"] == 1 and a["total"] == 2 and a["share_in_time"] == 0.5
    assert a["overdue_open"] == 1 and a["median_response_s"] is not None and a["median_response_s"] < 30 * 60
    assert got["ent-b"]["answered"] == 0 and got["ent-b"].get("mean_response_s") is None  # none answered
    # an enterprise's report: its own row only
    assert [d["enterprise_id"] for d in env.get("/api/v1/reports/monthly", "ent_a", **month)["disposal"]] == [  # type: ignore[index]
        "ent-a"]
    annual = env.get("/api/v1/reports/annual", "bureau", year=at.year)
    assert {d["enterprise_id"] for d in annual["disposal"]} == {"ent-a", "ent-b"}  # type: ignore[index]
    # the exports
    hdr = {"Authorization": f"Bearer {env.tokens['bureau']}"}
    csv = env.client.get("/api/v1/reports/monthly", params={**month, "format": "csv"}, headers=hdr)
    assert csv.status_code == 200
    text = csv.content.decode("utf-8-sig")
    assert "预警处置 warning disposal" in text and "ent-a," in text.split("预警处置 warning disposal")[1]
    xlsx = env.client.get("/api/v1/reports/monthly", params={**month, "format": "xlsx"}, headers=hdr)
    ws = load_workbook(io.BytesIO(xlsx.content))["预警处置 disposal"]
    rows = {r[0]: r for r in ws.iter_rows(min_row=2, values_only=True)}
    assert rows["ent-a"][2:6] == (2, 1, 1, 0.5) and rows["ent-a"][6] == 1
    mine = env.client.get("/api/v1/reports/monthly", params={**month, "format": "xlsx"},
                          headers={"Authorization": f"Bearer {env.tokens['ent_a']}"})
    assert [r[0] for r in load_workbook(io.BytesIO(mine.content))["预警处置 disposal"].iter_rows(
        min_row=2, values_only=True)] == ["ent-a"]
