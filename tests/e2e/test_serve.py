"""End to end through `riskwatch serve` (API + collector with the rule engine's hazard intake + hazards tick,
one process) on real Mosquitto and TimescaleDB:

an incident (cooling water leaking from an induction furnace that stays powered) played through the broker
opens a candidate ticket by itself; a second leak on the same point while the ticket is open adds evidence
to it instead of opening another; the bureau confirms, the enterprise files the 五落实 plan, starts and
submits, the bureau verifies and closes; the history shows every step with its actor; the reports count it;
/healthz and /metrics report on the whole process group; SIGTERM ends it cleanly.

Tokens come from `riskwatch token create`, printed once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.services import COLLECTOR_USER, HEALTH_USER, LocalMosquitto, free_port
from hazards.reports import CST
from simulators.run import default_site_path, simulate
from simulators.scenarios import SCENARIOS
from tests.conftest import Site, sql_one, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The riskwatch CLI, as the console script runs it.
CLI = [sys.executable, "-c", "from api.cli import main; main()"]
RULE = "mach.cooling.interlock"


class Server:
    def __init__(self, db_url: str, broker: LocalMosquitto, workdir: Path):
        self.env = {**os.environ, "RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": broker.url(COLLECTOR_USER),
                    # /healthz logs in with an account of its own (client id = username: never the collector's)
                    "RISKWATCH_MQTT_HEALTH_URL": broker.url(HEALTH_USER),
                    "RISKWATCH_DATA_DIR": str(workdir / "data")}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
        return res

    def start(self) -> None:
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen([*CLI, "-v", "serve", "--port", str(self.port), "--hazard-tick", "1"],
                                         env=self.env, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            text = self.log.read_text(errors="replace")
            if "MQTT connected" in text and "就绪 ready" in text:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve did not start ({self.proc.poll()}):\n{text[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def server(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[tuple[Server, Site]]:
    site = Site(db_url, broker, default_site_path())
    s = Server(db_url, broker, tmp_path)
    yield s, site
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def token(s: Server, *args: str) -> str:
    res = s.cli("token", "create", *args)
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rwt_"), res.stdout  # the token alone, once, on stdout
    assert "shown once" in res.stderr
    return lines[0]


def test_incident_to_closure_through_serve(server: tuple[Server, Site]) -> None:
    s, site = server
    s.start()
    bureau_token = token(s, "--role", "bureau", "--name", "县工信局值班室")
    bureau = httpx.Client(base_url=s.base, timeout=30, headers={"Authorization": f"Bearer {bureau_token}"})
    ent_token = token(s, "--role", "enterprise", "--enterprise", "dy-foundry", "--name", "东岳铸造安全科")
    ent = httpx.Client(base_url=s.base, timeout=30, headers={"Authorization": f"Bearer {ent_token}"})
    other = httpx.Client(base_url=s.base, timeout=30, headers={
        "Authorization": f"Bearer {token(s, '--role', 'enterprise', '--enterprise', 'qsl-cement')}"})

    def ok(client: httpx.Client, method: str, path: str, **kw: Any) -> Any:
        r = client.request(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()

    health = ok(bureau, "GET", "/healthz")
    assert health["status"] == "ok" and set(health["checks"]) == {"database", "broker", "collector", "hazards-tick",
                                                                "alerting"}

    # the incident, twice on the same furnace: leak, recovery, leak again (data time, contiguous)
    sc = SCENARIOS["cooling_water_leak"]
    end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
    start_ms = int(time.time() * 1000) - int((2 * end_s + 30) * 1000)
    sent = 0
    for episode in range(2):
        res = simulate(site.spec, "127.0.0.1", site.broker.state.mqtt_port, site.credentials, duration_s=end_s,
                       rate_hz=1.0, batch=50, log_path=None, realtime=False,
                       start_ms=start_ms + episode * int(end_s * 1000), scenario=sc, seed=5, tls=site.tls)
        assert res.acked
        sent += res.readings_sent
        if episode == 0:  # the candidate ticket opens by itself
            wait_for(lambda: ok(bureau, "GET", "/api/v1/hazards", params={"source": "sensor"})["total"] == 1,
                     timeout=60, message="a candidate ticket")
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM readings") == sent, timeout=60, message="readings")
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM hazard_candidates") == 2, timeout=30,
             message="the second candidate")

    tickets = ok(bureau, "GET", "/api/v1/hazards", params={"source": "sensor"})
    assert tickets["total"] == 1, tickets  # the repeat did not open a second ticket
    h = tickets["items"][0]
    tid = h["id"]
    assert (h["status"], h["rule_id"], h["enterprise_id"], h["point_tag"]) == ("candidate", RULE, "dy-foundry",
                                                                                "FT-601")
    assert h["occurrences"] == 2 and h["evidence_count"] == 4 and "第七条" in (h["basis"] or "")
    assert sql_one(site.db_url, "SELECT count(DISTINCT ticket_id) FROM hazard_candidates WHERE ticket_id = %s",
                   (tid,)) == 1
    evidence = ok(ent, "GET", f"/api/v1/hazards/{tid}/evidence", params={"include_readings": "true"})
    assert [e["kind"] for e in evidence] == ["alarm", "readings", "alarm", "readings"]
    assert all(e["readings_count"] > 100 for e in evidence if e["kind"] == "readings")
    assert other.get(f"/api/v1/hazards/{tid}").status_code == 404  # another enterprise: as if it did not exist

    # bureau confirms; the enterprise plans (五落实), starts and submits; bureau verifies and closes
    ok(bureau, "POST", f"/api/v1/hazards/{tid}/confirm", json={"comment": "经核实，回水流量异常且未联锁断电"})
    assert ok(bureau, "GET", "/api/v1/reports/open-major")["count"] == 1
    refused = bureau.post(f"/api/v1/hazards/{tid}/verify", json={})
    assert refused.status_code == 409 and refused.headers["content-type"].startswith("application/problem+json")
    assert "不允许" in refused.json()["detail"] and "not allowed" in refused.json()["detail"]
    deadline = datetime.fromtimestamp(time.time() + 20 * 86400, UTC).isoformat()
    ok(ent, "POST", f"/api/v1/hazards/{tid}/plan", json={
        "responsible_person": "王强（设备部经理）", "responsible_phone": "13900000003",
        "measures": "更换1#中频炉回水管路，加装进出水流量差联锁断电装置", "funds_yuan": "85000.00",
        "deadline": deadline, "contingency_plan": "整改期间1#中频炉停炉，专人值守"})
    ok(ent, "POST", f"/api/v1/hazards/{tid}/start", json={"comment": "施工队已进场"})
    ok(ent, "POST", f"/api/v1/hazards/{tid}/submit", json={"comment": "已更换管路，联锁调试合格"})
    closed = ok(bureau, "POST", f"/api/v1/hazards/{tid}/verify", json={"comment": "现场验收合格，同意销号"})
    assert closed["hazard"]["status"] == "closed" and closed["hazard"]["closed_by"] == "县工信局值班室"

    history = ok(ent, "GET", f"/api/v1/hazards/{tid}/events")
    assert [(e["action"], e["actor"], e["actor_role"]) for e in history] == [
        ("create", "system", "system"),
        ("add_evidence", "system", "system"),
        ("confirm", "县工信局值班室", "bureau"),
        ("file_plan", "东岳铸造安全科", "enterprise"),
        ("start_rectification", "东岳铸造安全科", "enterprise"),
        ("submit", "东岳铸造安全科", "enterprise"),
        ("verify", "县工信局值班室", "bureau"),
    ]
    assert [e["to_status"] for e in history][-5:] == ["confirmed", "plan_filed", "rectifying", "submitted", "closed"]

    # the reports count it
    assert ok(bureau, "GET", "/api/v1/reports/open-major")["count"] == 0
    by_status = {r["key"]: r for r in ok(bureau, "GET", "/api/v1/reports/summary", params={"group_by": "status"})}
    assert by_status["closed"]["total"] == 1
    by_source = {r["key"]: r for r in ok(bureau, "GET", "/api/v1/reports/summary", params={"group_by": "source"})}
    assert by_source["sensor"]["closed"] == 1
    industry = {r["key"]: r for r in ok(ent, "GET", "/api/v1/reports/summary", params={"group_by": "industry"})}
    assert industry["foundry"]["total"] == 1
    now = datetime.now(CST)  # the bureau's calendar
    month = ok(bureau, "GET", "/api/v1/reports/monthly", params={"year": now.year, "month": now.month})
    assert (month["totals"]["new"], month["totals"]["confirmed"], month["totals"]["closed"]) == (1, 1, 1)
    assert month["totals"]["funds_yuan"] == "85000.00" and month["tickets"] == 1
    csv = bureau.get("/api/v1/reports/monthly", params={"year": now.year, "month": now.month, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and csv.content.startswith(b"\xef\xbb\xbf")
    assert "铸造 foundry" in csv.text
    xlsx = bureau.get("/api/v1/reports/annual", params={"year": now.year, "format": "xlsx"})
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"

    # the process group reports on itself
    metrics = httpx.get(f"{s.base}/metrics").text
    assert 'riskwatch_http_requests_total{method="POST",route="/api/v1/hazards/{hazard_id}/verify",status="200"}' \
        in metrics
    assert "riskwatch_http_request_duration_seconds_bucket" in metrics
    assert "riskwatch_collector_hazard_candidates_total 2.0" in metrics
    stored = [ln for ln in metrics.splitlines() if ln.startswith("riskwatch_collector_readings_stored_total")]
    assert stored and float(stored[0].split()[-1]) == sent
    audit = sql_one(site.db_url, "SELECT count(*) FROM audit_log WHERE method = 'POST'")
    assert audit == 6  # confirm, refused verify, plan, start, submit, verify

    assert s.stop() == 0
    log = s.log.read_text()
    assert "riskwatch serve stopped" in log and "Traceback" not in log
