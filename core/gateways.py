"""Gateway administration shared by the two faces (HTTP API and console): register, decide whether a disable
needs the bureau, file that change request.

The HTTP API (`api/http/routers/gateways.py`) and the console (`api/web/gateways.py`) are separate faces that
may not import each other (docs/architecture.md), yet an enterprise must meet one policy whichever it uses:
the same id check, the same insert, the same rule for disabling a gateway that feeds a required point and the
same change-request row. That shared part lives here; issuing credentials and enabling stay in
`core.registry` (`issue_credentials`, `set_gateway_enabled`), which both faces already call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.registry import IdRefusal, check_gateway_id

CHANGE_REQUEST_COLS = """id, enterprise_id, object_kind, object_id, changes, old_values, reason, status, requested_by,
           requested_at, decided_by, decided_at, decision_comment"""


class GatewayIdRefused(Exception):
    """The id can never be a gateway id (reserved or malformed): `refusal` says which and why."""

    def __init__(self, refusal: IdRefusal):
        super().__init__(f"{refusal.zh} {refusal.en}.")
        self.refusal = refusal


def refuse_bad_id(gateway_id: str) -> None:
    """Raise `GatewayIdRefused` for an id no gateway may have (reserved for the service, or bad syntax)."""
    refusal = check_gateway_id(gateway_id)
    if refusal is not None:
        raise GatewayIdRefused(refusal)


def create_gateway(conn: psycopg.Connection, g: dict[str, Any]) -> None:
    """Insert a gateway row (`id`, `plant_id`, optional `name`, `enabled`). The caller has checked that the
    plant is in its scope; the id is checked here so no face can store a reserved one. An id taken already (in
    any enterprise: ids are broker usernames) raises psycopg's `UniqueViolation`, which each face answers as a
    conflict."""
    refuse_bad_id(str(g["id"]))
    conn.execute("INSERT INTO gateways (id, plant_id, name, enabled) VALUES (%s,%s,%s,%s)",
                 (g["id"], g["plant_id"], g.get("name"), g.get("enabled", True)))


def feeds_required_point(conn: psycopg.Connection, gateway_id: str) -> bool:
    """Whether turning this gateway off would silence a point the bureau requires."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM points WHERE gateway_id = %s AND required)",
                       (gateway_id,)).fetchone()
    return bool(row and row[0])


def disable_needs_approval(currently_enabled: bool, feeds_required: bool) -> bool:
    """Turning off a gateway that feeds a required point silences what the bureau requires to hear (its stale
    and never-reported rules would fire, but the data is gone): the bureau decides. Turning on, or off a
    gateway that feeds nothing required, removes no supervision."""
    return currently_enabled and feeds_required


@dataclass(frozen=True)
class Requester:
    """Who files a change request: a token's name and id (API) or a console username (no token)."""

    name: str
    token_id: int | None = None


def file_change_request(conn: psycopg.Connection, enterprise_id: str, kind: str, object_id: str,
                        changes: dict[str, Any], old_values: dict[str, Any], reason: str | None, who: Requester,
                        now: float) -> dict[str, Any]:
    """Store a pending change request (变更申请) for the bureau; inside the caller's transaction."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""INSERT INTO change_requests (enterprise_id, object_kind, object_id, changes, old_values, reason,
                    requested_by, requested_token_id, requested_at)
                VALUES (%s,%s,%s,%s,%s,%s,%s,%s,to_timestamp(%s)) RETURNING {CHANGE_REQUEST_COLS}""",
            (enterprise_id, kind, object_id, Jsonb(changes), Jsonb(old_values), reason, who.name, who.token_id,
             now)).fetchone()
    assert row is not None
    return row
