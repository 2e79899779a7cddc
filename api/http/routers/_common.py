"""What every router shares: documented error responses, typed path parameters, the audit note."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from api.http.problems import Problem
from api.http.schemas.change_requests import ChangeRequestFiled

#: Part of each router's own prefix (not added at include time) so route templates — metric labels and
#: the audit log's `route` — are the full paths clients use.
API_PREFIX = "/api/v1"

AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "未认证 Missing, invalid, expired or revoked token"},
    403: {"model": Problem, "description": "无权操作 The role may not do this"},
    422: {"model": Problem, "description": "请求不完整 Invalid request"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "不存在，或不属于本企业 Not found (or another enterprise's)"},
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "冲突 Conflict: already exists, or the state does not allow it"},
}
FILED: dict[int | str, dict[str, Any]] = {
    202: {"model": ChangeRequestFiled,
          "description": "已提交变更申请 An enterprise's change to supervised fields: filed for the bureau's approval "
                         "(free fields of the same request applied at once, listed in `applied`)"},
}
TRANSITION: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "不允许的状态变更 Transition not allowed (Chinese and English message)"},
}

IdentPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Int32Path = Annotated[int, Path(ge=1, le=2**31 - 1)]
Int64Path = Annotated[int, Path(ge=1, le=2**63 - 1)]
RulePath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]
SubjectPath = Annotated[str, Path(pattern=r"^(p:[0-9]{1,10}|g:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]


def _audit_note(request: Request) -> dict[str, Any]:
    """A dict the handler fills with what it changed; the audit middleware writes it to audit_log.changes
    (the row of a PATCH then says which fields moved from what to what, not only that a PATCH happened)."""
    note: dict[str, Any] = {}
    request.state.audit_changes = note
    return note


AuditNote = Annotated[dict[str, Any], Depends(_audit_note)]


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}
