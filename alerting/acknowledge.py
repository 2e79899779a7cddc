"""Acknowledging from a notification: what the link's page shows, and what following it does.

Following a link acknowledges every alarm the notification announced that is
still unacknowledged, marks the notification's hazard notices as received,
and stops their reminders and escalation. It is idempotent: a second visit
says what was already done.

Acknowledging the alarm itself is the rule stage's business (its ISA-18.2
history records who and how): the caller passes it in as `ack_alarm`, which
the HTTP face wires to `rules.actions.acknowledge_from_link`. Alerting never
imports `rules`; this module only resolves the link and its notification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from alerting import ack, store
from core.clock import secs
from core.errors import RiskwatchError
from core.keys import AlarmKey, alarm_key_of

VIA_LINK = "通过通知链接确认 acknowledged from the notification"


class UnknownNotification(RiskwatchError):
    pass


#: Acknowledge one alarm in the caller's transaction: (conn, alarm, actor, comment, now) -> whether it was
#: acknowledged now (False: already acknowledged, or gone).
AckAlarm = Callable[[psycopg.Connection, AlarmKey, str, str, float], bool]


@dataclass(frozen=True)
class AckView:
    notification_id: int
    subject: str
    contact: str
    items: list[tuple[str, str]]        # (item, state: unack | ack | normal | rtn_unack | received | pending)
    acked_at: float | None
    acked_by: str | None


def _who(n: store.NotificationRecord) -> str:
    return n.contact_id or f"{n.receiver}/{n.channel}"


def view(conn: psycopg.Connection, secret: bytes, token: str, now: float) -> AckView:
    claims = ack.verify(secret, token, now)
    n = store.by_key(conn, claims.key)
    if n is None:
        raise UnknownNotification("通知不存在 the notification no longer exists")
    states = store.item_states(conn, n.items)
    return AckView(n.id, n.subject, _who(n), [(i, states.get(i, "received" if n.acked_at else "pending"))
                                               for i in n.items],
                   secs(n.acked_at), n.acked_by)


@dataclass(frozen=True)
class Acknowledged:
    """What one use of a link did, for the audit log: who (the recipient), which notification, which alarms."""

    notification_id: int
    recipient: str
    actor: str
    alarms: list[str]        # alarm items acknowledged by this visit
    items: list[str]         # every item the notification announced


def acknowledge(conn: psycopg.Connection, secret: bytes, token: str, now: float, actor_name: str | None = None,
                record: Callable[[psycopg.Connection, Acknowledged], None] | None = None, *,
                ack_alarm: AckAlarm) -> tuple[AckView, int]:
    """Acknowledge what the link's notification announced; (the page after it, alarms acknowledged now).

    `record` is called in the same transaction (the audit row): an acknowledgement without its trace
    cannot commit.
    """
    claims = ack.verify(secret, token, now)
    done: list[str] = []
    with conn.transaction():
        n = store.by_key(conn, claims.key, lock=True)
        if n is None:
            raise UnknownNotification("通知不存在 the notification no longer exists")
        actor = actor_name or f"{_who(n)}（通知链接 via link）"
        for item in n.items:
            key = alarm_key_of(item)
            if key is not None and ack_alarm(conn, key, actor, VIA_LINK, now):
                done.append(item)
        store.touch_groups(conn, store.ack_items(conn, n.items, actor, now), now)
        store.mark_acked(conn, n.id, actor, now)
        if record is not None:
            record(conn, Acknowledged(n.id, _who(n), actor, done, list(n.items)))
    return view(conn, secret, token, now), len(done)
