"""The console's disposal pages over HTTP (TestClient on the real app and a real TimescaleDB): 处置反馈 through
`rules.store_disposal.feedback` (the API's store), 停产报备 through `rules.store_stops`, and the board's point
trend fragment — each scoped by enterprise (another's is 404 and its forms are refused), CSRF-checked, and
with clear Chinese errors that keep what was typed.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.web.disposal import parse_local, subject_limits, trend_chart
from api.web.queries_disposal import MAX_TREND_POINTS, bucket_seconds, trend_window
from core.keys import AlarmKey
from rules import disposal, store_disposal
from rules.model import load_catalog
from tests.web.fix_console import ALARM_A, ALARM_B, T0, Console, console_fixture, insert_alarm  # noqa: F401

pytestmark = pytest.mark.integration

TREND_RULE = "bm.gas.pressure:hi"  # a threshold rule of the shipped catalog: limits lo 6, hi 10


def signed(console: Console, username: str) -> TestClient:
    c = console.new_client()
    r = console.login(username, client=c)
    assert r.status_code == 303, r.text
    return c


def open_disposal(console: Console, rule_id: str, subject: str, plant: str, enterprise: str) -> int:
    """The disposal the engine opens for an annunciated activation (the store's own function)."""
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        store_disposal.open_disposals(conn, disposal.load_policy(), [store_disposal.NewDisposal(
            AlarmKey(rule_id, subject), plant, enterprise, "high", T0 - 60)])
        row = conn.execute("SELECT id FROM alarm_disposals WHERE rule_id = %s AND subject = %s",
                           (rule_id, subject)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def owed(console: Console) -> dict[str, int]:
    return {"a": open_disposal(console, ALARM_A[0], console.subjects["a"], "plant-a", "ent-a"),
            "b": open_disposal(console, ALARM_B[0], console.subjects["b"], "plant-b", "ent-b")}


def token(c: TestClient, console: Console, path: str) -> str:
    r = c.get(console.url(path))
    assert r.status_code == 200, r.text
    return console.csrf_of(r.text)


def feed(c: TestClient, console: Console, did: int, **form: str) -> Any:
    t = form.pop("csrf", None)
    if t is None:
        t = token(c, console, "/disposal")
    return c.post(console.url(f"/disposal/{did}/feedback"), data={"csrf": t, **form}, follow_redirects=False)


GOOD = {"cause": "equipment_fault", "measures": "更换冷却水回水管密封圈，试压合格后恢复生产", "handled_by": "张工"}


def feedback_row(console: Console, did: int) -> tuple[Any, ...]:
    return console.sql("SELECT cause, measures, handled_by, feedback_actor FROM alarm_disposals WHERE id = %s",
                       (did,))[0]


# --- pure parts ---------------------------------------------------------------------------------------


def test_trend_window_and_buckets() -> None:
    assert trend_window(1000.0, None, 5000.0) == (-800.0, 5000.0)           # 30 min before to now
    assert trend_window(10_000.0, 11_000.0, 50_000.0) == (8200.0, 11_300.0)  # to the return to normal (+5 min)
    start, end = trend_window(0.0, None, 5 * 86400.0)                        # active for days: the last 12 h
    assert end - start == 12 * 3600.0
    assert bucket_seconds(0, 60) == 1 and bucket_seconds(0, 24_000) == 100
    assert (24_000 / bucket_seconds(0, 24_000)) <= MAX_TREND_POINTS


def test_local_time_and_limits() -> None:
    assert parse_local("2025-11-30T08:00") == T0  # China Standard Time
    assert parse_local("") is None and parse_local("yesterday") is None and parse_local("2025-13-01T00:00") is None
    rules = {rid: r for rid, (_, r) in load_catalog(None).rules.items()}
    own, other = subject_limits(rules["bm.gas.pressure"])
    assert sorted((lim["kind"], lim["value"]) for lim in own) == [("hi", 10.0), ("lo", 6.0)] and other == []
    own, other = subject_limits(rules["mach.cooling.interlock"])  # limits on a difference and on other points
    assert own == [] and {str(lim["name"]) for lim in other} >= {"Δ subject-out hi", "temp_out hi"}
    chart = trend_chart("PT-501", [(datetime.fromtimestamp(T0, UTC), 8.0)], T0 - 60, None, own, other,
                        {"activated": "报警", "cleared": "恢复"})
    assert chart["marks"] == [{"name": "报警", "x": int((T0 - 60 + 8 * 3600) * 1000)}]
    assert "Δ subject-out hi 3" in chart["notes"]


# --- 处置反馈 --------------------------------------------------------------------------------------------


def test_disposals_are_scoped_and_forged_ids_refused(console: Console, owed: dict[str, int]) -> None:
    ea = signed(console, "ea")
    page = ea.get(console.url("/disposal")).text
    assert f'data-disposal="{owed["a"]}"' in page and f'data-disposal="{owed["b"]}"' not in page
    assert ALARM_B[0] not in page and "ent-b" not in page and 'data-testid="disposal-stats"' not in page
    assert ea.get(console.url(f"/disposal/{owed['b']}")).status_code == 404
    assert ea.get(console.url("/disposal/999999999")).status_code == 404
    # the other enterprise's form: refused as if absent, nothing recorded
    r = feed(ea, console, owed["b"], **GOOD)
    assert r.status_code == 404 and ALARM_B[0] not in r.text
    assert feedback_row(console, owed["b"]) == (None, None, None, None)
    assert feed(ea, console, 999999999, **GOOD).status_code == 404
    # every status tab is scoped too; an unknown status is the default one
    for st in ("pending", "overdue", "answered", "all", "'; DROP TABLE alarms; --"):
        r = ea.get(console.url("/disposal"), params={"status": st})
        assert r.status_code == 200 and f'data-disposal="{owed["b"]}"' not in r.text


def test_feedback_needs_the_csrf_token(console: Console, owed: dict[str, int]) -> None:
    ea = signed(console, "ea")
    r = ea.post(console.url(f"/disposal/{owed['a']}/feedback"), data=GOOD, follow_redirects=False)
    assert r.status_code == 403
    r = feed(ea, console, owed["a"], csrf="forged-token", **GOOD)
    assert r.status_code == 403
    assert feedback_row(console, owed["a"]) == (None, None, None, None)


def test_invalid_feedback_is_explained_and_keeps_the_form(console: Console, owed: dict[str, int]) -> None:
    ea = signed(console, "ea")
    r = feed(ea, console, owed["a"], **{**GOOD, "cause": "aliens"})
    assert r.status_code == 422
    assert "原因类别无效" in html.unescape(r.text)
    assert GOOD["measures"] in r.text and 'value="张工"' in r.text  # what was typed is kept
    r = feed(ea, console, owed["a"], **{**GOOD, "measures": "   "})
    assert r.status_code == 422 and "请填写处置措施" in r.text
    assert re.search(r'<option value="equipment_fault" selected>', r.text)
    r = feed(ea, console, owed["a"], **{**GOOD, "measures": "x" * 5000})
    assert r.status_code == 422 and "处置措施过长" in r.text
    r = feed(ea, console, owed["a"], **{**GOOD, "handled_by": "张\x00工"})
    assert r.status_code == 422
    assert feedback_row(console, owed["a"]) == (None, None, None, None)


def test_feedback_from_the_enterprise_is_seen_by_the_bureau(console: Console, owed: dict[str, int]) -> None:
    ea, duty = signed(console, "ea"), signed(console, "duty")
    board = ea.get(console.url("/")).text
    assert f'href="/console/disposal/{owed["a"]}" data-testid="disposal-link">填写处置反馈' in board
    assert f"/console/disposal/{owed['b']}" not in board
    assert 'data-testid="disposal-link">待企业处置反馈' in duty.get(console.url("/")).text

    r = feed(ea, console, owed["a"], **GOOD)
    assert r.status_code == 303 and r.headers["location"] == f"/console/disposal/{owed['a']}"
    cause, measures, by, actor = feedback_row(console, owed["a"])
    assert (cause, measures, by) == ("equipment_fault", GOOD["measures"], "张工") and "（ea）" in actor
    events = console.sql("SELECT actor, reason FROM alarm_events WHERE rule_id = %s AND event = 'disposal_feedback'",
                         (ALARM_A[0],))
    assert len(events) == 1 and "设备故障" in events[0][1]
    assert feed(ea, console, owed["a"], **GOOD).status_code == 409  # answered once
    assert f"/console/disposal/{owed['a']}" not in ea.get(console.url("/")).text  # nothing owed any more

    page = duty.get(console.url(f"/disposal/{owed['a']}")).text
    assert 'data-testid="cause">设备故障' in page and GOOD["measures"] in page and "（ea）" in page
    answered = duty.get(console.url("/disposal"), params={"status": "answered"}).text
    assert f'data-disposal="{owed["a"]}"' in answered and f'data-disposal="{owed["b"]}"' not in answered
    stats = duty.get(console.url("/disposal")).text
    assert 'data-testid="disposal-stats"' in stats and 'data-enterprise="ent-a"' in stats
    assert console.sql("SELECT count(*) FROM audit_log WHERE changes->>'action' = 'disposal_feedback' AND status = 303"
                       ) == [(1,)]


def test_the_bureau_may_answer_on_the_enterprises_behalf(console: Console, owed: dict[str, int]) -> None:
    """As the API allows (a bureau token may answer; the timeline names who did)."""
    duty = signed(console, "duty")
    assert "代企业反馈" in duty.get(console.url(f"/disposal/{owed['b']}")).text
    assert feed(duty, console, owed["b"], **GOOD).status_code == 303
    assert "（duty）" in feedback_row(console, owed["b"])[3]


def test_the_overdue_ladder_is_shown(console: Console, owed: dict[str, int]) -> None:
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        conn.execute("UPDATE alarm_disposals SET tier_reached = 2 WHERE id = %s", (owed["a"],))
    console.clock.advance(5 * 3600)
    duty = signed(console, "duty")
    page = duty.get(console.url(f"/disposal/{owed['a']}")).text
    assert 'data-testid="tier">局值班人员' in page
    assert page.count('class="reached"') == 2 and "已通知" in page
    overdue = duty.get(console.url("/disposal"), params={"status": "overdue"}).text
    assert f'data-disposal="{owed["a"]}"' in overdue and "tag overdue" in overdue


# --- 停产报备 ---------------------------------------------------------------------------------------------


def stop_form(**over: str) -> dict[str, str]:
    return {"plant_id": "plant-a", "kind": "stop", "device_code": "", "starts_at": "2025-11-30T09:00",
            "ends_at": "2025-12-02T18:00", "reason": "设备年度检修，全线停产", **over}


def file(c: TestClient, console: Console, **form: str) -> Any:
    t = form.pop("csrf", None) or token(c, console, "/stops")
    return c.post(console.url("/stops"), data={"csrf": t, **form}, follow_redirects=False)


def stops_of(console: Console) -> list[tuple[Any, ...]]:
    return console.sql("SELECT id, plant_id, status FROM production_stops ORDER BY id")


def test_a_stop_is_filed_decided_and_audited(console: Console) -> None:
    ea, eb, duty = signed(console, "ea"), signed(console, "eb"), signed(console, "duty")
    page = ea.get(console.url("/stops")).text
    assert 'value="plant-a"' in page and 'value="plant-b"' not in page  # only its own plants are offered
    r = file(ea, console, **stop_form())
    assert r.status_code == 303
    (sid, plant, status), = stops_of(console)
    assert (plant, status) == ("plant-a", "filed") and r.headers["location"] == f"/console/stops/{sid}"

    # the enterprise cannot decide its own filing (no button; a forged POST is 403); another sees nothing
    page = ea.get(console.url(f"/stops/{sid}")).text
    assert 'data-action="approve"' not in page and 'data-action="withdraw"' in page
    t = console.csrf_of(page)
    assert ea.post(console.url(f"/stops/{sid}/approve"), data={"csrf": t}, follow_redirects=False).status_code == 403
    assert eb.get(console.url(f"/stops/{sid}")).status_code == 404
    assert f'data-stop="{sid}"' not in eb.get(console.url("/stops")).text
    t_b = token(eb, console, "/stops")
    assert eb.post(console.url(f"/stops/{sid}/withdraw"), data={"csrf": t_b}, follow_redirects=False).status_code == 404
    assert eb.post(console.url("/stops/999999/approve"), data={"csrf": t_b}, follow_redirects=False).status_code == 404
    assert duty.post(console.url(f"/stops/{sid}/approve"), data={}, follow_redirects=False).status_code == 403  # CSRF
    assert stops_of(console)[0][2] == "filed"

    # the bureau: a rejection needs a comment; approval is recorded with its actor, and only once
    page = duty.get(console.url(f"/stops/{sid}")).text
    t = console.csrf_of(page)
    r = duty.post(console.url(f"/stops/{sid}/reject"), data={"csrf": t, "comment": " "}, follow_redirects=False)
    assert r.status_code == 422 and "驳回须说明理由" in r.text
    r = duty.post(console.url(f"/stops/{sid}/approve"), data={"csrf": t, "comment": "同意"}, follow_redirects=False)
    assert r.status_code == 303 and stops_of(console)[0][2] == "approved"
    r = duty.post(console.url(f"/stops/{sid}/approve"), data={"csrf": t}, follow_redirects=False)
    assert r.status_code == 409 and "不能再审批" in r.text
    r = duty.post(console.url(f"/stops/{sid}/reject"), data={"csrf": t, "comment": "迟到"}, follow_redirects=False)
    assert r.status_code == 409 and stops_of(console)[0][2] == "approved"
    trail = ea.get(console.url(f"/stops/{sid}")).text  # everyone in scope sees the audit trail
    assert re.findall(r'<li data-action="(\w+)"', trail) == ["file", "approve"]
    assert "（duty）" in trail and "同意" in trail and "（ea）" in trail
    assert console.sql("SELECT action, actor FROM production_stop_events WHERE stop_id = %s ORDER BY id", (sid,)) == [
        ("file", "ea 测试（ea）"), ("approve", "duty 测试（duty）")]


def test_a_bad_or_foreign_filing_is_refused(console: Console) -> None:
    ea = signed(console, "ea")
    r = file(ea, console, **stop_form(plant_id="plant-b"))  # another enterprise's plant: as if absent
    assert r.status_code == 404 and "ent-b" not in r.text
    assert file(ea, console, **stop_form(plant_id="no-such-plant")).status_code == 404
    r = file(ea, console, **stop_form(ends_at="2025-11-30T08:30"))
    assert r.status_code == 422 and "预计结束时间须晚于开始时间" in r.text
    assert "设备年度检修，全线停产" in r.text and 'value="2025-11-30T08:30"' in r.text  # the form keeps what was typed
    r = file(ea, console, **stop_form(starts_at="2025-11-29T08:00"))  # a day back: not a filing, an excuse
    assert r.status_code == 422 and "补报" in r.text
    r = file(ea, console, **stop_form(ends_at="2026-06-01T00:00"))
    assert r.status_code == 422 and "90" in r.text
    r = file(ea, console, **stop_form(reason=" "))
    assert r.status_code == 422 and "请填写停产原因" in r.text
    r = file(ea, console, **stop_form(starts_at="soon"))
    assert r.status_code == 422 and "请填写开始时间和预计结束时间" in r.text
    r = file(ea, console, **stop_form(kind="holiday"))
    assert r.status_code == 422
    r = file(ea, console, **stop_form(device_code="no-such-device"))
    assert r.status_code == 422 and "no-such-device 不是该厂区的设备" in html.unescape(r.text)
    r = file(ea, console, **stop_form(device_code="furnace"))  # another enterprise's device, typed by hand
    assert r.status_code == 422 and "furnace 不是该厂区的设备，请从列表中选择设备" in r.text
    assert "电熔炉" not in r.text and "ent-b" not in r.text
    r = file(ea, console, **stop_form(device_code="<b>x</b>"))  # echoed escaped, never as markup
    assert r.status_code == 422 and "<b>x</b>" not in r.text and "&lt;b&gt;x&lt;/b&gt;" in r.text
    r = ea.post(console.url("/stops"), data=stop_form(), follow_redirects=False)
    assert r.status_code == 403
    assert stops_of(console) == []


def device_options(page: str) -> list[str]:
    """The values the stop form's device picker offers ("" is the whole plant)."""
    m = re.search(r'<select name="device_code"[^>]*>(.*?)</select>', page, re.S)
    assert m is not None, page
    return re.findall(r'<option value="([^"]*)"', m.group(1))


def test_the_stop_form_picks_a_device_of_the_plant(console: Console) -> None:
    ea, eb, duty = signed(console, "ea"), signed(console, "eb"), signed(console, "duty")
    page = ea.get(console.url("/stops")).text
    # plant-a's own devices (the first plant's, the form's default), and no other enterprise's
    assert device_options(page) == ["", "coal-bf", "dev-off", "kiln"]
    assert 'value="furnace"' not in page and "电熔炉" not in page
    assert 'hx-get="/console/stops/devices"' in page
    assert device_options(eb.get(console.url("/stops")).text) == ["", "furnace"]
    # the picker's fragment, re-fetched when the plant changes: scoped like the filing itself
    r = ea.get(console.url("/stops/devices"), params={"plant_id": "plant-a"})
    assert r.status_code == 200 and device_options(r.text) == ["", "coal-bf", "dev-off", "kiln"]
    assert "回转窑（kiln）" in r.text
    r = ea.get(console.url("/stops/devices"), params={"plant_id": "plant-b"})
    assert r.status_code == 404 and "furnace" not in r.text and "电熔炉" not in r.text
    assert ea.get(console.url("/stops/devices"), params={"plant_id": "no-such-plant"}).status_code == 404
    assert device_options(ea.get(console.url("/stops/devices")).text) == [""]  # no plant chosen: the whole plant
    assert device_options(duty.get(console.url("/stops/devices"), params={"plant_id": "plant-b"}).text) == [
        "", "furnace"]  # the bureau files for any plant
    # a device picked from the list is filed, and named on the filing's page
    r = file(ea, console, **stop_form(device_code="kiln", kind="maintenance"))
    assert r.status_code == 303
    sid = int(r.headers["location"].rsplit("/", 1)[1])
    assert console.sql("""SELECT d.code FROM production_stops s JOIN devices d ON d.id = s.device_id
                          WHERE s.id = %s""", (sid,)) == [("kiln",)]
    assert 'data-testid="stop-device">回转窑（kiln）<' in ea.get(console.url(f"/stops/{sid}")).text
    # a refused filing keeps the device picked
    r = file(ea, console, **stop_form(device_code="kiln", reason=" "))
    assert r.status_code == 422 and '<option value="kiln" selected>' in r.text


# --- the board's point trend --------------------------------------------------------------------------------


def readings(console: Console, gateway: str, tag: str, start: float, end: float, step: float, value: float) -> int:
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway, tag)).fetchone()
        assert row is not None
        n = int((end - start) / step)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings (time, point_id, value) VALUES (%s, %s, %s)",
                            [(datetime.fromtimestamp(start + i * step, UTC), row[0], value + (i % 7) * 0.1)
                             for i in range(n)])
        return int(row[0])


def chart_of(page: str) -> dict[str, Any]:
    m = re.search(r'data-chart="([^"]+)" data-testid="trend-chart"', page)
    assert m is not None, page
    got: dict[str, Any] = json.loads(html.unescape(m.group(1)))
    return got


def test_the_trend_fragment_is_bounded_drawn_with_limits_and_scoped(console: Console) -> None:
    subject = insert_alarm(console.db_url, TREND_RULE, "gw-a1", "TT-101", "plant-a", T0 - 60)
    readings(console, "gw-a1", "TT-101", T0 - 3 * 3600, T0, 5.0, 8.0)  # 2160 readings, 1860 s of them in the window
    readings(console, "gw-b1", "FT-301", T0 - 3600, T0, 10.0, 50.0)
    ea, eb = signed(console, "ea"), signed(console, "eb")
    board = ea.get(console.url("/")).text
    assert 'data-testid="trend-slot" hx-get="/console/alarms/trend?rule_id=bm.gas.pressure%3Ahi&amp;subject=' in board
    r = ea.get(console.url("/alarms/trend"), params={"rule_id": TREND_RULE, "subject": subject})
    assert r.status_code == 200
    chart = chart_of(r.text)
    data = chart["series"][0]["data"]
    assert chart["series"][0]["name"] == "TT-101" and 100 < len(data) <= MAX_TREND_POINTS
    first_ms = data[0][0]
    assert first_ms >= int((T0 - 60 - 1800 + 8 * 3600) * 1000) - 10_000  # from 30 min before the activation
    assert sorted((lim["kind"], lim["value"]) for lim in chart["limits"]) == [("hi", 10.0), ("lo", 6.0)]
    assert chart["marks"][0]["x"] == int((T0 - 60 + 8 * 3600) * 1000)
    # another enterprise's alarm, a forged one, nothing: 404 and none of its data
    r = ea.get(console.url("/alarms/trend"), params={"rule_id": ALARM_B[0], "subject": console.subjects["b"]})
    assert r.status_code == 404 and "FT-301" not in r.text and "data-chart" not in r.text
    assert ea.get(console.url("/alarms/trend"), params={"rule_id": "x' OR 1=1 --", "subject": "p:1"}).status_code == 404
    assert ea.get(console.url("/alarms/trend")).status_code == 404
    assert eb.get(console.url("/alarms/trend"), params={"rule_id": TREND_RULE, "subject": subject}).status_code == 404
    # the other enterprise's own alarm draws its own point, and no rule limits (the rule is not in the catalog)
    got = chart_of(eb.get(console.url("/alarms/trend"), params={"rule_id": ALARM_B[0],
                                                                "subject": console.subjects["b"]}).text)
    assert got["series"][0]["name"] == "FT-301" and got["limits"] == []


def test_an_alarm_without_a_point_has_no_trend(console: Console) -> None:
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        conn.execute("""INSERT INTO alarms (rule_id, subject, gateway_id, plant_id, catalog_version, severity, active,
                            state, cond, activated_at) VALUES ('common.gateway.offline', 'g:gw-a1', 'gw-a1', 'plant-a',
                            'test', 'high', true, 'unack', true, %s)""", (datetime.fromtimestamp(T0 - 60, UTC),))
    ea = signed(console, "ea")
    board = ea.get(console.url("/")).text
    row = board[board.index('data-rule="common.gateway.offline"'):]
    row = row[:row.index("</li>")]
    assert "trend-slot" not in row
    r = ea.get(console.url("/alarms/trend"), params={"rule_id": "common.gateway.offline", "subject": "g:gw-a1"})
    assert r.status_code == 200 and 'data-testid="trend-empty"' in r.text
