"""YAML loading that remembers where each value came from.

Validation errors are reported as file:line, so a bad site, rule or routing
file points at the line to fix. `load()` returns the plain data plus a map
from a location path (tuple of keys and indexes, as pydantic reports them) to
the 1-based line number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import SourceError, SourceProblem

Lines = dict[tuple[Any, ...], int]
M = TypeVar("M", bound=BaseModel)


def load(path: str | Path, text: str | None = None) -> tuple[Any, Lines]:
    path = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError([SourceProblem(path, None, f"cannot read: {exc}")]) from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: Lines = {}
        data = _build(loader, node, (), lines) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SourceError([SourceProblem(path, line, f"YAML syntax: {exc.problem or exc}")]) from exc
    finally:
        loader.dispose()
    return data, lines


def _build(loader: yaml.SafeLoader, node: yaml.Node, loc: tuple[Any, ...], lines: Lines) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
            out[key] = _build(loader, value_node, (*loc, key), lines)
            lines.setdefault((*loc, key, "__key__"), key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*loc, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def line_for(lines: Lines, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest known prefix of loc."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        # an unknown (extra) key: point at the key itself
        if (*loc[:-1], loc[-1], "__key__") in lines:
            return lines[(*loc[:-1], loc[-1], "__key__")]
        loc = loc[:-1]
    return lines.get(())


def _data_path(loc: tuple[Any, ...], lines: Lines) -> tuple[Any, ...]:
    """Drop what pydantic adds to a location that is not in the data (union tags, validator names)."""
    out: tuple[Any, ...] = ()
    for i, p in enumerate(loc):
        last = i == len(loc) - 1
        if (*out, p) in lines or (last and not isinstance(p, int)):
            out = (*out, p)
    return out


def problems_from_validation(path: str, exc: ValidationError, lines: Lines) -> list[SourceProblem]:
    out = []
    for err in exc.errors():
        loc = _data_path(tuple(err["loc"]), lines)
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # point at the tag field itself (e.g. `shape:`), not at the start of the item
            loc = (*loc, err.get("ctx", {}).get("discriminator", "").strip("'"))
        dotted = ".".join(str(p) for p in loc) or "(top)"
        out.append(SourceProblem(path, line_for(lines, loc), f"{dotted}: {err['msg']}"))
    return out


def validate(path: str | Path, model: type[M], text: str | None = None) -> tuple[M, Lines]:
    data, lines = load(path, text)
    try:
        return model.model_validate(data), lines
    except ValidationError as exc:
        raise SourceError(problems_from_validation(str(path), exc, lines)) from exc
