"""Pure decisions of console accounts: lockout, session life, roles, input limits, CSRF tokens."""

from __future__ import annotations

import time

import pytest

from core import accounts
from core.accounts import LockoutPolicy, SessionPolicy, decide_login

P = LockoutPolicy()
T0 = 1_764_460_800.0


def attempt(failed: int = 0, locked: float | None = None, ok: bool = False, known: bool = True,
            active: bool = True, addr: int = 0, now: float = T0) -> accounts.LoginDecision:
    return decide_login(known=known, active=active, password_ok=ok, failed_logins=failed, locked_until=locked,
                        address_failures=addr, now=now, policy=P)


def test_sixth_wrong_password_locks_and_the_lock_holds_even_for_the_right_one() -> None:
    failed, locked = 0, None
    for n in range(1, 6):
        d = attempt(failed, locked)
        assert (d.outcome, d.failed_logins, d.locked_until) == ("bad_credentials", n, None)
        failed = d.failed_logins
    d = attempt(failed, locked)  # the sixth
    assert d.outcome == "locked" and d.locked_until == T0 + P.lock_s
    assert attempt(d.failed_logins, d.locked_until, ok=True, now=T0 + P.lock_s - 1).outcome == "locked"
    after = attempt(d.failed_logins, d.locked_until, ok=True, now=T0 + P.lock_s)
    assert (after.outcome, after.failed_logins, after.locked_until) == ("ok", 0, None)


def test_an_unknown_username_locks_like_a_real_one() -> None:
    """Otherwise the lock message would tell an attacker which usernames exist."""
    assert [attempt(n, known=False).outcome for n in range(7)] == ["bad_credentials"] * 5 + ["locked"] * 2


def test_an_expired_lock_starts_a_fresh_count() -> None:
    d = attempt(6, T0 - 1)
    assert (d.outcome, d.failed_logins) == ("bad_credentials", 1)


def test_right_password_resets_the_count() -> None:
    assert attempt(5, ok=True).failed_logins == 0


def test_address_limit_comes_first_and_touches_no_account() -> None:
    d = attempt(2, addr=P.address_max_failures, ok=True)
    assert d.outcome == "address_limited" and d.failed_logins == 2
    assert attempt(addr=P.address_max_failures - 1, ok=True).outcome == "ok"


@pytest.mark.parametrize(("known", "active", "ok", "outcome"), [
    (False, False, False, "bad_credentials"),
    (True, False, False, "bad_credentials"),  # a deactivated account still counts wrong passwords
    (True, False, True, "inactive"),
    (True, True, True, "ok"),
])
def test_outcomes(known: bool, active: bool, ok: bool, outcome: str) -> None:
    assert attempt(known=known, active=active, ok=ok).outcome == outcome


def test_session_idle_and_absolute_expiry() -> None:
    s = SessionPolicy(idle_s=100, absolute_s=1000)
    alive = {"created_at": T0, "expires_at": T0 + 1000}
    assert accounts.session_alive(**alive, last_seen_at=T0, now=T0 + 99, policy=s) is None
    assert accounts.session_alive(**alive, last_seen_at=T0, now=T0 + 100, policy=s) == "idle"
    assert accounts.session_alive(**alive, last_seen_at=T0 + 990, now=T0 + 999, policy=s) is None
    assert accounts.session_alive(**alive, last_seen_at=T0 + 990, now=T0 + 1000, policy=s) == "expired"


def test_roles_map_onto_api_roles_and_only_chiefs_and_leaders_verify() -> None:
    assert {r: accounts.api_role(r) for r in accounts.ROLES} == {
        "admin": "admin", "bureau_leader": "bureau", "section_chief": "bureau", "duty_officer": "bureau",
        "enterprise_manager": "enterprise", "enterprise_officer": "enterprise"}
    assert {r for r in accounts.ROLES if accounts.may_verify(r)} == {"bureau_leader", "section_chief"}
    with pytest.raises(accounts.AccountError):
        accounts.api_role("root")


@pytest.mark.parametrize(("role", "enterprise"), [("duty_officer", "ent-a"), ("enterprise_officer", None),
                                                  ("superuser", None)])
def test_role_binding_refused(role: str, enterprise: str | None) -> None:
    with pytest.raises(accounts.AccountError):
        accounts.check_role(role, enterprise)


@pytest.mark.parametrize("name", ["a", "Ab", "-x", "a b", "a" * 65, "管理员", "x\x00y", "../etc"])
def test_bad_usernames(name: str) -> None:
    if name == "Ab":  # case folds, then passes
        assert accounts.check_username(name) == "ab"
        return
    with pytest.raises(accounts.AccountError):
        accounts.check_username(name)


def test_password_limits_and_argon2id() -> None:
    for bad in ("short", " leading-space-pw", "x" * 257):
        with pytest.raises(accounts.AccountError):
            accounts.hash_password(bad)
    h = accounts.hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert accounts.verify_password(h, "correct horse battery")
    assert not accounts.verify_password(h, "correct horse batterz")
    assert not accounts.verify_password(None, "correct horse battery")  # unknown user
    assert not accounts.verify_password("not-a-hash", "x")


def test_oversized_password_is_refused_without_hashing() -> None:
    h = accounts.hash_password("correct horse battery")
    started = time.perf_counter()
    assert not accounts.verify_password(h, "x" * 10_000_000)
    assert time.perf_counter() - started < 0.05


def test_csrf_token_is_bound_to_its_session() -> None:
    a, b = accounts.new_session_id(), accounts.new_session_id()
    assert a != b and len(a) >= 43
    assert accounts.csrf_ok(a, accounts.csrf_token(a))
    assert not accounts.csrf_ok(a, accounts.csrf_token(b))
    assert not accounts.csrf_ok(a, None) and not accounts.csrf_ok(a, "")
    assert accounts.hash_session_id(a) != a and a not in accounts.csrf_token(a)
