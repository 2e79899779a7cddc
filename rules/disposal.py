"""Warning disposal (预警处置闭环): which alarms need the enterprise's feedback, by when, and who is told
when it does not come — pure functions of (disposal, policy, now).

A warning is not closed until the enterprise has said how it handled it (cause category, measures,
who). The policy (`rules/disposal.yaml`, validated at load with file:line errors) gives the lowest
severity that needs feedback, the time limit per severity, the fixed list of cause categories and the
escalation ladder: tier by tier (core.vocab.DisposalTier — enterprise principal, bureau duty officer,
section chief, leader), each `after` the limit ran out. The routing file's `disposal:` section names the
receivers of each tier, so the policy says *when* and alerting says *whom*; `alerting check` checks the
latter. Feedback at any tier stops the ladder. Acknowledging an alarm is not feedback: an operator's
acknowledgement says someone saw it, feedback says what was done about it.

The engine adapter (`rules.engine`) opens a disposal for each annunciated activation at or above the
severity and calls `decide` on its timer tick with the injected clock; `rules.store_disposal` holds the SQL.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from core import yamlsrc
from core.errors import RiskwatchError
from core.timeconst import S_PER_DAY, S_PER_H, S_PER_MIN
from core.vocab import DISPOSAL_TIERS, SEVERITIES, DisposalTier, Severity

__all__ = ["DEFAULT_POLICY", "TIER_ZH", "Decision", "Disposal", "DisposalError", "Feedback", "Outcome", "Policy",
           "ResponseStats", "Step", "check_feedback", "decide", "due_at", "load_policy", "requires_feedback",
           "response_stats"]

DEFAULT_POLICY = Path(__file__).with_name("disposal.yaml")

TIER_ZH = {"principal": "企业主要负责人", "duty_officer": "局值班人员", "section_chief": "科室负责人",
           "leader": "分管局领导"}

MAX_TEXT = 2000  # measures and names: a form's worth, not a document


class DisposalError(RiskwatchError, ValueError):
    """A feedback the policy does not accept (unknown cause, nothing said about the measures)."""


# --- the policy file ----------------------------------------------------------------------------

_UNITS = {"s": 1.0, "m": float(S_PER_MIN), "h": float(S_PER_H), "d": float(S_PER_DAY)}
_PART = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")


def _duration(v: object) -> float:
    """Seconds from "30m", "2h", "1h30m" or a number of seconds (rules must not import alerting's parser)."""
    if isinstance(v, bool):
        raise ValueError(f"a duration is text like \"30m\" or a number of seconds, not {v!r}")
    if isinstance(v, int | float):
        seconds = float(v)
    elif isinstance(v, str) and re.fullmatch(r"(?:\d+(?:\.\d+)?(?:s|m|h|d))+", v.strip()):
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(v.strip()))
    else:
        raise ValueError(f"invalid duration {v!r}: use e.g. \"30m\", \"2h\", \"1h30m\" or a number of seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {v!r}: must be a finite number of seconds ≥ 0")
    return seconds


Seconds = Annotated[float, BeforeValidator(_duration)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierSpec(_Frozen):
    tier: DisposalTier
    after: Seconds  # counted from the moment the time limit ran out


class PolicyFile(_Frozen):
    version: int = Field(ge=1, le=1)
    min_severity: Severity = Severity.HIGH
    limits: dict[Severity, Seconds]
    causes: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")], Annotated[str, Field(min_length=1)]] = \
        Field(min_length=1)
    escalation: tuple[TierSpec, ...] = Field(min_length=1)

    @field_validator("limits")
    @classmethod
    def _every_severity(cls, v: dict[Severity, float], info: ValidationInfo) -> dict[Severity, float]:
        floor = SEVERITIES.index(info.data.get("min_severity", Severity.HIGH))
        missing = [s for s in SEVERITIES[floor:] if s not in v]
        if missing:
            raise ValueError(f"give a time limit for every severity from {SEVERITIES[floor]} up"
                             f" (missing: {', '.join(missing)})")
        if any(x <= 0 for x in v.values()):
            raise ValueError("every time limit must be positive")
        return v

    @field_validator("escalation")
    @classmethod
    def _ladder(cls, v: tuple[TierSpec, ...]) -> tuple[TierSpec, ...]:
        seen: set[str] = set()
        previous = -1.0
        for step in v:
            if step.tier in seen:
                raise ValueError(f"tier {step.tier.value} is named twice")
            seen.add(step.tier)
            if step.after <= previous:
                raise ValueError(f"{step.tier.value} must come strictly after the tier before it")
            previous = step.after
        order = [DISPOSAL_TIERS.index(s.tier) for s in v]
        if order != sorted(order):
            raise ValueError(f"tiers go up in the order {', '.join(DISPOSAL_TIERS)}")
        return v


@dataclass(frozen=True)
class Policy:
    min_severity: str
    limits: dict[str, float]              # severity -> seconds to feed back
    causes: dict[str, str]                # code -> Chinese label (the fixed list the form offers)
    ladder: tuple[tuple[str, float], ...]  # (tier, seconds after the limit)
    source: str = "(built in)"


def load_policy(path: str | Path | None = None, text: str | None = None) -> Policy:
    """The policy file (the shipped `rules/disposal.yaml` by default); SourceError names file:line."""
    where = path if path is not None else DEFAULT_POLICY
    spec, _ = yamlsrc.validate(where, PolicyFile, text)
    return Policy(spec.min_severity.value, {k.value: v for k, v in spec.limits.items()}, dict(spec.causes),
                  tuple((s.tier.value, s.after) for s in spec.escalation), str(where))


# --- decisions ------------------------------------------------------------------------------------


def requires_feedback(policy: Policy, severity: str) -> bool:
    """Whether an alarm of this severity owes a disposal feedback; an unknown severity does not."""
    if severity not in SEVERITIES:
        return False
    return SEVERITIES.index(severity) >= SEVERITIES.index(policy.min_severity)


def due_at(policy: Policy, severity: str, activated_at: float) -> float:
    return activated_at + policy.limits[severity]


@dataclass(frozen=True)
class Disposal:
    """What the decision reads of one disposal (a row of alarm_disposals)."""

    id: int
    severity: str
    activated_at: float
    due_at: float
    tier_reached: int = 0
    feedback_at: float | None = None


@dataclass(frozen=True)
class Step:
    tier: str
    scheduled: float   # when it was due (due_at + after)
    reason: str


@dataclass(frozen=True)
class Decision:
    steps: tuple[Step, ...]
    tier_reached: int
    next_at: float | None
    reason: str


def _at(d: Disposal, policy: Policy, k: int) -> float:
    return d.due_at + policy.ladder[k][1]


def decide(d: Disposal, policy: Policy, now: float) -> Decision:
    """The tiers due at `now` that have not been told yet, and when to look again.

    A tick that comes late (the collector was down) takes every tier that fell due meanwhile, each once,
    in order: the ladder is a record of who was told, not a schedule that may be skipped.
    """
    if d.feedback_at is not None:
        return Decision((), d.tier_reached, None, "已反馈 feedback given: escalation stopped")
    steps: list[Step] = []
    k = d.tier_reached
    while k < len(policy.ladder) and _at(d, policy, k) <= now:
        tier, after = policy.ladder[k]
        late = _at(d, policy, k) - d.activated_at
        steps.append(Step(tier, _at(d, policy, k),
                          f"预警{late / S_PER_MIN:g}分钟未反馈处置情况，升级通知{TIER_ZH.get(tier, tier)}"
                          f" no disposal feedback {late / S_PER_MIN:g} min after the warning: escalated to {tier}"))
        k += 1
    nxt = _at(d, policy, k) if k < len(policy.ladder) else None
    why = (f"{len(steps)} tier(s) due" if steps else "nothing due") + (
        f"; next {policy.ladder[k][0]} at +{nxt - d.activated_at:g}s" if nxt is not None else "; ladder done")
    return Decision(tuple(steps), k, nxt, why)


@dataclass(frozen=True)
class Feedback:
    cause: str
    measures: str
    handled_by: str


def check_feedback(policy: Policy, cause: str, measures: str, handled_by: str) -> Feedback:
    """The feedback as stored; DisposalError (with a message for the form) when the policy refuses it."""
    if cause not in policy.causes:
        raise DisposalError(f"原因类别无效 unknown cause category {cause!r}; one of: {', '.join(policy.causes)}")
    measures, handled_by = measures.strip(), handled_by.strip()
    if not measures:
        raise DisposalError("请填写处置措施 say what was done (measures)")
    if not handled_by:
        raise DisposalError("请填写处置人 say who handled it (handled_by)")
    if len(measures) > MAX_TEXT or len(handled_by) > 200:
        raise DisposalError(f"处置措施过长 measures at most {MAX_TEXT} characters, handled_by at most 200")
    return Feedback(cause, measures, handled_by)


# --- response statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    enterprise_id: str
    activated_at: float
    due_at: float
    feedback_at: float | None


@dataclass(frozen=True)
class ResponseStats:
    enterprise_id: str
    total: int                       # warnings that needed feedback
    answered: int
    in_time: int                     # answered by their time limit
    overdue_open: int                # past the limit with no feedback at `now`
    share_in_time: float | None      # in_time / total (None: nothing needed feedback)
    mean_response_s: float | None    # over answered ones
    median_response_s: float | None


def response_stats(rows: Iterable[Outcome], now: float) -> dict[str, ResponseStats]:
    """Per enterprise: how fast it fed back and the share handled in time (for the reports and the rating).

    A warning still within its limit and unanswered counts in `total` but neither as in time nor overdue
    yet; the share is therefore a lower bound until every limit has passed.
    """
    by: dict[str, list[Outcome]] = {}
    for r in rows:
        by.setdefault(r.enterprise_id, []).append(r)
    out = {}
    for eid, xs in sorted(by.items()):
        answered = [x for x in xs if x.feedback_at is not None]
        times = [x.feedback_at - x.activated_at for x in answered if x.feedback_at is not None]
        in_time = sum(1 for x in answered if x.feedback_at is not None and x.feedback_at <= x.due_at)
        overdue = sum(1 for x in xs if x.feedback_at is None and now > x.due_at)
        out[eid] = ResponseStats(eid, len(xs), len(answered), in_time, overdue,
                                 in_time / len(xs) if xs else None,
                                 statistics.fmean(times) if times else None,
                                 statistics.median(times) if times else None)
    return out
