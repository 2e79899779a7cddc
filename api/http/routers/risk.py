"""企业风险分级 Enterprise risk rating: the four-colour rating of every enterprise in scope (issue 13).

The model is the versioned file `hazards/risk/rating.yaml`, loaded (and validated) when this module is
imported, so a bad file stops the API from starting rather than answering with a wrong colour. The rating
is computed per request by the pure `hazards.risk.evaluate` over inputs gathered by `hazards.risk.store`,
the same code the console's risk board uses. An enterprise token sees its own enterprise only.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from api.http.deps import Auth, Conn, Now
from api.http.routers._common import API_PREFIX, AUTH
from hazards.risk import store
from hazards.risk.evaluate import LEVEL_ZH
from hazards.risk.model import INPUTS, default_model

router = APIRouter(prefix=API_PREFIX + "/reports", tags=["reports"], responses=AUTH)

MODEL = default_model()

Level = Literal["red", "orange", "yellow", "blue"]


class RiskReasonPublic(BaseModel):
    level: Level
    input: str
    value: float
    threshold: float
    text: str


class RiskInputsPublic(BaseModel):
    confirmed_major_open: int
    overdue_rectifications: int
    candidates_open: int
    urgent_alarms_active: int
    availability_pct: float | None
    feedback_overdue: int
    mandatory_missing: int


class EnterpriseRiskPublic(BaseModel):
    enterprise_id: str
    enterprise_name: str
    industries: list[str]
    level: Level
    colour_zh: str
    level_name: str
    reasons: list[RiskReasonPublic]
    inputs: RiskInputsPublic


class RiskReportPublic(BaseModel):
    model_version: str
    availability_window_hours: int
    computed_at: float
    items: list[EnterpriseRiskPublic]


DOC = ("Each enterprise's level is the most severe one any condition of the rating model fired in (blue when "
       "none did); `reasons` lists every condition that fired, most severe first, the most severe one per "
       f"input. Inputs: {', '.join(INPUTS)}. `availability_pct` is received / expected readings of the "
       "enterprise's points over the model's window (null: no reading was expected). The model "
       "(hazards/risk/rating.yaml) and its `model_version` are documented in docs/console.md. "
       "An enterprise token sees only its own enterprise.")


def _cache(request: Request) -> store.AvailabilityCache:
    """The app's cache of the costly inputs (one per app: two apps may watch two databases), the console's too."""
    cache: store.AvailabilityCache = request.app.state.ctx.risk_cache
    return cache


@router.get("/risk", summary="企业风险分级 The four-colour risk rating of each enterprise, with its reasons",
            description=DOC)
def risk_report(request: Request, who: Auth, conn: Conn, now: Now) -> RiskReportPublic:
    rows = store.ratings(conn, who.scope, now, MODEL, _cache(request))
    return RiskReportPublic(
        model_version=MODEL.version, availability_window_hours=MODEL.availability_window_hours, computed_at=now,
        items=[EnterpriseRiskPublic(
            enterprise_id=r.enterprise_id, enterprise_name=r.name, industries=list(r.industries),
            level=r.rating.level.value, colour_zh=LEVEL_ZH[r.rating.level], level_name=r.rating.name,
            reasons=[RiskReasonPublic(level=x.level.value, input=x.input, value=x.value, threshold=x.threshold,
                                      text=x.text) for x in r.rating.reasons],
            inputs=RiskInputsPublic(**r.inputs.as_dict())) for r in rows])
