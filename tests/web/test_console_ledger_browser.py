"""The ledger flow in a real browser (issue 13, acceptance criteria 1–2): Debian's Chromium, headless, driven by
Playwright, against `riskwatch serve` on real TimescaleDB and Mosquitto (TLS).

A duty officer sees a scenario breach (published through MQTT by the gateway simulator) on the board and
acknowledges it; the candidate hazard it opened is confirmed from the queue after its evidence chart has
rendered. The plant's enterprise officer sees the confirmed hazard, files an incomplete 五落实 plan (the
missing fields are shown), then a complete one, starts, uploads a photo, submits. A duty officer sees no
verify button and a forged verify is refused; a section chief verifies and closes. The 动态清零 count goes
0 → 1 → 0. Another enterprise's officer, crawling every page it can reach, never sees the ticket, its
enterprise or its photo. Desktop and 390×844; one screenshot per page under .riskwatch/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from core.services import LocalMosquitto
from hazards.risk.evaluate import Inputs, fires
from hazards.risk.model import LEVEL_ORDER, default_model
from simulators.run import simulate
from simulators.scenarios import SCENARIOS
from tests.conftest import Site, sql_one, wait_for
from tests.web import test_console_browser as cb
from tests.web.test_console_browser import VIEWPORTS, Server, Shots, fits, live, login, new_context, session_cookie
from tests.web.test_console_ledger_http import png

pytestmark = [pytest.mark.integration, pytest.mark.slow]
playwright, browser = cb.playwright, cb.browser  # the module-scoped Chromium fixtures, shared

RULE = "mach.cooling.interlock"
PLANT_ENTERPRISE, OTHER_ENTERPRISE = "dy-foundry", "qsl-cement"
PLANT_NAME = "鼎业铸造"
USERS = {"duty": ("duty_officer", None, "王值班"), "chief": ("section_chief", None, "李科长"),
         "dy": ("enterprise_officer", PLANT_ENTERPRISE, "鼎业安全员"),
         "qsl": ("enterprise_officer", OTHER_ENTERPRISE, "青石岭安全员")}


@pytest.fixture
def served(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[tuple[Server, Site]]:
    yield from cb.serve_site(db_url, broker, tmp_path, USERS)


def open_now(page: Page, shot: Shots, name: str) -> int:
    page.goto("/console/reports/clearance")
    expect(page.locator("h1")).to_have_text("动态清零")
    expect(page.locator("[data-testid=clearance-chart]")).to_have_attribute("data-rendered", "1", timeout=10_000)
    shot(page, name)
    return int(page.locator("[data-testid=open-major-now]").inner_text())


# every series of a readings chart as ECharts holds it: name, y axis, the limit lines drawn on it, its extremes
SERIES = """el => echarts.getInstanceByDom(el).getOption().series.map(s => ({
  name: s.name, axis: s.yAxisIndex || 0,
  max: Math.max(...s.data.map(r => r[1])), min: Math.min(...s.data.map(r => r[1])),
  y: ((s.markLine || {}).data || []).filter(d => d.yAxis !== undefined).map(d => d.yAxis)}))"""

#: The card colour (its top border) of each risk level, as console.css draws it.
RISK_COLOURS = {"red": "rgb(198, 40, 40)", "orange": "rgb(239, 108, 0)", "yellow": "rgb(249, 168, 37)",
                "blue": "rgb(21, 101, 192)"}
MAJOR_OPEN = "项已确认重大事故隐患未销号"


#: The card's level and reasons read in one step: the board refreshes itself, so two reads could see two renders.
CARD = """e => [e.dataset.level, [...e.querySelectorAll('[data-testid=risk-reasons] li')].map(li => li.innerText)]"""


def level_of(reasons: list[str]) -> str:
    """The level the rating model gives a card that shows these reasons, read from the texts alone: each is one
    condition's template filled in with the enterprise's figure, and speaks for the most severe level whose
    condition it matches and fires at that figure (2 open major hazards: red, not orange); the card's level is
    the most severe of those, blue when none. So a card's colour can be checked against the inputs it was drawn
    from, whatever moment that was."""
    model, order = default_model(), [lv.value for lv in LEVEL_ORDER]
    levels: list[str] = []
    for text in reasons:
        owners: list[str] = []
        for spec in model.levels:
            for c in spec.conditions:
                pattern = (re.escape(c.reason).replace(r"\{value\}", r"(?P<value>[0-9.]+)")
                           .replace(r"\{threshold\}", r"[0-9.]+").replace(r"\{hours\}", r"[0-9]+"))
                m = re.fullmatch(pattern, text)
                figure: dict[str, Any] = {c.input: float(m["value"])} if m else {}
                if m and fires(c, Inputs(**figure)):
                    owners.append(spec.level.value)
        assert owners, f"not a sentence of the rating model: {text!r}"
        levels.append(min(owners, key=order.index))
    return min(levels, key=order.index) if levels else "blue"


def card_state(page: Page) -> tuple[str, list[str]]:
    """The plant enterprise's card on the open board, as drawn now: (level, reasons)."""
    level, reasons = page.locator(f'article.risk-card[data-enterprise="{PLANT_ENTERPRISE}"]').evaluate(CARD)
    return str(level), [str(r).strip() for r in reasons]


def risk_card(page: Page, shot: Shots, name: str) -> tuple[str, list[str]]:
    """The plant enterprise's card on /console/risk: its level (checked against the colour drawn) and reasons."""
    page.goto("/console/risk")
    expect(page.locator("h1")).to_have_text("企业风险")
    card = page.locator(f'article.risk-card[data-enterprise="{PLANT_ENTERPRISE}"]')
    expect(card).to_be_visible()
    expect(card.locator("h2")).to_contain_text(PLANT_NAME)
    shot(page, name)
    fits(page)
    level, reasons = card_state(page)
    assert card.evaluate("e => getComputedStyle(e).borderTopColor") == RISK_COLOURS[level], level
    assert level == level_of(reasons), (level, reasons)  # the colour is the one its reasons give
    return level, reasons


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_ledger_flow_in_chromium(viewport: str, served: tuple[Server, Site], browser: Browser,
                                 tmp_path: Path) -> None:
    s, site = served
    shot = Shots(viewport)
    offsite: list[str] = []
    duty_ctx, dy_ctx, chief_ctx, qsl_ctx = (new_context(browser, viewport, s.base, offsite) for _ in range(4))

    duty = duty_ctx.new_page()
    login(duty, "duty")
    live(duty)
    assert open_now(duty, shot, "clearance-before") == 0
    duty.goto("/console/")
    live(duty)

    # --- a breach through MQTT: the alarm on the board, acknowledged ---------------------------------
    sc = SCENARIOS["cooling_water_leak"]
    end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
    start_ms = int(time.time() * 1000) - int((end_s + 30) * 1000)
    res = simulate(site.spec, "127.0.0.1", site.broker.state.mqtt_port, site.credentials, duration_s=end_s,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=start_ms, scenario=sc, seed=5,
                   tls=site.tls)
    assert res.acked
    row = duty.locator(f'li.alarm[data-rule="{RULE}"]').first
    expect(row).to_be_visible(timeout=60_000)
    row.locator("input[name=comment]").fill("已通知企业停炉检查")
    row.get_by_role("button", name="确认", exact=True).click()
    expect(duty.locator("h1")).to_have_text("实时报警看板")
    # the board was already on screen before the click, so the heading says nothing about the POST: wait for it
    wait_for(lambda: sql_one(site.db_url, "SELECT acked_by FROM alarms WHERE rule_id = %s", (RULE,)) == "duty",
             timeout=15, message="the acknowledgement committed")

    # --- the candidate it opened, confirmed from the queue once its evidence chart has rendered -------
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM hazards WHERE rule_id = %s", (RULE,)) == 1,
             timeout=20, message="the candidate's ticket")
    hid = int(str(sql_one(site.db_url, "SELECT id FROM hazards WHERE rule_id = %s", (RULE,))))
    duty.click("nav a[href='/console/candidates']")
    expect(duty.locator("h1")).to_have_text("候选隐患")
    card = duty.locator(f'article.candidate[data-hazard="{hid}"]')
    expect(card.locator(".basis")).to_contain_text("第七条")
    expect(card.locator(".where")).to_contain_text(PLANT_NAME)
    chart = card.locator("[data-testid=evidence-chart]").first
    expect(chart).to_have_attribute("data-rendered", "1", timeout=10_000)
    assert chart.locator("canvas").count() >= 1
    # drawn as the rule judges: the inlet meter on the left axis with no limit on its ~36 m3/h, and the Δ
    # inlet − outlet on the right axis with its 3 m3/h limit, which the leak crossed in the window
    inlet, delta = chart.evaluate(SERIES)
    assert (inlet["name"], inlet["axis"], inlet["y"]) == ("FT-601", 0, []) and inlet["min"] > 20, inlet
    assert (delta["name"], delta["axis"], delta["y"]) == ("Δ FT-601 − FT-602", 1, [3]), delta
    assert delta["max"] >= 3 > delta["min"], delta
    shot(duty, "candidates")
    card.locator("form[action$='/act/confirm'] input[name=comment]").fill("联锁未动作，确认为重大事故隐患")
    card.get_by_test_id("confirm").click()
    expect(duty.locator(f'article.candidate[data-hazard="{hid}"]')).to_have_count(0)
    assert sql_one(site.db_url, "SELECT status FROM hazards WHERE id = %s", (hid,)) == "confirmed"
    shot(duty, "candidates-after-confirm")
    assert open_now(duty, shot, "clearance-confirmed") == 1
    level_confirmed, why = risk_card(duty, shot, "risk-confirmed")
    assert "1 " + MAJOR_OPEN in why and level_confirmed in ("orange", "red"), (level_confirmed, why)

    # --- the enterprise officer: plan (incomplete first), start, photo, submit -------------------------
    dy = dy_ctx.new_page()
    login(dy, "dy")
    dy.click("nav a[href='/console/hazards']")
    expect(dy.locator("h1")).to_have_text("隐患台账")
    shot(dy, "hazards-enterprise")
    dy.locator(f'tr[data-hazard="{hid}"] a').first.click()
    expect(dy.locator("[data-testid=hazard-status]")).to_have_attribute("data-status", "confirmed")
    shot(dy, "hazard-confirmed")
    plan = dy.locator("form[data-action=file_plan]")
    plan.locator("input[name=responsible_person]").fill("王强（设备部经理）")
    plan.locator("input[name=funds_yuan]").fill("85000")
    plan.get_by_role("button").click()
    expect(dy.locator("[data-testid=form-error]")).to_contain_text("整改措施")
    missing = dy.locator("form[data-action=file_plan] label.missing")
    expect(missing).to_have_count(3)  # measures, deadline, contingency plan
    assert sorted(missing.evaluate_all("ls => ls.map(l => l.dataset.field)")) == [
        "contingency_plan", "deadline", "measures"]
    shot(dy, "plan-incomplete")
    assert sql_one(site.db_url, "SELECT status FROM hazards WHERE id = %s", (hid,)) == "confirmed"
    plan = dy.locator("form[data-action=file_plan]")
    assert plan.locator("input[name=responsible_person]").input_value() == "王强（设备部经理）"  # kept
    plan.locator("textarea[name=measures]").fill("更换回水管路，加装流量差联锁断电装置")
    plan.locator("input[name=deadline]").fill((date.today() + timedelta(days=60)).isoformat())
    plan.locator("textarea[name=contingency_plan]").fill("整改期间停用1#中频炉，专人值守")
    plan.get_by_role("button").click()
    expect(dy.locator("[data-testid=hazard-status]")).to_have_attribute("data-status", "plan_filed")
    expect(dy.locator("[data-testid=plan]")).to_contain_text("更换回水管路")
    dy.locator("form[data-action=start_rectification] button").click()
    expect(dy.locator("[data-testid=hazard-status]")).to_have_attribute("data-status", "rectifying")
    photo = tmp_path / "整改后.png"
    photo.write_bytes(png(40, 30))
    dy.locator("[data-testid=upload] input[type=file]").set_input_files(str(photo))
    dy.locator("[data-testid=upload] input[name=note]").fill("回水管路更换后")
    dy.locator("[data-testid=upload] button").click()
    img = dy.locator("img.photo").first
    expect(img).to_be_visible()
    wait_for(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 40, timeout=10, message="photo shown")
    file_href = dy.locator("[data-testid=file-link]").first.get_attribute("href")
    assert file_href
    shot(dy, "hazard-photo")
    dy.locator("form[data-action=submit] input[name=comment]").fill("已更换回水管路并完成联锁调试")
    dy.locator("form[data-action=submit] button").click()
    expect(dy.locator("[data-testid=hazard-status]")).to_have_attribute("data-status", "submitted")
    expect(dy.locator("form[data-action=verify]")).to_have_count(0)
    shot(dy, "hazard-submitted")
    fits(dy)
    # rectified: the furnace runs normally again, and its interlock alarm returns to normal
    res = simulate(site.spec, "127.0.0.1", site.broker.state.mqtt_port, site.credentials, duration_s=60,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False, start_ms=int(time.time() * 1000) - 61_000,
                   gateways=list(sc.gateways), seed=5, tls=site.tls)
    assert res.acked
    wait_for(lambda: sql_one(site.db_url, "SELECT state FROM alarms WHERE rule_id = %s", (RULE,)) == "normal",
             timeout=30, message="the interlock alarm back to normal")

    # --- a duty officer cannot close it: no button, and a forged verify is refused -------------------
    duty.goto(f"/console/hazards/{hid}")
    expect(duty.locator("[data-testid=hazard-status]")).to_have_attribute("data-status", "submitted")
    expect(duty.locator("form[data-action=verify]")).to_have_count(0)
    expect(duty.locator("form[data-action=send_back]")).to_have_count(1)
    shot(duty, "hazard-duty")
    token = duty.locator("form[data-action=send_back] input[name=csrf]").input_value()
    forged = httpx.post(f"{s.base}/console/hazards/{hid}/act/verify", data={"csrf": token, "comment": "越权销号"},
                        cookies={"rw_session": session_cookie(duty_ctx)})
    assert forged.status_code == 403 and "科长" in forged.text
    assert sql_one(site.db_url, "SELECT status FROM hazards WHERE id = %s", (hid,)) == "submitted"
    duty.goto("/console/risk")  # left open: the board must change by itself once the chief closes the ticket
    duty_card = duty.locator(f'article.risk-card[data-enterprise="{PLANT_ENTERPRISE}"]')
    expect(duty_card.locator("[data-testid=risk-reasons]")).to_contain_text(MAJOR_OPEN)

    # --- the section chief verifies and closes ----------------------------------------------------------
    chief = chief_ctx.new_page()
    login(chief, "chief")
    chief.goto(f"/console/hazards/{hid}")
    img = chief.locator("img.photo").first
    wait_for(lambda: img.evaluate("i => i.complete && i.naturalWidth") == 40, timeout=10, message="photo (chief)")
    chief.locator("form[data-action=verify] input[name=comment]").fill("现场核查合格，准予销号")
    chief.locator("form[data-action=verify] button").click()
    expect(chief.locator("[data-testid=hazard-status]")).to_have_attribute("data-status", "closed")
    timeline = chief.locator("[data-testid=timeline]")
    for who in ("duty", "dy", "chief"):
        expect(timeline.locator(".actor", has_text=re.compile(f"^{who}$")).first).to_be_visible()
    shot(chief, "hazard-closed")
    assert open_now(chief, shot, "clearance-after-close") == 0
    fits(chief)
    level_closed, why = risk_card(chief, shot, "risk-after-close")
    assert not any(MAJOR_OPEN in r for r in why), why
    # no open major hazard and no active urgent alarm left: the colour drops (to yellow while the sample
    # site's data availability is below 90 % — the availability reason — or to blue)
    assert level_closed in ("yellow", "blue") and level_confirmed in ("orange", "red"), (level_closed, why)
    expect(duty_card.locator("[data-testid=risk-reasons]")).not_to_contain_text(MAJOR_OPEN, timeout=40_000)
    # The duty officer's board is drawn later than the chief's card (its 30 s poll), and the availability input
    # moves in between: serve recomputes it every 30 s (AvailabilityCache), and a new site's share jumps from
    # 0 % (points registered, nothing arrived yet) to 100 % when the cache first sees the scenario's readings,
    # then sinks as the readings age. So the chief's yellow may honestly be the duty board's blue a few seconds
    # later. What holds at every moment: the colour is the one the reasons drawn with it give, without the
    # closed ticket, and it is never above yellow.
    level_live, why_live = card_state(duty)
    assert not any(MAJOR_OPEN in r for r in why_live), why_live
    assert level_live == level_of(why_live) and level_live in ("yellow", "blue"), (level_live, why_live)
    shot(duty, "risk-live-after-close")
    dy.goto("/console/risk")  # the enterprise's own board: its card only
    expect(dy.locator("article.risk-card")).to_have_count(1)
    level_own, why_own = card_state(dy)
    assert level_own == level_of(why_own) and level_own in ("yellow", "blue"), (level_own, why_own)
    shot(dy, "risk-enterprise")
    fits(dy)

    # --- the other enterprise: its crawl never meets dy's ticket, name, plant or photo -----------------
    qsl = qsl_ctx.new_page()
    login(qsl, "qsl")
    secrets = (PLANT_ENTERPRISE, PLANT_NAME, "gw-fdy-01", RULE, f"/hazards/{hid}")
    cookies = {"rw_session": session_cookie(qsl_ctx)}
    seen: dict[str, int] = {}
    todo = ["/console/"]
    with httpx.Client(base_url=s.base, cookies=cookies, timeout=10) as c:
        while todo:
            path = todo.pop()
            if path in seen or len(seen) > 100:
                continue
            r = c.get(path)
            seen[path] = r.status_code
            if not r.headers.get("content-type", "").startswith("text/html"):
                continue
            for secret in secrets:
                assert secret not in r.text, (path, secret)
            for ref in re.findall(r'(?<![\w-])(?:href|src|data-rows)="([^"]+)"', r.text):
                u = urlsplit(urljoin(s.base + path, ref.replace("&amp;", "&")))
                if u.path.startswith("/console/") and "/lang/" not in u.path and "/static/" not in u.path:
                    todo.append(u.path + (f"?{u.query}" if u.query else ""))
        assert "/console/hazards" in seen and "/console/reports/clearance" in seen and "/console/risk" in seen
        assert c.get(f"/console/hazards/{hid}").status_code == 404
        assert c.get(file_href).status_code == 404
    for name in ("hazards", "reports/clearance", "risk"):
        qsl.goto(f"/console/{name}")
        html = qsl.content()
        assert PLANT_NAME not in html and PLANT_ENTERPRISE not in html
        shot(qsl, f"{name.replace('/', '-')}-other-enterprise")
        fits(qsl)
    qsl.goto(f"/console/hazards/{hid}")
    shot(qsl, "hazard-other-enterprise-404")
    assert PLANT_NAME not in qsl.content()

    assert offsite == [], offsite
    for ctx in (duty_ctx, dy_ctx, chief_ctx, qsl_ctx):
        ctx.close()


def test_a_note_being_written_survives_a_board_refresh_in_flight(served: tuple[Server, Site], browser: Browser) -> None:
    """The acknowledgement above once failed with the duty officer's note gone: a rows fetch already in flight when
    the officer began typing swapped the row in afterwards (the board checks "typing?" when a fetch starts), and
    the click then submitted the fresh form's empty, `required` note — nothing. Here that fetch is held in flight
    on purpose (the browser routes the rows URL to the test, which releases it once the note is typed): the note
    must still be there when the fetch lands, and the acknowledgement must carry it. Without the board's
    `htmx:beforeSwap` guard (static/console.js) the note reads '' here."""
    s, site = served
    ctx = new_context(browser, "desktop", s.base, [])
    duty = ctx.new_page()
    login(duty, "duty")
    live(duty)
    sc = SCENARIOS["cooling_water_leak"]
    end_s = max(e.at_s + e.latest_s for e in sc.expects) + 30
    res = simulate(site.spec, "127.0.0.1", site.broker.state.mqtt_port, site.credentials, duration_s=end_s,
                   rate_hz=1.0, batch=50, log_path=None, realtime=False,
                   start_ms=int(time.time() * 1000) - int((end_s + 30) * 1000), scenario=sc, seed=5, tls=site.tls)
    assert res.acked
    row = duty.locator(f'li.alarm[data-rule="{RULE}"]').first
    expect(row).to_be_visible(timeout=60_000)
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM hazards WHERE rule_id = %s", (RULE,)) == 1,
             timeout=20, message="the scenario's last transitions committed")  # no stray refresh of our own
    duty.wait_for_timeout(1500)  # and the refreshes they caused have landed

    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    duty.route("**/console/board/rows*", hold)  # the fetch leaves the page and waits for us
    duty.evaluate("""() => { window.__answered = 0;
                             document.addEventListener("htmx:afterRequest", () => { window.__answered += 1; }); }""")
    # a refresh as the board's own event handler issues it, started before the officer types
    duty.evaluate("""() => { htmx.ajax("GET", document.getElementById("board").dataset.rows,
                                       {target: document.getElementById("alarm-rows"), swap: "innerHTML"}); }""")
    for _ in range(100):  # Playwright calls route handlers only while the test is in one of its calls
        if held:
            break
        duty.wait_for_timeout(100)
    assert held, "the rows fetch never left the page"
    note = "冷却水回水管路泄漏，已通知停炉"
    row.locator("input[name=comment]").click()
    row.locator("input[name=comment]").press_sequentially(note, delay=10)
    held[0].continue_()  # it lands now, the note half-way to being sent
    duty.wait_for_function("() => window.__answered >= 1", timeout=10_000)
    assert row.locator("input[name=comment]").input_value() == note
    row.get_by_role("button", name="确认", exact=True).click()
    wait_for(lambda: sql_one(site.db_url, "SELECT ack_comment FROM alarms WHERE rule_id = %s", (RULE,)) == note,
             timeout=15, message="the acknowledgement with the note")
    duty.unroute("**/console/board/rows*")
    # once the note is left, the held-back refresh runs: the row shows the acknowledgement
    expect(duty.locator(f'li.alarm[data-rule="{RULE}"] .acked').first).to_contain_text(note, timeout=15_000)
    ctx.close()
