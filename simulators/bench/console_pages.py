"""`riskwatch bench --part console`: server time per console page on a county-sized database.

Issue 13's non-functional target: server time per page p95 ≤ 300 ms with a 100,000-point registry,
10,000 hazards and 1,000,000 alarm events. This part

1. seeds a scratch database (created next to the bench's own, dropped afterwards) with the sample county
   scaled up by server-side `generate_series` inserts (no row crosses the wire): enterprises, plants,
   gateways, devices and points up to the registry size, hazards across statuses, sources and enterprises
   with their events and evidence, alarms and the alarm events, recent readings, dead letters, unmapped
   tags and notifications, so pages being added meet realistic tables too;
2. runs `riskwatch serve --no-collector --no-alerting` on it (a separate process: the client's own CPU
   does not count against the server, and it is the code that is deployed);
3. logs in as a duty officer, an enterprise officer and an administrator and, for each, crawls every
   console page reachable by links (`href`, `src`, `hx-get`, `data-rows`, GET form actions) from
   `/console/`, so pages added later are measured without touching this file;
4. requests each page `repeat` times after one warm-up and reports, per page, the server time (the
   console's `Server-Timing: app;dur=…` header: request in → response headers out) p50/p95, the client
   time (request sent → body read, over loopback), pass/fail against 300 ms p95, and the worst page.

Pages are grouped by their path with numeric segments replaced by `{id}` and the names (not the values)
of their query parameters: `/console/hazards/{id}` is one page however many tickets the crawl meets; up to
`samples` distinct URLs of a page are measured and their times pooled.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import numpy as np
import psycopg

from core import accounts, registry
from core.db import migrate
from core.services import free_port

PREFIX = "/console"
TARGET_MS = 300.0
PASSWORD = "bench-password-42"
#: The bench's console users: (role, enterprise index or None). Index 0 is the enterprise with the most data.
USERS = {"bench-duty": ("duty_officer", True), "bench-ent": ("enterprise_officer", False),
         "bench-admin": ("admin", True)}
#: Links never followed: they act (logout), stream (events), switch the language, or are static files.
SKIP = re.compile(r"^/console/(logout|events|lang/|static/)")
_REF = re.compile(r'(?<![\w-])(href|src|hx-get|data-rows)="([^"]*)"')
_FORM = re.compile(r"<form\b([^>]*)>", re.I)
_ATTR = re.compile(r'([\w-]+)="([^"]*)"')
_ID = re.compile(r"/[^/]*\d[^/]*(?=/|$)")  # a path segment with a digit names one object: a ticket, a gateway
_SAMPLE_ENTERPRISE = "bx-e0001"


# --- links and pages (pure) -------------------------------------------------------------------


def extract_links(html: str, page_path: str, prefix: str = PREFIX) -> list[str]:
    """Every console URL a page points at: `href`, `src`, `hx-get`, `data-rows` and the action of every form
    that submits by GET (a form without `method` does). Path plus query, unescaped, in page order; links off
    the console, to its static files, logout, the event stream and the language switch are left out."""
    refs = [v for _, v in _REF.findall(html)]
    for attrs in _FORM.findall(html):
        a = {k.lower(): v for k, v in _ATTR.findall(attrs)}
        if a.get("method", "get").lower() == "get":
            refs.append(a.get("action") or page_path)
    out: list[str] = []
    for ref in refs:
        ref = ref.replace("&amp;", "&").strip()
        if not ref or ref.startswith(("#", "javascript:", "data:", "mailto:")):
            continue
        u = urlsplit(urljoin("http://console.local" + page_path, ref))
        if u.netloc != "console.local" or not (u.path == prefix or u.path.startswith(prefix + "/")):
            continue
        if SKIP.match(u.path):
            continue
        target = u.path + (f"?{u.query}" if u.query else "")
        if target not in out:
            out.append(target)
    return out


def page_key(url: str) -> str:
    """The page a URL shows: path segments holding a digit (ticket, gateway, point ids) as `{id}`, query
    parameter names (sorted) without values."""
    u = urlsplit(url)
    path = _ID.sub("/{id}", u.path)
    names = sorted({k for k, _ in parse_qsl(u.query, keep_blank_values=True)})
    return path + ("?" + "&".join(names) if names else "")


@dataclass
class PageTimes:
    """One page's measurements for one user."""

    user: str
    page: str
    kind: str = "page"  # "page" (HTML: pages and htmx fragments) or "file" (a download: not held to the target)
    urls: list[str] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)

    def pct(self, values: list[float], q: float) -> float:
        return float(np.percentile(np.array(values), q)) if values else float("nan")

    def summary(self) -> dict[str, Any]:
        p95 = self.pct(self.server_ms, 95)
        return {"user": self.user, "page": self.page, "kind": self.kind, "urls": self.urls, "n": len(self.server_ms),
                "statuses": sorted(set(self.status)),
                "server_p50_ms": self.pct(self.server_ms, 50), "server_p95_ms": p95,
                "client_p50_ms": self.pct(self.client_ms, 50), "client_p95_ms": self.pct(self.client_ms, 95),
                "pass": bool(p95 <= TARGET_MS and all(s < 400 for s in self.status))}


def table(pages: list[dict[str, Any]], width: int = 80) -> list[str]:
    """The per-page figures as plain lines at most `width` wide: page, user, server p50/p95, client p95, ✓/✗
    (`file` for a download, which is listed but not held to the page target), then the verdict.

    A long page name is shortened from the left (its end tells pages apart: `…/hazards/{id}`)."""
    fixed = 1 + 6 + 1 + 7 + 1 + 7 + 1 + 7 + 2 + 4  # " user srv-p50 srv-p95 cli-p95  ok/file"
    name_w = max(12, width - fixed)
    head = f"{'page':<{name_w}} {'user':<6} {'srv p50':>7} {'srv p95':>7} {'cli p95':>7}  ok"
    lines = [head, "-" * len(head)]
    for p in sorted(pages, key=lambda d: (d["page"], d["user"])):
        name = p["page"].removeprefix(PREFIX) or "/"
        if len(name) > name_w:
            name = "…" + name[-(name_w - 1):]
        user = p["user"].removeprefix("bench-")[:6]
        ok = "file" if p.get("kind") == "file" else "✓" if p["pass"] else "✗"
        lines.append(f"{name:<{name_w}} {user:<6} {p['server_p50_ms']:>7.1f} {p['server_p95_ms']:>7.1f} "
                     f"{p['client_p95_ms']:>7.1f}  {ok}")
    held = [p for p in pages if p.get("kind") != "file"]
    if held:
        worst = worst_page(held)
        verdict = "PASS" if all(p["pass"] for p in held) else "FAIL"
        lines.append(f"{verdict}: {sum(p['pass'] for p in held)}/{len(held)} pages ≤ {TARGET_MS:.0f} ms p95; "
                     f"worst {worst['page'].removeprefix(PREFIX) or '/'} ({worst['user'].removeprefix('bench-')})"
                     f" {worst['server_p95_ms']:.0f} ms")
    return [ln[:width] for ln in lines]


def worst_page(pages: list[dict[str, Any]]) -> dict[str, Any]:
    """The page with the highest server p95; a page that failed outright (no time: NaN) counts as worst."""
    return max(pages, key=lambda d: (not d["pass"] and d["server_p95_ms"] != d["server_p95_ms"],
                                     d["server_p95_ms"] if d["server_p95_ms"] == d["server_p95_ms"] else 0.0))


# --- seeding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    points: int = 100_000
    hazards: int = 10_000
    alarm_events: int = 1_000_000
    enterprises: int = 200
    devices_per_plant: int = 10
    alarm_keys: int = 20_000
    readings_per_point: int = 3
    dead_letters: int = 20_000
    unmapped: int = 2_000
    notifications: int = 20_000


def _scale_registry(conn: psycopg.Connection, s: Scale) -> None:
    """Enterprises bx-e0001… with one plant, two gateways and `devices_per_plant` devices each, and enough
    points on them to bring the registry to `s.points`."""
    have = int((conn.execute("SELECT count(*) FROM points").fetchone() or (0,))[0])
    per_device = max(1, -(-(s.points - have) // (s.enterprises * s.devices_per_plant)))
    n = s.enterprises
    conn.execute("""INSERT INTO enterprises (id, name, principal_name, controller_name)
                    SELECT format('bx-e%%s', lpad(k::text, 4, '0')), format('基准县第%%s工贸有限公司', k), '甲', '乙'
                    FROM generate_series(1, %s) k""", (n,))
    conn.execute("""INSERT INTO plants (id, enterprise_id, name, industry)
                    SELECT format('bx-p%%s', lpad(k::text, 4, '0')), format('bx-e%%s', lpad(k::text, 4, '0')),
                           format('基准厂%%s', k),
                           (ARRAY['cement','lime','refractory','foundry','machinery'])[1 + k %% 5]
                    FROM generate_series(1, %s) k""", (n,))
    conn.execute("""INSERT INTO gateways (id, plant_id, name, online, status_at, last_seen)
                    SELECT format('bx-g%%s-%%s', lpad(k::text, 4, '0'), g), format('bx-p%%s', lpad(k::text, 4, '0')),
                           format('网关%%s', g), k %% 17 <> 0, now(), now() - make_interval(secs => k %% 600)
                    FROM generate_series(1, %s) k, generate_series(1, 2) g""", (n,))
    conn.execute("""INSERT INTO devices (plant_id, code, name, kind)
                    SELECT format('bx-p%%s', lpad(k::text, 4, '0')), format('D%%s', lpad(d::text, 2, '0')),
                           format('设备%%s', d), (ARRAY['bag_filter','coal_bin','kiln','furnace','mixer'])[1 + d %% 5]
                    FROM generate_series(1, %s) k, generate_series(1, %s) d""", (n, s.devices_per_plant))
    conn.execute("""INSERT INTO points (device_id, gateway_id, tag, name, quantity, unit, kind, required)
                    SELECT dv.id, format('bx-g%%s-%%s', substr(dv.plant_id, 5), 1 + j %% 2),
                           format('%%s-T%%s', dv.code, lpad(j::text, 3, '0')), format('温度%%s', j),
                           'temperature', '°C', 'analog', j = 1
                    FROM devices dv, generate_series(1, %s) j WHERE dv.plant_id LIKE 'bx-p%%'""", (per_device,))


def _enterprise_table(conn: psycopg.Connection) -> int:
    """A temporary index of enterprises (i, id, first plant), bx-e0001 first: the officer's, with most data."""
    conn.execute("""CREATE TEMP TABLE bench_ents AS
                    SELECT (row_number() OVER (ORDER BY e.id = %s DESC, e.id) - 1)::int AS i, e.id AS eid,
                           min(p.id) AS pid FROM enterprises e JOIN plants p ON p.enterprise_id = e.id GROUP BY e.id""",
                 (_SAMPLE_ENTERPRISE,))
    return int((conn.execute("SELECT count(*) FROM bench_ents").fetchone() or (0,))[0])


_PATH = ["candidate", "confirmed", "plan_filed", "rectifying", "submitted", "closed"]
_ACTIONS = ["detect", "confirm", "file_plan", "start_rectification", "submit", "verify"]


def _hazards(conn: psycopg.Connection, s: Scale, ents: int, rules: list[str]) -> None:
    """`s.hazards` tickets: a tenth of them (plus its share) for the first enterprise; statuses along the
    workflow (40 % closed, 10 % dismissed, the rest open at every step), four sources, one event per step
    reached, an alarm evidence item per sensor ticket and a readings window per candidate."""
    conn.execute("""CREATE TEMP TABLE bench_hz AS
        SELECT k, e.eid, e.pid,
               (CASE WHEN b < 5 THEN 'candidate' WHEN b < 15 THEN 'dismissed' WHEN b < 25 THEN 'confirmed'
                     WHEN b < 35 THEN 'plan_filed' WHEN b < 50 THEN 'rectifying' WHEN b < 60 THEN 'submitted'
                     ELSE 'closed' END) AS status,
               (CASE WHEN b < 5 OR src < 5 THEN 'sensor' WHEN src < 7 THEN 'self_report'
                     WHEN src < 9 THEN 'inspection' ELSE 'public_tip' END) AS source,
               now() - make_interval(days => k %% 400, secs => (k * 37) %% 86400) AS created
        FROM (SELECT k, (k * 7919) %% 100 AS b, (k * 31) %% 10 AS src FROM generate_series(1, %s) k) g
        JOIN bench_ents e ON e.i = CASE WHEN g.k %% 10 = 0 THEN 0 ELSE g.k %% %s END""", (s.hazards, ents))
    conn.execute("""INSERT INTO hazards (id, enterprise_id, plant_id, rule_id, subject, source, status, title,
                        description, basis, detected_at, created_at, created_by, updated_at, confirmed_at, confirmed_by,
                        dismissed_at, dismissed_reason, plan_responsible, plan_measures, plan_funds_yuan, plan_deadline,
                        plan_contingency, plan_filed_at, submitted_at, closed_at, closed_by, supervision_level,
                        supervised_at, supervised_by, reward_status, evidence_count)
        SELECT k, eid, pid,
               CASE WHEN source = 'sensor' THEN (%(rules)s::text[])[1 + k %% cardinality(%(rules)s::text[])] END,
               CASE WHEN source = 'sensor' THEN format('p:%%s', 1000000 + k) END, source, status,
               format('基准隐患%%s：收尘器入口温度超限', k), '基准测试数据', '《工贸企业重大事故隐患判定标准》第四条',
               created, created, 'system', created + interval '2 days',
               CASE WHEN status NOT IN ('candidate', 'dismissed') THEN created + interval '1 hour' END,
               CASE WHEN status NOT IN ('candidate', 'dismissed') THEN 'bench-duty' END,
               CASE WHEN status = 'dismissed' THEN created + interval '1 hour' END,
               CASE WHEN status = 'dismissed' THEN '误报' END,
               CASE WHEN status IN ('plan_filed','rectifying','submitted','closed') THEN '张三' END,
               CASE WHEN status IN ('plan_filed','rectifying','submitted','closed') THEN '更换温度传感器，清理积灰' END,
               CASE WHEN status IN ('plan_filed','rectifying','submitted','closed') THEN 5000 END,
               CASE WHEN status IN ('plan_filed','rectifying','submitted','closed') THEN
                    created + interval '30 days' END,
               CASE WHEN status IN ('plan_filed','rectifying','submitted','closed') THEN '停机检修应急预案' END,
               CASE WHEN status IN ('plan_filed','rectifying','submitted','closed') THEN created + interval '1 day' END,
               CASE WHEN status IN ('submitted','closed') THEN created + interval '20 days' END,
               CASE WHEN status = 'closed' THEN created + interval '25 days' END,
               CASE WHEN status = 'closed' THEN 'bench-chief' END,
               CASE WHEN k %% 20 = 3 AND status NOT IN ('candidate', 'dismissed') THEN 'county' END,
               CASE WHEN k %% 20 = 3 AND status NOT IN ('candidate', 'dismissed') THEN created + interval '2 hours' END,
               CASE WHEN k %% 20 = 3 AND status NOT IN ('candidate', 'dismissed') THEN 'bench-chief' END,
               CASE WHEN source = 'public_tip' THEN 'pending' END,
               CASE WHEN source = 'sensor' THEN 1 ELSE 0 END + CASE WHEN status = 'candidate' THEN 1 ELSE 0 END
        FROM bench_hz""", {"rules": rules})
    conn.execute("SELECT setval(pg_get_serial_sequence('hazards', 'id'), (SELECT max(id) FROM hazards))")
    conn.execute("""INSERT INTO hazard_events (hazard_id, time, action, from_status, to_status, actor, actor_role,
                        comment)
        SELECT k, created + make_interval(hours => st), (%(actions)s::text[])[st],
               CASE WHEN st = 1 THEN 'candidate' ELSE (%(path)s::text[])[st - 1] END,
               CASE WHEN status = 'dismissed' AND st = 2 THEN 'dismissed' ELSE (%(path)s::text[])[st] END,
               CASE WHEN st = 1 THEN 'system' ELSE 'bench-duty' END,
               CASE WHEN st = 1 THEN 'system' ELSE 'bureau' END, '基准测试'
        FROM bench_hz, generate_series(1, CASE WHEN status = 'dismissed' THEN 2
                                               ELSE array_position(%(path)s::text[], status) END) st""",
                 {"actions": _ACTIONS, "path": _PATH})
    conn.execute("""INSERT INTO hazard_evidence (hazard_id, kind, added_at, added_by, alarm_rule_id, alarm_subject,
                        alarm_time, note)
        SELECT h.id, 'alarm', h.created_at, 'system', h.rule_id, h.subject, h.created_at, ''
        FROM hazards h WHERE h.source = 'sensor'""")
    conn.execute("""INSERT INTO hazard_evidence (hazard_id, kind, added_at, added_by, window_from, window_to,
                        readings, note)
        SELECT h.id, 'readings', h.created_at, 'system', h.created_at - interval '10 minutes', h.created_at,
               (SELECT jsonb_agg(jsonb_build_object(
                           'tag', 'TT-101', 'time', h.created_at - make_interval(secs => 600 - i * 10),
                           'value', 60 + i * 0.5, 'quality', 'good'))
                FROM generate_series(0, 59) i), ''
        FROM hazards h WHERE h.status = 'candidate'""")


def _alarms(conn: psycopg.Connection, s: Scale, rules: list[str]) -> None:
    """`s.alarm_keys` alarms (rule × point, 4 % not normal) and `s.alarm_events` events over 180 days; the
    first enterprise's points carry alarms too. The NOTIFY trigger is bypassed while seeding (replica role)."""
    conn.execute("""CREATE TEMP TABLE bench_ak AS
        SELECT i, point_id, gateway_id, plant_id, (%(rules)s::text[])[1 + i %% cardinality(%(rules)s::text[])] || ':hi'
                   AS rule_id, format('p:%%s', point_id) AS subject, (ARRAY['urgent','high','medium','low'])[1 + i %% 4]
                   AS severity
        FROM (SELECT (row_number() OVER (ORDER BY p.id) - 1)::int AS i, p.id AS point_id, p.gateway_id, d.plant_id
              FROM points p JOIN devices d ON d.id = p.device_id
              WHERE p.id %% GREATEST(1, (SELECT count(*) FROM points) / %(keys)s) = 0
                 OR d.plant_id = (SELECT pid FROM bench_ents WHERE i = 0)) k""",
                 {"keys": s.alarm_keys, "rules": rules})
    conn.execute("""INSERT INTO alarms (rule_id, subject, point_id, gateway_id, plant_id, catalog_version, severity,
                        active, state, cond, activated_at, cleared_at, acked_at, acked_by, value, reason)
        SELECT rule_id, subject, point_id, gateway_id, plant_id, 'bench', severity,
               i %% 25 IN (0, 1), (CASE i %% 25 WHEN 0 THEN 'unack' WHEN 1 THEN 'ack' WHEN 2 THEN 'rtn_unack'
                                    ELSE 'normal' END), i %% 25 IN (0, 1),
               now() - make_interval(mins => i %% 1440), now() - make_interval(mins => i %% 600),
               CASE WHEN i %% 25 = 1 THEN now() END, CASE WHEN i %% 25 = 1 THEN 'bench-duty' END,
               80 + i %% 40, '超过上限 above limit'
        FROM bench_ak WHERE %(all)s""", {"all": True})
    keys = int((conn.execute("SELECT count(*) FROM bench_ak").fetchone() or (0,))[0])
    conn.execute("SET session_replication_role = replica")  # no pg_notify per seeded row
    conn.execute("""INSERT INTO alarm_events (time, rule_id, subject, point_id, gateway_id, plant_id, event, from_state,
                        to_state, actor, value, severity, catalog_version)
        SELECT now() - make_interval(secs => (k::bigint * 15552000 / %(n)s)::double precision),
               b.rule_id, b.subject, b.point_id, b.gateway_id, b.plant_id,
               (ARRAY['activate','clear','ack'])[1 + k %% 3], (ARRAY['normal','unack','rtn_unack'])[1 + k %% 3],
               (ARRAY['unack','rtn_unack','normal'])[1 + k %% 3],
               CASE WHEN k %% 3 = 2 THEN 'bench-duty' ELSE 'system' END,
               80 + k %% 40, b.severity, 'bench'
        FROM generate_series(1, %(n)s) k JOIN bench_ak b ON b.i = k %% %(keys)s""",
                 {"n": s.alarm_events, "keys": keys})
    conn.execute("SET session_replication_role = DEFAULT")


def _telemetry_and_problems(conn: psycopg.Connection, s: Scale) -> None:
    """Recent readings of every point, dead letters and unmapped tags of every gateway, notifications."""
    conn.execute("""INSERT INTO readings (time, point_id, value, quality)
                    SELECT date_trunc('second', now()) - make_interval(secs => 60 * r), p.id, 50 + (p.id %% 30), 0
                    FROM points p, generate_series(0, %s - 1) r""", (s.readings_per_point,))
    conn.execute("""INSERT INTO dead_letters (received_at, gateway_id, topic, reason, detail, payload)
                    SELECT now() - make_interval(secs => k * 30), g.id, format('rw/v1/%%s/telemetry', g.id),
                           (ARRAY['invalid_json','timestamp_out_of_range','bad_value','schema'])[1 + k %% 4],
                           '基准测试', '\\x7b7d'::bytea
                    FROM generate_series(1, %s) k
                    JOIN (SELECT id, (row_number() OVER (ORDER BY id) - 1)::int AS i FROM gateways) g
                      ON g.i = k %% (SELECT count(*) FROM gateways)""", (s.dead_letters,))
    conn.execute("""INSERT INTO unmapped_points (gateway_id, tag, first_seen, last_seen, count, last_value)
                    SELECT g.id, format('UNMAPPED-%%s', k), now() - interval '1 day', now(), k, 1.5
                    FROM generate_series(1, %s) k
                    JOIN (SELECT id, (row_number() OVER (ORDER BY id) - 1)::int AS i FROM gateways) g
                      ON g.i = k %% (SELECT count(*) FROM gateways)""", (s.unmapped,))
    conn.execute("""INSERT INTO alert_groups (route, receiver, group_key, enterprise_id, group_wait, group_interval,
                        repeat_interval, created_at)
                    SELECT 'root', 'bench', eid, eid, 10, 300, 3600, now() FROM bench_ents""")
    conn.execute("""INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel,
                        enterprise_id, items, message, status, attempts, next_attempt_at, last_error, created_at,
                        sent_at)
                    SELECT format('bench-%%s', k), g.id, k, 'firing', '基准测试', 'bench', 'webhook', g.enterprise_id,
                           '[]', '{"title": "基准通知"}', CASE WHEN k %% 10 = 0 THEN 'dead' ELSE 'sent' END,
                           CASE WHEN k %% 10 = 0 THEN 8 ELSE 1 END, now() - make_interval(secs => k * 60),
                           CASE WHEN k %% 10 = 0 THEN 'HTTP 502 from receiver' END,
                           now() - make_interval(secs => k * 60),
                           CASE WHEN k %% 10 <> 0 THEN now() - make_interval(secs => k * 60) END
                    FROM generate_series(1, %s) k
                    JOIN (SELECT id, enterprise_id, (row_number() OVER (ORDER BY id) - 1)::int AS i FROM alert_groups) g
                      ON g.i = k %% (SELECT count(*) FROM alert_groups)""", (s.notifications,))


def seed(db_url: str, s: Scale, site: Path, progress: Callable[[str], None]) -> dict[str, float]:
    """Fill a migrated database; return the row counts and seconds per step."""
    from rules.model import load_catalog

    rules = sorted(load_catalog(None).rules)[:20]
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(site))
        _scale_registry(conn, s)
        ents = _enterprise_table(conn)
        conn.commit()
        out["seed_registry_s"] = time.perf_counter() - t0
        progress(f"console: registry seeded in {out['seed_registry_s']:.1f} s; hazards")
        t = time.perf_counter()
        _hazards(conn, s, ents, rules)
        conn.commit()
        out["seed_hazards_s"] = time.perf_counter() - t
        progress(f"console: hazards seeded in {out['seed_hazards_s']:.1f} s; {s.alarm_events:,} alarm events")
        t = time.perf_counter()
        _alarms(conn, s, rules)
        conn.commit()
        out["seed_alarms_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _telemetry_and_problems(conn, s)
        conn.commit()
        out["seed_other_s"] = time.perf_counter() - t
        for u, (role, bureau) in USERS.items():
            ent = None if bureau else _SAMPLE_ENTERPRISE
            accounts.create_user(conn, u, PASSWORD, role, enterprise_id=ent, display_name=u)
        conn.commit()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by the time anyone looks
        for tbl in ("points", "hazards", "hazard_events", "alarms", "alarm_events", "readings", "dead_letters"):
            row = conn.execute(f"SELECT count(*) FROM {tbl}").fetchone()  # noqa: S608 - fixed names
            out[f"rows_{tbl}"] = float(row[0]) if row else 0.0
    out["seed_s"] = time.perf_counter() - t0
    return out


# --- the server and the crawl ------------------------------------------------------------------


class Served:
    """`riskwatch serve` without the collector and the dispatcher, on a database of the bench's."""

    def __init__(self, db_url: str, workdir: Path, env: dict[str, str]):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "console-serve.log"
        self.env = {**os.environ, **env, "RISKWATCH_DB_URL": db_url,
                    "RISKWATCH_DATA_DIR": str(workdir / "console-data")}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        exe = Path(sys.executable).parent / "riskwatch"
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen([str(exe), "serve", "--port", str(self.port), "--no-collector",
                                          "--no-alerting", "--hazard-tick", "3600"], env=self.env, stdout=f,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + PREFIX + "/login", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("serve did not start:\n" + self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def login(client: httpx.Client, username: str, password: str = PASSWORD) -> None:
    """The login form as a browser submits it (the double-submitted login token)."""
    r = client.get(PREFIX + "/login")
    m = re.search(r'name="csrf" value="([^"]+)"', r.text)
    if m is None:
        raise RuntimeError("no login token on the login page")
    r = client.post(PREFIX + "/login", data={"csrf": m.group(1), "username": username, "password": password})
    if r.status_code != 303:
        raise RuntimeError(f"login of {username} answered {r.status_code}")


def crawl(get: Callable[[str], tuple[int, str, str]], start: str = PREFIX + "/", *, samples: int = 2,
          limit: int = 400) -> dict[str, list[tuple[str, int]]]:
    """Breadth-first over the console from `start`: page key -> [(url, status)], at most `samples` URLs per
    page. `get(url)` answers (status, content type, body); only HTML bodies are searched for links."""
    pages: dict[str, list[tuple[str, int]]] = {}
    seen: set[str] = set()
    todo = [start]
    while todo and len(seen) < limit:
        url = todo.pop(0)
        key = page_key(url)
        if url in seen or len(pages.get(key, [])) >= samples:
            continue
        seen.add(url)
        status, ctype, body = get(url)
        pages.setdefault(key, []).append((url, status))
        if ctype.startswith("text/html"):
            todo.extend(u for u in extract_links(body, urlsplit(url).path) if u not in seen)
    return pages


def _server_ms(r: httpx.Response) -> float:
    m = re.search(r"app;dur=([\d.]+)", r.headers.get("server-timing", ""))
    return float(m.group(1)) if m else float("nan")


def measure(base: str, username: str, repeat: int, samples: int) -> list[PageTimes]:
    """Log in, crawl, then request every page's URLs `repeat` times (after one warm-up each)."""
    out: list[PageTimes] = []
    with httpx.Client(base_url=base, timeout=60, follow_redirects=False) as c:
        login(c, username)

        kinds: dict[str, str] = {}

        def get(url: str) -> tuple[int, str, str]:
            try:
                r = c.get(url)
            except httpx.HTTPError:  # a dropped connection: the page failed, the crawl goes on
                return 599, "", ""
            ctype = r.headers.get("content-type", "")
            kinds.setdefault(page_key(url), "page" if ctype.startswith("text/html") or r.status_code >= 400
                             else "file")
            return r.status_code, ctype, r.text if ctype.startswith("text/") else ""

        for key, found in crawl(get, samples=samples).items():
            pt = PageTimes(username, key, kinds.get(key, "page"), [u for u, _ in found])
            for url, _ in found:
                if pt.kind == "page":
                    get(url)  # warm-up: template compiled, plan cached
                for _ in range(repeat if pt.kind == "page" else 1):  # a download (not held to the target): once
                    t = time.perf_counter()
                    try:
                        r = c.get(url)
                        _ = r.content
                        status, server = r.status_code, _server_ms(r)
                    except httpx.HTTPError:
                        status, server = 599, float("nan")
                    pt.client_ms.append((time.perf_counter() - t) * 1000)
                    pt.server_ms.append(server)
                    pt.status.append(status)
            out.append(pt)
    return out


# --- the part ----------------------------------------------------------------------------------


def _scratch(db_url: str) -> tuple[str, str]:
    base, _, _ = db_url.rpartition("/")
    name = f"rw_bench_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{base}/{name}"


def run(db_url: str, workdir: Path, quick: bool, progress: Callable[[str], None], *, env: dict[str, str],
        points: int | None = None, repeat: int | None = None, site: Path | None = None) -> dict[str, Any]:
    """Seed a scratch database next to `db_url`'s, serve it, crawl and time every page; drop the database.

    `env`: what `serve` needs besides the database (the broker's URLs: it checks the broker even without
    the collector)."""
    from simulators.run import default_site_path

    full = Scale()
    s = Scale(points=points or (10_000 if quick else full.points), hazards=2_000 if quick else full.hazards,
              alarm_events=100_000 if quick else full.alarm_events, enterprises=40 if quick else full.enterprises,
              alarm_keys=4_000 if quick else full.alarm_keys)
    n = repeat or (5 if quick else 20)
    name, url = _scratch(db_url)
    try:
        migrate(url)
        progress(f"console: seeding {s.points:,} points, {s.hazards:,} hazards, {s.alarm_events:,} alarm events")
        out: dict[str, Any] = dict(seed(url, s, site or default_site_path(), progress))
        progress(f"console: seeded in {out['seed_s']:.1f} s; serving and crawling ({n} requests per page)")
        pages: list[dict[str, Any]] = []
        with Served(url, workdir, env) as srv:
            for user in USERS:
                times = measure(srv.base, user, n, samples=1 if quick else 2)
                pages += [t.summary() for t in times]
                progress(f"console: {user}: {len(times)} pages measured")
        out["pages"] = pages
        out["repeat"] = n
        out["scale"] = asdict(s)
        held = [p for p in pages if p["kind"] == "page"]
        if held:
            worst = worst_page(held)
            out["worst_page"] = f"{worst['page']} ({worst['user']})"
            out["worst_p95_ms"] = worst["server_p95_ms"]
            out["pass"] = all(p["pass"] for p in held)
        return out
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["PageTimes", "Scale", "crawl", "extract_links", "login", "measure", "page_key", "run", "seed", "table",
           "worst_page"]
