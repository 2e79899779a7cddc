"""Property-based run of the whole OpenAPI document with schemathesis, against the ASGI app on a real database:
every generated request — valid and invalid, as admin and as an enterprise — gets no 5xx, and every
response conforms to the document (status codes, content types, bodies)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.http.app import create_app
from core.clock import FakeClock
from core.db import migrate
from core.services import LocalPostgres
from core.settings import Settings
from tests.fix_api import T0, load_site, make_tokens

pytestmark = pytest.mark.integration

#: Examples per operation, role and mode; raise it for a deeper run (RISKWATCH_PROPERTY_EXAMPLES=200).
EXAMPLES = int(os.environ.get("RISKWATCH_PROPERTY_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Env:
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def env(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pg.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = pg.url.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    load_site(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # keep the run's own tokens out of reach of generated DELETE /tokens/{id}
        conn.execute("SELECT setval('api_tokens_id_seq', 1000000)")
    tokens = make_tokens(url)
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("st"), db_url=url), clock=FakeClock(T0))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Env(app, client, tokens)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def api_schema(env: Env) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", env.app)


def _cases() -> list[tuple[str, GenerationMode]]:
    """Every operation of the document (building the app connects to nothing), with valid inputs, and with
    invalid ones where it has inputs to get wrong."""
    app = create_app(Settings(data_dir=Path("/nonexistent"), db_url="postgresql:///unused"))
    out = []
    for ops in app.openapi()["paths"].values():
        for op in ops.values():
            out.append((op["operationId"], GenerationMode.POSITIVE))
            if op.get("parameters") or op.get("requestBody"):
                out.append((op["operationId"], GenerationMode.NEGATIVE))
    return sorted(out)


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


@pytest.mark.parametrize("role", ["admin", "ent_a"])
@pytest.mark.parametrize(("operation_id", "mode"), _cases())
def test_operation(api_schema: schemathesis.BaseSchema, env: Env, operation_id: str, role: str,
                   mode: GenerationMode) -> None:
    """Valid requests conform to the document; invalid ones are refused with a 4xx problem, never a 5xx."""
    op = api_schema.find_operation_by_id(operation_id)  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {env.tokens[role]}"}
    checks = CHECKS if mode is GenerationMode.POSITIVE else [not_a_server_error, content_type_conformance]

    @given(case=op.as_strategy(mode, headers=auth))
    @_SETTINGS
    def run(case: schemathesis.Case) -> None:
        response = send(env.client, case, auth)
        assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
        case.validate_response(Response.from_httpx(response, verify=False), checks=checks)

    run()


def send(client: TestClient, case: schemathesis.Case, headers: dict[str, str]) -> httpx.Response:
    """Send a generated case through Starlette's test client (httpx) rather than schemathesis's requests-based
    transport, which breaks when urllib3-future (pulled in by niquests) shadows urllib3 in the same venv."""
    kw = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    extra: dict[str, Any] = {}
    if "json" in kw:
        extra["json"] = kw["json"]
    elif kw.get("data") is not None:
        data = kw["data"]
        extra["content" if isinstance(data, bytes | str) else "data"] = data
    if kw.get("files"):
        extra["files"] = kw["files"]
    if kw.get("cookies"):  # the document declares none; sent as a header to keep the client stateless
        extra["headers"] = {**(kw.get("headers") or {}),
                            "Cookie": "; ".join(f"{k}={v}" for k, v in kw["cookies"].items())}
    return client.request(kw["method"], kw["url"], headers=extra.pop("headers", kw.get("headers")),
                          params=kw.get("params"), **extra)
