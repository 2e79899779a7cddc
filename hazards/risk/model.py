"""The rating model file (`hazards/risk/rating.yaml`): its schema, validated at load like the rule catalog.

A bad file fails the load with a `core.errors.SourceError` naming the file, the line and the field — never
a page that renders a wrong colour. Besides the shape (pydantic, unknown keys refused), the load checks what
a schema cannot say: the four levels appear once each, most severe first; `blue` is the remainder and has
no conditions; a reason template formats with the placeholders it may use and no other; a percentage
threshold lies within 0..100.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core import yamlsrc
from core.errors import SourceError, SourceProblem

__all__ = ["DEFAULT_PATH", "INPUTS", "LEVEL_ORDER", "PLACEHOLDERS", "Condition", "LevelSpec", "Op", "RatingLevel",
           "RatingModel", "default_model", "load_model"]

DEFAULT_PATH = Path(__file__).with_name("rating.yaml")


class RatingLevel(StrEnum):
    """The four colours, most severe first (红 重大 / 橙 较大 / 黄 一般 / 蓝 低)."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    BLUE = "blue"


LEVEL_ORDER: tuple[RatingLevel, ...] = (RatingLevel.RED, RatingLevel.ORANGE, RatingLevel.YELLOW, RatingLevel.BLUE)

#: The inputs a condition may test (`hazards.risk.evaluate.Inputs` has one field each).
Input = Literal["confirmed_major_open", "overdue_rectifications", "candidates_open", "urgent_alarms_active",
                "availability_pct", "feedback_overdue", "mandatory_missing"]
INPUTS: tuple[str, ...] = Input.__args__  # type: ignore[attr-defined]
Op = Literal[">=", ">", "<=", "<", "=="]
#: What a reason template may name: the enterprise's figure, the condition's threshold, the availability window.
PLACEHOLDERS = frozenset({"value", "threshold", "hours"})

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """One test of one input; `reason` is the Chinese sentence shown when it fires."""

    input: Input
    op: Op
    threshold: float = Field(ge=0, le=1_000_000)
    reason: Text


class LevelSpec(_Strict):
    level: RatingLevel
    name: Text
    conditions: list[Condition] = Field(default_factory=list, max_length=50)


class RatingModel(_Strict):
    version: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    availability_window_hours: int = Field(ge=1, le=24 * 31)
    levels: list[LevelSpec] = Field(min_length=4, max_length=4)

    def level(self, level: RatingLevel) -> LevelSpec:
        return next(s for s in self.levels if s.level == level)


@dataclass(frozen=True)
class _Where:
    path: str
    lines: yamlsrc.Lines

    def problem(self, loc: tuple[object, ...], message: str) -> SourceProblem:
        dotted = ".".join(str(p) for p in loc) or "(top)"
        return SourceProblem(self.path, yamlsrc.line_for(self.lines, loc), f"{dotted}: {message}")


def _template_problem(template: str) -> str | None:
    """Why a reason template cannot be shown (a placeholder it may not use, a broken brace), or None."""
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"reason template is malformed ({exc})"
    unknown = sorted({n for n in names if n not in PLACEHOLDERS})
    if unknown:
        return f"reason uses unknown placeholder(s) {unknown}; allowed: {sorted(PLACEHOLDERS)}"
    try:
        template.format(value="1", threshold="1", hours="24")
    except (ValueError, IndexError, KeyError) as exc:
        return f"reason template does not format ({exc})"
    return None


def _semantic_problems(m: RatingModel, where: _Where) -> list[SourceProblem]:
    out: list[SourceProblem] = []
    order = tuple(s.level for s in m.levels)
    if order != LEVEL_ORDER:
        out.append(where.problem(("levels",), f"levels must be {[lv.value for lv in LEVEL_ORDER]} in this order, "
                                              f"each once; got {[lv.value for lv in order]}"))
    for i, spec in enumerate(m.levels):
        if spec.level == RatingLevel.BLUE and spec.conditions:
            out.append(where.problem(("levels", i, "conditions"),
                                     "blue is what no condition reached: it takes no conditions"))
        for j, c in enumerate(spec.conditions):
            why = _template_problem(c.reason)
            if why:
                out.append(where.problem(("levels", i, "conditions", j, "reason"), why))
            if c.input == "availability_pct" and c.threshold > 100:
                out.append(where.problem(("levels", i, "conditions", j, "threshold"),
                                         "availability_pct is a percentage: the threshold must be within 0..100"))
    return out


def load_model(path: Path | None = None, text: str | None = None) -> RatingModel:
    """The rating model at `path` (default: the shipped `rating.yaml`); SourceError with every problem."""
    path = path or DEFAULT_PATH
    m, lines = yamlsrc.validate(path, RatingModel, text)
    problems = _semantic_problems(m, _Where(str(path), lines))
    if problems:
        raise SourceError(problems)
    return m


_default: dict[str, RatingModel] = {}


def default_model() -> RatingModel:
    """The shipped model, loaded once per process (a bad file raises on every call, never caches)."""
    if "m" not in _default:
        _default["m"] = load_model()
    return _default["m"]
