"""The console's ledger pages over HTTP (TestClient on the real app and a real TimescaleDB): the candidate queue,
the ticket workflow with the buttons its status and the viewer's role allow, the 五落实 plan form, evidence
uploads (type, size, SHA-256, served back only through a visible ticket), 动态清零, and enterprise scoping
checked by a crawler that follows every link an enterprise user can reach.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.web import files
from api.web.ledger import parse_plan
from hazards import intake, workflow
from hazards.errors import ActionForbidden
from hazards.model import Actor, Plan, Source, Status, Ticket
from tests.web.fix_console import T0, Console, console_fixture  # noqa: F401

pytestmark = pytest.mark.integration

TITLE_A, TITLE_B = "入口温度超限 ent-a-secret-title", "流量异常 ent-b-secret-title"


def png(w: int = 2, h: int = 2) -> bytes:
    """A real, decodable PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def candidate(db_url: str, gateway: str, tag: str, plant: str, enterprise: str, title: str, now: float,
              rule: str = "bm.coal.temp", readings: list[dict[str, Any]] | None = None) -> int:
    """A rule's candidate as the engine inserts it (its evidence window: `readings`, by default six of the
    subject), taken up by the ledger's intake: the sensor ticket's id."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM points WHERE gateway_id = %s AND tag = %s", (gateway, tag)).fetchone()
        assert row is not None
        pid = row[0]
        if readings is None:
            readings = [{"tag": tag, "time": datetime.fromtimestamp(now - 60 + i * 10, UTC).isoformat(),
                         "value": 80.0 + i * 5, "quality": "good"} for i in range(6)]
        at = datetime.fromtimestamp(now, UTC)
        cid = conn.execute(
            """INSERT INTO hazard_candidates (detected_at, rule_id, subject, point_id, gateway_id, plant_id,
                   enterprise_id, basis, title_zh, title_en, catalog_version, reason, evidence)
               VALUES (%s, %s, %s, %s, %s, %s, %s, '《判定标准》第四条', %s, 'test', 'test',
                       '超过上限 above limit', %s) RETURNING id""",
            (at, rule, f"p:{pid}", pid, gateway, plant, enterprise, title, Jsonb({"readings": readings}))).fetchone()
        assert cid is not None
        with conn.transaction():
            return intake.take_up(conn, int(cid[0]))


@pytest.fixture
def tickets(console: Console) -> Iterator[dict[str, int]]:
    yield {"a": candidate(console.db_url, "gw-a1", "TT-101", "plant-a", "ent-a", TITLE_A, T0 - 30),
           "b": candidate(console.db_url, "gw-b1", "FT-301", "plant-b", "ent-b", TITLE_B, T0 - 30)}


def signed(console: Console, username: str) -> TestClient:
    c = console.new_client()
    r = console.login(username, client=c)
    assert r.status_code == 303, r.text
    return c


def csrf(c: TestClient, console: Console, path: str) -> str:
    r = c.get(console.url(path))
    assert r.status_code == 200, r.text
    return console.csrf_of(r.text)


def act(c: TestClient, console: Console, hid: int, name: str, **form: str) -> Any:
    token = form.pop("csrf", None) or csrf(c, console, f"/hazards/{hid}")
    return c.post(console.url(f"/hazards/{hid}/act/{name}"), data={"csrf": token, **form}, follow_redirects=False)


def status_of(console: Console, hid: int) -> str:
    return str(console.sql("SELECT status FROM hazards WHERE id = %s", (hid,))[0][0])


def open_now(c: TestClient, console: Console) -> int:
    r = c.get(console.url("/reports/clearance"))
    assert r.status_code == 200
    m = re.search(r'data-testid="open-major-now">(\d+)<', r.text)
    assert m is not None
    return int(m.group(1))


PLAN = {"responsible_person": "王强（设备部经理）", "responsible_phone": "13900000003",
        "measures": "更换窑筒体耐火砖，加装红外扫描", "funds_yuan": "85000.00", "deadline": "2025-12-31",
        "contingency_plan": "整改期间降低窑速，专人值守"}


def test_the_ledger_flow_roles_and_buttons(console: Console, tickets: dict[str, int]) -> None:
    hid = tickets["a"]
    duty, chief, ea = signed(console, "duty"), signed(console, "chief"), signed(console, "ea")
    assert open_now(duty, console) == 0

    # the queue shows the candidate with its evidence: title, basis, plant, the readings chart with limits
    r = duty.get(console.url("/candidates"))
    assert r.status_code == 200
    assert TITLE_A in r.text and "《判定标准》第四条" in r.text and "plant-a" not in r.text  # names, not ids
    assert 'data-testid="evidence-chart"' in r.text
    assert "&#34;kind&#34;: &#34;hihi&#34;, &#34;value&#34;: 80.0" in r.text  # the rule's limit, for the chart
    assert ea.get(console.url("/candidates")).status_code == 403  # enterprises do not judge
    token = console.csrf_of(r.text)
    r = duty.post(console.url(f"/hazards/{hid}/act/confirm"), data={"csrf": token, "back": "/candidates",
                                                                   "comment": "确认"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/candidates"
    assert status_of(console, hid) == "confirmed"
    assert open_now(duty, console) == 1 and open_now(ea, console) == 1

    # the enterprise files the plan: an incomplete one names what is missing and changes nothing
    page = ea.get(console.url(f"/hazards/{hid}")).text
    assert 'data-action="file_plan"' in page and 'data-action="verify"' not in page
    r = act(ea, console, hid, "file_plan", **{**PLAN, "measures": " ", "funds_yuan": "abc"})
    assert r.status_code == 422
    assert re.findall(r'data-field="(\w+)"[^>]*>[^<]*<span class="error" data-testid="missing"', r.text) == [
        "measures", "funds_yuan"] or ("整改措施" in r.text and "整改资金" in r.text)
    assert 'class="missing" data-field="measures"' in r.text and 'class="missing" data-field="funds_yuan"' in r.text
    assert 'class="missing" data-field="deadline"' not in r.text
    assert status_of(console, hid) == "confirmed"
    assert act(ea, console, hid, "file_plan", **PLAN).status_code == 303
    assert status_of(console, hid) == "plan_filed"
    assert act(ea, console, hid, "start_rectification", comment="施工队进场").status_code == 303

    # a photo, stored with its SHA-256, shown on the ticket
    photo = png()
    token = csrf(ea, console, f"/hazards/{hid}")
    r = ea.post(console.url(f"/hazards/{hid}/files"), data={"csrf": token, "note": "整改后照片"},
                files={"file": ("after.png", photo, "image/png")}, follow_redirects=False)
    assert r.status_code == 303, r.text
    (att,) = console.sql("SELECT attachment FROM hazard_evidence WHERE hazard_id = %s AND kind = 'attachment'",
                         (hid,))[0]
    assert att["sha256"] == hashlib.sha256(photo).hexdigest() and att["size_bytes"] == len(photo)
    assert att["content_type"] == "image/png" and att["filename"] == "after.png"
    link = re.search(r'href="(/console/hazards/\d+/files/\d+)" data-testid="file-link"',
                     ea.get(console.url(f"/hazards/{hid}")).text)
    assert link is not None
    got = ea.get(link.group(1))
    assert got.status_code == 200 and got.content == photo and got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"

    assert act(ea, console, hid, "submit", comment="已更换耐火砖").status_code == 303
    assert status_of(console, hid) == "submitted"
    # the enterprise cannot close its own ticket
    assert act(ea, console, hid, "verify").status_code == 403

    # a duty officer sees no verify button, and a forged verify is refused by the workflow
    page = duty.get(console.url(f"/hazards/{hid}")).text
    assert 'data-action="verify"' not in page and 'data-action="send_back"' in page
    assert 'data-action="supervise"' not in page
    r = act(duty, console, hid, "verify", comment="伪造销号")
    assert r.status_code == 403 and "科长" in r.text
    r = act(duty, console, hid, "supervise", level="county", comment="督办")
    assert r.status_code == 403
    assert status_of(console, hid) == "submitted"

    # the section chief verifies and closes; the timeline names every actor
    page = chief.get(console.url(f"/hazards/{hid}")).text
    assert 'data-action="verify"' in page and 'data-action="supervise"' in page
    assert act(chief, console, hid, "verify", comment="现场核查合格，准予销号").status_code == 303
    assert status_of(console, hid) == "closed"
    page = chief.get(console.url(f"/hazards/{hid}")).text
    timeline = page.split('data-testid="timeline"', 1)[1]
    for actor in ("system", "duty", "ea", "chief"):
        assert f'<span class="actor">{actor}</span>' in timeline
    assert "现场核查合格，准予销号" in timeline
    assert open_now(duty, console) == 0
    audit = console.sql("SELECT actor, changes->>'action', status FROM audit_log WHERE changes->>'action' LIKE"
                        " 'hazard_%%' ORDER BY id")
    assert ("duty", "hazard_confirm", 303) in audit and ("chief", "hazard_verify", 303) in audit
    assert ("duty", "refused", 403) not in audit  # refusals are audited under their own action
    assert any(a == "duty" and s == 403 for a, _x, s in audit) or console.sql(
        "SELECT count(*) FROM audit_log WHERE actor = 'duty' AND status = 403")[0][0] >= 2


def test_a_form_post_without_csrf_is_refused(console: Console, tickets: dict[str, int]) -> None:
    duty = signed(console, "duty")
    r = duty.post(console.url(f"/hazards/{tickets['a']}/act/confirm"), data={"comment": "x"},
                  follow_redirects=False)
    assert r.status_code == 403 and status_of(console, tickets["a"]) == "candidate"
    r = duty.post(console.url(f"/hazards/{tickets['a']}/files"), files={"file": ("a.png", png(), "image/png")})
    assert r.status_code == 403


def test_uploads_are_checked(console: Console, tickets: dict[str, int], tmp_path: Path) -> None:
    hid = tickets["a"]
    chief = signed(console, "chief")
    act(chief, console, hid, "confirm")

    def up(name: str, body: bytes, ctype: str) -> int:
        token = csrf(chief, console, f"/hazards/{hid}")
        return chief.post(console.url(f"/hazards/{hid}/files"), data={"csrf": token},
                          files={"file": (name, body, ctype)}, follow_redirects=False).status_code

    assert up("evil.jpg", b"<script>alert(1)</script>", "image/jpeg") == 415   # the bytes decide
    assert up("a.png", b"\xff\xd8\xff\xe0" + b"0" * 100, "image/png") == 415     # claim disagrees with bytes
    assert up("empty.png", b"", "image/png") == 422
    assert up("huge.png", png() + b"\0" * files.MAX_BYTES, "image/png") == 413
    assert up("../../etc/passwd.png", png(), "image/png") == 303
    (att,) = console.sql("SELECT attachment FROM hazard_evidence WHERE kind = 'attachment'")[0]
    assert att["filename"] == "passwd.png"
    assert len(console.sql("SELECT 1 FROM hazard_evidence WHERE kind = 'attachment'")) == 1
    stored = list((tmp_path / "evidence").rglob("*"))
    assert [p.name for p in stored if p.is_file()] == [hashlib.sha256(png()).hexdigest()]
    # a closed ticket takes no more files
    console.sql("UPDATE hazards SET status = 'closed' WHERE id = %s RETURNING id", (hid,))
    assert up("late.png", png(3, 3), "image/png") == 409


def test_enterprise_a_sees_nothing_of_b(console: Console, tickets: dict[str, int]) -> None:
    # both tickets confirmed, each with a photo of its own
    chief = signed(console, "chief")
    for key in ("a", "b"):
        act(chief, console, tickets[key], "confirm")
    eb = signed(console, "eb")
    token = csrf(eb, console, f"/hazards/{tickets['b']}")
    assert eb.post(console.url(f"/hazards/{tickets['b']}/files"), data={"csrf": token},
                   files={"file": ("b-secret.png", png(4, 4), "image/png")}).status_code == 200
    b_file = console.sql("SELECT id FROM hazard_evidence WHERE hazard_id = %s AND kind = 'attachment'",
                         (tickets["b"],))[0][0]

    ea = signed(console, "ea")
    # direct guesses at B's ticket, its file and its actions: not found, nothing changed
    assert ea.get(console.url(f"/hazards/{tickets['b']}")).status_code == 404
    assert ea.get(console.url(f"/hazards/{tickets['b']}/files/{b_file}")).status_code == 404
    assert ea.get(console.url(f"/hazards/{tickets['a']}/files/{b_file}")).status_code == 404  # forged pairing
    token = csrf(ea, console, "/hazards")
    r = ea.post(console.url(f"/hazards/{tickets['b']}/act/comment"), data={"csrf": token, "comment": "x"})
    assert r.status_code == 404
    assert ea.post(console.url(f"/hazards/{tickets['b']}/files"), data={"csrf": token},
                   files={"file": ("x.png", png(), "image/png")}).status_code == 404
    # a filter naming B is ignored for an enterprise user
    assert TITLE_B not in ea.get(console.url("/hazards?enterprise=ent-b")).text

    # the crawler: every link and form target reachable from A's pages, every response checked for B
    secrets = ("ent-b", "plant-b", "gw-b1", "FT-301", TITLE_B, "b-secret", "test.b.secret-rule")
    seen: dict[str, int] = {}
    todo = ["/console/"]
    while todo:
        path = todo.pop()
        if path in seen or len(seen) > 200:
            continue
        r = ea.get(path, follow_redirects=False)
        seen[path] = r.status_code
        if "/static/" in path:  # the same files for everyone (echarts.min.js holds "…ent-b…" by chance)
            continue
        body = r.content.decode("utf-8", "replace")
        for s in secrets:
            assert s not in body, (path, s)
        if r.headers.get("content-type", "").startswith("text/html"):
            for ref in re.findall(r'(?<![\w-])(?:href|src|action|data-rows)="([^"]+)"', body):
                u = urlsplit(urljoin("http://testserver" + path, ref.replace("&amp;", "&")))
                if u.netloc == "testserver" and u.path.startswith("/console/") and "/logout" not in u.path \
                        and not u.path.endswith("/events") and not u.path.startswith("/console/lang/"):
                    todo.append(u.path + (f"?{u.query}" if u.query else ""))
    assert seen.get(f"/console/hazards/{tickets['a']}") == 200 and "/console/reports/clearance" in seen
    bad = {p: c for p, c in seen.items() if c >= 400 and c != 405}  # 405: a form target fetched by GET
    assert not bad, bad
    # and B's user sees its own
    assert TITLE_B in eb.get(console.url("/hazards")).text and TITLE_A not in eb.get(console.url("/hazards")).text


def test_parse_plan_names_what_is_missing() -> None:
    plan, missing = parse_plan({**PLAN}, T0)
    assert missing == [] and plan is not None and plan.funds_yuan == Decimal("85000.00")
    assert datetime.fromtimestamp(plan.deadline, UTC).isoformat() == "2025-12-31T15:59:59+00:00"  # CST day end
    assert parse_plan({}, T0)[1] == ["responsible_person", "measures", "funds_yuan", "deadline", "contingency_plan"]
    assert parse_plan({**PLAN, "funds_yuan": "-1", "deadline": "31/12/2025"}, T0)[1] == ["funds_yuan", "deadline"]
    assert parse_plan({**PLAN, "funds_yuan": "NaN"}, T0)[1] == ["funds_yuan"]


def test_only_those_who_may_verify_close_tokens_unaffected() -> None:
    t = Ticket(7, "ent-a", Source.SENSOR, Status.SUBMITTED,
               plan=Plan("王", "m", Decimal(1), T0 + 9e6, "c"))
    token = Actor("token:bureau", "bureau")  # an API bearer token: no finer role, its API role's rights
    duty = Actor("duty", "bureau", may_verify=False)
    assert "verify" in workflow.allowed_actions(t, token) and "supervise" in workflow.allowed_actions(t, token)
    assert "verify" not in workflow.allowed_actions(t, duty) and "supervise" not in workflow.allowed_actions(t, duty)
    assert "send_back" in workflow.allowed_actions(t, duty)
    assert workflow.apply(t, workflow.Verify(), token, T0)[0].status is Status.CLOSED
    with pytest.raises(ActionForbidden):
        workflow.apply(t, workflow.Verify(), duty, T0)


def test_file_checks_are_pure() -> None:
    s = files.check(png(), "image/png", "C:\\photos\\现场.PNG")
    assert (s.content_type, s.filename, s.size_bytes) == ("image/png", "现场.PNG", len(png()))
    assert files.check(b"%PDF-1.7 x", None, "report").filename == "report.pdf"
    assert files.check(b"\xff\xd8\xff\xe0abc", "application/octet-stream", "p.jpeg").filename == "p.jpeg"
    with pytest.raises(ValueError):
        files.path_of(Path("/tmp"), "../../etc/passwd")


def test_multipart_is_parsed_without_an_upload_library() -> None:
    import httpx
    req = httpx.Request("POST", "http://x/", data={"csrf": "t", "note": "回水管路"},
                        files={"file": ("整改后.png", png() + b"\r\n--boundary-lookalike\r\n", "image/png")})
    fields, up = files.parse_multipart(req.headers["content-type"], req.read())
    assert fields == {"csrf": "t", "note": "回水管路"}
    assert up == ("整改后.png", "image/png", png() + b"\r\n--boundary-lookalike\r\n")  # bytes intact
    two = httpx.Request("POST", "http://x/", files=[("file", ("a.png", png(), "image/png")),
                                                     ("file", ("b.png", png(), "image/png"))])
    with pytest.raises(ValueError):
        files.parse_multipart(two.headers["content-type"], two.read())
    many = httpx.Request("POST", "http://x/", data={f"f{i}": "x" for i in range(20)}, files={"file": ("a.png", png())})
    with pytest.raises(ValueError):
        files.parse_multipart(many.headers["content-type"], many.read())
    with pytest.raises(ValueError):
        files.parse_multipart("multipart/form-data", b"")


def test_clearance_is_a_trend_per_day_industry_and_enterprise(console: Console, tickets: dict[str, int]) -> None:
    # A confirmed 10 days ago and closed 4 days ago; B confirmed 2 days ago and still open
    day = 86400.0
    for hid, confirmed, closed in ((tickets["a"], T0 - 10 * day, T0 - 4 * day), (tickets["b"], T0 - 2 * day, None)):
        console.sql("UPDATE hazards SET status = %s, confirmed_at = to_timestamp(%s), closed_at = to_timestamp(%s)"
                    " WHERE id = %s RETURNING id", ("closed" if closed else "confirmed", confirmed, closed, hid))
    duty, ea, eb = signed(console, "duty"), signed(console, "ea"), signed(console, "eb")

    def chart(c: TestClient, testid: str = "clearance-chart") -> dict[str, Any]:
        html = c.get(console.url("/reports/clearance")).text
        m = re.search(r'data-chart="([^"]+)" data-testid="' + testid + '"', html)
        assert m is not None
        import html as h
        return dict(json.loads(h.unescape(m.group(1))))

    total = chart(duty)["series"][0]["data"]  # 31 points: 30 days ago … now
    assert len(total) == 31
    assert total[-11:] == [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1]
    assert sum(total[:20]) == 0
    names = {s["name"] for s in chart(duty)["series"]}
    assert {"水泥", "耐火材料"} <= names  # per industry
    assert len(chart(duty, "clearance-enterprise-chart")["series"]) == 2  # per enterprise
    assert open_now(duty, console) == 1 and open_now(ea, console) == 0 and open_now(eb, console) == 1
    a_series = chart(ea)["series"][0]["data"]
    assert a_series[-11:] == [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]  # A sees only its own history
    assert len(chart(ea, "clearance-enterprise-chart")["series"]) == 1


def test_limits_name_what_they_limit() -> None:
    from api.web.charts import limits_of
    from rules.model import load_catalog
    rules = {rid: r for rid, (_, r) in load_catalog(None).rules.items()}
    lim = limits_of(rules["mach.cooling.interlock"])
    assert {"name": "Δ subject-out hi", "kind": "hi", "value": 3.0} in lim
    assert {"name": "temp_out hi", "kind": "hi", "value": 55.0} in lim
    assert [d["kind"] for d in limits_of(rules["bm.coal.temp"])] == ["hi", "hihi"]


def test_a_public_tip_carries_its_reporter_and_reward_for_the_bureau_only(console: Console) -> None:
    """群众举报: the bureau sees who reported and decides the reward from the ticket page once the tip is confirmed
    as a major hazard; the enterprise it names sees neither the reporter nor the reward, and cannot set one."""
    from hazards import ledger

    with psycopg.connect(console.db_url, autocommit=True) as conn:
        hid = ledger.open_ticket(conn, ledger.NewTicket(
            source=Source.PUBLIC_TIP, enterprise_id="ent-a", title="除尘器泄爆片被封堵", plant_id="plant-a",
            reporter_name="张举报", reporter_contact="13800000009", comment="电话举报"),
            Actor("duty", "bureau"), T0)
    duty, chief, ea = (signed(console, u) for u in ("duty", "chief", "ea"))
    page = duty.get(console.url(f"/hazards/{hid}")).text
    assert 'data-testid="tip"' in page and "张举报" in page and "13800000009" in page
    assert act(duty, console, hid, "confirm", comment="现场核实属实").status_code == 303
    # not a number, out of range, no decision: refused with the reason, nothing changed
    for form, why in (({"status": "approved", "amount_yuan": "两千"}, "数字"),
                      ({"status": "approved", "amount_yuan": "-5"}, "大于 0"),
                      ({"status": "granted", "amount_yuan": "10"}, "奖励决定")):
        r = act(chief, console, hid, "set_reward", **form)
        assert r.status_code == 422 and why in r.text, (form, r.status_code)
    assert console.sql("SELECT reward_status FROM hazards WHERE id = %s", (hid,))[0][0] == "pending"
    r = act(chief, console, hid, "set_reward", status="approved", amount_yuan="2000", comment="经局务会研究同意")
    assert r.status_code == 303, r.text
    assert console.sql("SELECT reward_status, reward_amount_yuan FROM hazards WHERE id = %s", (hid,))[0] == (
        "approved", Decimal("2000.00"))
    shown = chief.get(console.url(f"/hazards/{hid}")).text
    assert 'data-status="approved"' in shown and "2000.00" in shown
    # the enterprise: its ticket, without the tip's reporter or reward, and no way to set one
    mine = ea.get(console.url(f"/hazards/{hid}"))
    assert mine.status_code == 200
    for secret in ("张举报", "13800000009", 'data-testid="tip"', "set_reward", "2000.00"):
        assert secret not in mine.text, secret
    forged = ea.post(console.url(f"/hazards/{hid}/act/set_reward"),
                     data={"csrf": console.csrf_of(mine.text), "status": "paid", "amount_yuan": "1"},
                     follow_redirects=False)
    assert forged.status_code == 403
    assert console.sql("SELECT reward_status FROM hazards WHERE id = %s", (hid,))[0][0] == "approved"
