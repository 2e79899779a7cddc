"""Grafana dashboards as code: generated from the registry and the rule catalog.

`generate` reads the database and the catalog and builds every dashboard;
`render` writes them as JSON files (for Grafana's file provisioning);
`push` creates or updates the folder and the dashboards through Grafana's HTTP
API (httpx, api/grafana/http_client.py), idempotently: uids are stable, so pushing again
updates in place.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from api.grafana.dashboards import (
    BUREAU_UID,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    POINT_UID,
    GeneratedDashboard,
    TargetSpec,
    build_all,
)
from api.grafana.push import PushResult, push
from api.grafana.source import SiteView, load_site_view
from rules.model import Catalog, load_catalog

__all__ = ["BUREAU_UID", "DATASOURCE_UID", "FOLDER_TITLE", "FOLDER_UID", "POINT_UID", "GeneratedDashboard",
           "PushResult", "SiteView", "TargetSpec", "generate", "push", "render"]


def generate(conn: psycopg.Connection, catalog: Catalog | None = None,
             datasource_uid: str = DATASOURCE_UID) -> list[GeneratedDashboard]:
    """Every dashboard for the registry in this database and the catalog (default: the shipped one)."""
    site = load_site_view(conn, catalog or load_catalog())
    return build_all(site, datasource_uid)


def render(dashboards: list[GeneratedDashboard], outdir: Path) -> list[Path]:
    """Write one `<uid>.json` per dashboard; remove stale generated files of ours from earlier runs."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    keep = {f"{d.uid}.json" for d in dashboards}
    for old in outdir.glob("rw-*.json"):
        if old.name not in keep:
            old.unlink()
    for d in dashboards:
        path = outdir / f"{d.uid}.json"
        path.write_text(json.dumps(d.to_json(), ensure_ascii=False, indent=2, sort_keys=True) + "\n",
                        encoding="utf-8")
        written.append(path)
    return written
