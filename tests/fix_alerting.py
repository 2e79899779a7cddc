"""Shared set-up of the alerting tests: a site in the database, alarms raised and cleared through the
same functions the rule engine uses (so the outbox rows are the real ones), and routing files."""

from __future__ import annotations

from pathlib import Path

import psycopg

from core import registry
from rules import lifecycle
from rules import store as rstore
from tests.conftest import FIXTURES

RULE = "bm.coal.co:hi"  # a shipped catalog rule (with the limit it tripped): notices carry its Chinese title


def load_site(db_url: str) -> dict[str, int]:
    """The mini site; tag -> point id."""
    with psycopg.connect(db_url) as conn:
        registry.upsert_site(conn, registry.parse_site(FIXTURES / "mini_site.yaml"))
        return {r[0]: r[1] for r in conn.execute("SELECT tag, id FROM points")}


def _transition(conn: psycopg.Connection, rule_id: str, point_id: int, plant: str, t: float, value: float | None,
                kind: str, severity: str) -> list[lifecycle.Event]:
    key = (rule_id, f"p:{point_id}")
    with conn.transaction():
        conn.execute("""INSERT INTO alarms (rule_id, subject, point_id, plant_id, catalog_version, severity)
                        VALUES (%s, %s, %s, %s, 'test@1', %s) ON CONFLICT DO NOTHING""",
                     (key[0], key[1], point_id, plant, severity))
        a = rstore.lock_alarms(conn, [key])[key]
        if kind == "activate":
            a, events = lifecycle.activate(a, t, f"CO {value} ppm > 24 ppm")
        else:
            a, events = lifecycle.clear(a, t, "back below the limit")
        rstore.write_alarm(conn, key, a, value)
        meta = rstore.AlarmMeta(point_id, None, plant, severity, "test@1")
        rstore.insert_events(conn, [(key, meta, e, value) for e in events])
    return events


def raise_alarm(conn: psycopg.Connection, point_id: int, t: float, *, rule_id: str = RULE, plant: str = "plant-a",
                value: float = 35.0, severity: str = "urgent") -> list[lifecycle.Event]:
    return _transition(conn, rule_id, point_id, plant, t, value, "activate", severity)


def clear_alarm(conn: psycopg.Connection, point_id: int, t: float, *, rule_id: str = RULE,
                plant: str = "plant-a") -> list[lifecycle.Event]:
    return _transition(conn, rule_id, point_id, plant, t, None, "clear", "urgent")


def routing_file(tmp_path: Path, *, smtp_port: int, webhook_url: str, secret: str = "webhook-secret",
                 group_wait: str = "0s", group_interval: str = "1m", repeat_interval: str = "10m",
                 escalation: str = "", max_attempts: int = 8, backoff_initial: str = "1s",
                 backoff_max: str = "30s", extra_routes: str = "") -> Path:
    """Bureau duty (e-mail by roster + signed webhook), the enterprise's leaders for confirmed hazards."""
    text = f"""
version: 1
timezone: Asia/Shanghai
defaults:
  group_by: [enterprise, plant]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: {repeat_interval}
delivery:
  max_attempts: {max_attempts}
  backoff_initial: {backoff_initial}
  backoff_max: {backoff_max}
  ack_link_ttl: 24h
channels:
  email: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, sender: "县工信局风险预警 <riskwatch@example.gov.cn>"}}
  hook: {{type: webhook, url: "{webhook_url}", secret: "{secret}"}}
people:
  duty: {{name: 值班员张伟, email: duty@example.gov.cn, phone: "13900000001"}}
  chief: {{name: 安全科陈科长, email: chief@example.gov.cn}}
  leader: {{name: 分管局领导王局, email: leader@example.gov.cn}}
rosters:
  bureau-duty:
    shifts:
      - {{days: [mon, tue, wed, thu, fri, sat, sun], from: "00:00", to: "00:00", people: [duty]}}
receivers:
  bureau-duty: {{to: [{{roster: bureau-duty}}], via: [email, hook]}}
  chief: {{to: [{{person: chief}}], via: [email]}}
  leader: {{to: [{{person: leader}}], via: [email]}}
  enterprise-leaders: {{to: [{{enterprise: principal}}, {{enterprise: controller}}], via: [email]}}
routes:
  receiver: bureau-duty
{escalation}
  routes:
    - match: {{kind: hazard, event: [confirmed, supervised]}}
      receiver: [bureau-duty, enterprise-leaders]
{extra_routes}
"""
    path = tmp_path / "alerting.yaml"
    path.write_text(text, encoding="utf-8")
    return path
