"""Attaching a gateway in a real browser, and its first reading arriving on the points page without a reload.

Debian's Chromium (Playwright) against `riskwatch serve` on real TimescaleDB and the test's private Mosquitto
(TLS), registered as serve's own private broker so that the console's `broker_sync` regenerates its password
file exactly as in production. The enterprise officer of 鼎业铸造 attaches a gateway from the page, copies the
password with the copy button, reads the connection snippet off the page; a point is registered for it through
the API with a bureau token; the snippet itself — a real `mosquitto_pub` over TLS with exactly those
credentials, run by a shell next to the CA downloaded from the page — publishes a reading, which appears on
/console/points by the page's own polling. Rotating shows a new password: the old one is refused by the broker,
the new one accepted. Neither password is in serve's log or the audit table. At a desktop and at 390×844, with
a screenshot of every page and no horizontal scroll.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, expect

from api.http import auth
from core.services import LocalMosquitto
from tests.conftest import Site
from tests.web.test_console_browser import (  # noqa: F401 - fixtures
    PASSWORD,
    USERS,
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

ENTERPRISE = "dy-foundry"


@pytest.fixture
def served_private(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Iterator[tuple[Server, Site, str]]:
    """`served`, but serve's data dir is the broker's own: serve treats it as its private broker and wires
    `broker_sync` (the password file and ACL regenerated and the broker reloaded after every credential change)."""
    site = site_with_users(db_url, broker, USERS)
    with psycopg.connect(db_url, autocommit=True) as conn:
        _, bureau_token = auth.create_token(conn, "bureau", "网关测试核对")
    broker.state.save(tmp_path / "services.json")
    s = Server(db_url, broker, tmp_path)
    s.env["RISKWATCH_DATA_DIR"] = str(tmp_path)
    s.start()
    yield s, site, bureau_token
    s.stop()


def publish(snippet: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the page's snippet as a shell would (bash: it stamps the message with `date +%s%3N`)."""
    return subprocess.run(["bash", "-c", snippet], cwd=cwd, capture_output=True, text=True, timeout=20)


def with_password(snippet: str, old: str, new: str) -> str:
    assert f"-P {old} " in snippet
    return snippet.replace(f"-P {old} ", f"-P {new} ")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_attach_a_gateway_and_see_its_reading_live(viewport: str, served_private: tuple[Server, Site, str],
                                                   browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    s, site, bureau_token = served_private
    shot = Shots(viewport)
    offsite: list[str] = []
    ctx = new_context(browser, viewport, s.base, offsite)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=s.base)
    page = ctx.new_page()
    gw = f"gw-dy-h2-{viewport}"

    # --- the enterprise officer attaches a gateway -------------------------------------------------------
    login(page, "dy")
    page.goto("/console/gateways")
    expect(page.locator("h1")).to_have_text("网关")
    plants = page.locator("select[name=plant_id] option")
    assert plants.count() >= 1
    with psycopg.connect(s.env["RISKWATCH_DB_URL"]) as conn:
        own = {r[0] for r in conn.execute("SELECT id FROM plants WHERE enterprise_id = %s", (ENTERPRISE,))}
    offered = {plants.nth(i).get_attribute("value") for i in range(plants.count())}
    assert offered and offered <= own  # only its own plants are offered
    shot(page, "gateways")
    fits(page)
    plant = sorted(offered)[0]
    page.fill("input[name=id]", gw)
    page.fill("input[name=name]", "新增采集网关")
    page.select_option("select[name=plant_id]", plant)
    page.click("[data-testid=attach-form] button[type=submit]")
    expect(page.locator("[data-testid=password]")).to_be_visible()
    password = page.locator("[data-testid=password]").inner_text().strip()
    snippet = page.locator("[data-testid=snippet]").inner_text().strip()
    assert len(password) >= 24 and password not in page.url
    assert page.locator("[data-testid=username]").inner_text() == gw
    assert f"-h 127.0.0.1 -p {site.broker.state.mqtt_port} --cafile ca.crt -i {gw} -u {gw} -P {password} -q 1 " \
           f"-t rw/v1/{gw}/telemetry" in snippet
    page.locator("button[data-copy='#gw-password']").click()
    expect(page.locator("button[data-copy='#gw-password']")).to_have_attribute("data-state", "copied")
    assert page.evaluate("navigator.clipboard.readText()") == password
    shot(page, "gateway_secret")
    fits(page)

    # the CA the page links to, saved as the snippet expects it
    ca = page.request.get("/console/broker/ca.crt")
    assert ca.status == 200 and ca.body().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" not in ca.body()
    work = tmp_path / f"operator-{viewport}"
    work.mkdir()
    (work / "ca.crt").write_bytes(ca.body())

    # --- a point for it (through the API, as the bureau) -------------------------------------------------
    with psycopg.connect(s.env["RISKWATCH_DB_URL"]) as conn:
        device = conn.execute("SELECT id FROM devices WHERE plant_id = %s ORDER BY id LIMIT 1", (plant,)).fetchone()
    assert device is not None
    r = httpx.post(f"{s.base}/api/v1/points", headers={"Authorization": f"Bearer {bureau_token}"},
                   json={"device_id": device[0], "gateway_id": gw, "tag": "TT-101", "name": "新网关测试温度",
                         "quantity": "temperature", "unit": "degC"})
    assert r.status_code == 201, r.text

    # --- the points page, then the snippet publishes; the value appears by polling, without a reload -----
    page.goto(f"/console/points?gateway={gw}")
    row = page.locator(f"tr[data-gateway='{gw}'][data-tag='TT-101']")
    expect(row).to_have_attribute("data-status", "none")
    page.evaluate("window.__same_page = true")
    deadline = time.monotonic() + 60
    while True:  # the collector sees a new gateway at its next registry refresh (a few seconds)
        res = publish(snippet, work)
        assert res.returncode == 0, res.stderr
        try:
            expect(row.locator("[data-testid=value]")).to_have_text(re.compile(r"21\.5\s*degC"), timeout=6000)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    expect(row).to_have_attribute("data-status", "ok")
    assert page.evaluate("window.__same_page") is True  # no reload happened
    shot(page, "points")
    fits(page)
    with psycopg.connect(s.env["RISKWATCH_DB_URL"]) as conn:
        stored = conn.execute("""SELECT r.value FROM readings r JOIN points p ON p.id = r.point_id
                                 WHERE p.gateway_id = %s AND p.tag = 'TT-101'""", (gw,)).fetchall()
    assert stored and all(v == 21.5 for (v,) in stored)

    # --- the gateway page: online; rotate shows a new password, the old one stops working ---------------
    page.goto(f"/console/gateways/{gw}")
    expect(page.locator("[data-testid=gw-status]")).to_have_text("在线")
    shot(page, "gateway")
    fits(page)
    page.click("[data-testid=rotate]")
    expect(page.locator("[data-testid=password]")).to_be_visible()
    rotated = page.locator("[data-testid=password]").inner_text().strip()
    assert rotated != password
    shot(page, "gateway_rotated")
    old = publish(snippet, work)
    assert old.returncode != 0, "the old password still works"
    new = publish(with_password(snippet, password, rotated), work)
    assert new.returncode == 0, new.stderr
    page.goto(f"/console/gateways/{gw}")
    assert password not in page.content() and rotated not in page.content()

    # --- the secrets are in no log and no audit row ----------------------------------------------------
    log = s.log.read_text(errors="replace")
    assert gw in log  # the attach is logged, without its secret
    assert password not in log and rotated not in log
    with psycopg.connect(s.env["RISKWATCH_DB_URL"]) as conn:
        rows = conn.execute("SELECT row_to_json(a)::text FROM audit_log a").fetchall()
    assert any(gw in t for (t,) in rows)
    assert not [t for (t,) in rows if password in t or rotated in t]
    assert offsite == []
    ctx.close()
