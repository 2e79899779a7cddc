"""The package graph says what docs/architecture.md says: no forbidden arrow, no import circle.

Every production module is parsed (ast, nothing imported or run) and each of its imports — at module
level, inside functions and under `if TYPE_CHECKING:` alike — becomes an arrow from its part to the
imported module's part. The rules below are the ones docs/architecture.md draws; a failure prints
every violation with the importing module, the line and the imported module, and every circle by the
names of its modules.

The checker is a pure function of the graph, so `test_checker_*` feed it a tiny synthetic graph with a
forbidden arrow and a circle and insist it reports both: the real test cannot pass by checking nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Top-level production packages: the top level is fixed (records live in hazards/records, the edge agent in
#: ingest/edge); a new top-level package fails test_no_unknown_top_level_package.
PACKAGES = ("core", "ingest", "rules", "hazards", "alerting", "api", "simulators")
STAGES = frozenset({"ingest", "rules", "hazards", "alerting", "api", "simulators"})

#: The faces of api/: each its own part. Anything else under api/ (api/__init__.py) is the part "api".
API_FACES = ("api.http", "api.cli", "api.run", "api.grafana", "api.web")

#: Top-level package -> packages it must never import (besides the simulators rule and the face matrix).
FORBIDDEN: dict[str, frozenset[str]] = {
    "core": STAGES,
    "rules": frozenset({"ingest", "alerting", "hazards", "api", "simulators"}),
    "hazards": frozenset({"alerting", "api", "simulators"}),
    "alerting": frozenset({"rules", "hazards", "api", "simulators"}),
    "ingest": frozenset({"rules", "hazards", "alerting", "api", "simulators"}),
}

#: Only these parts may import simulators (the composition root runs the demo and the bench).
MAY_IMPORT_SIMULATORS = frozenset({"api.run", "simulators"})

#: Face -> faces it may import. A face not listed as a key imports no other face.
#: cli dispatches commands to run; run composes http and grafana (and may serve web); both may use any.
FACE_ARROWS: dict[str, frozenset[str]] = {
    "api.cli": frozenset(API_FACES) - {"api.cli"},
    "api.run": frozenset(API_FACES) - {"api.run"},
}


@dataclass(frozen=True)
class Arrow:
    source: str       # importing module
    target: str       # imported production module
    line: int


def part_of(module: str) -> str:
    """'api.http.routers.ack' -> 'api.http'; 'rules.engine' -> 'rules'."""
    for face in API_FACES:
        if module == face or module.startswith(face + "."):
            return face
    return module.split(".", 1)[0]


def top_of(module: str) -> str:
    return module.split(".", 1)[0]


# --- the checker (pure) ---------------------------------------------------------------------------


def forbidden_arrows(arrows: Iterable[Arrow]) -> list[str]:
    """Every arrow the architecture forbids, one line each."""
    out = []
    for a in arrows:
        src_top, dst_top = top_of(a.source), top_of(a.target)
        src_part, dst_part = part_of(a.source), part_of(a.target)
        if src_top == dst_top and src_top != "api":
            continue  # inside one package
        why = None
        if dst_top in FORBIDDEN.get(src_top, frozenset()):
            why = f"{src_top} must not import {dst_top}"
        elif dst_top == "simulators" and src_part not in MAY_IMPORT_SIMULATORS:
            why = "only api.run and simulators may import simulators"
        elif src_part in API_FACES and dst_part in API_FACES and src_part != dst_part \
                and dst_part not in FACE_ARROWS.get(src_part, frozenset()):
            why = f"face {src_part} must not import face {dst_part}"
        if why is not None:
            out.append(f"{a.source}:{a.line} imports {a.target} ({why})")
    return out


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (or a module importing itself), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    edges = {k: sorted(set(v)) for k, v in graph.items()}

    def visit(root: str) -> None:  # iterative Tarjan: the graph may be deep
        nonlocal counter
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = edges.get(node, [])
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1 or node in edges.get(node, []):
                    found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])

    for n in sorted(edges):
        if n not in index:
            visit(n)
    return sorted(found)


def violations(arrows: list[Arrow]) -> list[str]:
    graph: dict[str, set[str]] = {}
    for a in arrows:
        graph.setdefault(a.source, set()).add(a.target)
        graph.setdefault(a.target, set())
    return forbidden_arrows(arrows) + [f"import circle among: {', '.join(c)}" for c in cycles(graph)]


# --- reading the tree -----------------------------------------------------------------------------


def production_modules(root: Path = ROOT) -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        base = root / pkg
        if not (base / "__init__.py").exists() and not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if "__pycache__" in parts or any(p.startswith(".") for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: Mapping[str, Path]) -> list[Arrow]:
    """Arrows from `module` to the production modules it imports (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    out = []

    def target(name: str) -> str | None:
        # the longest known module that `name` is or lies inside
        while name:
            if name in known:
                return name
            name = name.rpartition(".")[0]
        return None

    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            # `from pkg import sub` names the submodule when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for n in names:
            t = target(n)
            if t is not None and t != module:
                out.append(Arrow(module, t, node.lineno))
    return sorted(set(out), key=lambda a: (a.line, a.target))


def project_arrows(root: Path = ROOT) -> list[Arrow]:
    known = production_modules(root)
    return [a for m, p in known.items() for a in imports_of(m, p, known)]


# --- tests ----------------------------------------------------------------------------------------


def test_no_forbidden_arrow_and_no_circle() -> None:
    arrows = project_arrows()
    assert len({a.source for a in arrows}) > 50, "the scan found too few modules to be looking at the project"
    found = violations(arrows)
    for line in found:
        print(line)
    assert not found, f"{len(found)} architecture violation(s):\n" + "\n".join(found)


def test_checker_catches_a_forbidden_arrow_and_a_circle() -> None:
    synthetic = [
        Arrow("rules.engine", "ingest.batch", 3),              # forbidden: rules -> ingest
        Arrow("alerting.config", "alerting.route", 5),         # circle config -> route -> roster -> config
        Arrow("alerting.route", "alerting.roster", 7),
        Arrow("alerting.roster", "alerting.config", 9),
        Arrow("rules.engine", "core.readings", 4),             # allowed
        Arrow("api.http.app", "api.cli.main", 2),              # forbidden: face -> face
        Arrow("api.cli.main", "api.run.serve", 2),             # allowed: cli -> run
        Arrow("hazards.store", "simulators.fakes.sinks", 1),   # forbidden: simulators
        Arrow("api.run.demo", "simulators.fakes.sinks", 1),    # allowed
        Arrow("core.db", "ingest.store", 8),                   # forbidden: core -> stage
        Arrow("ingest.edge.agent", "rules.model", 1),          # forbidden: ingest (the edge agent) -> rules
        Arrow("ingest.edge.agent", "ingest.decode", 1),        # allowed
    ]
    found = violations(synthetic)
    assert "rules.engine:3 imports ingest.batch (rules must not import ingest)" in found
    assert "import circle among: alerting.config, alerting.roster, alerting.route" in found
    assert any(f.startswith("api.http.app:2 imports api.cli.main (face api.http") for f in found)
    assert any(f.startswith("hazards.store:1 imports simulators.fakes.sinks") for f in found)
    assert any(f.startswith("core.db:8 imports ingest.store") for f in found)
    assert any(f.startswith("ingest.edge.agent:1 imports rules.model") for f in found)
    assert len(found) == 6, found


def test_checker_reads_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "rules"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from ingest import batch\n    return batch\n")
    (pkg / "b.py").write_text("from . import a\nfrom .a import f\n")
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "__init__.py").write_text("")
    (tmp_path / "ingest" / "batch.py").write_text("")
    arrows = project_arrows(tmp_path)
    assert Arrow("rules.a", "ingest.batch", 2) in arrows
    assert Arrow("rules.b", "rules.a", 1) in arrows and Arrow("rules.b", "rules.a", 2) in arrows
    assert violations(arrows) == ["rules.a:2 imports ingest.batch (rules must not import ingest)"]


def test_no_unknown_top_level_package() -> None:
    """The top level is fixed: a new stage goes inside one of the parts, and the arrows above then cover it."""
    tops = {p.name for p in ROOT.iterdir()
            if p.is_dir() and (p / "__init__.py").exists() and p.name not in ("tests",)}
    assert tops <= set(PACKAGES), f"top-level packages outside the architecture: {sorted(tops - set(PACKAGES))}"
