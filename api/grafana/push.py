"""Create or update the riskwatch folder and its dashboards in a running Grafana (its HTTP API, over httpx).

Idempotent: the folder and every dashboard have fixed uids; the folder is
created only when missing (its title updated when it differs) and dashboards
are saved with ``overwrite: true``, so pushing twice leaves one folder and the
same dashboards, each with a new version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api.grafana.dashboards import FOLDER_TITLE, FOLDER_UID, GeneratedDashboard
from api.grafana.http_client import GrafanaHTTP, GrafanaHTTPError, GrafanaUnreachable
from core.errors import RiskwatchError


class GrafanaPushError(RiskwatchError):
    """Grafana refused or could not be reached; the message names the step and the status."""


@dataclass(frozen=True)
class PushResult:
    folder_uid: str
    folder_created: bool
    dashboards: list[tuple[str, str]]  # (uid, url or status from Grafana)


def _folder(api: GrafanaHTTP, uid: str, title: str) -> bool:
    """Ensure the folder exists with this title; return True if it was created."""
    current: dict[str, Any] | None = api.get_folder(uid)
    if current is None:
        api.create_folder(title, uid)
        return True
    if current.get("title") != title:
        api.update_folder(uid, title)
    return False


def push(url: str, token: str, dashboards: list[GeneratedDashboard], folder_uid: str = FOLDER_UID,
         folder_title: str = FOLDER_TITLE, timeout: float = 10.0,
         progress: Callable[[str], None] | None = None) -> PushResult:
    """Push dashboards into the folder (both created or updated in place); `progress` is called with each
    dashboard's uid once Grafana saved it (a CLI progress bar advances on it)."""
    step = "folder"
    out: list[tuple[str, str]] = []
    try:
        with GrafanaHTTP(url, token, timeout=timeout) as api:
            created = _folder(api, folder_uid, folder_title)
            for d in dashboards:
                step = f"dashboard {d.uid}"
                body = d.to_json()
                body.pop("id", None)  # Grafana matches by uid
                res = api.save_dashboard({"dashboard": body, "folderUid": folder_uid, "overwrite": True,
                                          "message": "riskwatch grafana push"})
                out.append((d.uid, str(res.get("url") or res.get("status") or "")))
                if progress is not None:
                    progress(d.uid)
    except (GrafanaHTTPError, GrafanaUnreachable) as exc:
        raise GrafanaPushError(f"grafana push failed at {step}: {exc}") from exc
    return PushResult(folder_uid, created, out)
