"""The pure evaluator: an enterprise's inputs and the rating model -> its level and every reason that fired.

The level is the most severe one any condition fired in (`blue` when none did). The reasons are every
firing condition's sentence, most severe first, in file order within a level — not only the deciding one,
so the board says everything that is wrong. When conditions of several levels test the same input (2 open
confirmed major hazards for red, 1 for orange), only the most severe firing one speaks for that input: the
same number is never told twice. An input that is unknown (`availability_pct` when no point expected any
reading) fires nothing.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from hazards.risk.model import LEVEL_ORDER, Condition, RatingLevel, RatingModel

__all__ = ["LEVEL_ZH", "Inputs", "Rating", "Reason", "fires", "rate", "shown"]

#: The colour names as the board and the API say them (the model's own `name` is the level's full title).
LEVEL_ZH: dict[RatingLevel, str] = {RatingLevel.RED: "红", RatingLevel.ORANGE: "橙", RatingLevel.YELLOW: "黄",
                                    RatingLevel.BLUE: "蓝"}

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


@dataclass(frozen=True)
class Inputs:
    """What the rating reads of one enterprise (`hazards.risk.store.gather` fills it)."""

    confirmed_major_open: int = 0
    overdue_rectifications: int = 0
    candidates_open: int = 0
    urgent_alarms_active: int = 0
    #: Received / expected readings of its points over the model's window, in percent; None: none expected.
    availability_pct: float | None = None
    #: Warnings past their disposal time limit with no feedback (预警处置, rules.disposal; alarm_disposals).
    feedback_overdue: int = 0
    #: Mandatory dust-collector points (接入完整性, core.mandatory) its registry lacks.
    mandatory_missing: int = 0

    def get(self, name: str) -> float | None:
        v = getattr(self, name)
        return None if v is None else float(v)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reason:
    level: RatingLevel
    input: str
    value: float
    threshold: float
    text: str


@dataclass(frozen=True)
class Rating:
    level: RatingLevel
    name: str  # the level's title in the model (重大风险 ...)
    reasons: tuple[Reason, ...]
    version: str

    @property
    def colour_zh(self) -> str:
        return LEVEL_ZH[self.level]


def shown(value: float) -> str:
    """A figure as a reason shows it: whole numbers without decimals, others floored to one decimal, so
    89.96 % reads 89.9 (below 90) rather than a rounded 90.0 that seems to contradict the reason."""
    if float(value).is_integer():
        return str(int(value))
    return f"{math.floor(value * 10) / 10:.1f}"


def fires(c: Condition, inputs: Inputs) -> bool:
    v = inputs.get(c.input)
    return v is not None and _OPS[c.op](v, c.threshold)


def rate(inputs: Inputs, model: RatingModel) -> Rating:
    """The enterprise's level and reasons under `model`. Pure."""
    reasons: list[Reason] = []
    spoken: set[str] = set()
    level = RatingLevel.BLUE
    for spec_level in LEVEL_ORDER:
        for c in model.level(spec_level).conditions:
            if c.input in spoken or not fires(c, inputs):
                continue
            value = inputs.get(c.input)
            assert value is not None  # fires() says so
            spoken.add(c.input)
            text = c.reason.format(value=shown(value), threshold=shown(c.threshold),
                                   hours=model.availability_window_hours)
            reasons.append(Reason(spec_level, c.input, value, c.threshold, text))
            if LEVEL_ORDER.index(spec_level) < LEVEL_ORDER.index(level):
                level = spec_level
    return Rating(level, model.level(level).name, tuple(reasons), model.version)
