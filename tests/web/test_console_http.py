"""The console over HTTP (real PostgreSQL, the app in-process, a fake clock): login, cookies, CSRF, lockout
per account and per address, deactivation, audit, admin boundaries, enterprise scoping, alarm actions through
the same use case as the API."""

from __future__ import annotations

import pytest

from core import accounts
from tests.web.fix_console import ALARM_A, ALARM_B, PASSWORD, Console, console_fixture  # noqa: F401

pytestmark = pytest.mark.integration


def audit_rows(c: Console, action: str) -> list[tuple[object, ...]]:
    return c.sql("SELECT actor, role, status, changes->>'outcome', client FROM audit_log"
                 " WHERE changes->>'action' = %s ORDER BY id", (action,))


def test_login_sets_a_hardened_session_cookie_and_is_audited(console: Console) -> None:
    r = console.login("duty")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("rw_session="))
    value = cookie.split(";")[0].split("=", 1)[1]
    attrs = cookie.lower()
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/console" in attrs
    assert "secure" not in attrs  # plain HTTP here; Secure is set when the request is HTTPS
    # only the digest is stored
    assert console.sql("SELECT count(*) FROM console_sessions WHERE id_hash = %s", (value,))[0][0] == 0
    assert console.sql("SELECT count(*) FROM console_sessions WHERE id_hash = %s",
                       (accounts.hash_session_id(value),))[0][0] == 1
    page = console.client.get("/console/")
    assert page.status_code == 200 and "实时报警看板" in page.text and 'lang="zh-CN"' in page.text
    assert "content-security-policy" in page.headers and "'unsafe-inline'" not in page.headers[
        "content-security-policy"]
    assert audit_rows(console, "login") == [("duty", "duty_officer", 303, "ok", "testclient")]
    assert PASSWORD not in str(console.sql("SELECT * FROM audit_log"))


def test_english_on_request(console: Console) -> None:
    console.login("duty")
    console.client.get("/console/lang/en?next=/console/", follow_redirects=False)
    page = console.client.get("/console/")
    assert "Live alarm board" in page.text and 'lang="en"' in page.text


def test_unauthenticated_pages_redirect_and_fragments_answer_401(console: Console) -> None:
    r = console.client.get("/console/board/rows", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login?next=")
    r = console.client.get("/console/board/rows", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/console/login"
    assert console.client.get("/console/events").status_code == 401
    forger = console.new_client()
    forger.cookies.set("rw_session", "x" * 43)
    assert forger.get("/console/", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused(console: Console) -> None:
    # login itself: no login token, or a token that is not the cookie's
    r = console.client.post("/console/login", data={"username": "duty", "password": PASSWORD})
    assert r.status_code == 403
    console.login_csrf()
    r = console.client.post("/console/login", data={"csrf": "forged", "username": "duty", "password": PASSWORD})
    assert r.status_code == 403
    assert console.sql("SELECT count(*) FROM console_sessions")[0][0] == 0
    # signed in: acknowledging without the token, or with another session's token, changes nothing
    console.login("duty")
    other = console.new_client()
    console.login("chief", client=other)
    other_csrf = console.csrf_of(other.get("/console/").text)
    for data in ({}, {"csrf": other_csrf}, {"csrf": ""}):
        r = console.client.post("/console/alarms/ack", data={**data, "rule_id": ALARM_A[0],
                                                              "subject": console.subjects["a"], "comment": "x"})
        assert r.status_code == 403 and "防伪令牌" in r.text
    assert console.sql("SELECT state FROM alarms WHERE rule_id = %s", (ALARM_A[0],)) == [("unack",)]
    r = console.client.post("/console/logout", data={}, follow_redirects=False)
    assert r.status_code == 403
    assert console.client.get("/console/", follow_redirects=False).status_code == 200  # still signed in
    refused = console.sql("SELECT actor, path, status FROM audit_log WHERE changes->>'action' = 'refused'"
                          " ORDER BY id")
    assert refused == [("anonymous", "/console/login", 403)] * 2 + [("duty", "/console/alarms/ack", 403)] * 3 + [
        ("duty", "/console/logout", 403)]


def test_session_cookie_is_secure_over_https(console: Console) -> None:
    https = console.new_client()
    https.base_url = "https://testserver"  # type: ignore[assignment]
    r = console.login("duty", client=https)
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("rw_session="))
    assert "; secure" in cookie.lower()


def test_sixth_wrong_password_locks_the_account_for_a_while(console: Console) -> None:
    for _ in range(5):
        r = console.login("duty", "wrong-password-1")
        assert r.status_code == 401 and "用户名或密码错误" in r.text
    r = console.login("duty", "wrong-password-1")
    assert r.status_code == 401 and "账户已锁定" in r.text
    r = console.login("duty")  # the right password does not open a locked account
    assert r.status_code == 401 and "账户已锁定" in r.text
    console.clock.advance(15 * 60 + 1)
    assert console.login("duty").status_code == 303
    outcomes = [row[3] for row in audit_rows(console, "login")]
    assert outcomes == ["bad_credentials"] * 5 + ["locked", "locked", "ok"]


def test_an_address_spraying_usernames_is_limited(console: Console) -> None:
    for i in range(20):
        assert console.login(f"nobody{i}", "wrong-password-1").status_code == 401
    r = console.login("duty")
    assert r.status_code == 429 and "此地址登录失败次数过多" in r.text
    # the account itself was not touched
    assert console.sql("SELECT failed_logins, locked_until FROM console_users WHERE username = 'duty'") == [
        (0, None)]


def test_deactivated_users_session_stops_at_once(console: Console) -> None:
    console.login("ea")
    assert console.client.get("/console/", follow_redirects=False).status_code == 200
    admin = console.new_client()
    console.login("admin", client=admin)
    page = admin.get("/console/admin/users")
    uid = console.sql("SELECT id FROM console_users WHERE username = 'ea'")[0][0]
    r = admin.post(f"/console/admin/users/{uid}/active", data={"csrf": console.csrf_of(page.text), "active": "0"},
                   follow_redirects=False)
    assert r.status_code == 303
    assert console.client.get("/console/", follow_redirects=False).status_code == 303
    assert console.login("ea").status_code == 401  # and cannot log in again
    assert console.sql("SELECT actor, changes->>'username' FROM audit_log WHERE changes->>'action' ="
                       " 'user_deactivate'") == [("admin", "ea")]


def test_admin_pages_are_for_admins_and_reject_forged_ids(console: Console) -> None:
    console.login("chief")
    page = console.client.get("/console/")
    assert console.client.get("/console/admin/users").status_code == 403
    uid = console.sql("SELECT id FROM console_users WHERE username = 'admin'")[0][0]
    r = console.client.post(f"/console/admin/users/{uid}/password",
                            data={"csrf": console.csrf_of(page.text), "password": "taken-over-123"})
    assert r.status_code == 403
    admin = console.new_client()
    console.login("admin", client=admin)
    csrf = console.csrf_of(admin.get("/console/admin/users").text)
    assert admin.post("/console/admin/users/999999/active", data={"csrf": csrf, "active": "0"}).status_code == 404
    r = admin.post("/console/admin/users", data={"csrf": csrf, "username": "e2", "password": PASSWORD,
                                                 "role": "enterprise_officer", "enterprise_id": "no-such"})
    assert r.status_code == 422 and "企业不存在" in r.text
    r = admin.post("/console/admin/users", data={"csrf": csrf, "username": "e2", "password": PASSWORD,
                                                 "role": "enterprise_manager", "enterprise_id": "ent-b"},
                   follow_redirects=False)
    assert r.status_code == 303
    assert console.sql("SELECT role, enterprise_id, created_by FROM console_users WHERE username = 'e2'") == [
        ("enterprise_manager", "ent-b", "admin")]


def test_password_reset_ends_sessions_and_clears_the_lock(console: Console) -> None:
    console.login("duty")
    for _ in range(6):
        console.login("chief", "wrong-password-1", client=console.new_client())
    admin = console.new_client()
    console.login("admin", client=admin)
    csrf = console.csrf_of(admin.get("/console/admin/users").text)
    for name in ("duty", "chief"):
        uid = console.sql("SELECT id FROM console_users WHERE username = %s", (name,))[0][0]
        assert admin.post(f"/console/admin/users/{uid}/password", data={"csrf": csrf, "password": "brand-new-pw-1"},
                          follow_redirects=False).status_code == 303
    assert console.client.get("/console/", follow_redirects=False).status_code == 303
    assert console.login("chief", "brand-new-pw-1", client=console.new_client()).status_code == 303


def test_open_redirect_is_refused(console: Console) -> None:
    token = console.login_csrf()
    for nxt in ("//evil.example/", "https://evil.example/", "/console\\@evil", "/api/v1/tokens"):
        r = console.client.post("/console/login", data={"csrf": token, "username": "duty", "password": PASSWORD,
                                                        "next": nxt}, follow_redirects=False)
        assert r.headers["location"] == "/console/", nxt
        token = console.login_csrf()


def test_oversized_and_malformed_input(console: Console) -> None:
    token = console.login_csrf()
    r = console.client.post("/console/login", content=b"csrf=" + token.encode() + b"&password=" + b"x" * 70_000,
                            headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    r = console.client.post("/console/login", data={"csrf": token, "username": "duty", "password": "x" * 5000})
    assert r.status_code == 401


def test_enterprise_sees_only_its_alarms_and_cannot_act_on_anothers(console: Console) -> None:
    console.login("ea")
    page = console.client.get("/console/")
    assert ALARM_A[0] in page.text and ALARM_B[0] not in page.text
    frag = console.client.get("/console/board/rows")
    assert ALARM_A[0] in frag.text and ALARM_B[0] not in frag.text and "乙耐材" not in frag.text
    r = console.client.post("/console/alarms/ack", data={"csrf": console.csrf_of(page.text), "rule_id": ALARM_B[0],
                                                         "subject": console.subjects["b"], "comment": "越权"})
    assert r.status_code == 404
    assert console.sql("SELECT state FROM alarms WHERE rule_id = %s", (ALARM_B[0],)) == [("unack",)]


def test_ack_and_shelve_go_through_the_alarm_lifecycle(console: Console) -> None:
    console.login("duty")
    page = console.client.get("/console/")
    csrf = console.csrf_of(page.text)
    base = {"csrf": csrf, "rule_id": ALARM_A[0], "subject": console.subjects["a"]}
    assert console.client.post("/console/alarms/ack", data={**base, "comment": "  "}).status_code == 422
    r = console.client.post("/console/alarms/ack", data={**base, "comment": "已通知现场停炉检查"},
                            follow_redirects=False)
    assert r.status_code == 303
    assert console.sql("SELECT state, acked_by, ack_comment FROM alarms WHERE rule_id = %s", (ALARM_A[0],)) == [
        ("ack", "duty", "已通知现场停炉检查")]
    assert console.client.post("/console/alarms/ack", data={**base, "comment": "again"}).status_code == 409
    assert console.client.post("/console/alarms/shelve", data={**base, "reason": "", "minutes": "30"}
                               ).status_code == 422
    assert console.client.post("/console/alarms/shelve", data={**base, "reason": "x", "minutes": "99999"}
                               ).status_code == 422
    # htmx requests carry the token in a header instead of the form
    r = console.client.post("/console/alarms/shelve", data={k: v for k, v in base.items() if k != "csrf"} | {
        "reason": "传感器校准", "minutes": "30"}, headers={"X-CSRF-Token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    events = console.sql("SELECT event, actor, reason FROM alarm_events WHERE rule_id = %s ORDER BY id",
                         (ALARM_A[0],))
    assert events[1:] == [("ack", "duty", "已通知现场停炉检查"), ("shelve", "duty", "传感器校准 (for 30 min)")]
    assert [r[0] for r in console.sql("SELECT changes->>'action' FROM audit_log WHERE actor = 'duty'"
                                      " AND changes->>'action' LIKE 'alarm%%' ORDER BY id")] == [
        "alarm_ack", "alarm_shelve"]


def test_logout_ends_the_session(console: Console) -> None:
    console.login("duty")
    csrf = console.csrf_of(console.client.get("/console/").text)
    r = console.client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert console.client.get("/console/", follow_redirects=False).status_code == 303
    assert console.sql("SELECT count(*) FROM console_sessions")[0][0] == 0
    assert [r[0] for r in console.sql("SELECT changes->>'action' FROM audit_log ORDER BY id")] == ["login", "logout"]
    r = console.client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")  # stale form: to login


def test_old_attempts_and_dead_sessions_are_pruned_at_login(console: Console) -> None:
    console.login("duty", "wrong-password-1")
    console.login("chief", client=console.new_client())
    console.clock.advance(2 * 86400)  # past the attempt window and the sessions' absolute end
    assert console.login("duty").status_code == 303
    assert console.sql("SELECT username, ok FROM console_login_attempts") == [("duty", True)]
    assert console.sql("SELECT u.username FROM console_sessions s JOIN console_users u ON u.id = s.user_id") == [
        ("duty",)]
    assert [r[0] for r in console.sql("SELECT changes->>'outcome' FROM audit_log ORDER BY id")] == [
        "bad_credentials", "ok", "ok"]  # the history stays in the audit log


def test_the_lock_message_does_not_reveal_which_usernames_exist(console: Console) -> None:
    answers = [console.login(name, "wrong-password-1").text for name in ["ghost"] * 6 + ["duty"] * 6]
    ghost, real = answers[:6], answers[6:]
    assert ["账户已锁定" in a for a in ghost] == ["账户已锁定" in a for a in real] == [False] * 5 + [True]
