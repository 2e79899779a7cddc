"""Create or update the riskwatch folder and its dashboards in a running Grafana (grafana-client).

Idempotent: the folder and every dashboard have fixed uids; the folder is
created only when missing (its title updated when it differs) and dashboards
are saved with ``overwrite: true``, so pushing twice leaves one folder and the
same dashboards, each with a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from api.grafana.dashboards import FOLDER_TITLE, FOLDER_UID, GeneratedDashboard
from core.errors import RiskwatchError


class GrafanaPushError(RiskwatchError):
    """Grafana refused or could not be reached; the message names the step and the status."""


@dataclass(frozen=True)
class PushResult:
    folder_uid: str
    folder_created: bool
    dashboards: list[tuple[str, str]]  # (uid, url or status from Grafana)


def _folder(api: GrafanaApi, uid: str, title: str) -> bool:
    """Ensure the folder exists with this title; return True if it was created."""
    try:
        current: dict[str, Any] = api.folder.get_folder(uid)  # type: ignore[no-untyped-call]
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        api.folder.create_folder(title, uid=uid)  # type: ignore[no-untyped-call]
        return True
    if current.get("title") != title:
        api.folder.update_folder(uid, title=title, overwrite=True)  # type: ignore[no-untyped-call]
    return False


def push(url: str, token: str, dashboards: list[GeneratedDashboard], folder_uid: str = FOLDER_UID,
         folder_title: str = FOLDER_TITLE, timeout: float = 10.0) -> PushResult:
    """Push dashboards into the folder (both created or updated in place)."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    step = "folder"
    try:
        created = _folder(api, folder_uid, folder_title)
        out = []
        for d in dashboards:
            step = f"dashboard {d.uid}"
            body = d.to_json()
            body.pop("id", None)  # Grafana matches by uid
            res = api.dashboard.update_dashboard({"dashboard": body, "folderUid": folder_uid, "overwrite": True,
                                                  "message": "riskwatch grafana push"})
            out.append((d.uid, str(res.get("url") or res.get("status") or "")))
    except GrafanaException as exc:
        raise GrafanaPushError(f"grafana push failed at {step}: {exc}") from exc
    except OSError as exc:
        raise GrafanaPushError(f"grafana push failed at {step}: cannot reach {url}: {exc}") from exc
    return PushResult(folder_uid, created, out)
