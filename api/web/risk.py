"""The console's enterprise risk board (企业风险): every supervised enterprise as a card in its colour.

The colour and its reasons are `hazards.risk` 's — the versioned model file, the pure evaluator and the
scoped store query the API's `GET /api/v1/reports/risk` uses too — so the board and the API never disagree.
The model is loaded when the console is created: a bad file stops the start instead of drawing a page.

Reads are scoped by the viewer's enterprise in SQL: an enterprise user's page and fragment hold its own
card only, and `?enterprise=` (the bureau's filter to one card) is ignored for a scoped viewer, so naming
another enterprise shows nothing of it. The cards refresh every 30 s and, through `static/risk.js`, soon
after an alarm event of the viewer's scope arrives on the event stream (hazard steps have no stream of
their own: the 30 s poll picks them up).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from api.web.ledger import INDUSTRY_ZH, Face
from api.web.session import Conn, Signed, Viewer
from hazards.risk import store
from hazards.risk.model import LEVEL_ORDER, RatingModel, default_model

#: How often the cards re-fetch themselves (seconds), besides the alarm events.
REFRESH_S = 30
MAX_FILTER_LEN = 64


def N_(s: str) -> str:  # noqa: N802 - Babel's marker for a message id used later through gettext
    return s


#: Level -> message id of its colour (zh_CN: 红 橙 黄 蓝).
LEVEL_KEYS = {"red": N_("Red"), "orange": N_("Orange"), "yellow": N_("Yellow"), "blue": N_("Blue")}


def _cards(rows: list[store.EnterpriseRating]) -> list[dict[str, Any]]:
    """The rows as the template shows them: most severe first, then by enterprise id."""
    rank = {lv: i for i, lv in enumerate(LEVEL_ORDER)}
    out = [{"id": r.enterprise_id, "name": r.name, "level": r.rating.level.value, "level_name": r.rating.name,
            "level_key": LEVEL_KEYS[r.rating.level.value], "reasons": r.rating.reasons, "inputs": r.inputs,
            "industries": [INDUSTRY_ZH.get(i, i) for i in r.industries], "rank": rank[r.rating.level],
            "missing": r.missing}
           for r in rows]
    return sorted(out, key=lambda c: (c["rank"], c["id"]))


def register(app: FastAPI, face: Face, model: RatingModel | None = None) -> None:
    """Add the risk board to the console app (`model`: tests pass their own; default the shipped file)."""
    ctx, render = face.ctx, face.render
    rating_model = model or default_model()  # raises SourceError on a bad file: the console does not start
    cache = ctx.risk_cache  # the API's too; serve refreshes it in the background

    def view(request: Request, viewer: Viewer, conn: psycopg.Connection) -> dict[str, Any]:
        wanted = (request.query_params.get("enterprise") or "")[:MAX_FILTER_LEN]
        rows = store.ratings(conn, viewer.scope, ctx.clock.now(), rating_model, cache)
        if viewer.scope is None and wanted:  # the bureau's filter; a scoped viewer sees itself whatever it names
            rows = [r for r in rows if r.enterprise_id == wanted]
        cards = _cards(rows)
        counts = [(lv.value, LEVEL_KEYS[lv.value], sum(1 for c in cards if c["level"] == lv.value))
                  for lv in LEVEL_ORDER]
        query = "?" + urlencode({"enterprise": wanted}) if viewer.scope is None and wanted else ""
        return {"cards": cards, "counts": counts, "model": rating_model, "refresh_s": REFRESH_S,
                "cards_url": face.url("/risk/cards") + query, "filtered": bool(query)}

    @app.get("/risk", response_class=HTMLResponse)
    def risk(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return render(request, "risk.html", viewer=viewer, page="risk", **view(request, viewer, conn))

    @app.get("/risk/cards", response_class=HTMLResponse)
    def risk_cards(request: Request, viewer: Signed, conn: Conn) -> HTMLResponse:
        return render(request, "_risk_cards.html", viewer=viewer, **view(request, viewer, conn))
