"""`riskwatch rules check`, `alarms ...`, `baseline set`, `maintenance add`: the rule catalog and the alarms
it raises (ISA-18.2: acknowledge, shelve, out of service, flood), through the stores of `rules`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import psycopg
import typer

from api.cli.context import Col, console, ctx_of, err, now, print_list
from core import registry

__all__ = ["register"]

rules_app = typer.Typer(help="规则清单 Rule catalog (一行业一清单).", no_args_is_help=True)
alarms_app = typer.Typer(help="报警 Alarms: list, acknowledge, shelve, out of service, flood.",
                         no_args_is_help=True)
baseline_app = typer.Typer(help="基线 Baselines (AQ 4273: recorded after installation or a bag change).",
                           no_args_is_help=True)
maintenance_app = typer.Typer(help="检修窗口 Maintenance windows (alarms recorded, not annunciated).",
                              no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(rules_app, name="rules")
    root.add_typer(alarms_app, name="alarms")
    root.add_typer(baseline_app, name="baseline")
    root.add_typer(maintenance_app, name="maintenance")


@rules_app.command("check")
def rules_check(path: Annotated[Path | None, typer.Argument(help="Catalog dir or file (default: shipped).")] = None,
                site: Annotated[Path | None, typer.Option("--site", help="Also bind to this site file.")] = None,
                ) -> None:
    """Validate a rule catalog; every error is reported with file and line."""
    from rules.model import default_catalog_dir, load_catalog

    target = path or default_catalog_dir()
    cat = load_catalog(target)
    n_files = len(cat.files)
    console.print(f"[green]OK[/] {target}: {len(cat)} rules in {n_files} file(s); versions "
                  + ", ".join(sorted({f"{f.catalog}@{f.version}" for _, f in cat.files})))
    if site is not None:
        from rules.compile import DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules

        spec = registry.parse_site(site)
        pts: list[PointRow] = []
        devs: dict[int, DeviceRow] = {}
        plants: dict[str, PlantRow] = {}
        gws: list[GatewayRow] = []
        pid = 0
        for e in spec.enterprises:
            for p in e.plants:
                plants[p.id] = PlantRow(p.id, p.industry, e.id)
                gws += [GatewayRow(g.id, p.id, g.enabled) for g in p.gateways]
                for d in p.devices:
                    did = len(devs) + 1
                    devs[did] = DeviceRow(did, p.id, d.kind, d.code)
                    for pt in d.points:
                        pid += 1
                        pts.append(PointRow(pid, d.gateway, pt.tag, did, pt.quantity, pt.role, pt.required,
                                            pt.interval_s, pt.setpoints or {}, pt.baseline))
        compiled = compile_rules(cat, RegistryView(pts, devs, plants, gws))
        console.print(f"  {site}: {len(compiled.instances)} alarm instances")
        for s in compiled.skipped:
            console.print(f"  [yellow]not bound[/] {s}")


@alarms_app.command("list")
def alarms_list(
    ctx: typer.Context,
    plant: Annotated[str | None, typer.Option("--plant")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include alarms back to normal.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects, for scripts.")] = False,
) -> None:
    """Alarms that are active or awaiting acknowledgement, most severe first.

    The 对象 target column is what `alarms ack RULE TARGET` takes: GATEWAY/TAG for a point, GATEWAY for a
    gateway. The full reason is in `alarms history RULE TARGET` and in --json.
    """
    from dataclasses import asdict

    from rules.overview import alarms_shown

    with psycopg.connect(ctx_of(ctx).db_url) as conn:
        rows = alarms_shown(conn, plant=plant, include_normal=all_)
    shown = []
    for r in rows:
        flags = "".join(f for f, on in (("⏸", r.shelved), ("~", r.chattering), ("⛔", r.out_of_service)) if on)
        shown.append({**asdict(r), "level": r.severity + (" ★" if r.candidate else ""), "status": r.state + flags})
    if as_json:
        print_list("", [], [{k: v for k, v in d.items() if k not in ("level", "status")} for d in shown],
                   as_json=True)
        return
    print_list("报警 alarms", [Col("level", "级别 severity"), Col("status", "状态 state"),
                              Col("rule_id", "规则 rule", ident=True), Col("target", "对象 target", ident=True),
                              Col("device", "设备 device"), Col("activated_at", "时间 since"),
                              Col("value", "值 value")],
               shown, as_json=False,
               legend="★ 重大事故隐患候选 candidate major hazard · ⏸ shelved · ~ chattering · ⛔ out of service\n"
                      "确认 acknowledge: riskwatch alarms ack RULE TARGET")
    if not rows:
        console.print("无报警 no alarms")


def _target(gateway: str, tag: str | None) -> tuple[str, str | None]:
    """`GW/TAG` as `alarms list` prints it, or the older `GW TAG` / `GW` forms."""
    if tag is None and "/" in gateway:
        gw, _, t = gateway.partition("/")
        return gw, t or None
    return gateway, tag


def _alarm_action(ctx: typer.Context, rule_id: str, gateway: str, tag: str | None, action: str, **kw: object) -> None:
    from rules import actions

    gw, tg = _target(gateway, tag)
    subject = ""
    with psycopg.connect(ctx_of(ctx).db_url) as conn:
        try:
            subject = actions.subject_for(conn, gw, tg)
            fn = getattr(actions, action)
            events = fn(conn, rule_id, subject, now=now(), **kw)
        except (actions.AlarmNotFound, ValueError) as exc:
            shown = f"{gw}/{tg}" if tg else gw  # the operator's words, not the internal subject
            err.print(f"[red]error[/] {str(exc).replace(f' on {subject}', f' on {shown}') if subject else exc}")
            raise typer.Exit(2) from exc
    for e in events:
        console.print(f"{e.event}: {e.from_state} -> {e.to_state} ({e.reason})")


@alarms_app.command("ack")
def alarms_ack(ctx: typer.Context, rule_id: str, gateway: str, tag: Annotated[str | None, typer.Argument()] = None,
               by: Annotated[str, typer.Option("--by", help="Who acknowledges.")] = "operator",
               comment: Annotated[str, typer.Option("--comment")] = "") -> None:
    """Acknowledge an alarm: RULE_ID TARGET as `alarms list` shows it (GATEWAY/TAG, or GATEWAY for a gateway
    alarm); the older RULE_ID GATEWAY TAG works too."""
    _alarm_action(ctx, rule_id, gateway, tag, "acknowledge", actor=by, comment=comment)


@alarms_app.command("shelve")
def alarms_shelve(ctx: typer.Context, rule_id: str, gateway: str, tag: Annotated[str | None, typer.Argument()] = None,
                  minutes: Annotated[float, typer.Option("--minutes")] = 60.0,
                  reason: Annotated[str, typer.Option("--reason")] = "",
                  by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Shelve an alarm for a time, with a reason; it unshelves itself."""
    _alarm_action(ctx, rule_id, gateway, tag, "shelve", actor=by, duration_s=minutes * 60, reason=reason)


@alarms_app.command("unshelve")
def alarms_unshelve(ctx: typer.Context, rule_id: str, gateway: str,
                    tag: Annotated[str | None, typer.Argument()] = None,
                    by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Unshelve an alarm now."""
    _alarm_action(ctx, rule_id, gateway, tag, "unshelve", actor=by)


@alarms_app.command("out-of-service")
def alarms_oos(ctx: typer.Context, rule_id: str, gateway: str, tag: Annotated[str | None, typer.Argument()] = None,
               reason: Annotated[str, typer.Option("--reason")] = "",
               back: Annotated[bool, typer.Option("--back", help="Return to service.")] = False,
               by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Take an alarm out of service (or --back into service)."""
    _alarm_action(ctx, rule_id, gateway, tag, "out_of_service", actor=by, reason=reason, on=not back)


@alarms_app.command("history")
def alarms_history(ctx: typer.Context, rule_id: str, gateway: str,
                   tag: Annotated[str | None, typer.Argument()] = None) -> None:
    """Every recorded event of one alarm."""
    from rules import actions

    with psycopg.connect(ctx_of(ctx).db_url) as conn:
        try:
            subject = actions.subject_for(conn, *_target(gateway, tag))
        except actions.AlarmNotFound as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
        for t, ev, f, to, ann, actor, reason, value in actions.history(conn, rule_id, subject):
            console.print(f"{t:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {ev:18} {f:>9} -> {to:9} "
                          f"{'📢' if ann else '  '} {actor:10} {'' if value is None else f'{value:g}'}  {reason}")


@alarms_app.command("flood")
def alarms_flood(ctx: typer.Context,
                 as_json: Annotated[bool, typer.Option("--json", help="A JSON array of objects.")] = False) -> None:
    """Annunciated alarms per plant in the last 10 minutes (ISA-18.2 flood: > 10)."""
    from rules.actions import flood

    with psycopg.connect(ctx_of(ctx).db_url) as conn:
        rows = flood(conn, now())
    if not rows and not as_json:
        console.print("最近10分钟无报警 no alarms in the last 10 minutes")
        return
    print_list("报警泛滥 alarm flood (10 min)", [Col("plant_id", "厂区 plant", ident=True),
                                              Col("count", "报警数 alarms"), Col("mark", "")],
               [{"plant_id": p, "count": n, "flooding": f, "mark": "报警泛滥 FLOOD" if f else ""}
                for p, n, f in rows] if not as_json else
               [{"plant_id": p, "count": n, "flooding": f} for p, n, f in rows], as_json=as_json)


@baseline_app.command("set")
def baseline_set(ctx: typer.Context, gateway: str, tag: str,
                 value: Annotated[float | None, typer.Option("--value")] = None,
                 capture: Annotated[float | None, typer.Option("--capture-minutes",
                                                             help="Mean of the last N minutes.")] = None) -> None:
    """Record a point's baseline (e.g. filter pressure difference after a bag change)."""
    from rules.actions import AlarmNotFound, set_baseline

    if (value is None) == (capture is None):
        raise typer.BadParameter("give exactly one of --value or --capture-minutes")
    with psycopg.connect(ctx_of(ctx).db_url) as conn:
        try:
            b = set_baseline(conn, gateway, tag, value, capture)
        except AlarmNotFound as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    console.print(f"基线已记录 baseline of {gateway}/{tag} = {b:g}")


@maintenance_app.command("add")
def maintenance_add(ctx: typer.Context, plant: str,
                    minutes: Annotated[float, typer.Option("--minutes")] = 60.0,
                    device: Annotated[str | None, typer.Option("--device", help="Device code.")] = None,
                    reason: Annotated[str, typer.Option("--reason")] = "",
                    by: Annotated[str, typer.Option("--by")] = "operator") -> None:
    """Open a maintenance window from now on a plant (or one device)."""
    if not reason.strip():
        raise typer.BadParameter("a maintenance window needs a reason", param_hint="--reason")
    from rules.maintenance import UnknownDevice, open_window

    with psycopg.connect(ctx_of(ctx).db_url) as conn:
        try:
            wid = open_window(conn, plant, minutes, reason, by, device_code=device)
        except UnknownDevice as exc:
            err.print(f"[red]error[/] {exc}")
            raise typer.Exit(2) from exc
    console.print(f"检修窗口 maintenance window #{wid} for {minutes:g} min")
