"""`riskwatch token create|list|revoke`: API tokens, shown once and stored hashed (core.tokens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import psycopg
import typer

from api.cli.context import Col, console, ctx_of, err, print_list
from core import tokens
from core.db import migrate

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    token_app = typer.Typer(help="API 令牌 API tokens (shown once, stored hashed).", no_args_is_help=True)
    token_app.command("create")(token_create)
    token_app.command("list")(token_list)
    token_app.command("revoke")(token_revoke)
    root.add_typer(token_app, name="token")


def token_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option("--role", help="admin | bureau | enterprise")],
    enterprise: Annotated[str | None, typer.Option("--enterprise", help="Enterprise id (role enterprise).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Who holds it, e.g. 县工信局值班室.")] = None,
    expires_days: Annotated[float | None, typer.Option("--expires-days", help="Expire after N days.")] = None,
) -> None:
    """Create an API token and print it once (only its SHA-256 is stored)."""
    if role not in tokens.ROLES:
        err.print(f"[red]error[/] 未知角色 unknown role {role!r} (admin, bureau, enterprise)")
        raise typer.Exit(2)
    c = ctx_of(ctx)
    migrate(c.db_url)
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    with psycopg.connect(c.db_url, autocommit=True) as conn:
        try:
            rec, token = tokens.create_token(conn, role, name or f"{role}{'-' + enterprise if enterprise else ''}",
                                           enterprise, created_by="cli", expires_at=expires)
        except tokens.TokenError as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    err.print(f"令牌 token #{rec.id} '{rec.name}' role={rec.role}"
              f"{' enterprise=' + rec.enterprise_id if rec.enterprise_id else ''} — shown once, stored hashed:")
    print(token)


def token_list(ctx: typer.Context,
               all_: Annotated[bool, typer.Option("--all", help="Include revoked tokens.")] = False,
               as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects.")] = False) -> None:
    """List tokens (never their secrets)."""
    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        rows = tokens.list_tokens(conn, all_)
    shown = [{"id": r.id, "name": r.name, "role": r.role, "enterprise_id": r.enterprise_id, "prefix": r.prefix,
              "last_used_at": r.last_used_at, "revoked": r.revoked_at is not None,
              "state": "吊销 revoked" if r.revoked_at else "有效 active"} for r in rows]
    print_list("API 令牌 tokens", [Col("id", "id", ident=True), Col("name", "名称 name"), Col("role", "角色 role"),
                                  Col("enterprise_id", "企业 enterprise", ident=True),
                                  Col("prefix", "前缀 prefix", ident=True), Col("last_used_at", "最近使用 last used"),
                                  Col("state", "状态 state")],
               [{k: v for k, v in d.items() if k != "state"} for d in shown] if as_json else shown, as_json=as_json)


def token_revoke(ctx: typer.Context, token_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Revoke a token now."""
    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        rec = tokens.revoke_token(conn, token_id)
    if rec is None:
        err.print(f"[red]error[/] no token #{token_id}")
        raise typer.Exit(2)
    console.print(f"已吊销 revoked token #{rec.id} '{rec.name}'")
