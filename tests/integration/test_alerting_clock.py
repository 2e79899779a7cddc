"""Alerting on a fake clock: real PostgreSQL, a real SMTP server and a real HTTP receiver on loopback; time moves
only when the test says so. The dispatcher's three steps are called the way its loop calls them."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerting.channels.webhook import verify_signature
from alerting.config import load_config
from alerting.dispatcher import Dispatcher
from api.http.app import create_app
from core.clock import FakeClock
from core.settings import Settings
from hazards import ledger, workflow
from hazards.model import Actor
from rules import actions
from rules.model import load_catalog
from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.fix_alerting import RULE, clear_alarm, load_site, raise_alarm, routing_file

pytestmark = pytest.mark.integration
SECRET = "webhook-secret"
LINK_KEY = "link-key-for-tests"


@dataclass
class Env:
    db_url: str
    conn: psycopg.Connection
    clock: FakeClock
    points: dict[str, int]
    smtp: SmtpSink
    hook: HttpReceiver
    tmp: Path
    d: Dispatcher | None = None

    def dispatcher(self, **routing: object) -> Dispatcher:
        path = routing_file(self.tmp, smtp_port=self.smtp.port, webhook_url=self.hook.url, secret=SECRET,
                            **routing)  # type: ignore[arg-type]
        self.d = Dispatcher(self.db_url, load_config(path), public_url="http://riskwatch.test",
                            link_secret=LINK_KEY.encode(), clock=self.clock, rng=random.Random(7),
                            titles=load_catalog().titles())
        return self.d

    def pump(self) -> None:
        """Route everything, flush what is due, deliver what is due (as the loop does, at this instant)."""
        assert self.d is not None
        while self.d.route_once(self.conn):
            pass
        self.d.flush_once(self.conn)
        while self.d.deliver_once(self.conn):
            pass

    def advance(self, seconds: float, step: float = 5.0) -> None:
        """Move the clock in steps, pumping at each, as the running loop would."""
        end = self.clock.now() + seconds
        while self.clock.now() < end - 1e-9:
            self.clock.advance(min(step, end - self.clock.now()))
            self.pump()

    def mails_to(self, addr: str) -> list[str]:
        return [str(m.message["Subject"]) for m in self.smtp.messages if addr in m.rcpt_tos]


@pytest.fixture
def env(db_url: str, tmp_path: Path, smtp_sink: SmtpSink, http_receiver: HttpReceiver) -> Iterator[Env]:
    points = load_site(db_url)
    with psycopg.connect(db_url) as conn:
        e = Env(db_url, conn, FakeClock(float(int(time.time()))), points, smtp_sink, http_receiver, tmp_path)
        yield e
        if e.d is not None:
            e.d.close()


def _rows(conn: psycopg.Connection, q: str, *args: object) -> list[tuple[object, ...]]:
    rows = conn.execute(q, args).fetchall()  # type: ignore[arg-type]
    conn.commit()
    return rows


def test_one_alarm_one_email_and_one_webhook_signed_chinese_with_a_working_ack_link(env: Env) -> None:
    env.dispatcher()
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now(), value=35.0)
    env.pump()
    assert len(env.smtp.messages) == 1 and len(env.hook.requests) == 1

    mail = env.smtp.messages[0]
    assert mail.rcpt_tos == ["duty@example.gov.cn"]
    subject = str(mail.message["Subject"])
    assert subject.startswith("【紧急报警】煤磨收尘器/煤粉仓CO浓度高") and "甲一号线" in subject, subject
    body = mail.message.get_body(("plain",)).get_content()
    assert "甲水泥有限公司" in body and "CO-101" in body and "35 ppm" in body
    assert "《工贸企业重大事故隐患判定标准》第六条第（一）项" in body  # the rule's basis
    assert mail.message.get_body(("html",)) is not None
    link = re.search(r"http://riskwatch\.test(/ack/\S+)", body)
    assert link, body

    req = env.hook.requests[0]
    stamp, sig = req.headers["x-riskwatch-timestamp"], req.headers["x-riskwatch-signature"]
    assert verify_signature(SECRET, stamp, req.body, sig)
    assert not verify_signature(SECRET, stamp, req.body + b" ", sig)
    payload = req.json()
    assert req.headers["idempotency-key"] == payload["idempotency_key"]
    assert payload["data"]["items"][0]["item"] == f"alarm:{RULE}|p:{env.points['CO-101']}"
    assert payload["subject"] == subject
    assert _rows(env.conn, "SELECT status, count(*) FROM notifications GROUP BY 1") == [("sent", 2)]

    # nothing more at this instant, and a duplicate firing (re-annunciation) adds nothing
    env.pump()
    assert len(env.hook.requests) == 1

    # following the link: a page with a button, then the POST acknowledges the alarm
    app = create_app(Settings(data_dir=env.tmp / "api", db_url=env.db_url, link_secret=LINK_KEY), clock=env.clock)
    with TestClient(app) as client:
        page = client.get(link.group(1))
        assert page.status_code == 200 and "确认" in page.text and "<form method=\"post\"" in page.text
        assert _rows(env.conn, "SELECT state FROM alarms")[0][0] == "unack"  # GET alone changes nothing
        done = client.post(link.group(1))
        assert done.status_code == 200 and "已确认" in done.text
        assert client.post(link.group(1)).status_code == 200  # idempotent
        bad = client.get(link.group(1)[:-3] + "AAA")
        assert bad.status_code == 404
    state, by = _rows(env.conn, "SELECT state, acked_by FROM alarms")[0]
    assert state == "ack" and "duty" in str(by)
    # the acknowledgement stops the reminders: nothing more for an hour
    env.advance(3600, step=60)
    assert len(env.hook.requests) == 1


def test_reminders_until_acknowledged(env: Env) -> None:
    env.dispatcher(repeat_interval="10m")
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.pump()
    env.advance(35 * 60, step=30)
    kinds = [r.json()["data"]["kind"] for r in env.hook.requests]
    assert kinds == ["firing", "reminder", "reminder", "reminder"]
    times = [r.received_at for r in env.hook.requests]
    assert all(s.startswith("【提醒·未确认】") for s in env.mails_to("duty@example.gov.cn")[1:])
    assert len(times) == 4
    actions.acknowledge(env.conn, RULE, f"p:{env.points['CO-101']}", "值班员张伟", "已电话通知企业", env.clock.now())
    env.advance(60 * 60, step=60)
    assert len(env.hook.requests) == 4
    due = _rows(env.conn, "SELECT count(*) FROM alert_groups WHERE flush_at IS NOT NULL")[0][0]
    assert due == 0


def test_reminder_cadence_follows_repeat_interval(env: Env) -> None:
    env.dispatcher(repeat_interval="7m")
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.pump()
    t0 = env.clock.now()
    sent_at = []
    for _ in range(6 * 60):  # 30 minutes in 5 s steps, noting the fake time of each delivery
        n = len(env.hook.requests)
        env.advance(5)
        if len(env.hook.requests) > n:
            sent_at.append(env.clock.now() - t0)
    assert sent_at == [7 * 60, 14 * 60, 21 * 60, 28 * 60]


ESCALATION = """  escalation:
    - {after: 15m, receiver: chief}
    - {after: 30m, receiver: leader}"""


def test_escalation_after_n_minutes_unacknowledged(env: Env) -> None:
    env.dispatcher(repeat_interval="0", escalation=ESCALATION)
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.pump()
    env.advance(14 * 60, step=30)
    assert env.mails_to("chief@example.gov.cn") == []
    env.advance(60, step=30)
    chief = env.mails_to("chief@example.gov.cn")
    assert len(chief) == 1 and chief[0].startswith("【升级】报警15分钟未确认")
    assert env.mails_to("leader@example.gov.cn") == []
    env.advance(15 * 60, step=30)
    assert len(env.mails_to("leader@example.gov.cn")) == 1
    env.advance(60 * 60, step=60)
    assert len(env.mails_to("chief@example.gov.cn")) == 1 and len(env.mails_to("leader@example.gov.cn")) == 1


def test_acknowledged_in_time_is_not_escalated(env: Env) -> None:
    env.dispatcher(repeat_interval="0", escalation=ESCALATION)
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.pump()
    env.advance(10 * 60, step=30)
    actions.acknowledge(env.conn, RULE, f"p:{env.points['CO-101']}", "值班员张伟", "", env.clock.now())
    env.advance(60 * 60, step=60)
    assert env.mails_to("chief@example.gov.cn") == [] and env.mails_to("leader@example.gov.cn") == []


def test_flood_of_50_alarms_is_one_notification_per_receiver_per_group_window(env: Env) -> None:
    env.dispatcher(group_wait="30s", group_interval="2m", repeat_interval="0")
    pids = [env.points[t] for t in ("TT-101", "CO-101", "PDT-101", "TT-201", "RUN-201")]
    for i in range(50):  # 50 alarms over 3 minutes on one plant
        raise_alarm(env.conn, pids[i % 5], env.clock.now(), rule_id=f"flood.{i // 5}")
        env.advance(3.6, step=3.6)
    env.advance(10 * 60, step=5)
    hooks = [r.json() for r in env.hook.requests]
    mails = env.mails_to("duty@example.gov.cn")
    # windows: first notice at 30 s, then one per 2 minutes while alarms keep coming (150 s, 270 s)
    assert len(hooks) == 3 and len(mails) == 3
    announced = [i["item"] for h in hooks for i in h["data"]["items"]]
    assert len(announced) == 50 and len(set(announced)) == 50
    assert "等" in mails[0]  # "… 等N条": one message for many alarms


def test_return_to_normal_notice(env: Env) -> None:
    env.dispatcher(repeat_interval="0")
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.pump()
    env.advance(120, step=10)
    clear_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.advance(120, step=10)
    kinds = [r.json()["data"]["kind"] for r in env.hook.requests]
    assert kinds == ["firing", "resolved"]
    assert env.mails_to("duty@example.gov.cn")[1].startswith("【恢复】")


def test_confirmed_major_hazard_reaches_principal_controller_and_duty(env: Env) -> None:
    env.dispatcher(repeat_interval="0")
    bureau = Actor("局值班员", "bureau")
    tid = ledger.open_ticket(env.conn, ledger.NewTicket(
        source=workflow.Source.PUBLIC_TIP, enterprise_id="ent-a", title="煤粉制备系统未设置CO监测",
        plant_id="plant-a", reporter_name="匿名"), bureau, env.clock.now())
    env.pump()
    assert env.mails_to("a-principal@example.cn") == []  # a candidate goes to the duty officer only
    assert len(env.mails_to("duty@example.gov.cn")) == 1
    ledger.act(env.conn, tid, workflow.Confirm("判定为重大事故隐患"), bureau, env.clock.now())
    env.pump()
    for addr in ("a-principal@example.cn", "a-controller@example.cn"):
        got = env.mails_to(addr)
        assert len(got) == 1 and "重大事故隐患" in got[0] and "煤粉制备系统未设置CO监测" in got[0], got
    assert len(env.mails_to("duty@example.gov.cn")) == 2


def test_enterprise_without_contact_details_leaves_a_dead_notification_with_the_reason(env: Env) -> None:
    env.dispatcher(repeat_interval="0")
    bureau = Actor("局值班员", "bureau")
    ledger.open_ticket(env.conn, ledger.NewTicket(  # an inspection finding opens confirmed
        source=workflow.Source.INSPECTION, enterprise_id="ent-b", title="电熔炉冷却水无断水报警",
        plant_id="plant-b", inspection_team="县督导组"), bureau, env.clock.now())
    env.pump()
    dead = _rows(env.conn, "SELECT receiver, last_error FROM notifications WHERE status = 'dead'")
    assert {r[0] for r in dead} == {"enterprise-leaders"}
    assert any("ent-b" in str(r[1]) or "王五" in str(r[1]) for r in dead), dead


def test_permanent_error_is_dead_at_once_and_transient_backs_off_then_dies(env: Env) -> None:
    env.dispatcher(max_attempts=4, backoff_initial="10s", backoff_max="40s", repeat_interval="0")
    env.hook.status = 400
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    env.pump()
    assert _rows(env.conn, "SELECT status, attempts FROM notifications WHERE channel = 'hook'") == [("dead", 1)]
    env.hook.status = 503
    raise_alarm(env.conn, env.points["TT-101"], env.clock.now(), rule_id="bm.coal.temp")
    env.advance(600, step=1)
    rows = _rows(env.conn, """SELECT d.attempt, extract(epoch FROM d.started_at) FROM deliveries d
                              JOIN notifications n ON n.id = d.notification_id
                              WHERE n.channel = 'hook' AND n.items ? %s ORDER BY d.attempt""",
                 f"alarm:bm.coal.temp|p:{env.points['TT-101']}")
    gaps = [float(b[1]) - float(a[1]) for a, b in zip(rows, rows[1:], strict=False)]
    assert len(rows) == 4  # max_attempts
    for k, gap in enumerate(gaps, 1):  # equal jitter: between half and all of min(cap, 10 s * 2^(k-1))
        full = min(40.0, 10.0 * 2 ** (k - 1))
        assert full / 2 - 1 <= gap <= full + 1, gaps
    assert _rows(env.conn, "SELECT status FROM notifications WHERE channel = 'hook' AND attempts = 4") == [("dead",)]


def test_a_ticket_step_stops_reminders_of_its_earlier_notices_even_within_one_batch(env: Env) -> None:
    env.dispatcher(repeat_interval="10m")
    bureau = Actor("局值班员", "bureau")
    tid = ledger.open_ticket(env.conn, ledger.NewTicket(
        source=workflow.Source.PUBLIC_TIP, enterprise_id="ent-a", title="粉尘清扫记录造假", plant_id="plant-a",
        reporter_name="匿名"), bureau, env.clock.now())
    env.pump()
    # one routing batch: a new alarm joins the ticket's group, and the ticket is confirmed
    raise_alarm(env.conn, env.points["CO-101"], env.clock.now())
    ledger.act(env.conn, tid, workflow.Confirm("属实"), bureau, env.clock.now())
    # an inspection finding opens confirmed: opened and confirmed in one transaction
    ledger.open_ticket(env.conn, ledger.NewTicket(
        source=workflow.Source.INSPECTION, enterprise_id="ent-a", title="泄爆口朝向人员通道", plant_id="plant-a",
        inspection_team="县督导组"), bureau, env.clock.now())
    env.pump()
    env.advance(25 * 60, step=30)
    reminded = [i["item"] for r in env.hook.requests if r.json()["data"]["kind"] == "reminder"
                for i in r.json()["data"]["items"]]
    assert reminded, "the alarm and the confirmed tickets are reminded"
    assert not [i for i in reminded if i.endswith(":opened")], reminded
    assert f"hazard:{tid}:confirmed" in reminded
