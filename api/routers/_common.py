"""What every router shares: documented error responses and typed path parameters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from api.problems import Problem

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
TRANSITION: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "不允许的状态变更 Transition not allowed (Chinese and English message)"},
}

IdentPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Int32Path = Annotated[int, Path(ge=1, le=2**31 - 1)]
Int64Path = Annotated[int, Path(ge=1, le=2**63 - 1)]
RulePath = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")]
SubjectPath = Annotated[str, Path(pattern=r"^(p:[0-9]{1,10}|g:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}
