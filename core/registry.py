"""The registry: enterprise -> plant -> gateway -> device -> point.

A site description (YAML) is validated with file:line errors and upserted
idempotently. Gateway credentials are issued here (shown once, stored as a
Mosquitto-compatible hash) and the broker's password file and ACL are
regenerated from this table.

Gateway ids have one syntax, defined here (`GATEWAY_ID_PATTERN`, `GatewayId`,
`check_gateway_id`) and used by the site loader, `issue_credentials` and the
API: a gateway id is its MQTT username, its client id and a topic level, so it
must be safe as all three, and it must never name an account the service
itself uses (the collector logs in as `riskwatch-collector`; an enterprise that
registered that id would read every enterprise's telemetry).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from core import yamlsrc
from core.errors import ConfigError, SourceError, SourceProblem
from core.services import RESERVED_PREFIX, mosquitto_hash

log = logging.getLogger("riskwatch.registry")

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]

#: The one syntax of a gateway id: 1-64 ASCII letters, digits, `_ . -`, starting with a letter or digit.
#: No `/ + #` (topic separators and wildcards), no `$` (broker-internal topics such as `$SYS`), no
#: whitespace or `:` (the password file's separator), so the id is safe as an MQTT username, client id and
#: topic level. The database's CHECK on gateways.id repeats it (migrations 0001 and 0008).
GATEWAY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# RESERVED_PREFIX (core.services, beside the accounts it protects): every id starting with it, in any case,
# belongs to the service (the collector's and the health check's broker accounts today, whatever it needs
# tomorrow); no gateway may take one.
_GATEWAY_ID = re.compile(GATEWAY_ID_PATTERN)


@dataclass(frozen=True)
class IdRefusal:
    """Why an id cannot be a gateway id: a stable code and the reason in Chinese and English."""

    code: str  # reserved-id | invalid-id
    zh: str
    en: str

    def __str__(self) -> str:
        return self.en


def check_gateway_id(value: str) -> IdRefusal | None:
    """None if `value` may be a gateway id, else why not. Reserved names are told apart from bad syntax
    so the caller can say "that name is taken by the service" rather than "bad characters"."""
    if value.startswith("$") or value.lower().startswith(RESERVED_PREFIX):
        return IdRefusal(
            "reserved-id",
            f"网关编号 {value!r} 为系统保留（以 riskwatch 开头或以 $ 开头的名称不可使用）。",
            f"gateway id {value!r} is reserved: ids starting with {RESERVED_PREFIX!r} (any case) or '$' "
            "belong to the service and the broker")
    if not _GATEWAY_ID.fullmatch(value):
        return IdRefusal(
            "invalid-id",
            f"网关编号 {value!r} 不合法：须为 1-64 个字母、数字或 _ . -，以字母或数字开头。",
            f"gateway id {value!r} is invalid: 1-64 letters, digits, '_', '.', '-', starting with a letter "
            "or digit (it is the MQTT username, client id and a topic level)")
    return None


def _gateway_id(value: str) -> str:
    refusal = check_gateway_id(value)
    if refusal is not None:
        raise ValueError(refusal.en)
    return value


#: A gateway id in a model: the syntax above and no reserved name (a pydantic error otherwise).
GatewayId = Annotated[str, AfterValidator(_gateway_id)]
Industry = Literal["cement", "lime", "refractory", "foundry", "machinery"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Contact(_Strict):
    name: str = Field(min_length=1)
    phone: str | None = None
    email: str | None = None


class PointSpec(_Strict):
    tag: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: str | None = None
    quantity: str = Field(min_length=1)
    role: str | None = None  # distinguishes points of one quantity on a device: inlet, outlet, ...
    unit: str = ""
    kind: Literal["analog", "boolean", "enum"] = "analog"
    required: bool = False
    interval_s: float = Field(default=1.0, gt=0)
    states: dict[int, str] | None = None
    setpoints: dict[str, float] | None = None  # "<rule id>.<parameter>": value overrides
    baseline: float | None = None  # e.g. filter pressure difference after a bag change (AQ 4273)
    # When the equipment was installed or last serviced (bags changed): trust.dp.baseline_age (issue 14)
    serviced_at: datetime | None = None
    sim: dict[str, Any] | None = None  # simulator signal model; ignored by the registry


class DeviceSpec(_Strict):
    code: Ident
    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    gateway: GatewayId
    points: list[PointSpec] = Field(min_length=1)


class GatewaySpec(_Strict):
    id: GatewayId
    name: str | None = None
    enabled: bool = True


class PlantSpec(_Strict):
    id: Ident
    name: str = Field(min_length=1)
    industry: Industry
    address: str | None = None
    gateways: list[GatewaySpec] = Field(min_length=1)
    devices: list[DeviceSpec] = Field(default_factory=list)


class EnterpriseSpec(_Strict):
    id: Ident
    name: str = Field(min_length=1)
    credit_code: str | None = None
    address: str | None = None
    principal: Contact
    controller: Contact
    plants: list[PlantSpec] = Field(min_length=1)


class SiteSpec(_Strict):
    version: Literal[1] = 1
    name: str | None = None
    enterprises: list[EnterpriseSpec] = Field(min_length=1)

    def points(self) -> list[tuple[EnterpriseSpec, PlantSpec, DeviceSpec, PointSpec]]:
        return [
            (e, p, d, pt)
            for e in self.enterprises
            for p in e.plants
            for d in p.devices
            for pt in d.points
        ]

    def gateways(self) -> list[tuple[PlantSpec, GatewaySpec]]:
        return [(p, g) for e in self.enterprises for p in e.plants for g in p.gateways]


def parse_site(path: str | Path, text: str | None = None) -> SiteSpec:
    """Validate a site file; raise SourceError listing every problem with its line."""
    site, lines = yamlsrc.validate(path, SiteSpec, text)
    problems: list[SourceProblem] = []
    where = str(path)

    def dup(kind: str, key: Any, loc: tuple[Any, ...], seen: dict[Any, tuple[Any, ...]]) -> None:
        if key in seen:
            first = yamlsrc.line_for(lines, seen[key])
            problems.append(SourceProblem(where, yamlsrc.line_for(lines, loc),
                                          f"duplicate {kind} {key!r} (first at line {first})"))
        else:
            seen[key] = loc

    ents: dict[Any, tuple[Any, ...]] = {}
    plants: dict[Any, tuple[Any, ...]] = {}
    gws: dict[Any, tuple[Any, ...]] = {}
    tags: dict[Any, tuple[Any, ...]] = {}
    for ei, e in enumerate(site.enterprises):
        dup("enterprise", e.id, ("enterprises", ei, "id"), ents)
        for pi, p in enumerate(e.plants):
            ploc = ("enterprises", ei, "plants", pi)
            dup("plant", p.id, (*ploc, "id"), plants)
            plant_gws = {g.id for g in p.gateways}
            for gi, g in enumerate(p.gateways):
                dup("gateway", g.id, (*ploc, "gateways", gi, "id"), gws)
            codes: dict[Any, tuple[Any, ...]] = {}
            for di, d in enumerate(p.devices):
                dloc = (*ploc, "devices", di)
                dup("device code", d.code, (*dloc, "code"), codes)
                if d.gateway not in plant_gws:
                    problems.append(SourceProblem(
                        where, yamlsrc.line_for(lines, (*dloc, "gateway")),
                        f"device {d.code!r}: gateway {d.gateway!r} is not a gateway of plant {p.id!r}"))
                for ti, pt in enumerate(d.points):
                    tloc = (*dloc, "points", ti)
                    dup(f"tag on gateway {d.gateway!r}", (d.gateway, pt.tag), (*tloc, "tag"), tags)
                    if pt.kind == "enum" and not pt.states:
                        problems.append(SourceProblem(where, yamlsrc.line_for(lines, tloc),
                                                      f"point {pt.tag!r}: kind enum needs states"))
    if problems:
        raise SourceError(problems)
    return site


@dataclass(frozen=True)
class LoadResult:
    enterprises: int
    plants: int
    gateways: int
    devices: int
    points: int


_UPSERT_POINT = """
    INSERT INTO points (device_id, gateway_id, tag, name, quantity, role, unit, kind, required, interval_s,
                        states, setpoints, baseline, baseline_at, serviced_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s::float8 IS NULL THEN NULL ELSE now() END,
            %s)
    ON CONFLICT (gateway_id, tag) DO UPDATE SET
        device_id = EXCLUDED.device_id, name = EXCLUDED.name, quantity = EXCLUDED.quantity, role = EXCLUDED.role,
        unit = EXCLUDED.unit, kind = EXCLUDED.kind, required = EXCLUDED.required,
        interval_s = EXCLUDED.interval_s, states = EXCLUDED.states, setpoints = EXCLUDED.setpoints,
        serviced_at = coalesce(EXCLUDED.serviced_at, points.serviced_at),
        baseline = coalesce(EXCLUDED.baseline, points.baseline),
        baseline_at = CASE WHEN EXCLUDED.baseline IS DISTINCT FROM points.baseline AND EXCLUDED.baseline IS NOT NULL
                           THEN now() ELSE points.baseline_at END,
        updated_at = now()"""


def upsert_site(conn: psycopg.Connection, site: SiteSpec,
                on_points: Callable[[int], None] | None = None) -> LoadResult:
    """Insert or update everything in the site, in one transaction. Idempotent. `on_points(n)` is told after
    each device how many of its points were written (a progress bar's step)."""
    n_dev = n_pt = 0
    with conn.transaction():
        for e in site.enterprises:
            conn.execute(
                """INSERT INTO enterprises (id, name, credit_code, address,
                       principal_name, principal_phone, principal_email,
                       controller_name, controller_phone, controller_email)
                   VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
                   ON CONFLICT (id) DO UPDATE SET name=EXCLUDED.name, credit_code=EXCLUDED.credit_code,
                       address=EXCLUDED.address,
                       principal_name=EXCLUDED.principal_name, principal_phone=EXCLUDED.principal_phone,
                       principal_email=EXCLUDED.principal_email, controller_name=EXCLUDED.controller_name,
                       controller_phone=EXCLUDED.controller_phone, controller_email=EXCLUDED.controller_email,
                       updated_at=now()""",
                (e.id, e.name, e.credit_code, e.address,
                 e.principal.name, e.principal.phone, e.principal.email,
                 e.controller.name, e.controller.phone, e.controller.email),
            )
            for p in e.plants:
                conn.execute(
                    """INSERT INTO plants (id, enterprise_id, name, industry, address) VALUES (%s,%s,%s,%s,%s)
                       ON CONFLICT (id) DO UPDATE SET enterprise_id=EXCLUDED.enterprise_id, name=EXCLUDED.name,
                           industry=EXCLUDED.industry, address=EXCLUDED.address, updated_at=now()""",
                    (p.id, e.id, p.name, p.industry, p.address),
                )
                for g in p.gateways:
                    conn.execute(
                        """INSERT INTO gateways (id, plant_id, name, enabled) VALUES (%s,%s,%s,%s)
                           ON CONFLICT (id) DO UPDATE SET plant_id=EXCLUDED.plant_id, name=EXCLUDED.name,
                               enabled=EXCLUDED.enabled, updated_at=now()""",
                        (g.id, p.id, g.name, g.enabled),
                    )
                for d in p.devices:
                    row = conn.execute(
                        """INSERT INTO devices (plant_id, code, name, kind) VALUES (%s,%s,%s,%s)
                           ON CONFLICT (plant_id, code) DO UPDATE SET name=EXCLUDED.name, kind=EXCLUDED.kind,
                               updated_at=now()
                           RETURNING id""",
                        (p.id, d.code, d.name, d.kind),
                    ).fetchone()
                    assert row is not None
                    n_dev += 1
                    # one pipelined statement per device: a 100k-point site loads in seconds
                    with conn.cursor() as cur:
                        cur.executemany(_UPSERT_POINT, [
                            (row[0], d.gateway, pt.tag, pt.name, pt.quantity, pt.role, pt.unit, pt.kind,
                             pt.required, pt.interval_s,
                             Jsonb({str(k): v for k, v in pt.states.items()}) if pt.states else None,
                             Jsonb(pt.setpoints) if pt.setpoints else None, pt.baseline, pt.baseline,
                             pt.serviced_at)
                            for pt in d.points])
                    n_pt += len(d.points)
                    if on_points is not None:
                        on_points(len(d.points))
    return LoadResult(
        enterprises=len(site.enterprises),
        plants=sum(len(e.plants) for e in site.enterprises),
        gateways=len(site.gateways()),
        devices=n_dev,
        points=n_pt,
    )


def issue_credentials(conn: psycopg.Connection, gateway_id: str, plant_id: str | None = None) -> str:
    """Create the gateway if needed, issue a new secret, store only its hash. Returns the secret.

    A reserved or malformed id is refused even for an existing row (one created before ids were checked):
    a credential for `riskwatch-collector` would let its holder log in as the collector."""
    refusal = check_gateway_id(gateway_id)
    if refusal is not None:
        raise ConfigError(f"{refusal.zh} {refusal.en}")
    secret = secrets.token_urlsafe(24)
    with conn.transaction():
        row = conn.execute("SELECT plant_id FROM gateways WHERE id = %s", (gateway_id,)).fetchone()
        if row is None:
            if plant_id is None:
                raise ConfigError(f"gateway {gateway_id!r} does not exist; give --plant to create it")
            if conn.execute("SELECT 1 FROM plants WHERE id = %s", (plant_id,)).fetchone() is None:
                raise ConfigError(f"plant {plant_id!r} does not exist (load the site first)")
            conn.execute("INSERT INTO gateways (id, plant_id) VALUES (%s, %s)", (gateway_id, plant_id))
        elif plant_id is not None and row[0] != plant_id:
            raise ConfigError(f"gateway {gateway_id!r} belongs to plant {row[0]!r}, not {plant_id!r}")
        conn.execute(
            "UPDATE gateways SET credential_hash = %s, credential_issued_at = now(), updated_at = now()"
            " WHERE id = %s",
            (mosquitto_hash(secret), gateway_id),
        )
    return secret


def set_gateway_enabled(conn: psycopg.Connection, gateway_id: str, enabled: bool) -> None:
    with conn.transaction():
        cur = conn.execute("UPDATE gateways SET enabled = %s, updated_at = now() WHERE id = %s",
                           (enabled, gateway_id))
        if cur.rowcount == 0:
            raise ConfigError(f"gateway {gateway_id!r} does not exist")


def disabled_gateways(conn: psycopg.Connection) -> list[str]:
    """Ids of disabled gateways: the broker's ACL denies them every topic (a client certificate outlives a password)."""
    return [r[0] for r in conn.execute("SELECT id FROM gateways WHERE NOT enabled ORDER BY id")]


def credential_hashes(conn: psycopg.Connection, gateway_ids: list[str]) -> dict[str, str | None]:
    """gateway id -> its stored credential hash (None when it has none), for the ids that exist."""
    rows = conn.execute("SELECT id, credential_hash FROM gateways WHERE id = ANY(%s)", (gateway_ids,)).fetchall()
    return {str(gw): (None if h is None else str(h)) for gw, h in rows}


def broker_credentials(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(gateway_id, hash) of every enabled gateway that has credentials.

    Defence in depth: a row whose id is reserved or malformed (inserted before ids were checked, or by hand)
    is skipped with a warning, never handed to the password file, where a second `riskwatch-collector`
    line would take over the collector's account."""
    rows = conn.execute(
        "SELECT id, credential_hash FROM gateways WHERE enabled AND credential_hash IS NOT NULL ORDER BY id"
    ).fetchall()
    out: list[tuple[str, str]] = []
    for gw, h in rows:
        refusal = check_gateway_id(gw)
        if refusal is not None:
            log.warning("gateway %r left out of the broker's password file: %s", gw, refusal.en)
            continue
        out.append((gw, h))
    return out


@dataclass(frozen=True)
class GatewayInfo:
    enabled: bool
    plant_id: str


@dataclass(frozen=True)
class Snapshot:
    """What the collector needs to map (gateway, tag) -> point id, refreshed periodically."""

    gateways: dict[str, GatewayInfo]
    points: dict[str, dict[str, int]]  # gateway -> tag -> point id
    version: tuple[object, ...] = ()  # `snapshot_version` when it was read


def snapshot_version(conn: psycopg.Connection) -> tuple[object, ...]:
    """Cheap to ask, changes whenever the snapshot would: every gateway row hashed (there are few), and the
    points' count, newest change and highest id (reading 100k points into dicts every few seconds would
    cost the collector ~0.3 s each time)."""
    row = conn.execute(
        """SELECT (SELECT (count(*), coalesce(sum(hashtext(id || enabled::text || plant_id)), 0)) FROM gateways),
                  (SELECT (count(*), max(updated_at), max(id)) FROM points)""").fetchone()
    return tuple(str(x) for x in row) if row else ()


def snapshot(conn: psycopg.Connection) -> Snapshot:
    # The version first: a change landing while the rows are read makes it stale, so the next check
    # reads again, rather than a snapshot missing a change its version already counts.
    version = snapshot_version(conn)
    gws = {r[0]: GatewayInfo(enabled=r[1], plant_id=r[2])
           for r in conn.execute("SELECT id, enabled, plant_id FROM gateways")}
    pts: dict[str, dict[str, int]] = {}
    for gw, tag, pid in conn.execute("SELECT gateway_id, tag, id FROM points"):
        pts.setdefault(gw, {})[tag] = pid
    return Snapshot(gws, pts, version)


