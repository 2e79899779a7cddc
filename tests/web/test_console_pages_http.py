"""The console's notifications, interviews (约谈), report downloads and self-report (企业自查上报) pages over HTTP
(TestClient on the real app and a real TimescaleDB).

Scoping is the API's: an enterprise user never gets another enterprise's interview, export rows or
notification (404 for a forged id, like the API); every change needs the CSRF token and is audited; a retry
of a notification that is not dead is refused clearly and changes nothing; the XLSX a page serves opens
with openpyxl, has the API builder's sheets and rows, and holds only the viewer's enterprise.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import openpyxl
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from alerting import visibility
from api.web.pages_more import FormError, content_disposition, cst_instant, optional_id, text_field
from hazards import export, ledger, reports
from hazards.model import Actor, Source
from hazards.records import evaluation
from hazards.records import export as records_export
from tests.web.fix_console import T0, Console, console_fixture  # noqa: F401

pytestmark = pytest.mark.integration

TITLE_A, TITLE_B = "甲线除尘器泄爆片缺失 ent-a-export-title", "乙厂燃气阀被短接 ent-b-export-title"
SEED = Actor("seed-inspector", "bureau", None)


def signed(console: Console, username: str) -> TestClient:
    c = console.new_client()
    r = console.login(username, client=c)
    assert r.status_code == 303, r.text
    return c


def csrf(c: TestClient, console: Console, path: str = "/hazards") -> str:
    r = c.get(console.url(path))
    assert r.status_code == 200, r.text
    return console.csrf_of(r.text)


def inspection(console: Console, enterprise: str, plant: str, title: str) -> int:
    """A confirmed ticket opened by a bureau inspection through the ledger (the API's `/inspections`)."""
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        return ledger.open_ticket(conn, ledger.NewTicket(Source.INSPECTION, enterprise, title, plant_id=plant,
                                                         inspection_team="第一检查组"), SEED, T0 - 3600)


@pytest.fixture
def tickets(console: Console) -> dict[str, int]:
    return {"a": inspection(console, "ent-a", "plant-a", TITLE_A),
            "b": inspection(console, "ent-b", "plant-b", TITLE_B)}


# --- notifications -----------------------------------------------------------------------------------------


def notification(console: Console, key: str, *, status: str, enterprise: str | None, contact: str | None,
                 address: str | None, error: str | None = None, detail: str | None = None) -> int:
    """A notification row as the dispatcher writes it (its group, the rendered message), and one failed attempt."""
    at = datetime.fromtimestamp(T0 - 600, UTC)
    with psycopg.connect(console.db_url, autocommit=True) as conn:
        g = conn.execute("""INSERT INTO alert_groups (route, receiver, group_key, enterprise_id, group_wait,
                                group_interval, repeat_interval, created_at) VALUES ('root', %s, %s, %s, 0, 60, 0, %s)
                            RETURNING id""", (f"recv-{key}", key, enterprise, at)).fetchone()
        assert g is not None
        n = conn.execute(
            """INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel, contact_id,
                   address, enterprise_id, items, message, status, attempts, next_attempt_at, last_error, created_at,
                   sent_at) VALUES (%s, %s, 1, 'firing', 'group_wait 0s elapsed: 1 new', %s, 'sms', %s, %s, %s, %s, %s,
                   %s, 1, %s, %s, %s, %s) RETURNING id""",
            (key, g[0], f"recv-{key}", contact, address, enterprise, Jsonb(["alarm:test.a.rule|p:1"]),
             Jsonb({"subject": f"报警 {key}"}), status, at, error, at, at if status == "sent" else None)).fetchone()
        assert n is not None
        if detail is not None:
            conn.execute("""INSERT INTO deliveries (notification_id, attempt, started_at, finished_at, ok, transient,
                                detail) VALUES (%s, 1, %s, %s, %s, false, %s)""",
                         (n[0], at, at, status == "sent", detail))
        return int(n[0])


@pytest.fixture
def notes(console: Console) -> dict[str, int]:
    return {
        "bureau_dead": notification(console, "n-bureau-dead", status="dead", enterprise="ent-a", contact="duty",
                                    address="13900000001", error="SMS gateway 403 relay-secret-name",
                                    detail="HTTP 403 from relay-secret-name"),
        "a_dead": notification(console, "n-a-dead", status="dead", enterprise="ent-a",
                               contact="enterprise:ent-a:principal", address="a-principal@example.cn",
                               error="550 mailbox unavailable", detail="550 mailbox unavailable"),
        "b_dead": notification(console, "n-b-dead", status="dead", enterprise="ent-b",
                               contact="enterprise:ent-b:principal", address="13800000009",
                               error="refused ent-b-secret-error", detail="refused"),
        "sent": notification(console, "n-sent", status="sent", enterprise="ent-a", contact="duty",
                             address="13900000001", detail="accepted"),
    }


def note_status(console: Console, nid: int) -> str:
    return str(console.sql("SELECT status FROM notifications WHERE id = %s", (nid,))[0][0])


def test_notifications_list_filter_mask_and_retry(console: Console, notes: dict[str, int]) -> None:
    duty = signed(console, "duty")
    r = duty.get(console.url("/notifications"))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    shown = [int(x) for x in re.findall(r'data-notification="(\d+)"', r.text)]
    assert shown == sorted(notes.values(), reverse=True)  # newest first, the county's all
    assert "139****0001" in r.text and "13900000001" not in r.text  # the recipient is masked on screen
    assert "a***@example.cn" in r.text and "a-principal@example.cn" not in r.text
    assert "SMS gateway 403 relay-secret-name" in r.text  # the bureau sees why it died
    assert "HTTP 403 from relay-secret-name" in r.text  # and each attempt's answer

    dead = duty.get(console.url("/notifications?status=dead"))
    assert sorted(int(x) for x in re.findall(r'data-notification="(\d+)"', dead.text)) == sorted(
        [notes["bureau_dead"], notes["a_dead"], notes["b_dead"]])
    assert dead.text.count('data-testid="retry"') == 3

    token = console.csrf_of(r.text)
    # no CSRF token: refused, nothing changes
    r = duty.post(console.url(f"/notifications/{notes['bureau_dead']}/retry"), data={}, follow_redirects=False)
    assert r.status_code == 403 and note_status(console, notes["bureau_dead"]) == "dead"
    r = duty.post(console.url(f"/notifications/{notes['bureau_dead']}/retry"), data={"csrf": "forged"},
                  follow_redirects=False)
    assert r.status_code == 403 and note_status(console, notes["bureau_dead"]) == "dead"
    # a forged id, and one past int64
    for nid in (987654, 2**63):
        r = duty.post(console.url(f"/notifications/{nid}/retry"), data={"csrf": token}, follow_redirects=False)
        assert r.status_code == 404, (nid, r.status_code)
    # a delivered one is not put back: refused clearly, still sent
    r = duty.post(console.url(f"/notifications/{notes['sent']}/retry"), data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 409 and "只有投递失败的通知可以重新投递" in r.text
    assert note_status(console, notes["sent"]) == "sent"
    # the real retry: what the API's retry does (pending again, due now), audited
    r = duty.post(console.url(f"/notifications/{notes['bureau_dead']}/retry"), data={"csrf": token, "back": "dead"},
                  follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == console.url("/notifications?status=dead")
    assert note_status(console, notes["bureau_dead"]) == "pending"
    due = console.sql("SELECT next_attempt_at FROM notifications WHERE id = %s", (notes["bureau_dead"],))[0][0]
    assert due.timestamp() == pytest.approx(T0)
    assert console.sql("SELECT actor, status, changes->>'notification_id' FROM audit_log"
                       " WHERE changes->>'action' = 'notification_retry'") == [("duty", 303, str(notes["bureau_dead"]))]
    # a second retry of the same one: it is pending now, not dead
    r = duty.post(console.url(f"/notifications/{notes['bureau_dead']}/retry"), data={"csrf": token},
                  follow_redirects=False)
    assert r.status_code == 409


def test_enterprise_users_get_no_notification_page_and_no_retry(console: Console, notes: dict[str, int]) -> None:
    ea = signed(console, "ea")
    assert ea.get(console.url("/notifications")).status_code == 403
    assert "/console/notifications" not in ea.get(console.url("/hazards")).text  # not in its nav either
    token = csrf(ea, console)
    # its own enterprise's notification: visible to it in the API, but only the bureau retries
    r = ea.post(console.url(f"/notifications/{notes['a_dead']}/retry"), data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 403 and note_status(console, notes["a_dead"]) == "dead"
    # another enterprise's, or one sent to the bureau's people: as if absent
    for key in ("b_dead", "bureau_dead"):
        r = ea.post(console.url(f"/notifications/{notes[key]}/retry"), data={"csrf": token}, follow_redirects=False)
        assert r.status_code == 404 and "ent-b-secret-error" not in r.text
        assert note_status(console, notes[key]) == "dead"


def test_visibility_rules_are_the_apis() -> None:
    assert visibility.mask_address("13900000001") == "139****0001"
    assert visibility.mask_address("+86 139-0000-0001") == "861******0001"
    assert visibility.mask_address("duty@example.gov.cn") == "d***@example.gov.cn"
    assert visibility.mask_address("https://u:p@hook.example/x?access_token=abc") == \
        "https://***@hook.example/x?access_token=***"
    assert visibility.mask_address(None) == "" and visibility.mask_address("abc") == "***"


# --- interviews ----------------------------------------------------------------------------------------------


INTERVIEW = {"enterprise_id": "ent-a", "held_at": "2025-11-29T09:30", "interviewer": "县工信局 李局长",
             "interviewees": "主要负责人 张三", "reason": "重大事故隐患逾期未整改 ent-a-interview-reason",
             "summary": "责令10日内完成整改", "follow_up": "12月10日复查"}


def interviews_count(console: Console) -> int:
    return int(console.sql("SELECT count(*) FROM hazard_interviews")[0][0])


def test_interviews_record_list_detail_and_scope(console: Console, tickets: dict[str, int]) -> None:
    duty, ea, eb = signed(console, "duty"), signed(console, "ea"), signed(console, "eb")
    page = duty.get(console.url("/interviews"))
    assert page.status_code == 200 and 'data-testid="interview-form"' in page.text
    token = console.csrf_of(page.text)
    form = {**INTERVIEW, "hazard_id": str(tickets["a"])}

    # refusals first: nothing recorded by any of them
    assert duty.post(console.url("/interviews"), data=form, follow_redirects=False).status_code == 403  # no CSRF
    ea_token = csrf(ea, console, "/interviews")
    assert 'data-testid="interview-form"' not in ea.get(console.url("/interviews")).text
    r = ea.post(console.url("/interviews"), data={**form, "csrf": ea_token}, follow_redirects=False)
    assert r.status_code == 403  # only the bureau records interviews
    r = duty.post(console.url("/interviews"), data={**form, "csrf": token, "hazard_id": str(tickets["b"])},
                  follow_redirects=False)
    assert r.status_code == 422 and "不一致" in r.text  # ent-b's ticket for ent-a
    r = duty.post(console.url("/interviews"), data={**form, "csrf": token, "reason": "  "}, follow_redirects=False)
    assert r.status_code == 422 and INTERVIEW["interviewer"] in r.text  # the form comes back filled in
    for bad in ({"reason": "长" * 4001}, {"held_at": "yesterday"}, {"hazard_id": "-3"}, {"enterprise_id": "../x"},
                {"interviewer": "a\x00b"}, {"enterprise_id": "no-such-enterprise"}, {"hazard_id": "987654"}):
        r = duty.post(console.url("/interviews"), data={**form, "csrf": token, **bad}, follow_redirects=False)
        assert r.status_code == 422, (bad, r.status_code)
    assert interviews_count(console) == 0

    r = duty.post(console.url("/interviews"), data={**form, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/console/interviews/(\d+)", r.headers["location"])
    assert m is not None
    iid = int(m.group(1))
    detail = duty.get(r.headers["location"])
    assert detail.status_code == 200 and INTERVIEW["reason"] in detail.text and TITLE_A in detail.text
    assert "2025-11-29 09:30:00" in detail.text  # typed in CST, shown in CST
    # the ticket's history notes it, its page shows the interview (fragment) and its supervision state
    assert console.sql("SELECT count(*) FROM hazard_events WHERE hazard_id = %s AND action = 'interview'",
                       (tickets["a"],))[0][0] == 1
    frag = duty.get(console.url(f"/hazards/{tickets['a']}/interviews"))
    assert frag.status_code == 200 and f"/console/interviews/{iid}" in frag.text
    ticket = duty.get(console.url(f"/hazards/{tickets['a']}"))
    assert 'data-testid="supervision-state"' in ticket.text and "未挂牌督办" in ticket.text
    assert console.sql("SELECT actor, changes->>'interview_id' FROM audit_log WHERE changes->>'action' ="
                       " 'interview_record' AND status = 303") == [("duty", str(iid))]

    # the enterprise concerned sees it; the other one never does, not even by a forged id
    assert f'data-interview="{iid}"' in ea.get(console.url("/interviews")).text
    assert ea.get(console.url(f"/interviews/{iid}")).status_code == 200
    listing = eb.get(console.url("/interviews"))
    assert f'data-interview="{iid}"' not in listing.text and "ent-a-interview-reason" not in listing.text
    assert eb.get(console.url("/interviews?enterprise=ent-a")).text.count("data-interview=") == 0
    for path in (f"/interviews/{iid}", f"/hazards/{tickets['a']}/interviews", "/interviews/987654",
                 f"/interviews/{2**63}", "/hazards/987654/interviews"):
        r = eb.get(console.url(path))
        assert r.status_code == 404 and "ent-a-interview-reason" not in r.text, path


def test_supervised_ticket_shows_its_level(console: Console, tickets: dict[str, int]) -> None:
    chief = signed(console, "chief")
    token = csrf(chief, console, f"/hazards/{tickets['a']}")
    r = chief.post(console.url(f"/hazards/{tickets['a']}/act/supervise"),
                   data={"csrf": token, "level": "county", "comment": "逾期未整改 supervision-reason"},
                   follow_redirects=False)
    assert r.status_code == 303, r.text
    page = signed(console, "ea").get(console.url(f"/hazards/{tickets['a']}"))
    state = re.search(r'data-testid="supervision-state">(.*?)</p>', page.text, re.S)
    assert state is not None and "挂牌督办" in state.group(1) and "supervision-reason" in state.group(1)


# --- reports -------------------------------------------------------------------------------------------------


def workbook(body: bytes) -> openpyxl.Workbook:
    return openpyxl.load_workbook(io.BytesIO(body))


def cells(wb: openpyxl.Workbook) -> dict[str, list[tuple[Any, ...]]]:
    return {ws.title: [tuple(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}


def filename_of(header: str) -> str:
    m = re.search(r"filename\*=UTF-8''([^;]+)", header)
    assert m is not None, header
    return unquote(m.group(1))


def test_report_downloads_are_the_apis_workbooks_scoped(console: Console, tickets: dict[str, int]) -> None:
    ea, duty = signed(console, "ea"), signed(console, "duty")
    page = ea.get(console.url("/reports"))
    assert page.status_code == 200 and "/console/reports/clearance" in page.text
    assert 'data-testid="evaluation-link"' in page.text

    r = ea.get(console.url("/reports/monthly.xlsx?year=2025&month=11"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert r.headers["cache-control"] == "no-store"
    assert filename_of(r.headers["content-disposition"]) == "隐患月度汇总-2025-11.xlsx"
    assert 'filename="hazards-monthly-2025-11.xlsx"' in r.headers["content-disposition"]
    got = cells(workbook(r.content))
    assert list(got)[:2] == ["汇总 summary", "台账 ledger"]  # (more sheets may follow: the builder decides)
    flat = repr(got)
    assert TITLE_A in flat and TITLE_B not in flat and "乙耐材" not in flat and "ent-b" not in flat
    with psycopg.connect(console.db_url) as conn:  # the API's builder, the same scope: the same workbook
        api = cells(workbook(export.to_xlsx(reports.period_summary(conn, "monthly", 2025, 11, "ent-a", T0))))
    assert got == api

    county = cells(workbook(duty.get(console.url("/reports/annual.xlsx?year=2025")).content))
    assert TITLE_A in repr(county) and TITLE_B in repr(county)
    ent_annual = cells(workbook(ea.get(console.url("/reports/annual.xlsx?year=2025")).content))
    assert TITLE_B not in repr(ent_annual) and TITLE_A in repr(ent_annual)

    r = ea.get(console.url("/reports/summary.xlsx?year=2025"))
    assert r.status_code == 200 and filename_of(r.headers["content-disposition"]) == "年度工作总结-2025.xlsx"
    summary = cells(workbook(r.content))
    with psycopg.connect(console.db_url) as conn:
        assert summary == cells(workbook(records_export.to_xlsx(evaluation.annual(conn, 2025, T0, "ent-a"))))
    assert "ent-b" not in repr(summary) and "乙耐材" not in repr(summary)
    assert "举报" not in repr(summary[next(iter(summary))])  # no whistle-blower figures for an enterprise

    r = ea.get(console.url("/reports/evaluation.xlsx"))
    assert r.status_code == 200 and filename_of(r.headers["content-disposition"]) == "三年行动评估-2024-2026.xlsx"
    ev = cells(workbook(r.content))
    assert "ent-b" not in repr(ev) and "乙耐材" not in repr(ev)
    bureau_ev = cells(workbook(duty.get(console.url("/reports/evaluation.xlsx")).content))
    assert list(ev) == list(bureau_ev) and "ent-b" in repr(bureau_ev)

    for bad in ("/reports/monthly.xlsx?year=1999&month=1", "/reports/monthly.xlsx?year=2025&month=13",
                "/reports/annual.xlsx?year=abc", "/reports/summary.xlsx?year=99999999999999999999"):
        assert ea.get(console.url(bad)).status_code == 422, bad
    assert console.sql("SELECT count(*) FROM audit_log WHERE changes->>'action' = 'report_export'"
                       " AND actor = 'ea'")[0][0] == 4


# --- self-report -----------------------------------------------------------------------------------------------


def test_enterprise_self_report(console: Console) -> None:
    ea, duty = signed(console, "ea"), signed(console, "duty")
    ledger_page = ea.get(console.url("/hazards"))
    assert 'data-testid="self-report-link"' in ledger_page.text
    assert 'data-testid="self-report-link"' not in duty.get(console.url("/hazards")).text
    assert duty.get(console.url("/hazards/new")).status_code == 403
    form_page = ea.get(console.url("/hazards/new"))
    assert form_page.status_code == 200
    assert 'value="plant-a"' in form_page.text and "plant-b" not in form_page.text and "乙厂" not in form_page.text
    token = console.csrf_of(form_page.text)
    form = {"plant_id": "plant-a", "title": "袋收尘器泄爆片缺失 self-reported", "description": "月度自查发现",
            "basis": "判定标准第六条第（一）项", "location": "煤磨袋收尘器顶部", "detected_at": "2025-11-29T15:00"}
    count = int(console.sql("SELECT count(*) FROM hazards")[0][0])

    assert ea.post(console.url("/hazards/new"), data=form, follow_redirects=False).status_code == 403  # no CSRF
    r = ea.post(console.url("/hazards/new"), data={**form, "csrf": token, "plant_id": "plant-b"},
                follow_redirects=False)
    assert r.status_code == 404  # another enterprise's plant: as if absent
    for bad in ({"title": " "}, {"title": "长" * 201}, {"description": "x" * 4001}, {"detected_at": "2099-01-01T00:00"},
                {"detected_at": "not a date"}, {"location": "a\x00b"}):
        r = ea.post(console.url("/hazards/new"), data={**form, "csrf": token, **bad}, follow_redirects=False)
        assert r.status_code == 422 and 'data-testid="form-error"' in r.text, bad
    r = duty.post(console.url("/hazards/new"), data={**form, "csrf": csrf(duty, console)}, follow_redirects=False)
    assert r.status_code == 403
    r = ea.post(console.url("/hazards/new"), data={**form, "csrf": token, "description": "长" * 30_000},
                follow_redirects=False)
    assert r.status_code == 413  # an oversized form is refused before it is parsed
    assert int(console.sql("SELECT count(*) FROM hazards")[0][0]) == count

    r = ea.post(console.url("/hazards/new"), data={**form, "csrf": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    m = re.fullmatch(r"/console/hazards/(\d+)", r.headers["location"])
    assert m is not None
    hid = int(m.group(1))
    row = console.sql("SELECT source, status, enterprise_id, plant_id, created_by, title, extract(epoch FROM"
                      " detected_at) FROM hazards WHERE id = %s", (hid,))[0]
    assert row[:6] == ("self_report", "candidate", "ent-a", "plant-a", "ea", form["title"])
    assert float(row[6]) == cst_instant("2025-11-29T15:00", "x")
    page = ea.get(r.headers["location"])
    assert page.status_code == 200 and form["title"] in page.text
    assert f'data-hazard="{hid}"' in ea.get(console.url("/hazards")).text
    assert f'data-hazard="{hid}"' not in signed(console, "eb").get(console.url("/hazards")).text
    assert console.sql("SELECT actor FROM audit_log WHERE changes->>'action' = 'hazard_self_report'") == [("ea",)]


def test_form_helpers() -> None:
    assert text_field({"a": "  x  "}, "a", 5) == "x"
    with pytest.raises(FormError, match="必填"):
        text_field({"a": " "}, "a", 5, required=True)
    with pytest.raises(FormError, match="过长"):
        text_field({"a": "123456"}, "a", 5)
    assert cst_instant("2025-11-30T08:00", "t") == T0
    assert optional_id("", "h") is None and optional_id("#12", "h") == 12
    with pytest.raises(FormError):
        optional_id(str(2**63), "h")
    header = content_disposition("隐患月度汇总-2025-11.xlsx", "hazards-monthly-2025-11.xlsx")
    assert header.isascii() and filename_of(header) == "隐患月度汇总-2025-11.xlsx"
