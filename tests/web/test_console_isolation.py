"""Enterprise isolation across the whole console, found by crawling rather than by a list of pages.

Against `riskwatch serve` on real TimescaleDB and Mosquitto (the browser test's `served`), two enterprises of
the sample county each get data in every table a page may show: an alarm, a confirmed hazard with an uploaded
photo, a self-report, dead letters, an unmapped tag, a dead notification (gateways and points come with the
site). Then, for each enterprise user, a crawler starts at `/console/` and follows every link on every HTML
answer (`href`, `src`, `hx-get`, `data-rows`, GET form actions: `simulators.bench.console_pages.extract_links`,
the same the page-time bench follows), records every (path, status), and asserts:

- none of the other enterprise's identifiers (id and name, plant ids and names, gateway ids and names, tags
  only it has, its alarm's rule id and subjects, its hazard's title and URL, its file URL, its dead letter,
  unmapped tag and notification texts) appears in any answer;
- every URL the other enterprise's own crawl reached, replayed by this user, shows none of them either,
  and the other's object pages (ticket, file, gateway, point …: every crawled URL naming one of its ids)
  answer 403/404;
- no answer is a server error, and the crawl reached at least the pages in the navigation bar;
- the event stream `/console/events`, read while the other enterprise's alarm fires, carries this
  enterprise's alarm and nothing of the other's.

A bureau duty officer's and an administrator's crawls answer 200 everywhere. Every POST route of the console
app (enumerated from `create_console(...)`'s routes, so routes added later are covered) refuses a request
with a valid session but without the CSRF token, with a forged one and with another session's token (403),
and nothing changes in the database. New pages are covered without editing this file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import psycopg
import pytest
from starlette.routing import Route

from api.web import PREFIX
from hazards import ledger, workflow
from hazards.model import Actor, Source
from simulators.bench.console_pages import crawl, page_key
from tests.conftest import Site
from tests.web.fix_console import T0, Console, console_fixture, insert_alarm  # noqa: F401
from tests.web.test_console_browser import PASSWORD, Server, Stream
from tests.web.test_console_browser import served as served  # noqa: F401 - the fixture
from tests.web.test_console_ledger_http import candidate, png

pytestmark = [pytest.mark.integration, pytest.mark.slow]

A, B = "dy-foundry", "qsl-cement"  # the enterprises of the browser test's users "dy" and "qsl"
USER_OF = {A: "dy", B: "qsl"}
NAV = ("/console/", "/console/hazards", "/console/reports/clearance")
CRAWL_LIMIT = 1500
#: Strings shorter than this are not searched for (a two-character tag matches by chance).
MIN_SECRET = 4


# --- data of one enterprise ----------------------------------------------------------------------


def _rows(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def seed_enterprise(db_url: str, ent: str, now: float) -> dict[str, Any]:
    """An alarm, a confirmed sensor hazard, a self-report, dead letters, an unmapped tag and a dead notification
    for `ent`, each with a marker no other enterprise's data holds. Returns its ids."""
    mark = ent.split("-")[0]
    (plant,), = _rows(db_url, "SELECT min(id) FROM plants WHERE enterprise_id = %s", (ent,))
    gw, tag, pid = _rows(db_url, """SELECT p.gateway_id, p.tag, p.id FROM points p
                                    JOIN gateways g ON g.id = p.gateway_id
                                    WHERE g.plant_id = %s ORDER BY p.id LIMIT 1""", (plant,))[0]
    rule = f"test.{mark}.secret-rule"
    subject = insert_alarm(db_url, rule, gw, tag, plant, now - 30)
    title = f"隐患 {mark}-secret-title"
    hid = candidate(db_url, gw, tag, plant, ent, title, now - 20)
    with psycopg.connect(db_url) as conn:
        ledger.act(conn, hid, workflow.Confirm("确认 confirmed"), Actor("chief", "bureau"), now - 10)
        own = ledger.open_ticket(conn, ledger.NewTicket(
            source=Source.SELF_REPORT, title=f"自查 {mark}-secret-selfreport", description="自查发现",
            enterprise_id=ent, plant_id=plant, detected_at=now - 5), Actor(f"{mark}-officer", "enterprise", ent),
            now - 5)
        conn.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        at = datetime.fromtimestamp(now, UTC)
        conn.execute("""INSERT INTO dead_letters (received_at, gateway_id, topic, reason, detail, payload)
                        VALUES (%s, %s, %s, 'invalid_json', %s, '\\x7b'::bytea)""",
                     (at, gw, f"rw/v1/{gw}/telemetry", f"{mark}-secret-deadletter"))
        conn.execute("""INSERT INTO unmapped_points (gateway_id, tag, first_seen, last_seen, count, last_value)
                        VALUES (%s, %s, %s, %s, 3, 1.5)""", (gw, f"{mark.upper()}-SECRET-TAG", at, at))
        (group,), = conn.execute(
            """INSERT INTO alert_groups (route, receiver, group_key, enterprise_id, group_wait, group_interval,
                   repeat_interval, created_at) VALUES ('root', 'test', %s, %s, 10, 300, 3600, %s) RETURNING id""",
            (f"{mark}-group", ent, at)).fetchall()
        conn.execute(
            """INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel,
                   enterprise_id, items, message, status, attempts, next_attempt_at, last_error, created_at)
               VALUES (%s, %s, 1, 'firing', %s, 'test', 'webhook', %s, '[]', '{}', 'dead', 8, %s, %s, %s)""",
            (f"{mark}-n1", group, f"{mark}-secret-notice", ent, at, f"{mark}-secret-error", at))
    return {"plant": plant, "gateway": gw, "tag": tag, "point": pid, "rule": rule, "subject": subject,
            "hazard": hid, "self_report": own, "title": title, "mark": mark}


def secrets_of(db_url: str, ent: str, seeded: dict[str, Any]) -> set[str]:
    """Every string that names `ent` or its objects and no other enterprise's (ids, names, tags, markers)."""
    def strings(where: str, params: tuple[Any, ...]) -> set[str]:
        out: set[str] = set()
        for sql in ("SELECT e.id, e.name FROM enterprises e WHERE {w}",
                    "SELECT pl.id, pl.name FROM plants pl JOIN enterprises e ON e.id = pl.enterprise_id WHERE {w}",
                    "SELECT g.id, g.name FROM gateways g JOIN plants pl ON pl.id = g.plant_id "
                    "JOIN enterprises e ON e.id = pl.enterprise_id WHERE {w}",
                    "SELECT d.name, p.tag FROM points p JOIN devices d ON d.id = p.device_id JOIN plants pl "
                    "ON pl.id = d.plant_id JOIN enterprises e ON e.id = pl.enterprise_id WHERE {w}"):
            for row in _rows(db_url, sql.format(w=where), params):
                out |= {str(v) for v in row if v}
        return out

    mine = strings("e.id = %s", (ent,))
    others = strings("e.id <> %s", (ent,))
    m = seeded["mark"]
    markers = {seeded["rule"], seeded["title"], f"{m}-secret", f"{m.upper()}-SECRET-TAG"}
    return {s for s in mine - others if len(s) >= MIN_SECRET} | markers


def object_ids(db_url: str, ent: str) -> set[str]:
    """The ids a URL of `ent`'s objects carries in a path segment: hazards, evidence, gateways, points, plants."""
    out = {ent}
    for sql in ("SELECT id::text FROM hazards WHERE enterprise_id = %s",
                "SELECT ev.id::text FROM hazard_evidence ev JOIN hazards h ON h.id = ev.hazard_id "
                "WHERE h.enterprise_id = %s",
                "SELECT g.id FROM gateways g JOIN plants pl ON pl.id = g.plant_id WHERE pl.enterprise_id = %s",
                "SELECT p.id::text FROM points p JOIN gateways g ON g.id = p.gateway_id JOIN plants pl "
                "ON pl.id = g.plant_id WHERE pl.enterprise_id = %s",
                "SELECT id FROM plants WHERE enterprise_id = %s"):
        out |= {str(r[0]) for r in _rows(db_url, sql, (ent,))}
    return out


def point_subject_patterns(db_url: str, ent: str) -> list[re.Pattern[str]]:
    """`p:<id>` subjects (plain and URL-encoded) of the enterprise's points: not matched inside a longer id."""
    ids = [r[0] for r in _rows(db_url, """SELECT p.id FROM points p JOIN gateways g ON g.id = p.gateway_id
                                          JOIN plants pl ON pl.id = g.plant_id WHERE pl.enterprise_id = %s""", (ent,))]
    alt = "|".join(str(i) for i in ids)
    return [re.compile(rf"(?<![\w-])p(?::|%3A|%3a)(?:{alt})(?!\d)")] if ids else []


# --- crawling as a user ------------------------------------------------------------------------


class Visitor:
    """A signed-in httpx client on the served console that keeps every (url, status) it met."""

    def __init__(self, base: str, username: str):
        self.client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
        self.username = username
        self.visited: dict[str, int] = {}
        self.bodies: dict[str, str] = {}
        r = self.client.get(PREFIX + "/login")
        token = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert token is not None
        r = self.client.post(PREFIX + "/login", data={"csrf": token.group(1), "username": username,
                                                      "password": PASSWORD})
        assert r.status_code == 303, (username, r.status_code, r.text[:300])

    def get(self, url: str) -> tuple[int, str, str]:
        try:
            r = self.client.get(url)
        except httpx.HTTPError as exc:  # a dropped connection is a failure of that page, recorded as such
            self.visited[url] = 599
            self.bodies[url] = f"connection error: {exc}"
            return 599, "", ""
        ctype = r.headers.get("content-type", "")
        body = r.content.decode("utf-8", "replace")
        self.visited[url] = r.status_code
        self.bodies[url] = body + "\n" + "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        return r.status_code, ctype, body

    def crawl(self) -> dict[str, int]:
        crawl(self.get, PREFIX + "/", samples=CRAWL_LIMIT, limit=CRAWL_LIMIT)
        return self.visited

    def session(self) -> str:
        return str(self.client.cookies.get("rw_session"))

    def close(self) -> None:
        self.client.close()


def leaks(body: str, secrets: set[str], patterns: list[re.Pattern[str]], url: str = "") -> list[str]:
    """Which secrets a body holds (a secret the URL itself carries is not counted: a page may echo its query)."""
    asked = unquote(url)
    found = [s for s in secrets if s in body and s not in asked]
    found += [p.pattern[:40] for p in patterns if p.search(body) and not p.search(url)]
    return found


@pytest.fixture
def county(served: tuple[Server, Site, str]) -> Iterator[tuple[Server, dict[str, dict[str, Any]]]]:  # noqa: F811
    s, site, _token = served
    now = time.time()
    data = {ent: seed_enterprise(site.db_url, ent, now) for ent in (A, B)}
    # B's photo, uploaded through B's own console page
    qsl = Visitor(s.base, USER_OF[B])
    page = qsl.client.get(f"{PREFIX}/hazards/{data[B]['hazard']}")
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and m is not None
    r = qsl.client.post(f"{PREFIX}/hazards/{data[B]['hazard']}/files", data={"csrf": m.group(1)},
                        files={"file": ("qsl-secret-photo.png", png(5, 5), "image/png")})
    assert r.status_code == 303, r.text[:300]
    (fid,), = _rows(site.db_url, "SELECT id FROM hazard_evidence WHERE hazard_id = %s AND kind = 'attachment'",
                    (data[B]["hazard"],))
    data[B]["file"] = f"{PREFIX}/hazards/{data[B]['hazard']}/files/{fid}"
    qsl.close()
    yield s, data


def _is_static(url: str) -> bool:
    return url.startswith(PREFIX + "/static/")


@pytest.mark.parametrize("viewer_ent, other_ent", [(A, B), (B, A)])
def test_an_enterprise_user_crawling_every_page_sees_nothing_of_the_other(
        viewer_ent: str, other_ent: str, county: tuple[Server, dict[str, dict[str, Any]]]) -> None:
    s, data = county
    db_url = s.env["RISKWATCH_DB_URL"]
    secrets = secrets_of(db_url, other_ent, data[other_ent])
    patterns = point_subject_patterns(db_url, other_ent)
    assert {other_ent, data[other_ent]["gateway"], data[other_ent]["title"]} <= secrets
    me, other = Visitor(s.base, USER_OF[viewer_ent]), Visitor(s.base, USER_OF[other_ent])
    try:
        visited = me.crawl()
        # the crawl went through the console, not just the board
        for nav in NAV:
            assert visited.get(nav) == 200, (nav, visited.get(nav))
        assert len(visited) >= len(NAV) + 1, visited
        assert any(page_key(u) == "/console/hazards/{id}" for u in visited), "own ticket not reached"
        errors = {u: c for u, c in visited.items() if c >= 500 or c in (401, 403, 404)}
        assert not errors, f"{USER_OF[viewer_ent]}'s own crawl met errors: {errors}"
        found = {u: leaks(me.bodies[u], secrets, patterns) for u in visited if not _is_static(u)}
        found = {u: f for u, f in found.items() if f}
        assert not found, f"{USER_OF[viewer_ent]} sees {other_ent}'s data: {found}"

        # the other's own crawl: every URL it reached, replayed by this user, shows nothing of it either
        theirs = other.crawl()
        assert any(unquote(u).startswith(f"{PREFIX}/hazards/{data[other_ent]['hazard']}") for u in theirs)
        ids = object_ids(db_url, other_ent)
        od = data[other_ent]
        explicit = [f"{PREFIX}/hazards/{od['hazard']}", f"{PREFIX}/hazards/{od['self_report']}",
                    f"{PREFIX}/gateways/{od['gateway']}", f"{PREFIX}/points/{od['point']}"]
        if "file" in data[other_ent]:
            explicit.append(data[other_ent]["file"])
        replay: dict[str, int] = {}
        for url in sorted(set(theirs) | set(explicit)):
            if _is_static(url):
                continue
            code, _ctype, body = me.get(url)
            replay[url] = code
            assert code < 500, (url, code, me.bodies[url][:500])
            leaked = leaks(me.bodies[url], secrets, patterns, url)
            assert not leaked, (url, leaked)
            segments = {unquote(p) for p in urlsplit(url).path.split("/")}
            if segments & ids:  # one of the other's objects: as if it did not exist
                assert code in (403, 404), (url, code)
        for url in explicit:
            assert replay[url] in (403, 404), (url, replay[url])
        print(f"\n{USER_OF[viewer_ent]}: crawled {len(visited)} URLs ({len({page_key(u) for u in visited})} pages),"
              f" replayed {len(replay)} of {USER_OF[other_ent]}'s, {len(secrets)} identifiers checked")
        if "file" in data[other_ent]:
            assert other.get(data[other_ent]["file"])[0] == 200  # the owner does get it

        # the live feed: the other's alarm fires while this user watches; only its own comes through
        stream = Stream(s.base, me.session())
        try:
            assert stream.open.wait(10), "event stream did not open"
            now = time.time()
            mine = data[viewer_ent]
            theirs_d = data[other_ent]
            insert_alarm(db_url, theirs_d["rule"] + ".live", theirs_d["gateway"], theirs_d["tag"],
                         theirs_d["plant"], now)
            insert_alarm(db_url, mine["rule"] + ".live", mine["gateway"], mine["tag"], mine["plant"], now)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not any(
                    e.get("rule_id") == mine["rule"] + ".live" for _k, e in stream.events):
                time.sleep(0.1)
            time.sleep(1.0)  # let anything else that was coming arrive
        finally:
            stream.close()
        assert any(e.get("rule_id") == mine["rule"] + ".live" for _k, e in stream.events), stream.events
        text = repr(stream.events)
        assert not leaks(text, secrets | {theirs_d["rule"] + ".live"}, patterns), (text, secrets)
    finally:
        me.close()
        other.close()


@pytest.mark.parametrize("username", ["duty", "admin"])
def test_a_bureau_crawl_answers_200_everywhere(username: str,
                                               county: tuple[Server, dict[str, dict[str, Any]]]) -> None:
    s, data = county
    v = Visitor(s.base, username)
    try:
        visited = v.crawl()
    finally:
        v.close()
    # the control of the enterprise crawls' detector: the bureau does see both enterprises' identifiers
    db_url = s.env["RISKWATCH_DB_URL"]
    everything = "\n".join(body for u, body in v.bodies.items() if not _is_static(u))
    for ent in (A, B):
        seen = leaks(everything, secrets_of(db_url, ent, data[ent]), point_subject_patterns(db_url, ent))
        assert {data[ent]["title"], data[ent]["rule"]} <= set(seen), (ent, seen)
    for nav in NAV:
        assert nav in visited, nav
    # the bureau reaches both enterprises' tickets
    for ent in (A, B):
        assert f"{PREFIX}/hazards/{data[ent]['hazard']}" in visited, ent
    bad = {u: c for u, c in visited.items() if c != 200}
    assert not bad, f"{username}'s crawl: {bad}"


# --- CSRF on every POST route ---------------------------------------------------------------------


def post_routes(app: Any) -> list[str]:
    """Every POST path of the console app (FastAPI routes), as registered: `{name}` placeholders kept."""
    out = []
    for r in app.routes:
        if isinstance(r, Route) and "POST" in (r.methods or set()):
            out.append(r.path)
    return sorted(set(out))


def fill(path: str, values: dict[str, str]) -> str:
    """A concrete URL for a route path: each `{param}` (or `{param:type}`) from `values`, else "1"."""
    def one(m: re.Match[str]) -> str:
        return quote(values.get(m.group(1), "1"), safe="")
    return re.sub(r"\{(\w+)(?::\w+)?\}", one, path)


_TABLES = ("hazards", "hazard_events", "hazard_evidence", "alarms", "alarm_events", "gateways", "points",
           "console_users", "console_sessions", "unmapped_points", "dead_letters", "notifications")


def snapshot(console: Console) -> dict[str, Any]:
    """Row counts and a digest of every table the console writes (console_sessions: counted, not hashed — a
    request refreshes its session's last use)."""
    out: dict[str, Any] = {}
    for t in _TABLES:
        if console.sql("SELECT to_regclass(%s)", (t,))[0][0] is None:
            continue
        if t == "console_sessions":
            out[t] = console.sql(f"SELECT count(*) FROM {t}")[0][0]
        else:
            out[t] = console.sql(f"SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), ''))"
                                 f" FROM {t} x")[0]
    return out


def test_every_post_route_refuses_a_missing_or_wrong_csrf_token(console: Console) -> None:
    app = next(r.app for r in console.client.app.routes if getattr(r, "path", "") == PREFIX)  # type: ignore[attr-defined]
    routes = post_routes(app)
    assert {"/login", "/logout", "/alarms/ack", "/hazards/{hazard_id}/act/{name}"} <= set(routes), routes
    tid = candidate(console.db_url, "gw-a1", "TT-101", "plant-a", "ent-a", "CSRF 测试隐患", T0 - 30)
    (pid,), = console.sql("SELECT id FROM points WHERE gateway_id = 'gw-a1' AND tag = 'TT-101'")[0:1]
    (uid,), = console.sql("SELECT id FROM console_users WHERE username = 'ea'")
    values = {"hazard_id": str(tid), "name": "comment", "user_id": str(uid), "gateway_id": "gw-a1",
              "point_id": str(pid), "evidence_id": "1", "id": str(tid), "locale": "en", "tag": "TT-101"}
    form = {"comment": "forged", "rule_id": ALARM_RULE, "subject": console.subjects["a"], "reason": "forged",
            "minutes": "30", "username": "forged-user", "password": "forged-password-1", "role": "admin",
            "active": "0", "tag": "TT-101", "gateway_id": "gw-a1", "note": "forged"}

    def signed(username: str) -> tuple[Any, str]:
        c = console.new_client()
        assert console.login(username, client=c).status_code == 303
        return c, console.csrf_of(c.get(console.url("/hazards")).text)

    sessions = {u: signed(u) for u in ("admin", "ea", "eb", "duty")}
    before = snapshot(console)
    refused: dict[str, list[tuple[str, str, int]]] = {}
    for path in routes:
        if path == "/login":
            continue  # no session yet: the double-submitted login token, checked below
        url = console.url(fill(path, values))
        for username in ("admin", "ea"):  # a bureau-wide and an enterprise session
            c, _mine = sessions[username]
            _, other_token = sessions["eb" if username == "ea" else "duty"]
            for how, extra, headers in (("missing", {}, {}),
                                        ("forged", {"csrf": "forged-token"}, {"X-CSRF-Token": "forged-token"}),
                                        ("another session's", {"csrf": other_token}, {"X-CSRF-Token": other_token})):
                r = c.post(url, data={**form, **extra}, headers=headers, follow_redirects=False)
                if r.status_code == 415:  # an upload route: the same refusal in a multipart body
                    r = c.post(url, data=extra, headers=headers, follow_redirects=False,
                               files={"file": ("x.png", png(), "image/png")})
                refused.setdefault(path, []).append((username, how, r.status_code))
    wrong = {p: [x for x in v if x[2] != 403] for p, v in refused.items()}
    wrong = {p: v for p, v in wrong.items() if v}
    assert not wrong, f"POST routes that did not refuse a missing/wrong CSRF token with 403: {wrong}"
    assert snapshot(console) == before, "a refused POST changed something"
    # the sessions are still good (a refusal logs no one out), and a right token does go through
    c, token = sessions["duty"]
    r = c.post(console.url("/alarms/ack"), data={"csrf": token, "rule_id": ALARM_RULE,
                                                 "subject": console.subjects["a"], "comment": "处置完毕"},
               follow_redirects=False)
    assert r.status_code == 303
    # login itself: without the login token, or with a token that is not the cookie's, refused before any check
    fresh = console.new_client()
    assert fresh.post(console.url("/login"), data={"username": "admin", "password": "correct-horse-42"},
                      follow_redirects=False).status_code == 403
    console.login_csrf(fresh)
    assert fresh.post(console.url("/login"), data={"csrf": "forged", "username": "admin",
                                                    "password": "correct-horse-42"},
                      follow_redirects=False).status_code == 403
    assert console.sql("SELECT count(*) FROM console_sessions")[0][0] == before["console_sessions"]  # none made


ALARM_RULE = "test.a.rule"
