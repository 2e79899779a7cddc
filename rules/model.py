"""The rule catalog model (一行业一清单) and its loader.

A catalog file names its industries, a version and a list of rules. Each rule
cites its legal or technical basis, says which points it applies to (device
kind, point quantity and role), and has a shape:

- ``threshold``   hi / hihi / lo / lolo limits on one point, each its own alarm
- ``rate``        rate of change over a window (per minute)
- ``deviation``   percent away from the point's recorded baseline (AQ 4273)
- ``difference``  a - b of two points of the same device
- ``state``       enum codes or status bits (bitmask) of one point
- ``interlock``   a condition held for ``hold_s`` while a protective point is
                  not in its safe state
- ``any`` / ``all`` composites of conditions over points of one device
- ``stale``       no valid data for k x the point's expected interval
- ``never_reported``  a required point that has never sent a valid reading
- ``gateway_offline`` a gateway that reported itself offline or went silent
- ``device_offline``  a Sparkplug device whose edge node reported it dead (DDEATH)
- ``stuck`` / ``copied`` / ``impossible`` / ``clock_skew`` / ``baseline_age``
                  data you cannot trust (issue 14; rules.shapes_trust)

Every file is validated with pydantic; each problem is reported with the file
and line (``riskwatch rules check``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from core import yamlsrc
from core.errors import SourceError, SourceProblem
from core.vocab import Industry, Severity

LimitName = Literal["hi", "hihi", "lo", "lolo"]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{2,80}$")]
Alias = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Title(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class PointSelector(_Strict):
    """Which point of a device: by quantity ("*" for any), optionally role; required points only."""

    quantity: str = Field(min_length=1)
    role: str | None = None
    required_only: bool = False


class Applies(_Strict):
    equipment: list[str] | None = None  # device kinds; None = any device
    industries: list[Industry] | None = None  # narrows the catalog's industries
    point: PointSelector | None = None  # the subject point (not for gateway rules)


# --- conditions ----------------------------------------------------------------------------


class _Limit(_Strict):
    """One limit: ``hi`` trips at or above, ``lo`` at or below; clears past the deadband."""

    hi: float | None = None
    lo: float | None = None
    deadband: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_side(self) -> _Limit:
        if (self.hi is None) == (self.lo is None):
            raise ValueError("give exactly one of hi or lo")
        return self


class Cmp(_Limit):
    """A limit on one point."""

    point: Alias


class Diff(_Limit):
    """A limit on the difference of two points (a - b)."""

    diff: tuple[Alias, Alias]


class StateIs(_Strict):
    """An enum point equal to one of ``equals``, or a status word with any bit of ``mask`` set."""

    point: Alias
    equals: list[int] | None = None
    mask: int | None = Field(default=None, gt=0)
    negate: bool = False

    @model_validator(mode="after")
    def _one(self) -> StateIs:
        if (self.equals is None) == (self.mask is None):
            raise ValueError("give exactly one of equals or mask")
        return self


Condition = Annotated[Cmp | Diff | StateIs, Field(union_mode="left_to_right")]


class Composite(_Strict):
    any: list[Condition] | None = None
    all: list[Condition] | None = None

    @model_validator(mode="after")
    def _one(self) -> Composite:
        if (self.any is None) == (self.all is None) or not (self.any or self.all):
            raise ValueError("give a non-empty any: or all: list")
        return self


class Protective(_Strict):
    """The protective action's point and its safe state (e.g. valve closed = 0)."""

    point: Alias
    safe: float


# --- rules ---------------------------------------------------------------------------------


class _RuleBase(_Strict):
    id: RuleId
    title: Title
    basis: str = Field(min_length=4)
    applies: Applies
    severity: Severity = Severity.MEDIUM
    candidate: bool = False  # opens a candidate major-hazard ticket when it activates
    # Shipped but off unless enabled for a plant; the value says why it is off (a reason, not a flag),
    # so a rule that binds to no sample-site device is a decision someone wrote down.
    optional: Annotated[str, StringConstraints(min_length=8)] | None = None
    on_delay_s: float = Field(default=0.0, ge=0)
    off_delay_s: float = Field(default=0.0, ge=0)
    description: str | None = None

    @field_validator("optional", mode="before")
    @classmethod
    def _optional_reason(cls, v: object) -> object:
        if isinstance(v, bool):
            raise ValueError("optional takes the reason the rule is off by default"
                             " (e.g. \"not a county industry\"), not true/false")
        return v


class ThresholdRule(_RuleBase):
    shape: Literal["threshold"]
    limits: dict[LimitName, float] = Field(min_length=1)
    deadband: float = Field(default=0.0, ge=0)
    severities: dict[LimitName, Severity] | None = None  # per limit; default: severity

    @field_validator("limits")
    @classmethod
    def _order(cls, lim: dict[str, float]) -> dict[str, float]:
        if "hi" in lim and "hihi" in lim and lim["hihi"] < lim["hi"]:
            raise ValueError("hihi must not be below hi")
        if "lo" in lim and "lolo" in lim and lim["lolo"] > lim["lo"]:
            raise ValueError("lolo must not be above lo")
        return lim

    @model_validator(mode="after")
    def _severities(self) -> ThresholdRule:
        lim = self.limits
        if self.severities and set(self.severities) - set(lim):
            raise ValueError("severities names a limit the rule does not have")
        return self


class RateRule(_RuleBase):
    shape: Literal["rate"]
    window_s: float = Field(gt=0, le=3600)
    rise_per_min: float | None = Field(default=None, gt=0)
    fall_per_min: float | None = Field(default=None, gt=0)
    deadband: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one(self) -> RateRule:
        if (self.rise_per_min is None) == (self.fall_per_min is None):
            raise ValueError("give exactly one of rise_per_min or fall_per_min")
        return self


class DeviationRule(_RuleBase):
    shape: Literal["deviation"]
    pct: float = Field(gt=0, le=1000)
    deadband_pct: float = Field(default=0.0, ge=0)


class DifferenceRule(_RuleBase):
    shape: Literal["difference"]
    points: dict[Alias, PointSelector] = Field(min_length=2)
    diff: tuple[Alias, Alias]
    limits: dict[LimitName, float] = Field(min_length=1)
    deadband: float = Field(default=0.0, ge=0)


class StateRule(_RuleBase):
    shape: Literal["state"]
    equals: list[int] | None = None
    mask: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> StateRule:
        if (self.equals is None) == (self.mask is None):
            raise ValueError("give exactly one of equals or mask")
        return self


class InterlockRule(_RuleBase):
    shape: Literal["interlock"]
    points: dict[Alias, PointSelector] = Field(min_length=2)
    when: Composite | Condition
    protective: Protective
    hold_s: float = Field(gt=0)


class CompositeRule(_RuleBase):
    shape: Literal["any", "all"]
    points: dict[Alias, PointSelector] = Field(min_length=1)
    conditions: list[Condition] = Field(min_length=1)


class StaleRule(_RuleBase):
    shape: Literal["stale"]
    intervals: float = Field(gt=1)  # k: no valid data for k x the point's interval_s
    min_s: float = Field(default=0.0, ge=0)  # and at least this long


class NeverReportedRule(_RuleBase):
    shape: Literal["never_reported"]
    grace_s: float = Field(ge=0)  # after the point was registered


class GatewayOfflineRule(_RuleBase):
    shape: Literal["gateway_offline"]
    silent_s: float = Field(gt=0)  # no traffic for this long, or status offline this long


class DeviceOfflineRule(_RuleBase):
    """A Sparkplug device (the `{device}` of its gateway's DBIRTH/DDATA/DDEATH topics) that its edge node reported
    dead, for ``silent_s``, while the gateway itself is up: a gateway offline covers its devices."""

    shape: Literal["device_offline"]
    silent_s: float = Field(gt=0)  # dead (DDEATH, no DBIRTH or DDATA since) for this long


# --- data trust (issue 14; evaluated by rules.shapes_trust) -----------------------------------


class StuckRule(_RuleBase):
    """A live point whose valid readings stay within +-``band`` of the newest value for ``window_s``."""

    shape: Literal["stuck"]
    window_s: float = Field(gt=0)
    band: float = Field(ge=0)  # the noise band; per point: setpoint ``<rule id>.band``
    units: list[str] | None = None  # only points with one of these units (analog points); None = any


class CopiedRule(_RuleBase):
    """A series identical (after quantising to ``eps``) to another point's of the same enterprise."""

    shape: Literal["copied"]
    window_s: float = Field(gt=0, le=86400)  # aligned windows the series is compared over
    eps: float = Field(gt=0)
    min_samples: int = Field(ge=2)  # a window with fewer samples proves nothing
    min_steps: int = Field(default=2, ge=1)  # and one whose quantised values span fewer steps (a flat line)
    units: list[str] | None = None


class Bounds(_Strict):
    lo: float | None = None
    hi: float | None = None

    @model_validator(mode="after")
    def _some(self) -> Bounds:
        if self.lo is None and self.hi is None:
            raise ValueError("give lo, hi or both")
        if self.lo is not None and self.hi is not None and self.lo >= self.hi:
            raise ValueError("lo must be below hi")
        return self


class ImpossibleRule(_RuleBase):
    """A value outside what the point's unit physically allows (per-unit bounds); points of other units unbound."""

    shape: Literal["impossible"]
    bounds: dict[str, Bounds] = Field(min_length=1)


class ClockSkewRule(_RuleBase):
    """A gateway whose clock (its messages' own ts) is off the collector's by more than ``limit_s``."""

    shape: Literal["clock_skew"]
    limit_s: float = Field(gt=0)


class BaselineAgeRule(_RuleBase):
    """A deviation baseline that does not describe the current filter (AQ 4273-2016 §5.1.4)."""

    shape: Literal["baseline_age"]
    max_age_s: float = Field(gt=0)  # 8 h: how long after installation / a bag change the baseline may be due


Rule = Annotated[
    ThresholdRule | RateRule | DeviationRule | DifferenceRule | StateRule | InterlockRule | CompositeRule
    | StaleRule | NeverReportedRule | GatewayOfflineRule | DeviceOfflineRule
    | StuckRule | CopiedRule | ImpossibleRule | ClockSkewRule | BaselineAgeRule,
    Field(discriminator="shape"),
]


class CatalogFile(_Strict):
    catalog: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,40}$")]
    title: Title
    version: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    industries: list[Industry] | Literal["all"]
    rules: list[Rule] = Field(min_length=1)


class Catalog:
    """All catalog files; rule ids are unique across files."""

    def __init__(self, files: list[tuple[Path, CatalogFile]]):
        self.files = files
        self.rules: dict[str, tuple[CatalogFile, Any]] = {}
        for _, f in files:
            for r in f.rules:
                self.rules[r.id] = (f, r)

    def version_of(self, rule_id: str) -> str:
        f, _ = self.rules[rule_id]
        return f"{f.catalog}@{f.version}"

    def __len__(self) -> int:
        return len(self.rules)

    def titles(self) -> dict[str, tuple[str, str | None]]:
        """Rule id -> (Chinese title, basis): how notifications name an alarm. The composition root hands
        this to the alerting dispatcher, which does not read the catalog itself."""
        return {rid: (r.title.zh, r.basis) for rid, (_, r) in self.rules.items()}


def default_catalog_dir() -> Path:
    return Path(__file__).resolve().parent / "catalog"


def _aliases_used(cond: Any) -> set[str]:
    if isinstance(cond, Composite):
        return set().union(*(_aliases_used(c) for c in (cond.any or cond.all or [])))
    if isinstance(cond, Diff):
        return set(cond.diff)
    return {cond.point}


def _semantic_problems(path: str, f: CatalogFile, lines: yamlsrc.Lines) -> list[SourceProblem]:
    out: list[SourceProblem] = []
    for i, r in enumerate(f.rules):
        loc = ("rules", i)
        line = yamlsrc.line_for(lines, loc)
        multi = isinstance(r, DifferenceRule | InterlockRule | CompositeRule)
        single = not multi and not isinstance(r, GatewayOfflineRule | DeviceOfflineRule | ClockSkewRule)
        if single and r.applies.point is None:
            out.append(SourceProblem(path, yamlsrc.line_for(lines, (*loc, "applies")),
                                     f"rule {r.id}: applies.point is required for shape {r.shape}"))
        if not single and r.applies.point is not None:
            out.append(SourceProblem(path, yamlsrc.line_for(lines, (*loc, "applies", "point")),
                                     f"rule {r.id}: shape {r.shape} takes its points from points: "
                                     "(the alarm is about points.subject), not applies.point"))
        aliases: set[str] | None = set(r.points) if hasattr(r, "points") else None
        used: set[str] = set()
        if isinstance(r, DifferenceRule):
            used = set(r.diff)
        elif isinstance(r, InterlockRule):
            used = _aliases_used(r.when) | {r.protective.point}
        elif isinstance(r, CompositeRule):
            used = set().union(*(_aliases_used(c) for c in r.conditions))
        if aliases is not None:
            missing = used - aliases
            if missing:
                out.append(SourceProblem(path, line, f"rule {r.id}: unknown point alias(es) {sorted(missing)};"
                                                     f" declared: {sorted(aliases)}"))
            if "subject" not in aliases:
                out.append(SourceProblem(path, yamlsrc.line_for(lines, (*loc, "points")),
                                         f"rule {r.id}: points must include the alias 'subject'"
                                         " (the point the alarm is about)"))
    return out


def load_file(path: Path) -> CatalogFile:
    f, lines = yamlsrc.validate(path, CatalogFile)
    problems = _semantic_problems(str(path), f, lines)
    if problems:
        raise SourceError(problems)
    return f


def load_catalog(path: Path | None = None) -> Catalog:
    """Load a catalog directory (or one file); collect every problem before raising."""
    path = path or default_catalog_dir()
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        raise SourceError([SourceProblem(str(path), None, "no catalog files (*.yaml)")])
    problems: list[SourceProblem] = []
    loaded: list[tuple[Path, CatalogFile]] = []
    for p in files:
        try:
            loaded.append((p, load_file(p)))
        except SourceError as exc:
            problems.extend(exc.problems)
    seen: dict[str, Path] = {}
    for p, f in loaded:
        _, lines = yamlsrc.load(p)
        for i, r in enumerate(f.rules):
            if r.id in seen:
                problems.append(SourceProblem(str(p), yamlsrc.line_for(lines, ("rules", i, "id")),
                                              f"duplicate rule id {r.id!r} (also in {seen[r.id].name})"))
            else:
                seen[r.id] = p
    if problems:
        raise SourceError(problems)
    return Catalog(loaded)
