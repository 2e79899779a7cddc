"""Schemas of the records (issue 17): self-inspections and findings, drills, training, headcount, meetings,
cadence compliance, the annual summary / three-year evaluation, and alarm-system health per position."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.http.schemas.common import Ident, Name, PublicSchema, Schema, Text

LevelName = Literal["company", "plant", "workshop", "team"]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=r"^[^\x00]*$")]
PersonKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                             pattern=r"^[^\x00]*$")]
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2100, 12, 31))]


class FindingCreate(Schema):
    description: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000,
                                                  pattern=r"^[^\x00]*$")]
    location: Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00]*$")] = ""
    open_hazard: bool = Field(False, description="open a linked self-report hazard (企业自查) in the same step")
    hazard_title: Line | None = None


class FindingPublic(PublicSchema):
    id: int
    enterprise_id: str
    inspection_id: int | None
    drill_id: int | None
    description: str
    location: str
    hazard_id: int | None
    hazard_opened_at: datetime | None
    recorded_by: str
    recorded_at: datetime


class OpenHazard(Schema):
    title: Line | None = None


class InspectionCreate(Schema):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "enterprise_id": "bs-cement", "plant_id": "bs-line1", "level": "plant", "inspected_on": "2026-11-05",
        "inspector": "安全科 王工", "scope": "煤磨系统、袋收尘器", "summary": "",
        "findings": [{"description": "泄爆片锈蚀", "location": "煤磨袋收尘器", "open_hazard": True}]}]})

    enterprise_id: Ident | None = None  # an enterprise token: its own
    plant_id: Ident | None = None
    level: LevelName
    inspected_on: Day
    inspector: Name
    scope: Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")] = ""
    summary: Text = ""
    findings: Annotated[list[FindingCreate], Field(max_length=200)] = []


class InspectionPublic(PublicSchema):
    id: int
    enterprise_id: str
    plant_id: str | None
    level: str
    inspected_on: date
    inspector: str
    scope: str
    summary: str
    recorded_by: str
    recorded_at: datetime
    findings: list[FindingPublic] = []


class DrillCreate(Schema):
    enterprise_id: Ident | None = None
    plant_id: Ident | None = None
    held_on: Day
    scenario: Line
    participants: Annotated[int, Field(ge=0, le=1_000_000)]
    participant_names: Text = ""
    summary: Text = ""
    findings: Annotated[list[FindingCreate], Field(max_length=200)] = []


class DrillPublic(PublicSchema):
    id: int
    enterprise_id: str
    plant_id: str | None
    held_on: date
    scenario: str
    participants: int
    participant_names: str
    summary: str
    recorded_by: str
    recorded_at: datetime
    findings: list[FindingPublic] = []


class AttendeeIn(Schema):
    person_key: PersonKey = Field(description="staff number (工号) or another key unique within the enterprise")
    name: Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")] = ""


class TrainingCreate(Schema):
    enterprise_id: Ident | None = None
    held_on: Day
    course: Line
    hours: Annotated[Decimal, Field(ge=0, le=1000, max_digits=6, decimal_places=1)] = Decimal(0)
    trainer: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] = ""
    attendees: Annotated[list[AttendeeIn], Field(min_length=1, max_length=5000)]


class TrainingPublic(PublicSchema):
    id: int
    enterprise_id: str
    held_on: date
    course: str
    hours: Decimal
    trainer: str
    recorded_by: str
    recorded_at: datetime
    attendees: int


class HeadcountSet(Schema):
    headcount: Annotated[int, Field(ge=1, le=1_000_000)]


class MeetingCreate(Schema):
    enterprise_id: Ident | None = Field(None, description="omitted by the bureau: its own county meeting")
    held_on: Day
    chair: Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")] = ""
    attendees: Annotated[list[Name], Field(min_length=1, max_length=500)]
    decisions: Annotated[list[Line], Field(max_length=200)] = []
    summary: Annotated[str, StringConstraints(max_length=20000, pattern=r"^[^\x00]*$")] = ""


class MeetingPublic(PublicSchema):
    id: int
    enterprise_id: str | None
    held_on: date
    chair: str
    attendees: list[str]
    decisions: list[str]
    summary: str
    recorded_by: str
    recorded_at: datetime


class PositionDefine(Schema):
    name: Name
    enterprise_id: Ident
    plant_ids: Annotated[list[Ident], Field(min_length=1, max_length=200)]
    min_severity: Literal["medium", "high", "urgent"] = "medium"


class PositionPublic(PublicSchema):
    id: str
    name: str
    kind: str
    enterprise_id: str | None
    min_severity: str
    plant_ids: list[str]


class BadActorPublic(PublicSchema):
    rule_id: str
    subject: str
    count: int
    share: float


class StandingPublic(PublicSchema):
    rule_id: str
    subject: str
    active_since: float
    acked: bool


class HealthPublic(PublicSchema):
    position: PositionPublic
    start: float
    end: float
    alarms: int
    per_10min: float
    per_day: float
    max_10min: int
    max_day: int
    flood_intervals: int
    flood_minutes: float
    pct_time_in_flood: float
    hours_over_30: int
    pct_hours_over_30: float
    standing: list[StandingPublic]
    stale: int
    shelved_at_end: int
    shelve_actions: int
    chattering_alarms: int
    chatter_episodes: int
    top: list[BadActorPublic]
    top_share: float
    verdict_10min: str
    verdict_day: str
    by_day: list[int]


class CadenceRowPublic(PublicSchema):
    enterprise_id: str
    enterprise_name: str
    level: str
    frequency: str
    due: int
    done: int
    missed: int
    open: int
    missed_periods: list[str]


class HazardCellPublic(PublicSchema):
    source: str
    industry: str
    found: int
    closed: int


class TrainingRowPublic(PublicSchema):
    enterprise_id: str
    enterprise_name: str
    headcount: int | None
    trained: int
    coverage: float | None
    courses: int
    drills: int
    drill_participants: int
    meetings: int


class AvailabilityRowPublic(PublicSchema):
    enterprise_id: str
    enterprise_name: str
    points: int
    expected: int
    received: int
    availability: float | None


class YearFiguresPublic(PublicSchema):
    year: int
    hazards: list[HazardCellPublic]
    hazards_found: int
    hazards_closed: int
    zero_progress: list[tuple[str, int]]
    supervision_county: int
    supervision_city: int
    interviews: int
    meetings: int
    public_tips: int | None = None  # bureau only: absent from an enterprise's answer
    rewards_approved_yuan: Decimal | None = None  # bureau only
    cadence: list[CadenceRowPublic]
    missed_cadences: int
    training: list[TrainingRowPublic]
    enterprises_with_drill: int
    enterprises: int
    training_coverage: float | None
    availability: list[AvailabilityRowPublic]
    availability_total: float | None


class EvaluationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    years: list[YearFiguresPublic]
    generated_at: float
    totals: dict[str, int]
