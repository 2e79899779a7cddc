"""The notifications, interviews, reports and self-report pages in a real browser: Debian's Chromium, headless,
driven by Playwright, against `riskwatch serve` (API + console + collector + alerting dispatcher, one process)
on real TimescaleDB and Mosquitto, with a real loopback HTTP receiver as the alert webhook.

The receiver first refuses (403: a permanent failure), so the alarm's notification dies; the duty officer
finds it among the dead ones with its reason, the receiver is fixed, the officer presses 重试 and sees it
delivered (and the receiver got it). The officer records a 约谈 and downloads the monthly XLSX from the
reports page (it opens, with the API builder's sheets). The enterprise officer self-reports a hazard
(企业自查上报) from the ledger page and sees it in the ledger, and downloads the three-year evaluation, which
holds nothing of the other enterprise. At a desktop and at a 390×844 phone viewport, with no horizontal
scroll on any page; a screenshot of every page visited goes to .riskwatch/screenshots/{viewport}/pages-*.png.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from core.services import LocalMosquitto
from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.conftest import Site, sql_one, wait_for
from tests.fix_alerting import raise_alarm
from tests.web.test_console_browser import (  # noqa: F401 - fixtures
    OTHER_ENTERPRISE,
    OTHER_NAME,
    PASSWORD,
    PLANT_ENTERPRISE,
    VIEWPORTS,
    Server,
    Shots,
    browser,
    fits,
    login,
    new_context,
    playwright,
    site_with_users,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = {"duty": ("duty_officer", None, "王值班"), "dy": ("enterprise_officer", PLANT_ENTERPRISE, "鼎业安全员")}
RULE = "bm.coal.co:hi"


def routing(hook: HttpReceiver, smtp: SmtpSink) -> str:
    """Every alarm to the bureau's duty officer through the webhook, one attempt: a refusal is final (dead).
    Confirmed hazards also reach the enterprise's leaders by e-mail (the routing file must say so)."""
    return f"""
version: 1
timezone: Asia/Shanghai
defaults:
  group_by: [rule, subject]
  group_wait: 0s
  group_interval: 1m
  repeat_interval: 0
delivery:
  max_attempts: 1
  backoff_initial: 1s
  backoff_max: 5s
  ack_link_ttl: 24h
channels:
  email: {{type: smtp, host: 127.0.0.1, port: {smtp.port}, sender: "县工信局风险预警 <riskwatch@example.gov.cn>"}}
  hook: {{type: webhook, url: "{hook.url}/alerts", secret: "webhook-secret", timeout_s: 5}}
people:
  duty: {{name: 值班员张伟, email: duty@example.gov.cn, phone: "13900000001"}}
receivers:
  bureau-duty: {{to: [{{person: duty}}], via: [hook]}}
  enterprise-leaders: {{to: [{{enterprise: principal}}, {{enterprise: controller}}], via: [email]}}
routes:
  receiver: bureau-duty
  routes:
    - match: {{kind: hazard, event: [confirmed, supervised]}}
      receiver: [bureau-duty, enterprise-leaders]
"""


@pytest.fixture
def served(db_url: str, broker: LocalMosquitto, tmp_path: Path, http_receiver: HttpReceiver,
           smtp_sink: SmtpSink) -> Iterator[tuple[Server, Site, HttpReceiver]]:
    site = site_with_users(db_url, broker, USERS)
    path = tmp_path / "alerting.yaml"
    path.write_text(routing(http_receiver, smtp_sink), encoding="utf-8")
    http_receiver.status = 403
    s = Server(db_url, broker, tmp_path)
    s.env["RISKWATCH_ALERTING"] = str(path)
    s.start()
    yield s, site, http_receiver
    s.stop()


class Visit:
    """Screenshot every page visited (named after it) and check it has no horizontal scroll."""

    def __init__(self, viewport: str):
        self.shot = Shots(viewport)

    def __call__(self, page: Page, name: str) -> None:
        page.wait_for_load_state("networkidle")
        self.shot(page, f"pages-{name}")
        fits(page, (name, page.url))


def dy_point(db_url: str) -> tuple[int, str]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("""SELECT p.id, g.plant_id FROM points p JOIN gateways g ON g.id = p.gateway_id
                              JOIN plants pl ON pl.id = g.plant_id WHERE pl.enterprise_id = %s
                              ORDER BY p.id LIMIT 1""", (PLANT_ENTERPRISE,)).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def workbook_cells(path: str) -> dict[str, list[tuple[object, ...]]]:
    wb = openpyxl.load_workbook(io.BytesIO(Path(path).read_bytes()))  # a download's path has no extension
    return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_pages_in_chromium(viewport: str, served: tuple[Server, Site, HttpReceiver],
                           browser: Browser) -> None:  # noqa: F811 - the imported fixture
    s, site, hook = served
    visit = Visit(viewport)
    offsite: list[str] = []
    duty_ctx, dy_ctx = (new_context(browser, viewport, s.base, offsite) for _ in range(2))

    # --- an alarm whose notification dies against a refusing receiver -------------------------------
    point, plant = dy_point(site.db_url)
    with psycopg.connect(site.db_url, autocommit=True) as conn:
        raise_alarm(conn, point, time.time(), rule_id=RULE, plant=plant)
    dead = "SELECT min(id) FROM notifications WHERE status = 'dead' AND kind = 'firing'"
    wait_for(lambda: sql_one(site.db_url, dead) is not None, timeout=30,
             message="the notification dead after the receiver's 403")
    nid = sql_one(site.db_url, dead)
    assert len(hook.requests) >= 1

    duty = duty_ctx.new_page()
    login(duty, "duty")
    expect(duty.locator("h1")).to_have_text("实时报警看板")
    duty.click("nav.nav a[href='/console/notifications']")
    expect(duty.locator("h1")).to_have_text("通知")
    visit(duty, "notifications")
    duty.click("[data-testid=filter-dead]")
    card = duty.locator(f'li[data-notification="{nid}"]')
    expect(card).to_have_attribute("data-status", "dead")
    expect(card.locator("[data-testid=last-error]")).to_contain_text("403")
    expect(card).to_contain_text("hook")  # the channel; a webhook has no per-person address to mask
    visit(duty, "notifications-dead")

    # the receiver is fixed; the officer retries; the page shows it delivered
    hook.status = 200
    card.get_by_role("button", name="重试").click()
    expect(duty).to_have_url(re.compile(r".*/console/notifications\?status=dead$"))
    wait_for(lambda: sql_one(site.db_url, "SELECT status FROM notifications WHERE id = %s", (nid,)) == "sent",
             timeout=20, message="the retried notification delivered")
    duty.goto("/console/notifications")
    card = duty.locator(f'li[data-notification="{nid}"]')
    expect(card).to_have_attribute("data-status", "sent")
    expect(card.locator("[data-testid=note-status]")).to_have_text("已送达")
    expect(card.get_by_role("button", name="重试")).to_have_count(0)
    key = sql_one(site.db_url, "SELECT idempotency_key FROM notifications WHERE id = %s", (nid,))
    # the refused attempt and the retried one, with the same key (other notices may follow meanwhile)
    assert [r.headers["idempotency-key"] for r in hook.requests].count(key) == 2
    visit(duty, "notifications-retried")
    assert sql_one(site.db_url, "SELECT count(*) FROM audit_log WHERE actor = 'duty' AND changes->>'action' ="
                                " 'notification_retry'") == 1

    # --- a 约谈 recorded from the page --------------------------------------------------------------
    duty.click("nav.nav a[href='/console/interviews']")
    expect(duty.locator("h1")).to_have_text("约谈")
    visit(duty, "interviews")
    f = duty.locator("[data-testid=interview-form]")
    f.locator("select[name=enterprise_id]").select_option(PLANT_ENTERPRISE)
    f.locator("input[name=interviewer]").fill("县工信局 李局长")
    f.locator("input[name=interviewees]").fill("主要负责人 赵德明")
    f.locator("textarea[name=reason]").fill("冷却水报警通知未送达，约谈落实值守")
    f.locator("textarea[name=summary]").fill("责令完善报警联络人信息")
    f.get_by_role("button", name="保存约谈记录").click()
    expect(duty).to_have_url(re.compile(r".*/console/interviews/\d+$"))
    expect(duty.locator("[data-testid=interview]")).to_contain_text("主要负责人 赵德明")
    visit(duty, "interview")

    # --- the monthly XLSX, downloaded through the page ----------------------------------------------
    duty.click("nav.nav a[href='/console/reports']")
    expect(duty.locator("h1")).to_have_text("报表")
    visit(duty, "reports")
    with duty.expect_download() as dl:
        duty.locator("[data-testid=monthly-form] button").click()
    download = dl.value
    assert re.fullmatch(r"隐患月度汇总-\d{4}-\d{2}\.xlsx", download.suggested_filename), download.suggested_filename
    saved = download.path()
    assert saved is not None
    assert list(workbook_cells(str(saved)))[:2] == ["汇总 summary", "台账 ledger"]

    # --- the enterprise officer self-reports a hazard and sees it in the ledger ----------------------
    dy = dy_ctx.new_page()
    login(dy, "dy")
    expect(dy.locator("h1")).to_have_text("实时报警看板")
    dy.click("nav.nav a[href='/console/hazards']")
    expect(dy.locator("h1")).to_have_text("隐患台账")
    visit(dy, "hazards-enterprise")
    expect(dy.locator("nav.nav a[href='/console/notifications']")).to_have_count(0)
    dy.click("[data-testid=self-report-link]")
    expect(dy.locator("h1")).to_have_text("上报隐患")
    visit(dy, "self-report")
    form = dy.locator("[data-testid=self-report]")
    options = form.locator("select[name=plant_id] option")
    assert options.count() >= 2 and OTHER_NAME not in form.inner_text()
    form.locator("select[name=plant_id]").select_option(index=1)
    title = f"中频炉冷却水回水无流量监测 自查 {viewport}"
    form.locator("input[name=title]").fill(title)
    form.locator("textarea[name=description]").fill("月度自查发现回水管路流量计损坏")
    form.locator("input[name=basis]").fill("判定标准第七条第（四）项")
    form.get_by_role("button", name="上报").click()
    expect(dy).to_have_url(re.compile(r".*/console/hazards/\d+$"))
    expect(dy.locator("h1")).to_contain_text(title)
    expect(dy.locator("[data-testid=supervision-state]")).to_contain_text("未挂牌督办")
    expect(dy.locator("[data-testid=hazard-interviews]")).to_be_visible()  # loaded by htmx
    visit(dy, "self-reported-hazard")
    hid = int(dy.url.rsplit("/", 1)[1])
    assert sql_one(site.db_url, "SELECT source || ':' || enterprise_id || ':' || created_by FROM hazards"
                                " WHERE id = %s", (hid,)) == f"self_report:{PLANT_ENTERPRISE}:dy"
    dy.goto("/console/hazards")
    expect(dy.locator(f'tr[data-hazard="{hid}"]')).to_contain_text(title)
    visit(dy, "hazards-after-self-report")

    # the enterprise's own interviews and its evaluation workbook: nothing of the other enterprise
    dy.click("nav.nav a[href='/console/interviews']")
    expect(dy.locator("table.interviews")).to_contain_text("主要负责人 赵德明")
    visit(dy, "interviews-enterprise")
    dy.click("nav.nav a[href='/console/reports']")
    visit(dy, "reports-enterprise")
    with dy.expect_download() as dl:
        dy.locator("[data-testid=evaluation-link]").click()
    ev_path = dl.value.path()
    assert dl.value.suggested_filename == "三年行动评估-2024-2026.xlsx" and ev_path is not None
    flat = repr(workbook_cells(str(ev_path)))
    assert OTHER_ENTERPRISE not in flat and OTHER_NAME not in flat
    assert dy.goto("/console/notifications").status == 403  # type: ignore[union-attr]

    assert offsite == [], offsite
    assert len(visit.shot.taken) == 12
    for c in (duty_ctx, dy_ctx):
        c.close()
