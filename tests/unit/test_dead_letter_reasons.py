"""Every dead-letter reason the collector can write has a plain-Chinese text (ingest/reasons.py).

The source of ingest/ is scanned with ast (nothing imported or run): the reason argument of every
`MessageRejected(...)`, `ReadingRejected(...)` and `DeadLetter(...)` call, and when that argument is a
variable, every string assigned to it in the same function (`reason = "a" if x else "b"`). A new reason
without an entry fails here, naming it. `test_scanner_sees_*` makes sure the scan is not vacuous.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ingest.reasons import REASONS, explain

INGEST = Path(__file__).resolve().parents[2] / "ingest"
#: call name -> position of its reason argument
REASON_ARG = {"MessageRejected": 0, "ReadingRejected": 1, "DeadLetter": 2}


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def reasons_in(source: str) -> tuple[set[str], list[str]]:
    """(reason strings the calls in `source` can pass, calls whose reason could not be resolved)."""
    tree = ast.parse(source)
    found: set[str] = set()
    unresolved: list[str] = []
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] or [tree]
    for fn in funcs:
        assigned: dict[str, set[str]] = {}
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        assigned.setdefault(t.id, set()).update(_strings(n.value))
        for n in ast.walk(fn):
            if not isinstance(n, ast.Call):
                continue
            name = _call_name(n)
            if name not in REASON_ARG or len(n.args) <= REASON_ARG[name]:
                continue
            arg = n.args[REASON_ARG[name]]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.Name) and assigned.get(arg.id):
                found |= assigned[arg.id]
            elif isinstance(arg, ast.Attribute) and arg.attr == "reason":
                continue  # passes on a reason raised elsewhere (exc.reason), scanned where it was raised
            else:
                unresolved.append(f"{name} at line {n.lineno}")
    return found, unresolved


def emitted() -> set[str]:
    out: set[str] = set()
    for path in sorted(INGEST.rglob("*.py")):
        found, unresolved = reasons_in(path.read_text(encoding="utf-8"))
        assert not unresolved, f"{path}: reason not a literal the scan can read: {unresolved}"
        out |= found
    return out


def test_every_emitted_reason_has_plain_text() -> None:
    codes = emitted()
    assert {"invalid_json", "timestamp_out_of_range", "bad_topic", "unknown_gateway", "gateway_disabled",
            "store_failed", "missing_timestamp"} <= codes  # the scan reads all three call shapes
    missing = sorted(codes - REASONS.keys())
    assert not missing, f"dead-letter reasons without a plain-Chinese text in ingest/reasons.py: {missing}"


def test_texts_are_chinese_first_and_say_what_to_do() -> None:
    for code, r in REASONS.items():
        assert r.zh and "\u4e00" <= r.zh[0] <= "\u9fff", code
        assert "。" in r.zh and r.en, code
    assert explain("timestamp_out_of_range").zh.endswith("请校准网关时间。")


def test_unknown_reason_is_shown_not_hidden() -> None:
    assert "made_up_reason" in explain("made_up_reason").zh


def test_scanner_sees_a_new_reason_and_a_conditional_one() -> None:
    src = ('def f(x):\n    reason = "a_one" if x else "b_two"\n    DeadLetter(g, t, reason, d, None, p)\n'
           '    raise MessageRejected("c_three", "detail")\n'
           'def g(i, r):\n    ReadingRejected(i, "d_four", "detail", r)\n    DeadLetter(g, t, compute(), d, None, p)\n')
    found, unresolved = reasons_in(src)
    assert found == {"a_one", "b_two", "c_three", "d_four"}
    assert unresolved == ["DeadLetter at line 7"]
