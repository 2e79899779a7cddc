"""Grafana's HTTP API, the four calls `grafana push` makes, over the project's httpx.

Replaces grafana-client, whose dependency urllib3-future replaces the
`urllib3` package in place and broke schemathesis in the same environment
(issue 16). Grafana's API for folders and dashboards is small and stable:
GET/POST/PUT /api/folders[/uid] and POST /api/dashboards/db, with a bearer
service-account token. Library errors are mapped to two of ours at the
boundary: `GrafanaHTTPError` (Grafana answered with an error status) and
`GrafanaUnreachable` (no answer: DNS, TCP, TLS, timeout).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from core.errors import RiskwatchError


class GrafanaHTTPError(RiskwatchError):
    """Grafana answered with an error status; `status_code` and Grafana's own message are kept."""

    def __init__(self, method: str, path: str, status_code: int, message: str):
        self.status_code = status_code
        self.message = message
        super().__init__(f"{method} {path}: HTTP {status_code} {message}".rstrip())


class GrafanaUnreachable(RiskwatchError):
    """No HTTP answer from Grafana at all."""


class GrafanaHTTP:
    """A Grafana API client for one base URL (a sub-path such as https://host/grafana is kept) and one token."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0, verify: bool | str = True,
                 transport: httpx.BaseTransport | None = None):
        base = url.rstrip("/") + "/"
        self._client = httpx.Client(base_url=base, timeout=timeout, verify=verify, transport=transport,
                                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json",
                                             "User-Agent": "riskwatch-grafana-push"})

    def __enter__(self) -> GrafanaHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            res = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:  # transport errors: connect, TLS, timeout, protocol
            raise GrafanaUnreachable(f"cannot reach {self._client.base_url}: {exc}") from exc
        try:
            data = res.json() if res.content else {}
        except ValueError:
            data = {"message": res.text[:200]}
        if res.status_code >= 400:
            message = str(data.get("message", "")) if isinstance(data, dict) else ""
            raise GrafanaHTTPError(method, "/" + path, res.status_code, message)
        return data

    def get_folder(self, uid: str) -> dict[str, Any] | None:
        """The folder with this uid, or None when Grafana has none (404)."""
        try:
            data: dict[str, Any] = self._call("GET", f"api/folders/{quote(uid, safe='')}")
        except GrafanaHTTPError as exc:
            if exc.status_code == 404:
                return None
            raise
        return data

    def create_folder(self, title: str, uid: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("POST", "api/folders", {"title": title, "uid": uid})
        return data

    def update_folder(self, uid: str, title: str) -> dict[str, Any]:
        data: dict[str, Any] = self._call("PUT", f"api/folders/{quote(uid, safe='')}",
                                          {"title": title, "overwrite": True})
        return data

    def save_dashboard(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /api/dashboards/db: `body` is {"dashboard": ..., "folderUid": ..., "overwrite": ..., "message": ...}."""
        data: dict[str, Any] = self._call("POST", "api/dashboards/db", body)
        return data
