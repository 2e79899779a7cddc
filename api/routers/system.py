"""/healthz (database and broker connectivity) and /metrics (Prometheus); no token needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api import health
from api.deps import Ctx
from api.metrics import CONTENT_TYPE
from api.schemas.admin import CheckPublic, HealthPublic
from core.settings import MqttUrl

router = APIRouter(tags=["system"])

_HEALTH: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthPublic, "description": "a dependency is down (same body as 200)"}}


@router.get("/healthz", response_model=HealthPublic, responses=_HEALTH,
            summary="健康检查 Database and broker connectivity")
def healthz(ctx: Ctx) -> JSONResponse:
    checks = {"database": health.database(ctx.db.pool)}
    if ctx.settings.mqtt_url:
        checks["broker"] = health.broker(MqttUrl.parse(ctx.settings.mqtt_url))
    for name, fn in ctx.checks.items():
        checks[name] = fn()
    ok = all(c.ok for c in checks.values())
    body = HealthPublic(status="ok" if ok else "degraded",
                        checks={k: CheckPublic(ok=c.ok, latency_ms=c.latency_ms, detail=c.detail)
                                for k, c in checks.items()})
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus 指标 metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
