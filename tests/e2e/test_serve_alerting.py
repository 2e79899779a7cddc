"""End to end through `riskwatch serve`: a CO breach published over MQTT becomes an alarm (collector + rule
engine), its notification leaves through the outbox (the dispatcher task) as one e-mail to the duty officer and
one signed webhook, and the e-mail's acknowledgement link, followed against the running server, acknowledges
the alarm. Private PostgreSQL and Mosquitto, a real SMTP server and a real HTTP receiver on loopback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerting.channels.webhook import verify_signature
from core.services import COLLECTOR_USER, LocalMosquitto, free_port
from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.conftest import FIXTURES, VENV_BIN, Site, sql_one
from tests.fix_alerting import routing_file
from tests.integration.test_rules_restart import Gateway

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "webhook-secret"
CATALOG = FIXTURES / "rules_test.yaml"
RULE = "it.co:hi"  # it.co's hi limit (24 ppm); severity medium, opens a candidate major hazard
DUTY = "duty@example.gov.cn"


class Server:
    """`riskwatch serve` (API + collector + hazards tick + alerting dispatcher) in a subprocess."""

    def __init__(self, db_url: str, broker: LocalMosquitto, workdir: Path, routing: Path):
        self.env = {**os.environ, "RISKWATCH_DB_URL": db_url, "RISKWATCH_MQTT_URL": broker.url(COLLECTOR_USER),
                    "RISKWATCH_DATA_DIR": str(workdir / "data"), "RISKWATCH_ALERTING": str(routing)}
        self.env.pop("RISKWATCH_PUBLIC_URL", None)  # links point at the server itself
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(VENV_BIN / "riskwatch"), *args], env=self.env, capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, f"{args}: {res.stdout}\n{res.stderr}"
        return res

    def start(self) -> None:
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "riskwatch"), "-v", "serve", "--port", str(self.port), "--catalog", str(CATALOG)],
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
def server(mini_site: Site, tmp_path: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> Iterator[Server]:
    routing = routing_file(tmp_path, smtp_port=smtp_sink.port, webhook_url=f"{http_receiver.url}/riskwatch",
                           secret=SECRET, group_wait="0s")
    s = Server(mini_site.db_url, mini_site.broker, tmp_path, routing)
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def breach(site: Site) -> float:
    """One CO reading above the limit from gw-a1, acknowledged by the broker; when it was published."""
    gw = Gateway(site, "gw-a1")
    try:
        published = time.time()
        gw.send([("CO-101", int(published * 1000), 35.0)])
        gw.flush()
    finally:
        gw.close()
    return published


def start_and_breach(s: Server, site: Site, smtp: SmtpSink, hook: HttpReceiver) -> float:
    """Serve, publish the breach, wait for the webhook and the e-mail; publish → webhook latency in seconds."""
    s.start()
    published = breach(site)
    hook.wait(1, timeout=30)
    smtp.wait(1, timeout=30)
    return hook.requests[0].received_at - published


def test_breach_to_one_email_and_one_webhook_then_acknowledged_from_the_link(
        mini_site: Site, server: Server, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> None:
    s = server
    latency = start_and_breach(s, mini_site, smtp_sink, http_receiver)
    print(f"\npublish → webhook {latency * 1000:.0f} ms (MQTT, collector, rules, outbox, dispatcher, HTTP)")
    assert latency < 10
    time.sleep(3)  # nothing more comes: no duplicate, no second notice
    assert len(http_receiver.requests) == 1 and len(smtp_sink.messages) == 1

    # the webhook: signed, Chinese, the alarm among its items
    req = http_receiver.requests[0]
    assert req.method == "POST" and req.path == "/riskwatch"
    assert verify_signature(SECRET, req.headers["x-riskwatch-timestamp"], req.body,
                            req.headers["x-riskwatch-signature"])
    payload = req.json()
    assert req.headers["idempotency-key"] == payload["idempotency_key"]
    # it.co opens a candidate major hazard in the alarm's own transaction: both are in the one notice,
    # the alarm (the news) first, named by its rule's Chinese title
    point = sql_one(mini_site.db_url, "SELECT id FROM points WHERE tag = 'CO-101'")
    ticket = sql_one(mini_site.db_url, "SELECT id FROM hazards")
    item = f"alarm:{RULE}|p:{point}"
    assert [i["item"] for i in payload["data"]["items"]] == [item, f"hazard:{ticket}:opened"], payload["data"]
    subject = payload["subject"]
    assert subject.startswith("【中报警】CO浓度高"), subject
    assert subject.endswith("等2条 · 甲一号线"), subject
    assert "[中]" in payload["text"] and "CO-101 出口CO 值 35 ppm" in payload["text"], payload["text"]
    assert "依据 basis: GB/T 50493-2019" in payload["text"], payload["text"]

    # the e-mail: to the duty officer only, the same subject, a link to this server
    mail = smtp_sink.messages[0]
    assert mail.rcpt_tos == [DUTY]
    assert str(mail.message["Subject"]) == subject
    body = mail.message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "甲水泥有限公司" in text and "CO-101" in text and "35 ppm" in text, text
    link = re.search(rf"{re.escape(s.base)}(/ack/\S+)", text)
    assert link, text

    # following the link: GET shows a form and changes nothing, POST acknowledges
    with httpx.Client(base_url=s.base, timeout=30) as browser:
        page = browser.get(link.group(1))
        assert page.status_code == 200 and '<form method="post"' in page.text and "确认" in page.text, page.text
        assert sql_one(mini_site.db_url, "SELECT state FROM alarms WHERE rule_id = %s", (RULE,)) == "unack"
        done = browser.post(link.group(1))
        assert done.status_code == 200 and "已确认" in done.text, done.text

    admin = httpx.Client(base_url=s.base, timeout=30, headers={
        "Authorization": f"Bearer {s.cli('token', 'create', '--role', 'admin').stdout.strip()}"})
    alarms = admin.get("/api/v1/alarms", params={"rule_id": RULE}).json()["items"]
    assert [(a["rule_id"], a["state"]) for a in alarms] == [(RULE, "ack")], alarms
    assert "duty" in (alarms[0]["acked_by"] or ""), alarms
    notes = admin.get("/api/v1/notifications").json()
    assert sorted((n["channel"], n["status"], n["kind"]) for n in notes) == [
        ("email", "sent", "firing"), ("hook", "sent", "firing")], notes
    by_channel = {n["channel"]: n for n in notes}
    assert by_channel["email"]["address"] == DUTY and by_channel["email"]["acked_at"] is not None
    assert by_channel["hook"]["idempotency_key"] == payload["idempotency_key"]
    assert mail.message["X-Riskwatch-Idempotency-Key"] == by_channel["email"]["idempotency_key"]
    assert all(sorted(n["items"]) == sorted([f"hazard:{ticket}:opened", item]) for n in notes), notes

    assert s.stop() == 0
    log = s.log.read_text()
    assert "riskwatch serve stopped" in log and "Traceback" not in log


def test_the_alarm_is_named_by_its_rules_chinese_title(
        mini_site: Site, server: Server, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> None:
    start_and_breach(server, mini_site, smtp_sink, http_receiver)
    alarm = [i for i in http_receiver.requests[0].json()["data"]["items"] if i["kind"] == "alarm"]
    assert [a["title"] for a in alarm] == ["CO浓度高"], alarm
