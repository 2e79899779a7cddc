"""Errors as RFC 9457 problem documents (`application/problem+json`).

Every error the API returns — validation, authorisation, a refused workflow
transition, a database outage — has the same shape, so clients handle one
format. Titles are Chinese first with the English alongside; `code` is a
stable machine-readable name; `detail` says what exactly went wrong.

Library and domain errors are mapped here, at the boundary: hazard errors by
their class, alarm lifecycle refusals, psycopg's data and integrity errors.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from hazards.errors import (
    ActionForbidden,
    HazardError,
    InvalidAction,
    ReferenceNotFound,
    TicketNotFound,
    TransitionRefused,
)
from rules.actions import AlarmNotFound
from rules.lifecycle import LifecycleError

log = logging.getLogger("riskwatch.api")

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://riskwatch.invalid/problems/"  # identifiers, not pages (RFC 9457 §3.1.1)


class Problem(BaseModel):
    """RFC 9457 problem details, with riskwatch's `code` and, for validation errors, `errors`."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": TYPE_BASE + "transition-not-allowed", "title": "不允许的状态变更 Transition not allowed",
        "status": 409, "code": "transition-not-allowed",
        "detail": "不允许的操作：隐患 #12 当前为「整改中」(rectifying)，不能验收销号（仅限：已提交验收）。 "
                  "Transition not allowed: hazard #12 is rectifying; verify is only allowed from submitted.",
        "instance": "/api/v1/hazards/12/verify"}]})

    type: str = Field(default="about:blank", description="URI identifying the problem type")
    title: str = Field(description="Short summary, Chinese first")
    status: int = Field(description="HTTP status code")
    detail: str | None = Field(default=None, description="What went wrong in this occurrence")
    instance: str | None = Field(default=None, description="The request path")
    code: str | None = Field(default=None, description="Stable machine-readable problem name")


class ApiProblem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, **extra: Any):
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail, self.extra = status, code, title, detail, extra


def not_found(what_zh: str, what_en: str, ident: object) -> ApiProblem:
    return ApiProblem(404, "not-found", "资源不存在 Not found",
                      f"{what_zh} {ident} 不存在。 {what_en} {ident} not found.")


def forbidden(detail: str = "当前角色无权执行此操作。 Your role may not do this.") -> ApiProblem:
    return ApiProblem(403, "forbidden", "无权操作 Forbidden", detail)


def problem_response(request: Request, status: int, title: str, detail: str | None = None,
                     code: str | None = None, headers: dict[str, str] | None = None,
                     extra: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code if code else "about:blank",
        "title": title, "status": status, "detail": detail, "instance": request.url.path,
    }
    if code:
        body["code"] = code
    for k, v in jsonable_encoder(extra or {}).items():
        body.setdefault(k, v)  # extension members never override the standard ones
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HAZARD_STATUS: list[tuple[type[HazardError], int, str]] = [
    (TicketNotFound, 404, "资源不存在 Not found"),
    (ReferenceNotFound, 404, "资源不存在 Not found"),
    (ActionForbidden, 403, "无权操作 Forbidden"),
    (TransitionRefused, 409, "不允许的状态变更 Transition not allowed"),
    (InvalidAction, 422, "请求不完整 Invalid request"),
]

_HTTP_TITLES = {
    400: "请求错误 Bad request", 401: "未认证 Unauthorized", 403: "无权操作 Forbidden", 404: "资源不存在 Not found",
    405: "方法不允许 Method not allowed", 406: "不可接受 Not acceptable", 409: "冲突 Conflict",
    413: "请求体过大 Content too large", 415: "不支持的媒体类型 Unsupported media type",
    422: "请求不完整 Invalid request",
    500: "服务器错误 Internal server error", 503: "服务不可用 Service unavailable",
}


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into a problem document."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="riskwatch"'} if exc.status == 401 else None
        return problem_response(request, exc.status, exc.title, exc.detail, exc.code, headers, exc.extra)

    @app.exception_handler(HazardError)
    async def _hazard(request: Request, exc: HazardError) -> JSONResponse:
        for cls, status, title in _HAZARD_STATUS:
            if isinstance(exc, cls):
                return problem_response(request, status, title, exc.message, exc.code, None,
                                        {k: v for k, v in exc.context.items() if k != "ticket_id"})
        return problem_response(request, 400, _HTTP_TITLES[400], exc.message, exc.code)

    @app.exception_handler(LifecycleError)
    async def _lifecycle(request: Request, exc: LifecycleError) -> JSONResponse:
        return problem_response(request, 409, "报警状态不允许此操作 Alarm state does not allow this", str(exc),
                                "alarm-transition-not-allowed")

    @app.exception_handler(AlarmNotFound)
    async def _alarm_missing(request: Request, exc: AlarmNotFound) -> JSONResponse:
        return problem_response(request, 404, _HTTP_TITLES[404], str(exc), "not-found")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        all_errors = exc.errors()
        errors = [validation_entry(e) for e in all_errors[:MAX_ERRORS]]
        detail = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in errors[:5])
        extra: dict[str, Any] = {"errors": errors}
        if len(all_errors) > MAX_ERRORS:
            extra["errors_omitted"] = len(all_errors) - MAX_ERRORS
            detail += f"; 另有 {len(all_errors) - MAX_ERRORS} 处错误 and {len(all_errors) - MAX_ERRORS} more"
        return problem_response(request, 422, _HTTP_TITLES[422], detail, "validation-error", None, extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = _HTTP_TITLES.get(exc.status_code, str(exc.status_code))
        detail = exc.detail if isinstance(exc.detail, str) else None
        code = getattr(exc, "code", None)  # e.g. api.limits.BodyTooLarge: "body-too-large", limit_bytes
        extra = getattr(exc, "problem_extra", None)
        return problem_response(request, exc.status_code, title, detail, code if isinstance(code, str) else None,
                                dict(exc.headers) if exc.headers else None, extra if isinstance(extra, dict) else None)

    @app.exception_handler(psycopg.errors.UniqueViolation)
    async def _unique(request: Request, exc: psycopg.errors.UniqueViolation) -> JSONResponse:
        return problem_response(request, 409, "已存在 Already exists", _pg_detail(exc), "already-exists")

    @app.exception_handler(psycopg.IntegrityError)
    async def _integrity(request: Request, exc: psycopg.IntegrityError) -> JSONResponse:
        return problem_response(request, 422, _HTTP_TITLES[422], _pg_detail(exc), "integrity-error")

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        return problem_response(request, 422, _HTTP_TITLES[422], _pg_detail(exc), "invalid-data")

    @app.exception_handler(psycopg.OperationalError)
    async def _db_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return problem_response(request, 503, _HTTP_TITLES[503], "数据库暂不可用。 The database is unavailable.",
                                "database-unavailable", {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, _HTTP_TITLES[500],
                                "服务器内部错误，已记录。 Internal error; it was logged.", "internal-error")


#: A validation answer lists at most this many errors (and counts the rest): a body with thousands of bad
#: fields must not become a response larger than the request, nor echo what was sent.
MAX_ERRORS = 20
MAX_MSG = 200
MAX_LOC_PART = 64


def validation_entry(e: Any) -> dict[str, Any]:
    """One error as the client sees it: where, what, of which type — never the `input` (it can be the whole
    body, or a secret), with the message and each location part cut short (field names come from the body)."""
    loc = [x if isinstance(x, int) else _cut(str(x), MAX_LOC_PART) for x in e.get("loc", ())][:10]
    return {"loc": loc, "msg": _cut(str(e.get("msg", "")), MAX_MSG), "type": _cut(str(e.get("type", "")), 64)}


def _cut(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _pg_detail(exc: psycopg.Error) -> str:
    diag = exc.diag
    return diag.message_primary or str(exc).splitlines()[0]


def fix_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Error responses are problem documents: say so in the OpenAPI document, once for all routes."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    ref = {"$ref": "#/components/schemas/Problem"}
    for path in schema.get("paths", {}).values():
        for op in path.values():
            if not isinstance(op, dict):
                continue
            for status, resp in op.get("responses", {}).items():
                if status[0] in "45":
                    resp["content"] = {PROBLEM_JSON: {"schema": ref}}
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return schema
