"""The FastAPI application, built by `create_app(settings, ...)` — nothing is created at import time.

The database pool opens with the app's lifespan and closes with it. Routes
live under /api/v1, one router per resource; /healthz and /metrics sit at the
root for load balancers and Prometheus.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.http import problems
from api.http.audit import AuditMiddleware
from api.http.deps import AppContext, Database
from api.http.health import Check
from api.http.ingest_bridge import IngestBridge
from api.http.limits import BodyLimitMiddleware
from api.http.metrics import Metrics, MetricsMiddleware
from api.http.routers import (
    ack,
    alarms,
    audit,
    availability,
    change_requests,
    data_problems,
    devices,
    disposal,
    enterprises,
    gateways,
    hazards,
    ingest,
    interviews,
    notifications,
    plants,
    points,
    readings,
    records,
    reports,
    risk,
    stops,
    system,
    tokens,
)
from core.clock import Clock, SystemClock
from core.errors import ConfigError
from core.settings import Settings

DESCRIPTION = """\
riskwatch 工贸企业安全风险监测预警 — HTTP API.

* 认证 Authentication: `Authorization: Bearer rwt_…` (create with `riskwatch token create`).
* 角色 Roles: `admin`, `bureau` (监管部门), `enterprise` (bound to one enterprise: every read and
  write is confined to it; another enterprise's objects answer 404).
* 错误 Errors: RFC 9457 `application/problem+json`; a workflow step the ticket's status does not
  allow answers 409 with a Chinese and English explanation.
* 重大事故隐患 Hazard ledger: candidate → confirmed | dismissed → plan filed (五落实) → rectifying →
  submitted → closed (销号) | sent back; overdue tickets are listed for supervision (挂牌督办).
"""

TAGS = [
    {"name": "enterprises", "description": "企业 Enterprises"},
    {"name": "plants", "description": "厂区 Plants"},
    {"name": "gateways", "description": "网关 Gateways and their MQTT credentials"},
    {"name": "devices", "description": "设备 Devices"},
    {"name": "points", "description": "测点 Points"},
    {"name": "readings", "description": "读数 Readings, raw and bucketed"},
    {"name": "alarms", "description": "报警 Alarms (ISA-18.2)"},
    {"name": "hazards", "description": "重大事故隐患 Hazard ledger"},
    {"name": "interviews", "description": "警示约谈 Warning interviews"},
    {"name": "reports", "description": "统计报表 Reports"},
    {"name": "notifications", "description": "通知 Notifications: delivery log, dead letters of alerting"},
    {"name": "tokens", "description": "令牌 API tokens"},
    {"name": "audit", "description": "审计日志 Audit log"},
    {"name": "change-requests", "description": "变更申请 Change requests to supervised fields"},
    {"name": "disposals", "description": "预警处置 Warning disposal: feedback, escalation, response times"},
    {"name": "records", "description": "安全管理记录 Self-inspections, drills, training, meetings, evaluations, "
                                       "alarm-system health"},
    {"name": "stops", "description": "停产报备 Production-stop filings and their approval"},
    {"name": "data-problems", "description": "数据问题 Dead letters, unmapped tags, mapping a tag to a point"},
    {"name": "availability", "description": "数据完整率 Data availability, gateway online rate, missing mandatory "
                                            "points"},
    {"name": "ingest", "description": "HTTP 接入 HTTP ingest for gateways that cannot speak MQTT (gateway token)"},
    {"name": "system", "description": "健康与指标 Health and metrics"},
]


def _operation_id(route: APIRoute) -> str:
    """Stable operation ids (`hazards_confirm`): the authorisation matrix test keys on them."""
    tag = route.tags[0] if route.tags else "root"
    return f"{tag}_{route.name}"


def create_app(settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None,
               broker_sync: Callable[[psycopg.Connection], object] | None = None,
               checks: dict[str, Callable[[], Check]] | None = None, pool_size: int = 10,
               ingest_bridge: IngestBridge | None = None) -> FastAPI:
    """Build the API for these settings (db_url must be resolved). Tests pass a FakeClock."""
    if not settings.db_url:
        raise ConfigError("the API needs a database URL (RISKWATCH_DB_URL or the private services)")
    db = Database(settings.db_url, pool_size)
    m = metrics or Metrics()
    ctx = AppContext(settings=settings, db=db, clock=clock or SystemClock(), metrics=m,
                     broker_sync=broker_sync, checks=dict(checks or {}))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            db.close()

    app = FastAPI(
        title="riskwatch API", version="1", description=DESCRIPTION, openapi_tags=TAGS, lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.ctx = ctx
    app.state.ingest_bridge = ingest_bridge  # POST /api/v1/ingest answers 503 without one (api.http.ingest_bridge)
    problems.install(app)
    for r in (enterprises, plants, gateways, devices, points, readings, alarms, hazards, interviews, reports,
              notifications, tokens, audit, ack, change_requests, disposal, stops, records,
              availability, risk):
        app.include_router(r.router)
    app.include_router(ingest.router)
    app.include_router(system.router)
    app.include_router(data_problems.router)
    # innermost first: body limit (refuses before parsing), then audit (sees the 413s), then metrics (counts all)
    app.add_middleware(BodyLimitMiddleware, limits=settings.api)
    app.add_middleware(AuditMiddleware, pool=lambda: db.pool, metrics=m)
    app.add_middleware(MetricsMiddleware, metrics=m)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags)
            app.openapi_schema = problems.fix_openapi(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
