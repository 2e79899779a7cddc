"""`riskwatch hazards list|show|tick|intake` and the ledger steps `confirm|dismiss|plan|start|submit|verify|
send-back`: the hazard ledger (重大事故隐患台账) from the command line.

The steps call `hazards.ledger.act` with the API's own request schemas, so the workflow rules, the
refusals (same Chinese+English message; exit 1) and the audit log row are those of the HTTP routes; the
actor is the person at the terminal (`--as`, default `$USER (cli)`), with the role they state.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
import yaml
from pydantic import BaseModel, ValidationError

from api.cli.context import Col, console, ctx_of, err, print_list
from core.db import migrate

if TYPE_CHECKING:
    from hazards.model import Actor
    from hazards.workflow import Action

__all__ = ["register"]


def register(root: typer.Typer) -> None:
    hazards_app = typer.Typer(help="重大事故隐患台账 Hazard ledger.", no_args_is_help=True)
    hazards_app.command("list")(hazards_list)
    hazards_app.command("show")(hazards_show)
    hazards_app.command("tick")(hazards_tick)
    hazards_app.command("intake")(hazards_intake)
    for name, fn in (("confirm", hazards_confirm), ("dismiss", hazards_dismiss), ("plan", hazards_plan),
                     ("start", hazards_start), ("submit", hazards_submit), ("verify", hazards_verify),
                     ("send-back", hazards_send_back)):
        hazards_app.command(name)(fn)
    root.add_typer(hazards_app, name="hazards")


def hazards_list(
    ctx: typer.Context,
    status: Annotated[list[str] | None, typer.Option("--status", help="candidate, confirmed, ...")] = None,
    enterprise: Annotated[str | None, typer.Option("--enterprise")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include closed and dismissed.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects, for scripts.")] = False,
) -> None:
    """The hazard ledger, newest first (details and history: `hazards show ID`)."""
    from hazards import store
    from hazards.model import SOURCE_ZH, STATUS_ZH, Source, Status

    now = time.time()
    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        rows, total = store.list_tickets(conn, store.Filters(status=status or [], enterprise_id=enterprise,
                                                             open=None if all_ or status else True),
                                         None, now, limit=limit)
    shown = [{"id": r.id, "status": r.status, "source": r.source, "enterprise_id": r.enterprise_id,
              "enterprise": r.enterprise_name, "title": r.title, "plan_deadline": r.plan_deadline,
              "overdue": r.overdue(now),
              "supervision_level": (r.supervision_level or None) if not r.supervision_lifted_at else None,
              "occurrences": r.occurrences,
              "status_zh": STATUS_ZH[Status(r.status)] + (" ⚠逾期" if r.overdue(now) else ""),
              "source_zh": SOURCE_ZH[Source(r.source)],
              "deadline_day": r.plan_deadline.strftime("%Y-%m-%d") if r.plan_deadline else ""} for r in rows]
    if as_json:
        print_list("", [], [{k: v for k, v in d.items() if not k.endswith(("_zh", "_day"))} for d in shown],
                   as_json=True)
        return
    print_list(f"重大事故隐患台账 hazard ledger ({len(rows)} of {total})",
               [Col("id", "#", ident=True), Col("status_zh", "状态 status"), Col("source_zh", "来源 source"),
                Col("enterprise", "企业 enterprise"), Col("title", "隐患 hazard"),
                Col("deadline_day", "期限 deadline"), Col("supervision_level", "督办"), Col("occurrences", "次数")],
               shown, as_json=False)


def hazards_show(ctx: typer.Context, hazard_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """One ticket with its whole history (every step with its actor) and evidence."""
    from hazards import store
    from hazards.workflow import ACTION_ZH

    with psycopg.connect(ctx_of(ctx).db_url, autocommit=True) as conn:
        rec = store.get(conn, hazard_id, None)
        if rec is None:
            err.print(f"[red]error[/] 隐患 #{hazard_id} 不存在 not found")
            raise typer.Exit(2)
        events = store.events(conn, hazard_id)
        evidence = store.evidence(conn, hazard_id, with_readings=False)
    console.print(f"[bold]#{rec.id} {rec.title}[/]  {rec.enterprise_name} / {rec.plant_name or ''}  "
                  f"[{rec.status}] {rec.basis or ''}")
    for e in events:
        console.print(f"  {e.time:%Y-%m-%d %H:%M:%S}  {ACTION_ZH.get(e.action, e.action):14} "
                      f"{e.from_status:>10} → {e.to_status:10} {e.actor} ({e.actor_role})  {e.comment}")
    console.print(f"  证据 evidence: {len(evidence)} item(s); 触发 occurrences: {rec.occurrences}")


def hazards_tick(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help="Pretend it is this time (ISO 8601), e.g. for a drill.")]
    = None,
) -> None:
    """Run the hazards tick once: list overdue tickets for supervision, take up stray candidates."""
    from api.run.serve import tick_hazards_once
    from api.run.settings import build_clock
    from core.clock import FakeClock

    clock = FakeClock(datetime.fromisoformat(at).timestamp()) if at else build_clock()
    supervised, swept = tick_hazards_once(ctx_of(ctx).db_url, clock)
    console.print(f"挂牌督办 listed for supervision: {supervised}; 候选登记 candidates taken up: {swept}")


def hazards_intake(ctx: typer.Context) -> None:
    """Take up hazard candidates that have no ticket yet (e.g. raised before the ledger existed)."""
    from hazards import ledger

    c = ctx_of(ctx)
    migrate(c.db_url)
    with psycopg.connect(c.db_url) as conn:
        ids = ledger.sweep_candidates(conn)
    console.print(f"候选登记 candidates taken up into {len(set(ids))} ticket(s): {sorted(set(ids))}")


# ---- the ledger steps (the same workflow functions and request schemas as the HTTP API) -------------------

_CLI_ROLES = ("bureau", "admin", "enterprise")
_PLAN_FILE_LIMIT = 64 * 1024  # a 五落实 plan is a few lines; anything larger is not a plan
_HTTP_STATUS = {"hazard-not-found": 404, "reference-not-found": 404, "action-forbidden": 403,
                "transition-not-allowed": 409, "invalid-action": 422}

As = Annotated[str | None, typer.Option("--as", help="Who acts, for the ledger and the audit log "
                                                     "(default: $USER (cli)).")]
RoleOpt = Annotated[str, typer.Option("--role", help="bureau | admin | enterprise (plan, start and submit are the "
                                                     "enterprise's steps).")]
EntOpt = Annotated[str | None, typer.Option("--enterprise", help="The enterprise acting (role enterprise).")]
IdArg = Annotated[int, typer.Argument(metavar="ID", min=1, max=2**63 - 1)]


@dataclass(frozen=True)
class _CliPrincipal:
    """The audit log's view of who acted from the command line: no token, a name, a role."""

    name: str
    role: str
    enterprise_id: str | None
    token_id: None = None


def _actor(as_: str | None, role: str, enterprise: str | None) -> Actor:
    from hazards.model import Actor

    if role not in _CLI_ROLES:
        err.print(f"[red]error[/] 未知角色 unknown role {role!r} ({', '.join(_CLI_ROLES)})")
        raise typer.Exit(2)
    if (role == "enterprise") != (enterprise is not None):
        err.print("[red]error[/] --enterprise 仅且必须与 --role enterprise 一起使用 "
                  "--enterprise goes with --role enterprise, and only with it")
        raise typer.Exit(2)
    name = (as_ or f"{os.environ.get('USER') or getpass.getuser()} (cli)").strip()
    if not name or len(name) > 200 or "\x00" in name:
        err.print("[red]error[/] --as: 1–200 characters")
        raise typer.Exit(2)
    return Actor(name, role, enterprise)  # type: ignore[arg-type]


def _body(schema: type[BaseModel], data: dict[str, object]) -> BaseModel:
    """Validate the step's input with the API's own request schema, so both faces accept the same."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            err.print(f"[red]error[/] {'.'.join(str(x) for x in e['loc'])}: {e['msg']}")
        raise typer.Exit(1) from exc


def _step(ctx: typer.Context, hazard_id: int, route: str, actor: Actor, action: Action) -> None:
    """Apply one workflow action through `hazards.ledger.act` (as the API's routes do) and audit it."""
    from api.http import audit
    from hazards import ledger
    from hazards.errors import HazardError
    from hazards.workflow import ACTION_ZH

    c = ctx_of(ctx)
    t0 = time.monotonic()
    who = _CliPrincipal(actor.name, actor.role, actor.enterprise_id)
    path = f"riskwatch hazards {route} {hazard_id}"
    with psycopg.connect(c.db_url, autocommit=True) as conn:
        try:
            rec, event = ledger.act(conn, hazard_id, action, actor, time.time())
        except HazardError as exc:
            audit.write(conn, who, "CLI", path, f"hazards {route}", None, _HTTP_STATUS.get(exc.code, 400),  # type: ignore[arg-type]
                        (time.monotonic() - t0) * 1000, "cli", {"refused": exc.code})
            err.print(f"[red]拒绝 refused[/] {exc.message}")
            raise typer.Exit(1) from exc
        audit.write(conn, who, "CLI", path, f"hazards {route}", None, 200,  # type: ignore[arg-type]
                    (time.monotonic() - t0) * 1000, "cli",
                    {"hazard": hazard_id, "from": event.from_status, "to": event.to_status})
    console.print(f"#{rec.id} {ACTION_ZH.get(event.action, event.action)}: {event.from_status} → {event.to_status}"
                  f"  ({actor.name}, {actor.role})")


def hazards_confirm(ctx: typer.Context, hazard_id: IdArg,
                    comment: Annotated[str, typer.Option("--comment")] = "",
                    as_: As = None, role: RoleOpt = "bureau", enterprise: EntOpt = None) -> None:
    """确认为重大事故隐患 Confirm a candidate (bureau; candidate → confirmed)."""
    from api.http.schemas.hazards import ConfirmRequest
    from hazards.workflow import Confirm

    body = _body(ConfirmRequest, {"comment": comment})
    _step(ctx, hazard_id, "confirm", _actor(as_, role, enterprise), Confirm(body.comment))  # type: ignore[attr-defined]


def hazards_dismiss(ctx: typer.Context, hazard_id: IdArg,
                    reason: Annotated[str, typer.Option("--reason", help="Why it is not a major hazard (required).")]
                    = "",
                    as_: As = None, role: RoleOpt = "bureau", enterprise: EntOpt = None) -> None:
    """排除 Dismiss a candidate with a reason (bureau; candidate → dismissed)."""
    from api.http.schemas.hazards import DismissRequest
    from hazards.workflow import Dismiss

    body = _body(DismissRequest, {"reason": reason})
    _step(ctx, hazard_id, "dismiss", _actor(as_, role, enterprise), Dismiss(body.reason))  # type: ignore[attr-defined]


def _plan_data(file: Path | None, fields: dict[str, object]) -> dict[str, object]:
    data: dict[str, object] = {}
    if file is not None:
        if not file.is_file() or file.stat().st_size > _PLAN_FILE_LIMIT:
            err.print(f"[red]error[/] {file}: 不是整改方案文件 not a plan file (a YAML mapping under 64 KiB)")
            raise typer.Exit(2)
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            err.print(f"[red]error[/] {file}: {exc}")
            raise typer.Exit(2) from exc
        if not isinstance(loaded, dict):
            err.print(f"[red]error[/] {file}: 需要键值映射 expected a mapping of the 五落实 fields")
            raise typer.Exit(2)
        data.update({str(k): v for k, v in loaded.items()})
    data.update({k: v for k, v in fields.items() if v is not None})  # options override the file
    deadline = data.get("deadline")
    if isinstance(deadline, date) and not isinstance(deadline, datetime):
        deadline = datetime.combine(deadline, datetime.min.time())
    if isinstance(deadline, str):
        try:
            deadline = datetime.fromisoformat(deadline)
        except ValueError:
            pass  # the schema reports it
    if isinstance(deadline, datetime) and deadline.tzinfo is None:
        deadline = deadline.astimezone()  # a date as a person types it: in this machine's time zone
    if deadline is not None:
        data["deadline"] = deadline
    if isinstance(data.get("funds_yuan"), float | int):
        data["funds_yuan"] = str(data["funds_yuan"])
    return data


def hazards_plan(
    ctx: typer.Context, hazard_id: IdArg,
    file: Annotated[Path | None, typer.Option("--file", help="plan.yaml with the fields below (options win).")]
    = None,
    person: Annotated[str | None, typer.Option("--person", help="责任人 responsible person.")] = None,
    phone: Annotated[str | None, typer.Option("--phone", help="责任人电话 their phone.")] = None,
    measures: Annotated[str | None, typer.Option("--measures", help="整改措施 measures.")] = None,
    funds: Annotated[str | None, typer.Option("--funds", help="整改资金 funds in yuan, e.g. 85000.00.")] = None,
    deadline: Annotated[str | None, typer.Option("--deadline", help="整改时限 deadline, ISO 8601 (a bare date "
                                                                   "is local midnight).")] = None,
    contingency: Annotated[str | None, typer.Option("--contingency", help="应急预案 contingency plan.")] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    as_: As = None, role: RoleOpt = "enterprise", enterprise: EntOpt = None,
) -> None:
    """报送整改方案（五落实） File the rectification plan (enterprise; confirmed → plan_filed).

    plan.yaml keys: responsible_person, responsible_phone, measures, funds_yuan, deadline, contingency_plan,
    comment.
    """
    from api.http.schemas.hazards import PlanRequest
    from hazards.model import Plan
    from hazards.workflow import FilePlan

    actor = _actor(as_, role, enterprise)
    body: Any = _body(PlanRequest, _plan_data(file, {
        "responsible_person": person, "responsible_phone": phone, "measures": measures, "funds_yuan": funds,
        "deadline": deadline, "contingency_plan": contingency, "comment": comment}))
    plan = Plan(body.responsible_person, body.measures, body.funds_yuan, body.deadline.timestamp(),
                body.contingency_plan, body.responsible_phone)
    _step(ctx, hazard_id, "plan", actor, FilePlan(plan, body.comment))


def hazards_start(ctx: typer.Context, hazard_id: IdArg, comment: Annotated[str, typer.Option("--comment")] = "",
                  as_: As = None, role: RoleOpt = "enterprise", enterprise: EntOpt = None) -> None:
    """开始整改 Start rectifying (enterprise; plan_filed → rectifying)."""
    from api.http.schemas.hazards import CommentOnly
    from hazards.workflow import StartRectification

    body: Any = _body(CommentOnly, {"comment": comment})
    _step(ctx, hazard_id, "start", _actor(as_, role, enterprise), StartRectification(body.comment))


def hazards_submit(ctx: typer.Context, hazard_id: IdArg,
                   comment: Annotated[str, typer.Option("--comment", help="整改完成情况 what was done (required).")]
                   = "",
                   as_: As = None, role: RoleOpt = "enterprise", enterprise: EntOpt = None) -> None:
    """提交验收 Submit for verification (enterprise; rectifying → submitted)."""
    from api.http.schemas.hazards import SubmitRequest
    from hazards.workflow import Submit

    body: Any = _body(SubmitRequest, {"comment": comment})
    _step(ctx, hazard_id, "submit", _actor(as_, role, enterprise), Submit(body.comment))


def hazards_verify(ctx: typer.Context, hazard_id: IdArg, comment: Annotated[str, typer.Option("--comment")] = "",
                   as_: As = None, role: RoleOpt = "bureau", enterprise: EntOpt = None) -> None:
    """验收销号 Verify and close (bureau; submitted → closed)."""
    from api.http.schemas.hazards import CommentOnly
    from hazards.workflow import Verify

    body: Any = _body(CommentOnly, {"comment": comment})
    _step(ctx, hazard_id, "verify", _actor(as_, role, enterprise), Verify(body.comment))


def hazards_send_back(ctx: typer.Context, hazard_id: IdArg,
                      reason: Annotated[str, typer.Option("--reason", help="What is missing (required).")] = "",
                      as_: As = None, role: RoleOpt = "bureau", enterprise: EntOpt = None) -> None:
    """退回整改 Send back with a reason (bureau; submitted → rectifying)."""
    from api.http.schemas.hazards import SendBackRequest
    from hazards.workflow import SendBack

    body: Any = _body(SendBackRequest, {"reason": reason})
    _step(ctx, hazard_id, "send-back", _actor(as_, role, enterprise), SendBack(body.reason))
