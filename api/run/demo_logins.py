"""The demo's console logins: a duty officer, a section chief and the incident plant's enterprise officer.

Passwords are random, kept in the data dir (`demo-logins.json`, mode 0600) so a second demo shows the same ones;
an account whose saved password is missing gets a new one. Accounts go through `core.accounts` (the store that
owns them): the demo runs no SQL of its own.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

import psycopg

from core import accounts
from core.tls import write_private

__all__ = ["DemoLogin", "ensure_logins"]


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    enterprise_id: str | None

    @property
    def role_zh(self) -> str:
        return accounts.ROLE_ZH.get(self.role, self.role)


def ensure_logins(conn: psycopg.Connection, data_dir: Path, enterprise_id: str) -> list[DemoLogin]:
    path = data_dir / "demo-logins.json"
    saved: dict[str, str] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    wanted = [("duty", "duty_officer", None, "值班员（演示）"), ("chief", "section_chief", None, "科长（演示）"),
              (f"ent-{enterprise_id}"[:64].lower(), "enterprise_officer", enterprise_id, "企业安全员（演示）")]
    users = {u.username: u for u in accounts.list_users(conn)}
    out: list[DemoLogin] = []
    for username, role, ent, name in wanted:
        password = saved.get(username) or secrets.token_urlsafe(12)
        u = users.get(username)
        if u is None:
            accounts.create_user(conn, username, password, role, display_name=name, enterprise_id=ent,
                                 created_by="demo")
        elif username not in saved or not u.active:
            accounts.reset_password(conn, u.id, password)
            if not u.active:
                accounts.set_active(conn, u.id, True)
        out.append(DemoLogin(username, password, role, ent))
    write_private(path, json.dumps({lg.username: lg.password for lg in out}, ensure_ascii=False).encode(), 0o600)
    return out
