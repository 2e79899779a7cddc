"""Trust boundaries of the HTTP API (issue #11): what a hostile enterprise tenant sends or reads.

Each test reproduces a finding of the review against the real app on a real database:
capped validation answers, datetimes outside the representable range, unbounded metric labels,
whistle-blower rewards in the enterprise's reports, formulas in the bureau's spreadsheets, and the
acknowledgement page (security headers, audit row, one spelling of the token).
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from typing import Any

import pytest
from openpyxl import load_workbook

from alerting import ack
from api.http.metrics import METHODS
from tests.fix_alerting import RULE, raise_alarm
from tests.fix_api import T0, Api, api_fixture  # noqa: F401

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


# --- item 6: validation errors are capped -----------------------------------------------------------


def test_thousands_of_bad_fields_get_a_small_capped_answer(api: Api) -> None:
    body = {"title": "x", **{f"field_{i:05d}_{'y' * 40}": "v" * 100 for i in range(5000)}}
    raw = json.dumps(body).encode()
    assert 700_000 < len(raw) < 1024 * 1024  # under the body limit: this is about the answer, not the request
    r = api.client.post("/api/v1/hazards/self-reports", content=raw, headers={
        **api.headers("ent_a"), "Content-Type": "application/json"})
    p = _problem(r, 422)
    assert len(r.content) < 16 * 1024, len(r.content)
    assert len(p["errors"]) == 20 and p["errors_omitted"] == 5000 - 20
    assert all(set(e) == {"loc", "msg", "type"} for e in p["errors"])  # no `input` echoed
    assert "v" * 100 not in r.text
    assert all(len(e["msg"]) <= 200 and all(len(str(x)) <= 64 for x in e["loc"]) for e in p["errors"])


def test_a_long_bad_value_is_not_echoed(api: Api) -> None:
    secret = "sk-" + secrets.token_hex(40)
    r = api.post("/api/v1/hazards/self-reports", "ent_a", json={"title": "x", "plant_id": secret})
    p = _problem(r, 422)
    assert secret not in r.text and p["errors"][0]["loc"] == ["body", "plant_id"]


# --- item 9: datetimes outside the representable range are a 422 ------------------------------------

BAD_TIMES = ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "0001-01-02T23:00:00+01:00",
             "9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59Z", "9999-12-31T00:00:00+00:00"]


def _datetime_query_routes(api: Api) -> list[tuple[str, list[str], dict[str, Any]]]:
    """Every GET route of the OpenAPI document with a date-time query parameter, with the other required ones."""
    doc = api.client.app.openapi()  # type: ignore[attr-defined]
    point = api.point_id("gw-a1", "TT-101")
    fill = {"point_id": point, "year": 2025, "month": 11, "from": "2025-10-01T00:00:00+08:00"}
    # path parameters of such routes: an object both roles may see (plant-a's control room, a default position)
    path_fill = {"position_id": "cr-plant-a"}
    out = []
    for path, ops in doc["paths"].items():
        op = ops.get("get")
        if not op:
            continue
        params = op.get("parameters", [])

        def is_dt(p: dict[str, Any]) -> bool:
            s = p.get("schema", {})
            return any(x.get("format") == "date-time" for x in [s, *s.get("anyOf", [])])

        names = [p["name"] for p in params if p["in"] == "query" and is_dt(p)]
        if names:
            required = {p["name"]: fill[p["name"]] for p in params if p.get("required") and p["in"] == "query"}
            out.append((path.format(**path_fill), names, required))
    return out


def test_every_datetime_query_parameter_refuses_out_of_range_values(api: Api) -> None:
    routes = _datetime_query_routes(api)
    assert {p for p, _, _ in routes} >= {"/api/v1/hazards", "/api/v1/readings", "/api/v1/readings/buckets",
                                         "/api/v1/reports/summary"}, routes
    for path, names, required in routes:
        for name in names:
            for value in BAD_TIMES:
                for role in ("ent_a", "bureau"):
                    r = api.get(path, role, params={**required, name: value})
                    p = _problem(r, 422)
                    assert "out of range" in r.text, (path, name, value, p)
        ok = api.get(path, "bureau", params={**required, names[0]: "2025-11-01T00:00:00+08:00"})
        assert ok.status_code == 200, (path, ok.text)


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/hazards/self-reports", {"title": "x", "detected_at": "{t}"}),
    ("/api/v1/interviews", {"enterprise_id": "ent-a", "held_at": "{t}", "interviewer": "局长", "interviewees": "负责人",
                            "reason": "逾期"}),
    ("/api/v1/tokens", {"role": "bureau", "name": "t", "expires_at": "{t}"}),
])
def test_datetime_body_fields_refuse_out_of_range_values(api: Api, path: str, body: dict[str, str]) -> None:
    for value in BAD_TIMES:
        filled = {k: (value if v == "{t}" else v) for k, v in body.items()}
        _problem(api.post(path, "admin", json=filled), 422)


def test_plan_deadline_and_evidence_window_refuse_out_of_range_values(api: Api) -> None:
    tid = api.new_ticket("ent-a", "confirmed")
    plan = {"responsible_person": "王强", "measures": "更换", "funds_yuan": "1", "contingency_plan": "停用",
            "deadline": "9999-12-31T23:59:59-14:00"}
    _problem(api.post(f"/api/v1/hazards/{tid}/plan", "ent_a", json=plan), 422)
    ev = {"kind": "readings", "point_ids": [api.point_id("gw-a1", "TT-101")],
          "window_from": "0001-01-01T00:00:00+14:00", "window_to": "2025-11-30T00:00:00Z"}
    _problem(api.post(f"/api/v1/hazards/{tid}/evidence", "ent_a", json=ev), 422)


# --- item 9: unknown methods do not mint metric labels -----------------------------------------------


def _method_labels(text: str) -> set[str]:
    return set(re.findall(r'^riskwatch_http_requests_total\{[^}]*method="([^"]*)"', text, re.M))


def test_random_methods_add_no_metric_label_values(api: Api) -> None:
    api.get("/api/v1/hazards", "bureau")
    before = _method_labels(api.client.get("/metrics").text)
    rng = secrets.SystemRandom()
    for i in range(50):
        method = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(3, 12))) + str(i)
        path = rng.choice(["/api/v1/hazards", "/healthz", f"/nowhere/{i}", "/api/v1/hazards/1"])
        r = api.client.request(method, path, headers=api.headers("bureau"))
        assert r.status_code in (404, 405), (method, path, r.status_code)
    text = api.client.get("/metrics").text
    labels = _method_labels(text)
    assert labels <= METHODS | {"other"}, labels - METHODS
    assert "other" in labels and labels - before <= {"other", "HEAD", "OPTIONS"}
    routes = set(re.findall(r'^riskwatch_http_requests_total\{[^}]*route="([^"]*)"', text, re.M))
    assert not any(r.startswith("/nowhere") for r in routes), routes


# --- item 3: reports carry no reward and no reporter for an enterprise -------------------------------

REPORTER, PHONE, AMOUNT = "举报人钱七", "13912345678", "8888.88"


def _tip_with_reward(api: Api) -> int:
    tid = int(api.ok("POST", "/api/v1/hazards/public-tips", "bureau", json={
        "enterprise_id": "ent-a", "plant_id": "plant-a", "title": "群众举报：粉尘清扫记录造假",
        "reporter_name": REPORTER, "reporter_contact": PHONE, "reporter_internal": True})["id"])
    api.ok("POST", f"/api/v1/hazards/{tid}/confirm", "bureau", json={})
    api.ok("POST", f"/api/v1/hazards/{tid}/reward", "bureau",
           json={"status": "approved", "amount_yuan": AMOUNT, "note": "局务会同意"})
    return tid


def _texts(api: Api, role: str) -> dict[str, str]:
    """Every report of the period as text: JSON, CSV decoded, XLSX cells joined."""
    out: dict[str, str] = {}
    for kind, params in (("monthly", {"year": 2025, "month": 11}), ("annual", {"year": 2025})):
        out[f"{kind}.json"] = api.get(f"/api/v1/reports/{kind}", role, params=params).text
        r = api.get(f"/api/v1/reports/{kind}", role, params={**params, "format": "csv"})
        assert r.status_code == 200, r.text
        out[f"{kind}.csv"] = r.content.decode("utf-8-sig")
        r = api.get(f"/api/v1/reports/{kind}", role, params={**params, "format": "xlsx"})
        assert r.status_code == 200, r.text
        wb = load_workbook(io.BytesIO(r.content))
        out[f"{kind}.xlsx"] = "\n".join(str(c.value) for ws in wb.worksheets for row in ws.iter_rows()
                                        for c in row if c.value is not None)
    for name in ("summary", "open-major", "overdue"):
        out[name] = api.get(f"/api/v1/reports/{name}", role).text
    return out


def test_enterprise_reports_omit_rewards_and_reporters(api: Api) -> None:
    tid = _tip_with_reward(api)
    for name, text in _texts(api, "ent_a").items():
        for secret in (AMOUNT, "8888", REPORTER, PHONE, "举报奖励", "reward"):
            assert secret not in text, (name, secret)
    monthly = api.ok("GET", "/api/v1/reports/monthly", "ent_a", params={"year": 2025, "month": 11})
    assert "rewards_approved_yuan" not in monthly
    assert {r["key"]: r["new"] for r in monthly["by_source"]}["public_tip"] == 1  # that a tip exists is shown
    seen = api.ok("GET", f"/api/v1/hazards/{tid}", "ent_a")
    assert seen["tip"] is None and REPORTER not in json.dumps(seen, ensure_ascii=False)
    events = api.get(f"/api/v1/hazards/{tid}/events", "ent_a").text
    assert AMOUNT not in events and REPORTER not in events and PHONE not in events

    bureau = _texts(api, "bureau")
    assert AMOUNT in bureau["monthly.json"] and AMOUNT in bureau["monthly.csv"] and AMOUNT in bureau["annual.csv"]
    assert "8888.88" in bureau["annual.xlsx"] and "举报奖励" in bureau["monthly.xlsx"]
    assert api.ok("GET", f"/api/v1/hazards/{tid}", "bureau")["tip"]["reporter_contact"] == PHONE


# --- item 5: formula injection in the bureau's spreadsheets ------------------------------------------

TITLES = ['=HYPERLINK("http://x","y")', "+1", "-1+1", "@SUM(A1)"]
BASES = ["\t=1", "\r=1", '=HYPERLINK("http://x","y")', "-2"]


def test_enterprise_text_never_becomes_a_formula(api: Api) -> None:
    for title, basis in zip(TITLES, BASES, strict=True):
        api.ok("POST", "/api/v1/hazards/self-reports", "ent_a",
               json={"title": title, "basis": basis, "plant_id": "plant-a"})
    params = {"year": 2025, "month": 11}

    text = api.get("/api/v1/reports/monthly", "bureau", params={**params, "format": "csv"}).content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header = rows.index(next(r for r in rows if r and r[0] == "编号 id"))
    ledger = rows[header + 1:]
    ledger = ledger[:next((i for i, r in enumerate(ledger) if not r), len(ledger))]  # up to the next section
    col_title, col_basis = rows[header].index("标题 title"), rows[header].index("依据 basis")
    assert sorted(r[col_title] for r in ledger) == sorted("'" + t for t in TITLES)
    assert sorted(r[col_basis] for r in ledger) == sorted("'" + b for b in BASES)
    for row in rows:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", (row, cell)

    r = api.get("/api/v1/reports/monthly", "bureau", params={**params, "format": "xlsx"})
    wb = load_workbook(io.BytesIO(r.content))
    cells = [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]
    assert not [c.coordinate for c in cells if c.data_type == "f"]
    # XML parsers normalise a CR in text to LF: "\r=1" comes back as "\n=1" (still text, still quoted)
    payloads = {p.replace("\r", "\n") for p in TITLES + BASES}
    injected = [c for c in cells if isinstance(c.value, str) and c.value[1:] in payloads]
    assert len(injected) == len(TITLES) + len(BASES)
    assert all(c.data_type == "s" and c.value.startswith("'") for c in injected)
    numbers = [c for c in wb["台账 ledger"]["A"][1:]]
    assert numbers and all(c.data_type == "n" for c in numbers)  # ids stay numbers


# --- item 9: the acknowledgement page -----------------------------------------------------------------

HEADERS = {
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def _notification_with_link(api: Api) -> tuple[str, str, int]:
    """An alarm of ent-a and a notification announcing it to the duty officer; (token, item, notification id)."""
    import psycopg

    point = api.point_id("gw-a1", "CO-101")
    with psycopg.connect(api.db_url) as conn:
        raise_alarm(conn, point, T0 - 60)
        conn.commit()
    item = f"alarm:{RULE}|p:{point}"
    gid = api.sql("""INSERT INTO alert_groups (route, receiver, group_key, enterprise_id, group_wait, group_interval,
                         repeat_interval, created_at) VALUES ('root', 'bureau-duty', 'k', 'ent-a', 0, 60, 0,
                         to_timestamp(%s)) RETURNING id""", (T0,))[0][0]
    key = f"rw-{gid}-1-email-duty"
    msg = {"idempotency_key": key, "subject": "【紧急报警】CO浓度高", "text": "", "html": "", "markdown": "",
           "short": "", "ack_url": None, "data": {}}
    nid = api.sql("""INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel,
                         contact_id, address, enterprise_id, items, message, status, next_attempt_at, created_at)
                     VALUES (%s, %s, 1, 'firing', 'group_wait 0s', 'bureau-duty', 'email', 'duty', 'duty@x.cn',
                             'ent-a', %s, %s, 'sent', to_timestamp(%s), to_timestamp(%s)) RETURNING id""",
                  (key, gid, json.dumps([item]), json.dumps(msg, ensure_ascii=False), T0, T0))[0][0]
    secret = api.client.app.state.ctx.link_key()  # type: ignore[attr-defined]
    return ack.sign(secret, key, T0 + 86400), item, int(nid)


def _has_headers(r: Any) -> None:
    for name, value in HEADERS.items():
        assert name in r.headers, (name, r.status_code)
        if name == "content-security-policy":
            have = {d.strip() for d in r.headers[name].split(";")}
            assert {d.strip() for d in value.split(";")} <= have, r.headers[name]
        else:
            assert r.headers[name] == value, (name, r.headers[name])


def test_ack_page_headers_audit_row_and_canonical_token(api: Api) -> None:
    token, item, nid = _notification_with_link(api)
    page = api.client.get(f"/ack/{token}")
    assert page.status_code == 200 and "<form method=\"post\">" in page.text
    _has_headers(page)
    assert api.sql("SELECT count(*) FROM audit_log WHERE path LIKE '/ack%%'")[0][0] == 0  # a GET changes nothing

    body, mac = token.split(".")
    variants = [f"{token}=", f"{body}==.{mac}", f"{body}.{mac}.x", f"{body}.{mac}%20", f"{body}.{mac.swapcase()}",
                f"{body}.{mac}".replace("-", "+"), f"{body}.{mac}A", f"{body}.{mac[:-1]}", f"{token}%0A",
                f"{body.upper()}.{mac}"]
    variants = [v for v in variants if v != token]
    for v in variants:
        for method in ("GET", "POST"):
            r = api.client.request(method, f"/ack/{v}")
            assert r.status_code == 404, (v, method, r.status_code)
            _has_headers(r)
    assert api.sql("SELECT state FROM alarms")[0][0] == "unack"  # no variant acknowledged anything

    done = api.client.post(f"/ack/{token}")
    assert done.status_code == 200 and "1" in done.text
    _has_headers(done)
    assert api.sql("SELECT state FROM alarms")[0][0] == "ack"
    rows = api.sql("SELECT actor, method, path, route, status, changes FROM audit_log WHERE route = '/ack/{token}'"
                   " AND status = 200")
    assert len(rows) == 1, rows
    actor, method, path, route, status, changes = rows[0]
    assert actor == "duty" and method == "POST" and token not in path and status == 200
    assert changes["action"] == "ack_link" and changes["notification_id"] == nid and changes["alarms"] == [item]
    refused = api.sql("SELECT count(*) FROM audit_log WHERE route = '/ack/{token}' AND status = 404")[0][0]
    assert refused == len(variants)  # each refused POST left a trace too
    assert not [r for r in api.sql("SELECT path, query, changes::text FROM audit_log") if token in str(r)]
