"""Console accounts: people, their roles, passwords, lockout and server-side sessions.

API bearer tokens (`api.auth`) are for machines; people log in to the console
with a username and a password. The decisions — may this login proceed, is
this session still alive, which role may verify and close — are pure
functions of (state, now) returning a reason; the SQL adapter below them
reads and writes `console_users`, `console_sessions` and
`console_login_attempts` (migration 0014) and never decides anything itself.

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's
second recommended profile). An unknown username is still checked against a
fixed hash so its answer takes as long as a wrong password's: the response
time must not tell which usernames exist.

A session id is 256 random bits in an HTTP-only cookie; only its SHA-256 is
stored, so a copy of the database opens no session. The CSRF token is
derived from the session id (a keyed digest), so it needs no storage and
dies with the session.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

ConsoleRole = Literal["admin", "bureau_leader", "section_chief", "duty_officer",
                      "enterprise_manager", "enterprise_officer"]
ApiRole = Literal["admin", "bureau", "enterprise"]
ROLES: tuple[ConsoleRole, ...] = ("admin", "bureau_leader", "section_chief", "duty_officer",
                                  "enterprise_manager", "enterprise_officer")
ROLE_ZH: dict[str, str] = {"admin": "系统管理员", "bureau_leader": "局领导", "section_chief": "科长",
                           "duty_officer": "值班员", "enterprise_manager": "企业负责人",
                           "enterprise_officer": "企业安全员"}
ENTERPRISE_ROLES = frozenset({"enterprise_manager", "enterprise_officer"})
BUREAU_ROLES = frozenset({"bureau_leader", "section_chief", "duty_officer"})
#: Only a section chief or a leader verifies and closes (销号) a hazard or sets a supervision level (挂牌督办).
VERIFY_ROLES = frozenset({"bureau_leader", "section_chief"})

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
PASSWORD_MIN = 10
#: Argon2 of a megabyte-long "password" is a cheap denial of service: longer input is refused unhashed.
PASSWORD_MAX = 256


class AccountError(ValueError):
    """A request about an account that cannot be honoured; the message is Chinese first, then English."""


def api_role(role: str) -> ApiRole:
    """The API role a console role acts as: one authorisation code path decides for both faces."""
    if role == "admin":
        return "admin"
    if role in BUREAU_ROLES:
        return "bureau"
    if role in ENTERPRISE_ROLES:
        return "enterprise"
    raise AccountError(f"未知角色 unknown role {role!r}")


def may_verify(role: str) -> bool:
    """销号 and supervision levels are a section chief's or a leader's decision, never a duty officer's."""
    return role in VERIFY_ROLES


def check_username(username: str) -> str:
    u = username.strip().lower()
    if not USERNAME_RE.fullmatch(u):
        raise AccountError("用户名须为2–64位小写字母、数字或 _ . - "
                           "Username: 2–64 lowercase letters, digits, _ . - (starting with a letter or digit)")
    return u


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN or len(password) > PASSWORD_MAX:
        raise AccountError(f"密码长度须为{PASSWORD_MIN}–{PASSWORD_MAX}个字符 "
                           f"Password: {PASSWORD_MIN}–{PASSWORD_MAX} characters")
    if password.strip() != password or not password.strip():
        raise AccountError("密码不能以空格开头或结尾 The password may not start or end with spaces")
    return password


def check_role(role: str, enterprise_id: str | None) -> None:
    if role not in ROLES:
        raise AccountError(f"未知角色 unknown role {role!r} ({', '.join(ROLES)})")
    if (role in ENTERPRISE_ROLES) != (enterprise_id is not None):
        raise AccountError("企业角色必须且只能绑定一个企业 an enterprise role needs an enterprise, and only it")


# --- passwords -----------------------------------------------------------------------------

_hasher = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4
_DUMMY_HASH = _hasher.hash("riskwatch-unknown-user-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; an unknown user (None) costs the same time and answers False."""
    if len(password) > PASSWORD_MAX:
        return False
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- lockout: pure decision ------------------------------------------------------------------

@dataclass(frozen=True)
class LockoutPolicy:
    #: wrong passwords allowed in a row; the next one (the sixth by default) locks the account
    max_failures: int = 5
    lock_s: float = 15 * 60
    #: failures from one client address within the window before it is refused outright
    address_max_failures: int = 20
    address_window_s: float = 15 * 60


LoginOutcome = Literal["ok", "bad_credentials", "locked", "address_limited", "inactive"]


@dataclass(frozen=True)
class LoginDecision:
    outcome: LoginOutcome
    reason: str  # for the audit log (English, machine-readable first word)
    failed_logins: int  # the account's count after this attempt
    locked_until: float | None


def decide_login(*, known: bool, active: bool, password_ok: bool, failed_logins: int,
                 locked_until: float | None, address_failures: int, now: float,
                 policy: LockoutPolicy) -> LoginDecision:
    """Whether a login proceeds, and the account's lockout state afterwards.

    A locked account refuses even the right password until the lock expires (otherwise the lock
    would only slow a guesser down, not stop one). The address limit is checked first so a client
    spraying many usernames is stopped without touching any account.
    """
    if address_failures >= policy.address_max_failures:
        return LoginDecision("address_limited", "address_limited: too many failures from this address",
                             failed_logins, locked_until)
    if locked_until is not None and now < locked_until:
        return LoginDecision("locked", "locked: account locked after repeated failures", failed_logins,
                             locked_until)
    if not known:
        # `failed_logins` is the name's recent failures: an unknown name "locks" like a real one, so the
        # lock message does not tell which usernames exist
        n = failed_logins + 1
        if n > policy.max_failures:
            return LoginDecision("locked", f"unknown_user: {n} in a row", n, None)
        return LoginDecision("bad_credentials", "unknown_user", n, None)
    if not password_ok:
        n = failed_logins + 1 if locked_until is None else 1  # an expired lock starts a fresh count
        if n > policy.max_failures:
            return LoginDecision("locked", f"wrong_password: {n} in a row, account locked", n,
                                 now + policy.lock_s)
        return LoginDecision("bad_credentials", f"wrong_password: {n} in a row", n, None)
    if not active:
        return LoginDecision("inactive", "inactive: account deactivated", 0, None)
    return LoginDecision("ok", "ok", 0, None)


# --- sessions: pure decision -----------------------------------------------------------------

@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 2 * 3600
    absolute_s: float = 12 * 3600
    #: last_seen_at is written at most this often: a page view should not each cost a write
    touch_s: float = 60


SESSION_COOKIE = "rw_session"


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: keyed by the session id itself, so only its holder can compute it."""
    return hmac.new(session_id.encode("utf-8", "surrogatepass"), b"riskwatch-csrf-v1", hashlib.sha256).hexdigest()


def csrf_ok(session_id: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(csrf_token(session_id), presented)


def session_alive(*, created_at: float, last_seen_at: float, expires_at: float, now: float,
                  policy: SessionPolicy) -> str | None:
    """None when the session may be used at `now`, else why not."""
    if now >= expires_at or now >= created_at + policy.absolute_s:
        return "expired"
    if now >= last_seen_at + policy.idle_s:
        return "idle"
    return None


# --- SQL adapter ------------------------------------------------------------------------------

def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass
class User:
    id: int
    username: str
    display_name: str
    role: str
    enterprise_id: str | None
    active: bool
    failed_logins: int
    locked_until: datetime | None
    created_at: datetime
    created_by: str
    last_login_at: datetime | None

    @property
    def role_zh(self) -> str:
        return ROLE_ZH.get(self.role, self.role)

    @property
    def api_role(self) -> ApiRole:
        return api_role(self.role)

    @property
    def scope(self) -> str | None:
        return self.enterprise_id if self.role in ENTERPRISE_ROLES else None


_COLS = ("id, username, display_name, role, enterprise_id, active, failed_logins, locked_until, created_at,"
         " created_by, last_login_at")


def create_user(conn: psycopg.Connection, username: str, password: str, role: str, *,
                display_name: str | None = None, enterprise_id: str | None = None,
                created_by: str = "cli") -> User:
    """Create a console account (the CLI's `riskwatch users add` and the admin page call this)."""
    u = check_username(username)
    check_role(role, enterprise_id)
    name = (display_name or u).strip()
    if not 1 <= len(name) <= 100:
        raise AccountError("显示名称须为1–100个字符 Display name: 1–100 characters")
    pw_hash = hash_password(password)
    with conn.transaction():
        if enterprise_id is not None and conn.execute(
                "SELECT 1 FROM enterprises WHERE id = %s", (enterprise_id,)).fetchone() is None:
            raise AccountError(f"企业不存在 no enterprise {enterprise_id!r}")
        if conn.execute("SELECT 1 FROM console_users WHERE username = %s", (u,)).fetchone() is not None:
            raise AccountError(f"用户名已存在 username {u!r} is taken")
        with conn.cursor(row_factory=class_row(User)) as cur:
            rec = cur.execute(
                f"""INSERT INTO console_users (username, display_name, password_hash, role, enterprise_id, created_by)
                    VALUES (%s,%s,%s,%s,%s,%s) RETURNING {_COLS}""",
                (u, name, pw_hash, role, enterprise_id, created_by)).fetchone()
    assert rec is not None
    return rec


def get_user(conn: psycopg.Connection, user_id: int) -> User | None:
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(f"SELECT {_COLS} FROM console_users WHERE id = %s", (user_id,)).fetchone()


def list_users(conn: psycopg.Connection) -> list[User]:
    with conn.cursor(row_factory=class_row(User)) as cur:
        return cur.execute(f"SELECT {_COLS} FROM console_users ORDER BY id").fetchall()


@dataclass(frozen=True)
class LoginResult:
    decision: LoginDecision
    user: User | None
    session_id: str | None  # the cookie value, only when the login succeeded


def login(conn: psycopg.Connection, username: str, password: str, client: str, now: float, *,
          user_agent: str | None = None, policy: LockoutPolicy = LockoutPolicy(),
          sessions: SessionPolicy = SessionPolicy()) -> LoginResult:
    """Check a login attempt, record it, and open a session when it succeeds — one transaction.

    The user row is locked for the attempt, so two concurrent wrong passwords both count.
    """
    u = username.strip().lower()[:64]
    with conn.transaction():
        row = conn.execute("SELECT id, password_hash, active, failed_logins, locked_until FROM console_users"
                           " WHERE username = %s FOR UPDATE", (u,)).fetchone()
        since = _dt(now - policy.address_window_s)
        addr = conn.execute("SELECT count(*) FROM console_login_attempts WHERE client = %s AND time > %s"
                            " AND NOT ok", (client, since)).fetchone()
        locked = row[4].timestamp() if row is not None and row[4] is not None else None
        address_failures = int(addr[0]) if addr else 0
        name_failures = 0
        if row is None:
            by_name = conn.execute("SELECT count(*) FROM console_login_attempts WHERE username = %s AND time > %s"
                                   " AND NOT ok", (u, _dt(now - policy.lock_s))).fetchone()
            name_failures = int(by_name[0]) if by_name else 0
        # Argon2 runs only when the attempt is allowed to be decided by the password at all.
        allowed = address_failures < policy.address_max_failures and (locked is None or now >= locked)
        pw_ok = verify_password(row[1] if row is not None else None, password) if allowed else False
        d = decide_login(known=row is not None, active=bool(row[2]) if row else False, password_ok=pw_ok,
                         failed_logins=int(row[3]) if row else name_failures, locked_until=locked,
                         address_failures=address_failures, now=now, policy=policy)
        conn.execute("INSERT INTO console_login_attempts (time, username, client, ok) VALUES (%s,%s,%s,%s)",
                     (_dt(now), u, client[:100], d.outcome == "ok"))
        # Housekeeping at the rate of logins: attempts past the window serve no decision (audit_log keeps
        # the history), and sessions past their absolute end can never be used again.
        conn.execute("DELETE FROM console_login_attempts WHERE time < %s",
                     (_dt(now - max(policy.address_window_s, 86400.0)),))
        conn.execute("DELETE FROM console_sessions WHERE expires_at < %s", (_dt(now),))
        if row is None:
            return LoginResult(d, None, None)
        if d.outcome != "address_limited":
            conn.execute("UPDATE console_users SET failed_logins = %s, locked_until = %s,"
                         " last_login_at = CASE WHEN %s THEN %s ELSE last_login_at END WHERE id = %s",
                         (d.failed_logins, _dt(d.locked_until) if d.locked_until is not None else None,
                          d.outcome == "ok", _dt(now), row[0]))
        user = get_user(conn, int(row[0]))
        if d.outcome != "ok":
            return LoginResult(d, user, None)
        sid = new_session_id()
        conn.execute("INSERT INTO console_sessions (id_hash, user_id, created_at, last_seen_at, expires_at, client,"
                     " user_agent) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                     (hash_session_id(sid), row[0], _dt(now), _dt(now), _dt(now + sessions.absolute_s),
                      client[:100], (user_agent or "")[:300]))
    return LoginResult(d, user, sid)


def session_user(conn: psycopg.Connection, session_id: str | None, now: float,
                 policy: SessionPolicy = SessionPolicy()) -> User | None:
    """The active user of a live session, or None (unknown, expired, idle, or the user deactivated)."""
    if not session_id or len(session_id) > 100:
        return None
    h = hash_session_id(session_id)
    row = conn.execute("SELECT s.created_at, s.last_seen_at, s.expires_at, s.user_id FROM console_sessions s"
                       " JOIN console_users u ON u.id = s.user_id WHERE s.id_hash = %s AND u.active",
                       (h,)).fetchone()
    if row is None:
        return None
    why = session_alive(created_at=row[0].timestamp(), last_seen_at=row[1].timestamp(),
                        expires_at=row[2].timestamp(), now=now, policy=policy)
    if why is not None:
        conn.execute("DELETE FROM console_sessions WHERE id_hash = %s", (h,))
        return None
    if now - row[1].timestamp() >= policy.touch_s:
        conn.execute("UPDATE console_sessions SET last_seen_at = %s WHERE id_hash = %s", (_dt(now), h))
    return get_user(conn, int(row[3]))


def logout(conn: psycopg.Connection, session_id: str) -> None:
    conn.execute("DELETE FROM console_sessions WHERE id_hash = %s", (hash_session_id(session_id),))


def _end_sessions(conn: psycopg.Connection, user_id: int) -> None:
    conn.execute("DELETE FROM console_sessions WHERE user_id = %s", (user_id,))
    # Open event streams of this user close at once (the console's listener hears this).
    conn.execute("SELECT pg_notify('rw_session', %s)", (str(user_id),))


def reset_password(conn: psycopg.Connection, user_id: int, new_password: str) -> User:
    """Set a new password, clear the lockout and end every session of the user."""
    pw_hash = hash_password(new_password)
    with conn.transaction():
        n = conn.execute("UPDATE console_users SET password_hash = %s, failed_logins = 0, locked_until = NULL,"
                         " password_changed_at = now() WHERE id = %s", (pw_hash, user_id)).rowcount
        if n == 0:
            raise AccountError(f"用户不存在 no user {user_id}")
        _end_sessions(conn, user_id)
    user = get_user(conn, user_id)
    assert user is not None
    return user


def set_active(conn: psycopg.Connection, user_id: int, active: bool) -> User:
    """Deactivate (ending every session at once) or reactivate a user."""
    with conn.transaction():
        n = conn.execute("UPDATE console_users SET active = %s, failed_logins = 0, locked_until = NULL"
                         " WHERE id = %s", (active, user_id)).rowcount
        if n == 0:
            raise AccountError(f"用户不存在 no user {user_id}")
        if not active:
            _end_sessions(conn, user_id)
    user = get_user(conn, user_id)
    assert user is not None
    return user


def audit(conn: psycopg.Connection, *, actor: str, role: str | None, enterprise_id: str | None, method: str,
          path: str, status: int, client: str | None, changes: dict[str, Any] | None = None,
          duration_ms: float | None = None) -> None:
    """One `audit_log` row for a console action (login, logout, failure, account change). The password and
    the session id never go into it."""
    conn.execute(
        """INSERT INTO audit_log (token_id, actor, role, enterprise_id, method, path, route, status, duration_ms,
               client, changes) VALUES (NULL,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)""",
        (actor[:100], role, enterprise_id, method, path[:500], path[:500], status, duration_ms, client,
         Jsonb(changes) if changes else None))
