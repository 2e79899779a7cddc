"""The one way a registry PATCH is applied: the bureau's at once, an enterprise's free fields at once and
its supervised fields as a change request (变更申请) the bureau decides.

Policy for a PATCH that mixes both (documented in the API and README): the free fields are applied, the
supervised ones are filed as one pending request, and the answer is 202 with that request and the fields
applied (`applied`). A PATCH touching only free fields answers 200 with the object, as before.
"""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import status
from fastapi.responses import JSONResponse

from api.http import supervision
from api.http.auth import Principal
from api.http.queries import change_requests as cq
from api.http.queries import registry as q
from api.http.routers._common import API_PREFIX
from api.http.schemas.change_requests import ChangeRequestFiled


def _fields(names: Any) -> str:
    return ", ".join(sorted(names)) or "-"


def filed_response(row: dict[str, Any], applied: dict[str, Any]) -> JSONResponse:
    """202 Accepted: the request is stored and waits for the bureau; `Location` points at it."""
    msg = (f"监管字段的变更已提交，待监管部门审批（{_fields(row['changes'])}）；已直接生效：{_fields(applied)}。 "
           f"Change request #{row['id']} awaits the bureau's approval for {_fields(row['changes'])}; "
           f"applied at once: {_fields(applied)}.")
    body = ChangeRequestFiled.model_validate({**row, "applied": applied, "message": msg})
    return JSONResponse(body.model_dump(mode="json"), status_code=status.HTTP_202_ACCEPTED,
                        headers={"Location": f"{API_PREFIX}/change-requests/{row['id']}"})


def file_request(conn: psycopg.Connection, who: Principal, now: float, note: dict[str, Any],
                 kind: supervision.Kind, object_id: str, enterprise_id: str, changes: dict[str, Any],
                 old: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """Store a pending request (inside the caller's transaction) and note it for the audit log."""
    row = cq.create(conn, enterprise_id, kind, object_id, changes, old, reason, who, now)
    note["change_request"] = {"id": row["id"], "status": "pending", "fields": supervision.diff(old, changes)}
    return row


def patch(conn: psycopg.Connection, who: Principal, now: float, note: dict[str, Any], kind: supervision.Kind,
          object_id: str, enterprise_id: str, body: dict[str, Any], current: dict[str, Any]) -> JSONResponse | None:
    """Apply a PATCH body (unset fields left out). Returns the 202 response when a change request was filed,
    None when everything asked for was applied (the handler answers with the object)."""
    reason = body.pop("change_reason", None)
    split = supervision.split(kind, body, current)
    enterprise = who.role == "enterprise"
    applied = split.free if enterprise else split.changed
    with conn.transaction():
        direct = split.free if enterprise else supervision.effective(kind, body)
        if direct:
            q.apply_changes(conn, kind, object_id, direct)
        row = None
        if enterprise and split.supervised:
            row = file_request(conn, who, now, note, kind, object_id, enterprise_id, split.supervised,
                               {k: split.old[k] for k in split.supervised}, reason)
    note["object"] = {"kind": kind, "id": object_id}
    note["applied"] = supervision.diff(split.old, applied)
    return filed_response(row, applied) if row is not None else None
