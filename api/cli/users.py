"""`riskwatch users add|list|reset-password|deactivate`: console accounts for people (core.accounts).

The password is never an argument (it would sit in the shell history and in `ps`): it is prompted for,
hidden and confirmed, or read from standard input with `--password-stdin` for scripts.
Register with `users.register(root)` in api/cli/main.py.
"""

from __future__ import annotations

import sys
from typing import Annotated

import psycopg
import typer

from api.cli.context import Col, ctx_of, err, print_list
from core import accounts
from core.db import migrate

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    users_app = typer.Typer(help="控制台账户 Console accounts (people; machines use API tokens).",
                            no_args_is_help=True)
    users_app.command("add")(users_add)
    users_app.command("list")(users_list)
    users_app.command("reset-password")(users_reset_password)
    users_app.command("deactivate")(users_deactivate)
    root.add_typer(users_app, name="users")


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("密码 password", hide_input=True, confirmation_prompt=True))


def users_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="2–64 lowercase letters, digits, _ . -")],
    role: Annotated[str, typer.Option("--role", help=" | ".join(accounts.ROLES))],
    enterprise: Annotated[str | None, typer.Option("--enterprise", help="Enterprise id (enterprise roles).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name, e.g. 王值班.")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Create a console account (the first admin: `riskwatch users add admin --role admin`)."""
    c = ctx_of(ctx)
    migrate(c.db_url)
    try:
        accounts.check_role(role, enterprise)
        password = _password(password_stdin)
        with psycopg.connect(c.db_url, autocommit=True) as conn:
            u = accounts.create_user(conn, username, password, role, display_name=name, enterprise_id=enterprise,
                                     created_by="cli")
    except accounts.AccountError as exc:
        err.print(f"[red]error[/] {exc}")
        raise typer.Exit(2) from exc
    err.print(f"已创建 created console user #{u.id} '{u.username}' role={u.role}"
              f"{' enterprise=' + u.enterprise_id if u.enterprise_id else ''}")


def users_list(ctx: typer.Context,
               as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects.")] = False) -> None:
    """List console accounts (never their passwords)."""
    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        rows = accounts.list_users(conn)
    shown = [{"id": u.id, "username": u.username, "name": u.display_name, "role": u.role,
              "enterprise_id": u.enterprise_id, "active": bool(u.active), "locked": bool(u.locked_until),
              "role_shown": f"{u.role_zh} {u.role}",
              "state": "停用 inactive" if not u.active else ("锁定 locked" if u.locked_until else "正常 active")}
             for u in rows]
    print_list("控制台账户 console users",
               [Col("id", "id", ident=True), Col("username", "用户名 username", ident=True), Col("name", "姓名 name"),
                Col("role_shown", "角色 role"), Col("enterprise_id", "企业 enterprise", ident=True),
                Col("state", "状态 state")],
               [{k: v for k, v in d.items() if k not in ("state", "role_shown")} for d in shown] if as_json else shown,
               as_json=as_json)


def _by_name(conn: psycopg.Connection, username: str) -> accounts.User:
    for u in accounts.list_users(conn):
        if u.username == username.strip().lower():
            return u
    err.print(f"[red]error[/] 用户不存在 no user {username!r}")
    raise typer.Exit(2)


def users_reset_password(
    ctx: typer.Context, username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Set a new password, clear a lockout, end the user's sessions."""
    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        u = _by_name(conn, username)
        try:
            accounts.reset_password(conn, u.id, _password(password_stdin))
        except accounts.AccountError as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    err.print(f"已重置 password reset for '{u.username}'; sessions ended")


def users_deactivate(ctx: typer.Context, username: Annotated[str, typer.Argument()]) -> None:
    """Deactivate an account: its sessions stop working at once."""
    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        u = accounts.set_active(conn, _by_name(conn, username).id, False)
    err.print(f"已停用 deactivated '{u.username}'")
