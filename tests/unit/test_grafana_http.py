"""Grafana's HTTP API over httpx (api/grafana/http_client.py), which replaced grafana-client (issue 16).

httpx's MockTransport stands in for Grafana here (the push itself runs against tests/fake_grafana.py in
tests/integration/test_grafana_cli.py): what is checked is the request each call makes and how answers map
to our errors.
"""

from __future__ import annotations

import json

import httpx
import pytest

from api.grafana.http_client import GrafanaHTTP, GrafanaHTTPError, GrafanaUnreachable

TOKEN = "glsa_secret_token_value"


def client(handler, url: str = "https://grafana.example.gov.cn/grafana") -> GrafanaHTTP:  # type: ignore[no-untyped-def]
    return GrafanaHTTP(url, TOKEN, transport=httpx.MockTransport(handler))


def test_requests_keep_the_sub_path_and_carry_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.method == "GET":
            return httpx.Response(404, json={"message": "folder not found"})
        return httpx.Response(200, json={"uid": "riskwatch", "url": "/d/x"})

    with client(handler) as api:
        assert api.get_folder("riskwatch") is None
        api.create_folder("风险监测 riskwatch", "riskwatch")
        api.update_folder("riskwatch", "风险监测 riskwatch")
        assert api.save_dashboard({"dashboard": {"uid": "a"}, "overwrite": True})["url"] == "/d/x"
    assert [(r.method, r.url.path) for r in seen] == [
        ("GET", "/grafana/api/folders/riskwatch"), ("POST", "/grafana/api/folders"),
        ("PUT", "/grafana/api/folders/riskwatch"), ("POST", "/grafana/api/dashboards/db")]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in seen)
    assert json.loads(seen[1].content) == {"title": "风险监测 riskwatch", "uid": "riskwatch"}
    assert json.loads(seen[2].content) == {"title": "风险监测 riskwatch", "overwrite": True}


def test_a_uid_cannot_walk_to_another_endpoint() -> None:
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.url.raw_path.decode())
        return httpx.Response(200, json={"uid": "x"})

    with client(handler) as api:
        api.get_folder("../../admin/users?perpage=1000")
    assert seen == ["/grafana/api/folders/..%2F..%2Fadmin%2Fusers%3Fperpage%3D1000"]


@pytest.mark.parametrize(("status", "body", "message"), [
    (401, {"message": "Unauthorized"}, "Unauthorized"),
    (412, {"message": "the dashboard has been changed by someone else"}, "changed by someone else"),
    (500, b"<html>proxy error</html>", "proxy error"),
    (403, b"", ""),
])
def test_error_statuses_map_to_grafana_http_error(status: int, body: object, message: str) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if isinstance(body, dict) else httpx.Response(status, content=body)

    with client(handler) as api, pytest.raises(GrafanaHTTPError) as err:
        api.save_dashboard({"dashboard": {}})
    assert err.value.status_code == status and message in err.value.message
    assert f"HTTP {status}" in str(err.value) and TOKEN not in str(err.value)


def test_get_folder_other_errors_are_not_taken_for_missing() -> None:
    with client(lambda req: httpx.Response(403, json={"message": "Forbidden"})) as api, \
            pytest.raises(GrafanaHTTPError, match="403"):
        api.get_folder("riskwatch")


def test_no_answer_is_unreachable_without_the_token() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    with client(handler) as api, pytest.raises(GrafanaUnreachable) as err:
        api.get_folder("riskwatch")
    assert "connection refused" in str(err.value) and TOKEN not in str(err.value)


def test_refused_port_is_unreachable() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with GrafanaHTTP(f"http://127.0.0.1:{port}", TOKEN, timeout=2) as api, pytest.raises(GrafanaUnreachable):
        api.get_folder("riskwatch")
