"""Disposal feedback, production stops and the board's trend in a real browser (issue 13): Debian's Chromium,
headless, driven by Playwright, against `riskwatch serve` on real TimescaleDB and Mosquitto (TLS).

A scenario breach (gas-main overpressure at the refractory plant) is published through MQTT by the gateway
simulator; its alarm appears on the duty officer's board with the trend of its point drawn (canvas, the
rule's limits as lines, the activation marked). The plant's officer follows the row's "填写处置反馈" link,
submits an incomplete feedback (the error is shown, what was typed kept), then a complete one; the duty
officer sees cause, measures, who and when, and the per-enterprise statistics. The officer files a
production stop; the duty officer approves it; both see the audit trail. Desktop and 390×844, every page
fitting the viewport, one screenshot per page under .riskwatch/screenshots/{viewport}/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError

from core.services import LocalMosquitto
from simulators.run import simulate
from simulators.scenarios import SCENARIOS
from tests.conftest import Site, sql_one, wait_for
from tests.web import test_console_browser as cb
from tests.web.test_console_browser import VIEWPORTS, Server, Shots, live, login, new_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]
playwright, browser = cb.playwright, cb.browser  # the module-scoped Chromium fixtures, shared

RULE = "bm.gas.pressure:hi"  # threshold rule: limits lo 6 and hi 10 kPa on PT-501
PLANT_ENTERPRISE, PLANT_NAME = "hx-refractory", "恒鑫耐材一厂"
USERS = {"duty": ("duty_officer", None, "王值班"), "hx": ("enterprise_officer", PLANT_ENTERPRISE, "恒鑫安全员")}
MEASURES = "关闭燃气总阀，检修调压阀后恢复供气"

LIMIT_LINES = """el => {
  const c = echarts.getInstanceByDom(el);
  const data = ((c.getOption().series[0] || {}).markLine || {}).data || [];
  return {y: data.filter(d => d.yAxis !== undefined).map(d => d.yAxis),
          x: data.filter(d => d.xAxis !== undefined).length};
}"""


T = TypeVar("T")


def again(fn: Callable[[], T], tries: int = 6) -> T:
    """`fn` once more after a short pause when the board re-rendered the element it held (a live page)."""
    for i in range(tries):
        try:
            return fn()
        except PlaywrightError as exc:
            if i == tries - 1 or "not attached" not in str(exc) and "detached" not in str(exc):
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


@pytest.fixture
def served(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[tuple[Server, Site]]:
    yield from cb.serve_site(db_url, broker, tmp_path, USERS)


def fits(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), page.url


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_disposal_and_stops_in_chromium(viewport: str, served: tuple[Server, Site], browser: Browser) -> None:
    s, site = served
    shot = Shots(viewport)
    offsite: list[str] = []
    duty_ctx, hx_ctx = (new_context(browser, viewport, s.base, offsite) for _ in range(2))
    duty, hx = duty_ctx.new_page(), hx_ctx.new_page()
    login(duty, "duty")
    login(hx, "hx")
    live(duty)
    live(hx)

    # --- a breach through MQTT: on the board, with its point's trend and the rule's limits ----------------
    sc = SCENARIOS["gas_overpressure_esv_stuck"]
    end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
    start_ms = int(time.time() * 1000) - int((end_s + 30) * 1000)
    res = simulate(site.spec, "127.0.0.1", site.broker.state.mqtt_port, site.credentials, duration_s=end_s,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=start_ms, scenario=sc, seed=5,
                   tls=site.tls)
    assert res.acked
    row = duty.locator(f'li.alarm[data-rule="{RULE}"]').first
    expect(row).to_be_visible(timeout=60_000)
    expect(row.locator(".where")).to_contain_text(PLANT_NAME)
    # the board is re-rendered on every event of the breach: wait until it is quiet, then for the chart
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM alarm_disposals WHERE rule_id = %s", (RULE,)) == 1,
             timeout=20, message="the disposal the activation opened")
    # an event still in flight re-renders the row under us: a detached element is tried again, not a failure
    again(row.scroll_into_view_if_needed)
    chart = row.locator("[data-testid=trend-chart]")
    expect(chart).to_have_attribute("data-rendered", "1", timeout=15_000)
    assert again(lambda: chart.locator("canvas").count()) >= 1
    lines = again(lambda: (expect(chart).to_have_attribute("data-rendered", "1", timeout=15_000),
                           chart.evaluate(LIMIT_LINES))[1])
    assert sorted(lines["y"]) == [6.0, 10.0] and lines["x"] >= 1, lines  # limits lo/hi, the activation marked
    expect(row.locator("[data-testid=disposal-link]")).to_have_text("待企业处置反馈")
    shot(duty, "board-trend")
    fits(duty)

    # --- the plant's officer: the row's link to its disposal form; incomplete, then complete -----------------
    hx_row = hx.locator(f'li.alarm[data-rule="{RULE}"]').first
    expect(hx_row).to_be_visible(timeout=10_000)
    link = hx_row.locator("[data-testid=disposal-link]")
    expect(link).to_have_text("填写处置反馈")
    link.click()
    form = hx.locator("[data-testid=feedback-form]")
    expect(form).to_be_visible()
    shot(hx, "disposal-form")
    form.locator("select[name=cause]").select_option("equipment_fault")
    form.locator("input[name=handled_by]").fill("赵德明")
    form.get_by_role("button").click()
    expect(hx.locator("[data-testid=form-error]")).to_contain_text("请填写处置措施")
    expect(form.locator("input[name=handled_by]")).to_have_value("赵德明")  # kept
    expect(form.locator("select[name=cause]")).to_have_value("equipment_fault")
    shot(hx, "disposal-form-error")
    fits(hx)
    form.locator("textarea[name=measures]").fill(MEASURES)
    form.get_by_role("button").click()
    expect(hx.locator("[data-testid=cause]")).to_have_text("设备故障")
    expect(hx.locator("[data-testid=measures]")).to_have_text(MEASURES)
    shot(hx, "disposal-answered")
    assert sql_one(site.db_url, "SELECT handled_by FROM alarm_disposals WHERE rule_id = %s", (RULE,)) == "赵德明"

    # --- the duty officer sees the feedback: cause, measures, who, when; and the statistics -----------------
    duty.goto("/console/disposal?status=answered")
    expect(duty.locator("h1")).to_have_text("处置反馈")
    answered = duty.locator("table.disposals tbody tr[data-answered='1']")
    expect(answered).to_have_count(1)
    expect(answered).to_contain_text("设备故障")
    expect(answered).to_contain_text("恒鑫安全员（hx）")
    expect(duty.locator("[data-testid=disposal-stats] tr[data-enterprise='hx-refractory']")).to_be_visible()
    shot(duty, "disposal-list")
    fits(duty)
    answered.locator("a").first.click()
    expect(duty.locator("[data-testid=feedback-actor]")).to_contain_text("恒鑫安全员（hx）")
    expect(duty.locator("[data-testid=handled-by]")).to_have_text("赵德明")
    expect(duty.locator("[data-testid=disposal-timeline] li[data-event=disposal_feedback]")).to_have_count(1)
    shot(duty, "disposal-bureau")
    fits(duty)

    # --- a production stop: filed by the officer, approved by the duty officer, audited ------------------------
    hx.click("nav a[href='/console/stops']")
    expect(hx.locator("h1")).to_have_text("停产报备")
    stop_form = hx.locator("[data-testid=stop-form]")
    assert stop_form.locator("select[name=plant_id] option").count() == 1  # only its own plant
    stop_form.locator("textarea[name=reason]").fill("电熔炉年度检修，全厂停产")
    shot(hx, "stops")
    fits(hx)
    stop_form.get_by_role("button").click()
    expect(hx.locator("[data-testid=stop-status]")).to_have_attribute("data-status", "filed")
    sid = int(sql_one(site.db_url, "SELECT max(id) FROM production_stops"))  # type: ignore[arg-type]
    expect(hx.locator("form[data-action=approve]")).to_have_count(0)  # an enterprise never decides
    shot(hx, "stop-filed")

    duty.goto("/console/stops?status=filed")
    duty.locator(f'tr[data-stop="{sid}"] a').click()
    approve = duty.locator("form[data-action=approve]")
    approve.locator("input[name=comment]").fill("同意，停产期间保持燃气总阀关闭")
    approve.get_by_role("button").click()
    expect(duty.locator("[data-testid=stop-status]")).to_have_attribute("data-status", "approved")
    expect(duty.locator("[data-testid=stop-trail] li")).to_have_count(2)
    shot(duty, "stop-approved")
    fits(duty)
    hx.reload()
    expect(hx.locator("[data-testid=stop-status]")).to_have_attribute("data-status", "approved")
    expect(hx.locator("[data-testid=decided]")).to_contain_text("王值班（duty）")
    shot(hx, "stop-approved-enterprise")
    fits(hx)

    assert offsite == [], offsite
    assert set(shot.taken) == {"board-trend", "disposal-form", "disposal-form-error", "disposal-answered",
                               "disposal-list", "disposal-bureau", "stops", "stop-filed", "stop-approved",
                               "stop-approved-enterprise"}
    for c in (duty_ctx, hx_ctx):
        c.close()
