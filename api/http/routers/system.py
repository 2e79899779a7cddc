"""/healthz (database and broker connectivity) and /metrics (Prometheus); no token needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api.http import health
from api.http.deps import Ctx
from api.http.metrics import CONTENT_TYPE
from api.http.schemas.admin import CheckPublic, HealthPublic
from core.settings import MqttUrl

router = APIRouter(tags=["system"])

_HEALTH: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthPublic, "description": "a dependency is down (same body as 200)"}}


@router.get("/healthz", response_model=HealthPublic, responses=_HEALTH,
            summary="健康检查 Database and broker connectivity")
def healthz(ctx: Ctx) -> JSONResponse:
    checks = {"database": health.database(ctx.db.pool)}
    if ctx.settings.mqtt_url:
        checks["broker"] = _broker(ctx.settings.mqtt_url, ctx.settings.mqtt_health_url)
    for name, fn in ctx.checks.items():
        checks[name] = fn()
    ok = all(c.ok for c in checks.values())
    body = HealthPublic(status="ok" if ok else "degraded",
                        checks={k: CheckPublic(ok=c.ok, latency_ms=c.latency_ms, detail=c.detail)
                                for k, c in checks.items()})
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ok else 503)


def _broker(mqtt_url: str, health_url: str | None) -> health.Check:
    """Log in with the health account. Never with the collector's: the broker binds client ids to usernames, so a
    login under the collector's name would take over its session. Without a health account, an anonymous login
    that the broker refuses as "not authorised" still proves it is up and speaking (TLS and) MQTT."""
    if health_url:
        return health.broker(MqttUrl.parse(health_url))
    probe = MqttUrl.parse(mqtt_url).with_user("", None)
    c = health.broker(probe)
    if not c.ok and c.detail and "not authorised" in c.detail:
        return health.Check(True, c.latency_ms, "broker answers (anonymous login refused, as it must); "
                                                 "set RISKWATCH_MQTT_HEALTH_URL for a login check")
    return c


@router.get("/metrics", response_class=Response, summary="Prometheus 指标 metrics",
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)
