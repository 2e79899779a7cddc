"""Credentials the simulator uses on the private services.

Saved under the data dir (mode 0600) and reused while they still match the
registry's hash; a gateway without a valid saved secret gets a new one.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from core import registry
from core.services import mosquitto_verify
from core.tls import write_private


def path(data_dir: Path) -> Path:
    return data_dir / "simulator-credentials.json"


def load_file(p: Path) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(p.read_text()).items()}


def ensure(conn: psycopg.Connection, data_dir: Path, gateway_ids: list[str]) -> tuple[dict[str, str], bool]:
    """(gateway -> secret, whether any secret was newly issued)."""
    p = path(data_dir)
    saved = load_file(p) if p.exists() else {}
    hashes = registry.credential_hashes(conn, gateway_ids)
    out: dict[str, str] = {}
    issued = False
    for gw in gateway_ids:
        secret = saved.get(gw)
        stored = hashes.get(gw)
        if secret and stored and mosquitto_verify(secret, stored):
            out[gw] = secret
        else:
            out[gw] = registry.issue_credentials(conn, gw)
            issued = True
    if issued or out != saved:
        # 0600 from the first byte, under a unique temporary name: two commands saving at once cannot mix
        write_private(p, json.dumps({**saved, **out}, indent=2).encode())
    return out, issued
