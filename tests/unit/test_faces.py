"""The faces of `api/` keep to their rooms: the CLI and the demo run no SQL of their own (the stores that
own the tables do), `api/cli/context.py` is a leaf, every face has a small public surface, and the CLI
registers every command once, in the order `riskwatch --help` lists them."""

from __future__ import annotations

import ast
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[2]
NO_SQL = [*sorted((ROOT / "api" / "cli").glob("*.py")), ROOT / "api" / "run" / "demo.py"]
DB_CALLS = {"execute", "executemany", "copy", "stream"}


def _db_calls(source: str, name: str) -> list[str]:
    tree = ast.parse(source, name)
    return [f"{name}:{n.lineno} .{n.func.attr}(...)" for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in DB_CALLS]


def test_no_cli_or_demo_module_runs_sql() -> None:
    assert len(NO_SQL) > 8, "the scan found too few CLI modules"
    found = [c for p in NO_SQL for c in _db_calls(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert not found, "SQL belongs to the store that owns the table:\n" + "\n".join(found)


def test_the_checker_sees_a_query() -> None:
    probe = ("def f(conn):\n    with psycopg.connect(u) as c:\n        c.execute('SELECT 1')\n"
             "    conn.cursor().copy('x')\n")
    assert sorted(_db_calls(probe, "probe.py")) == ["probe.py:3 .execute(...)", "probe.py:4 .copy(...)"]


def test_the_cli_context_is_a_leaf() -> None:
    tree = ast.parse((ROOT / "api" / "cli" / "context.py").read_text(encoding="utf-8"))
    mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    mods += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in mods if m == "api" or m.startswith("api.")]


def test_every_face_has_a_public_surface() -> None:
    for face in ("http", "cli", "run", "grafana"):
        tree = ast.parse((ROOT / "api" / face / "__init__.py").read_text(encoding="utf-8"))
        names = [t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
        assert "__all__" in names, f"api/{face}/__init__.py has no __all__"


def test_every_command_is_registered_once_in_help_order() -> None:
    from api.cli import app, main
    from api.cli import server as cli_server

    cli_server.register(app)  # idempotent: a harness may register again
    cmd = typer.main.get_command(app)
    names = list(cmd.list_commands(typer.Context(cmd)))  # type: ignore[attr-defined]
    assert names == ["migrate", "collect", "serve", "simulate", "bench", "demo", "backup", "restore", "edge",
                     "services", "registry", "gateway", "rules", "alarms", "baseline", "maintenance", "broker",
                     "grafana", "retention", "token", "hazards", "alerting", "northbound", "users"]
    assert callable(main)
