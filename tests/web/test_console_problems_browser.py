"""The 数据问题 page in a real Chromium (desktop and 390x844) against `riskwatch serve` on real TimescaleDB and
Mosquitto: a gateway publishes readings of a tag nobody registered (mosquitto_pub, QoS1, TLS, the gateway's own
credentials), plus one message the collector must dead-letter; the plant's enterprise officer sees the tag
with its quarantined readings and the dead letter's reason in plain Chinese, maps the tag from the page, and
the quarantined readings are in `readings` (SQL) and the tag is gone from the list. The other enterprise's
officer never sees the tag. Screenshots under .riskwatch/screenshots/{viewport}/problems-*.png.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from core.services import LocalMosquitto
from tests.conftest import Site, pub_args, sql_one, wait_for
from tests.web import test_console_browser as cb
from tests.web.test_console_browser import VIEWPORTS, Server, Shots, fits, login, new_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]
playwright, browser = cb.playwright, cb.browser  # the module-scoped Chromium fixtures, shared

GATEWAY = "gw-fdy-01"  # 鼎业铸造's gateway in the default site
TAG = "NEW-TT-9"
N = 12
USERS = {"dy": ("enterprise_officer", "dy-foundry", "鼎业安全员"),
         "qsl": ("enterprise_officer", "qsl-cement", "青石岭安全员")}


@pytest.fixture
def served(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[tuple[Server, Site]]:
    yield from cb.serve_site(db_url, broker, tmp_path, USERS)


def publish(site: Site, payload: str) -> None:
    res = subprocess.run(["mosquitto_pub", *pub_args(site.broker), "-q", "1", "-u", GATEWAY,
                          "-P", site.credentials[GATEWAY], "-t", f"rw/v1/{GATEWAY}/telemetry", "-s"],
                         input=payload.encode(), capture_output=True, timeout=20)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_unknown_tag_mapped_from_the_page(viewport: str, served: tuple[Server, Site], browser: Browser) -> None:
    s, site = served
    shot = Shots(viewport)
    offsite: list[str] = []
    now_ms = int(time.time() * 1000)
    for i in range(N):  # one message per reading: N QoS1 messages over real MQTT
        publish(site, json.dumps({"ts": now_ms - (N - i) * 1000, "readings": [{"tag": TAG, "v": 40.0 + i}]}))
    publish(site, json.dumps({"readings": [{"tag": TAG, "v": 1.0, "ts": now_ms + 3_600_000}]}))  # clock far ahead
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM quarantined_readings WHERE tag = %s", (TAG,)) == N,
             message=f"{N} quarantined readings")
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM dead_letters WHERE reason = 'timestamp_out_of_range'")
             == 1, message="the dead letter")

    other = new_context(browser, viewport, s.base, offsite).new_page()
    login(other, "qsl")
    other.goto("/console/data-problems")
    expect(other.locator("h1")).to_have_text("数据问题")
    assert TAG not in other.content() and GATEWAY not in other.content()
    shot(other, "problems-other-enterprise")

    page = new_context(browser, viewport, s.base, offsite).new_page()
    login(page, "dy")
    page.click("nav a:has-text('数据问题')")
    expect(page.locator("h1")).to_have_text("数据问题")
    row = page.locator(f'tr[data-gateway="{GATEWAY}"][data-tag="{TAG}"]')
    expect(row).to_be_visible()
    expect(row.locator("[data-testid=quarantined]")).to_have_text(str(N))
    expect(page.locator('tr[data-reason="timestamp_out_of_range"]')).to_contain_text("请校准网关时间")
    fits(page)
    shot(page, "problems-before")

    row.locator("details.map-tag summary").click()
    form = row.locator("form[data-testid=map-form]")
    form.locator("select[name=device_id]").select_option(index=0)
    form.locator("input[name=quantity]").fill("temperature")
    form.locator("input[name=unit]").fill("degC")
    form.locator("input[name=name]").fill("新增温度")
    fits(page)
    shot(page, "problems-map-form")
    form.locator("button[type=submit]").click()
    expect(page.locator("[data-testid=notice]")).to_contain_text(f"回填读数 {N} 条")
    expect(page.locator(f'tr[data-tag="{TAG}"]')).to_have_count(0)
    fits(page)
    shot(page, "problems-after")

    pid = sql_one(site.db_url, "SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (GATEWAY, TAG))
    assert pid is not None
    assert sql_one(site.db_url, "SELECT count(*) FROM readings WHERE point_id = %s", (pid,)) == N
    assert sql_one(site.db_url, "SELECT count(*) FROM quarantined_readings WHERE tag = %s", (TAG,)) == 0
    # and the next live reading of the tag goes straight to readings
    publish(site, json.dumps({"ts": int(time.time() * 1000), "readings": [{"tag": TAG, "v": 99.0}]}))
    wait_for(lambda: sql_one(site.db_url, "SELECT count(*) FROM readings WHERE point_id = %s", (pid,)) == N + 1,
             message="the live reading after the map")
    assert sql_one(site.db_url, "SELECT count(*) FROM quarantined_readings") == 0
    assert not offsite, offsite
