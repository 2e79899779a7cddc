"""SQL of the dispatcher and of the notification API. No decisions here (see `pipeline`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerting.channels.base import Contact, Message
from alerting.model import Group, Member, Step
from core.clock import secs, ts
from core.keys import AlarmItem, AlarmKey, alarm_key_of
from core.redact import redact_text

_ROUTER_LOCK = 0x414C5254  # "ALRT": one router at a time keeps each alarm's events in order


# --- outbox -> groups -------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxRow:
    id: int
    kind: str
    event: str
    event_time: float
    rule_id: str | None
    subject: str | None
    plant_id: str | None
    severity: str | None
    hazard_id: int | None
    value: float | None
    actor: str | None
    reason: str | None
    disposal_id: int | None = None


def router_lock(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_ROUTER_LOCK,)).fetchone()
    return bool(row and row[0])


def claim_outbox(conn: psycopg.Connection, limit: int = 500) -> list[OutboxRow]:
    rows = conn.execute(
        """SELECT id, kind, event, event_time, rule_id, subject, plant_id, severity, hazard_id, value, actor, reason,
                  disposal_id FROM outbox WHERE routed_at IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
        (limit,)).fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3].timestamp(), *r[4:]) for r in rows]


def mark_routed(conn: psycopg.Connection, ids: Sequence[int], now: float) -> None:
    conn.execute("UPDATE outbox SET routed_at = %s WHERE id = ANY(%s)", (ts(now), list(ids)))


@dataclass(frozen=True)
class PlantInfo:
    industry: str
    enterprise_id: str


def plants(conn: psycopg.Connection, ids: Sequence[str]) -> dict[str, PlantInfo]:
    return {r[0]: PlantInfo(r[1], r[2]) for r in conn.execute(
        "SELECT id, industry, enterprise_id FROM plants WHERE id = ANY(%s)", (list(set(ids)),))}


@dataclass(frozen=True)
class HazardInfo:
    enterprise_id: str
    plant_id: str | None
    industry: str | None
    source: str
    status: str
    rule_id: str | None
    subject: str | None


def hazards(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, HazardInfo]:
    return {r[0]: HazardInfo(*r[1:]) for r in conn.execute(
        """SELECT h.id, h.enterprise_id, h.plant_id, p.industry, h.source, h.status, h.rule_id, h.subject
           FROM hazards h LEFT JOIN plants p ON p.id = h.plant_id WHERE h.id = ANY(%s)""", (list(set(ids)),))}


@dataclass(frozen=True)
class MemberRow:
    """A member with what the notices say about it."""

    m: Member
    kind: str
    rule_id: str | None
    subject: str | None
    hazard_id: int | None
    plant_id: str | None
    enterprise_id: str | None
    severity: str | None
    event: str
    value: float | None
    reason: str | None


_GROUP_COLS = ("id, receiver, group_wait, group_interval, repeat_interval, escalation, created_at, last_notified_at,"
               " seq")


def _group(r: tuple[Any, ...]) -> Group:
    return Group(r[0], r[1], r[2], r[3], r[4], tuple(Step(float(a), str(b)) for a, b in r[5]), r[6].timestamp(),
                 secs(r[7]), r[8])


def lock_group(conn: psycopg.Connection, route: str, receiver: str, key: str, *, group_wait: float,
               group_interval: float, repeat_interval: float, escalation: Sequence[Step],
               enterprise_id: str | None, now: float) -> Group:
    """The group (created on first use), locked for this transaction."""
    conn.execute(
        """INSERT INTO alert_groups (route, receiver, group_key, enterprise_id, group_wait, group_interval,
               repeat_interval, escalation, created_at)
           VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (route, receiver, group_key) DO NOTHING""",
        (route, receiver, key, enterprise_id, group_wait, group_interval, repeat_interval,
         Jsonb([[s.after, s.receiver] for s in escalation]), ts(now)))
    r = conn.execute(f"SELECT {_GROUP_COLS} FROM alert_groups WHERE route = %s AND receiver = %s AND group_key = %s"
                     " FOR UPDATE", (route, receiver, key)).fetchone()
    assert r is not None
    return _group(r)


def due_groups(conn: psycopg.Connection, now: float, limit: int = 100) -> list[Group]:
    rows = conn.execute(f"SELECT {_GROUP_COLS} FROM alert_groups WHERE flush_at <= %s ORDER BY flush_at LIMIT %s"
                        " FOR UPDATE SKIP LOCKED", (ts(now), limit)).fetchall()
    return [_group(r) for r in rows]


def save_group(conn: psycopg.Connection, g: Group, flush_at: float | None) -> None:
    conn.execute("UPDATE alert_groups SET last_notified_at = %s, seq = %s, flush_at = %s WHERE id = %s",
                 (ts(g.last_notified_at), g.seq, ts(flush_at), g.id))


_MEMBER_COLS = ("item, status, since, pending_at, notified_at, escalated, resolved_at, resolved_notified, acked_at,"
                " acked_by, needs_ack, kind, rule_id, subject, hazard_id, plant_id, enterprise_id, severity, event,"
                " value, reason")


def _member(r: tuple[Any, ...]) -> MemberRow:
    m = Member(r[0], r[1], r[2].timestamp(), r[3].timestamp(), secs(r[4]), r[5], secs(r[6]), r[7], secs(r[8]), r[9],
               r[10])
    return MemberRow(m, *r[11:])


def members(conn: psycopg.Connection, group_id: int) -> dict[str, MemberRow]:
    return {r[0]: _member(r) for r in conn.execute(
        f"SELECT {_MEMBER_COLS} FROM alert_members WHERE group_id = %s", (group_id,))}


def save_members(conn: psycopg.Connection, group_id: int, rows: Sequence[MemberRow], now: float) -> None:
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO alert_members (group_id, {_MEMBER_COLS}, updated_at)
                VALUES (%s, {', '.join(['%s'] * 21)}, %s)
                ON CONFLICT (group_id, item) DO UPDATE SET status = EXCLUDED.status, since = EXCLUDED.since,
                    pending_at = EXCLUDED.pending_at, notified_at = EXCLUDED.notified_at,
                    escalated = EXCLUDED.escalated, resolved_at = EXCLUDED.resolved_at,
                    resolved_notified = EXCLUDED.resolved_notified, acked_at = EXCLUDED.acked_at,
                    acked_by = EXCLUDED.acked_by, needs_ack = EXCLUDED.needs_ack, severity = EXCLUDED.severity,
                    event = EXCLUDED.event, value = EXCLUDED.value, reason = EXCLUDED.reason,
                    updated_at = EXCLUDED.updated_at""",
            [(group_id, x.m.item, x.m.status, ts(x.m.since), ts(x.m.pending_at), ts(x.m.notified_at), x.m.escalated,
              ts(x.m.resolved_at), x.m.resolved_notified, ts(x.m.acked_at), x.m.acked_by, x.m.needs_ack, x.kind,
              x.rule_id, x.subject, x.hazard_id, x.plant_id, x.enterprise_id, x.severity, x.event, x.value,
              x.reason, ts(now)) for x in rows])


def firing_of_hazard(conn: psycopg.Connection, hazard_id: int) -> list[tuple[int, str]]:
    """(group, item) of a ticket's earlier notices still waiting for acknowledgement."""
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT group_id, item FROM alert_members WHERE hazard_id = %s AND status = 'firing' AND needs_ack",
        (hazard_id,))]


def ack_items(conn: psycopg.Connection, items: Sequence[str], actor: str, now: float) -> list[int]:
    """Mark firing members acknowledged in every group; the groups touched."""
    rows = conn.execute(
        """UPDATE alert_members SET status = 'acked', acked_at = %s, acked_by = %s, updated_at = %s
           WHERE item = ANY(%s) AND status = 'firing' RETURNING group_id""",
        (ts(now), actor, ts(now), list(items))).fetchall()
    return sorted({r[0] for r in rows})


def touch_groups(conn: psycopg.Connection, ids: Sequence[int], now: float) -> None:
    """Make groups due now, so the stages re-plan them (e.g. drop reminders after an acknowledgement)."""
    if ids:
        conn.execute("UPDATE alert_groups SET flush_at = %s WHERE id = ANY(%s) AND flush_at IS NOT NULL",
                     (ts(now), list(ids)))


# --- notifications ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewNotification:
    key: str
    group_id: int
    seq: int
    kind: str
    reason: str
    receiver: str
    channel: str
    contact_id: str | None
    address: str | None
    enterprise_id: str | None
    items: Sequence[str]
    contacts: Sequence[Contact]
    message: Message
    status: str = "pending"
    last_error: str | None = None


def _contact_json(c: Contact) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "email": c.email, "phone": c.phone}


def _message_json(m: Message) -> dict[str, Any]:
    return {"idempotency_key": m.idempotency_key, "subject": m.subject, "text": m.text, "html": m.html,
            "markdown": m.markdown, "short": m.short, "ack_url": m.ack_url, "data": m.data}


def insert_notifications(conn: psycopg.Connection, ns: Sequence[NewNotification], now: float) -> None:
    if not ns:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO notifications (idempotency_key, group_id, seq, kind, reason, receiver, channel, contact_id,
                   address, enterprise_id, items, contacts, message, status, last_error, next_attempt_at, created_at)
               VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
               ON CONFLICT (idempotency_key) DO NOTHING""",
            [(n.key, n.group_id, n.seq, n.kind, n.reason, n.receiver, n.channel, n.contact_id, n.address,
              n.enterprise_id, Jsonb(list(n.items)), Jsonb([_contact_json(c) for c in n.contacts]),
              Jsonb(_message_json(n.message)), n.status, None if n.last_error is None else redact_text(n.last_error),
              ts(now), ts(now)) for n in ns])
        cur.execute("SELECT pg_notify('riskwatch_notification', '')")


@dataclass(frozen=True)
class Due:
    id: int
    key: str
    channel: str
    attempts: int
    contacts: list[Contact]
    message: Message


def claim_due(conn: psycopg.Connection, now: float) -> Due | None:
    """The next notification due, locked for this transaction (others skip it)."""
    r = conn.execute(
        """SELECT id, idempotency_key, channel, attempts, contacts, message FROM notifications
           WHERE status = 'pending' AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT 1
           FOR UPDATE SKIP LOCKED""", (ts(now),)).fetchone()
    if r is None:
        return None
    msg = r[5]
    return Due(r[0], r[1], r[2], r[3], [Contact(**c) for c in r[4]],
               Message(msg["idempotency_key"], msg["subject"], msg["text"], msg["html"], msg["markdown"],
                       msg["short"], msg["ack_url"], msg["data"]))


def record_attempt(conn: psycopg.Connection, n: Due, *, ok: bool, transient: bool | None, detail: str,
                   started: float, finished: float, status: str, next_attempt_at: float | None) -> None:
    attempt = n.attempts + 1
    detail = redact_text(detail)  # channels redact at the source; this is the last line before storage
    conn.execute("""INSERT INTO deliveries (notification_id, attempt, started_at, finished_at, ok, transient, detail)
                    VALUES (%s,%s,%s,%s,%s,%s,%s)""",
                 (n.id, attempt, ts(started), ts(finished), ok, transient, detail[:2000]))
    conn.execute(
        """UPDATE notifications SET attempts = %s, status = %s, sent_at = CASE WHEN %s THEN %s ELSE sent_at END,
               last_error = CASE WHEN %s THEN last_error ELSE %s END,
               next_attempt_at = coalesce(%s, next_attempt_at) WHERE id = %s""",
        (attempt, status, ok, ts(finished), ok, detail[:2000], ts(next_attempt_at), n.id))


def next_attempt(conn: psycopg.Connection) -> float | None:
    r = conn.execute("SELECT min(next_attempt_at) FROM notifications WHERE status = 'pending'").fetchone()
    return secs(r[0]) if r else None


def next_flush(conn: psycopg.Connection) -> float | None:
    r = conn.execute("SELECT min(flush_at) FROM alert_groups WHERE flush_at IS NOT NULL").fetchone()
    return secs(r[0]) if r else None


# --- looking up what notices say ----------------------------------------------------------------


def point_labels(conn: psycopg.Connection, point_ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
    """point id -> (tag, name, unit)."""
    return {r[0]: (r[1], r[2] or "", r[3] or "") for r in conn.execute(
        "SELECT id, tag, name, unit FROM points WHERE id = ANY(%s)", (list(set(point_ids)),))}


def names(conn: psycopg.Connection, plant_ids: Sequence[str], enterprise_ids: Sequence[str]
          ) -> tuple[dict[str, str], dict[str, str]]:
    p = {r[0]: r[1] for r in conn.execute("SELECT id, name FROM plants WHERE id = ANY(%s)", (list(set(plant_ids)),))}
    e = {r[0]: r[1] for r in conn.execute("SELECT id, name FROM enterprises WHERE id = ANY(%s)",
                                          (list(set(enterprise_ids)),))}
    return p, e


def hazard_titles(conn: psycopg.Connection, ids: Sequence[int]) -> dict[int, tuple[str, str | None, str | None]]:
    """ticket id -> (title, basis, location)."""
    return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT id, title, basis, location FROM hazards WHERE id = ANY(%s)", (list(set(ids)),))}


def enterprise_contacts(conn: psycopg.Connection, enterprise_id: str) -> tuple[str, tuple[str | None, ...]] | None:
    """(name, (principal name, phone, email, controller name, phone, email))."""
    r = conn.execute("""SELECT name, principal_name, principal_phone, principal_email, controller_name,
                               controller_phone, controller_email FROM enterprises WHERE id = %s""",
                     (enterprise_id,)).fetchone()
    return None if r is None else (r[0], tuple(r[1:]))


# --- the API's view -----------------------------------------------------------------------------


@dataclass
class NotificationRecord:
    id: int
    idempotency_key: str
    group_id: int
    kind: str
    reason: str
    receiver: str
    channel: str
    contact_id: str | None
    address: str | None
    enterprise_id: str | None
    items: list[str]
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    acked_by: str | None


_NOTE_COLS = ("id, idempotency_key, group_id, kind, reason, receiver, channel, contact_id, address, enterprise_id,"
              " items, message->>'subject', status, attempts, next_attempt_at, last_error, created_at, sent_at,"
              " acked_at, acked_by")


#: An enterprise sees only what was sent to its own people (contact ids `enterprise:<id>:<role>`, see
#: alerting.route): never the bureau's duty officers, chiefs or leaders, nor the systems and robots.
_SCOPE = ("(%(scope)s::text IS NULL OR (enterprise_id = %(scope)s"
          " AND starts_with(contact_id, 'enterprise:' || %(scope)s || ':')))")


def list_notifications(conn: psycopg.Connection, *, scope: str | None, status: str | None = None,
                       item: str | None = None, limit: int = 100, before_id: int | None = None
                       ) -> list[NotificationRecord]:
    rows = conn.execute(
        f"""SELECT {_NOTE_COLS} FROM notifications
            WHERE {_SCOPE}
              AND (%(status)s::text IS NULL OR status = %(status)s)
              AND (%(item)s::text IS NULL OR items ? %(item)s)
              AND (%(before)s::bigint IS NULL OR id < %(before)s)
            ORDER BY id DESC LIMIT %(limit)s""",
        {"scope": scope, "status": status, "item": item, "before": before_id, "limit": limit}).fetchall()
    return [NotificationRecord(*r) for r in rows]


def get_notification(conn: psycopg.Connection, nid: int, scope: str | None) -> NotificationRecord | None:
    r = conn.execute(f"SELECT {_NOTE_COLS} FROM notifications WHERE id = %(id)s AND {_SCOPE}",
                     {"id": nid, "scope": scope}).fetchone()
    return None if r is None else NotificationRecord(*r)


def by_key(conn: psycopg.Connection, key: str, *, lock: bool = False) -> NotificationRecord | None:
    r = conn.execute(f"SELECT {_NOTE_COLS} FROM notifications WHERE idempotency_key = %s"
                     + (" FOR UPDATE" if lock else ""), (key,)).fetchone()
    return None if r is None else NotificationRecord(*r)


@dataclass
class DeliveryRecord:
    attempt: int
    started_at: datetime
    finished_at: datetime
    ok: bool
    transient: bool | None
    detail: str


def deliveries(conn: psycopg.Connection, nid: int) -> list[DeliveryRecord]:
    return [DeliveryRecord(*r) for r in conn.execute(
        "SELECT attempt, started_at, finished_at, ok, transient, detail FROM deliveries WHERE notification_id = %s"
        " ORDER BY attempt", (nid,))]


def mark_acked(conn: psycopg.Connection, nid: int, actor: str, now: float) -> None:
    conn.execute("UPDATE notifications SET acked_at = coalesce(acked_at, %s), acked_by = coalesce(acked_by, %s)"
                 " WHERE id = %s", (ts(now), actor, nid))


def retry(conn: psycopg.Connection, nid: int, now: float) -> bool:
    """Put a dead notification back in the queue (an operator fixed the channel)."""
    r = conn.execute("UPDATE notifications SET status = 'pending', next_attempt_at = %s WHERE id = %s"
                     " AND status = 'dead' RETURNING id", (ts(now), nid)).fetchone()
    if r:
        conn.execute("SELECT pg_notify('riskwatch_notification', '')")
    return r is not None


def item_states(conn: psycopg.Connection, items: Sequence[str]) -> dict[str, str]:
    """Alarm items' current ISA-18.2 state (alarm:<rule>|<subject>)."""
    keys = [k for k in map(alarm_key_of, items) if k is not None]
    if not keys:
        return {}
    return {AlarmItem(AlarmKey(r[0], r[1])).format(): r[2] for r in conn.execute(
        "SELECT rule_id, subject, state FROM alarms WHERE (rule_id, subject) IN"
        " (SELECT * FROM unnest(%s::text[], %s::text[]))", ([k[0] for k in keys], [k[1] for k in keys]))}


def dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False)
