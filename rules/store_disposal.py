"""SQL of the warning-disposal loop: table alarm_disposals (migration 0016), its timeline events in
alarm_events, and its escalation steps in the outbox (kind 'disposal').

Opening a disposal happens in the transaction of the activation that needs it (rules.engine._persist);
escalation steps in the engine's tick transaction; feedback in its own. Each writes the alarm_events row
that puts it on the alarm's timeline with its actor ("system" for escalations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from core import outbox
from core.clock import secs, ts
from core.errors import RiskwatchError
from core.keys import AlarmKey
from rules import disposal, lifecycle, store

__all__ = ["AlreadyAnswered", "DisposalNotFound", "DisposalRecord", "NewDisposal", "due", "feedback", "get",
           "list_disposals", "open_disposals", "outcomes", "record_steps"]


class DisposalNotFound(RiskwatchError, LookupError):
    pass


class AlreadyAnswered(RiskwatchError):
    """Feedback was given already; a disposal is answered once (a correction is a new comment elsewhere)."""


@dataclass(frozen=True)
class NewDisposal:
    key: AlarmKey
    plant_id: str
    enterprise_id: str
    severity: str
    activated_at: float


def open_disposals(conn: psycopg.Connection, policy: disposal.Policy, items: Sequence[NewDisposal]) -> None:
    """One disposal per activation (a redelivered batch re-activating nothing adds nothing: the unique key)."""
    rows = []
    for d in items:
        due_at = disposal.due_at(policy, d.severity, d.activated_at)
        rows.append((d.key.rule_id, d.key.subject, ts(d.activated_at), d.plant_id, d.enterprise_id, d.severity,
                     ts(due_at), ts(due_at + policy.ladder[0][1])))
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO alarm_disposals (rule_id, subject, activated_at, plant_id, enterprise_id, severity, due_at,
                   next_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (rule_id, subject, activated_at) DO NOTHING""",
            rows)


@dataclass(frozen=True)
class Due:
    d: disposal.Disposal
    key: AlarmKey
    plant_id: str


def due(conn: psycopg.Connection, now: float, limit: int = 500) -> list[Due]:
    """Unanswered disposals whose next tier is due, locked for this tick (SKIP LOCKED: a feedback being
    written at this instant wins, and is seen by the next tick)."""
    rows = conn.execute(
        """SELECT id, severity, activated_at, due_at, tier_reached, rule_id, subject, plant_id FROM alarm_disposals
           WHERE feedback_at IS NULL AND next_at IS NOT NULL AND next_at <= %s ORDER BY next_at LIMIT %s
           FOR UPDATE SKIP LOCKED""", (ts(now), limit)).fetchall()
    return [Due(disposal.Disposal(r[0], r[1], r[2].timestamp(), r[3].timestamp(), r[4]), AlarmKey(r[5], r[6]), r[7])
            for r in rows]


def _state(conn: psycopg.Connection, key: AlarmKey) -> lifecycle.AlarmState:
    row = conn.execute("SELECT state FROM alarms WHERE rule_id = %s AND subject = %s", key).fetchone()
    return "normal" if row is None else row[0]


def record_steps(conn: psycopg.Connection, x: Due, decision: disposal.Decision, now: float) -> None:
    """The tiers taken: progress on the disposal, one timeline event and one outbox item per tier."""
    conn.execute("UPDATE alarm_disposals SET tier_reached = %s, next_at = %s WHERE id = %s",
                 (decision.tier_reached, ts(decision.next_at), x.d.id))
    if not decision.steps:
        return
    state = _state(conn, x.key)
    meta = store.meta_of(conn, x.key)
    store.insert_events(conn, [(x.key, meta, lifecycle.Event(now, "disposal_escalate", state, state, False, "system",
                                                             s.reason), None) for s in decision.steps])
    outbox.enqueue_disposal_steps(conn, [outbox.DisposalAnnouncement(x.d.id, x.key, x.plant_id, x.d.severity, s.tier,
                                                                     now, s.reason) for s in decision.steps])


@dataclass(frozen=True)
class DisposalRecord:
    id: int
    rule_id: str
    subject: str
    plant_id: str
    enterprise_id: str
    severity: str
    activated_at: float
    due_at: float
    tier_reached: int
    next_at: float | None
    cause: str | None
    measures: str | None
    handled_by: str | None
    feedback_at: float | None
    feedback_actor: str | None


_COLS = ("id, rule_id, subject, plant_id, enterprise_id, severity, activated_at, due_at, tier_reached, next_at, cause,"
         " measures, handled_by, feedback_at, feedback_actor")


def _record(r: tuple[Any, ...]) -> DisposalRecord:
    return DisposalRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6].timestamp(), r[7].timestamp(), r[8], secs(r[9]),
                          r[10], r[11], r[12], secs(r[13]), r[14])


def get(conn: psycopg.Connection, disposal_id: int, scope: str | None, *, lock: bool = False) -> DisposalRecord | None:
    r = conn.execute(f"SELECT {_COLS} FROM alarm_disposals WHERE id = %s AND (%s::text IS NULL OR enterprise_id = %s)"
                     + (" FOR UPDATE" if lock else ""), (disposal_id, scope, scope)).fetchone()
    return None if r is None else _record(r)


def feedback(conn: psycopg.Connection, policy: disposal.Policy, disposal_id: int, *, cause: str, measures: str,
             handled_by: str, actor: str, scope: str | None, now: float) -> DisposalRecord:
    """Record the enterprise's feedback (or the bureau's on its behalf): the ladder stops, the timeline shows it.

    DisposalNotFound outside the caller's scope (another enterprise's alarm is as if it did not exist),
    DisposalError when the policy refuses the form, AlreadyAnswered the second time.
    """
    fb = disposal.check_feedback(policy, cause, measures, handled_by)
    with conn.transaction():
        rec = get(conn, disposal_id, scope, lock=True)
        if rec is None:
            raise DisposalNotFound(f"处置记录不存在 no disposal #{disposal_id}")
        if rec.feedback_at is not None:
            raise AlreadyAnswered(f"已于此前反馈 disposal #{disposal_id} was answered by {rec.feedback_actor}")
        conn.execute("""UPDATE alarm_disposals SET cause = %s, measures = %s, handled_by = %s, feedback_at = %s,
                            feedback_actor = %s, next_at = NULL WHERE id = %s""",
                     (fb.cause, fb.measures, fb.handled_by, ts(now), actor, disposal_id))
        key = AlarmKey(rec.rule_id, rec.subject)
        state = _state(conn, key)
        late = "" if now <= rec.due_at else f"（超时{(now - rec.due_at) / 60:.0f}分钟 late）"
        reason = (f"处置反馈{late}：{policy.causes[fb.cause]}；措施：{fb.measures}；处置人：{fb.handled_by}"
                  f" feedback: {fb.cause}")
        event = lifecycle.Event(now, "disposal_feedback", state, state, False, actor, reason)
        store.insert_events(conn, [(key, store.meta_of(conn, key), event, None)])
        out = get(conn, disposal_id, None)
    assert out is not None
    return out


def list_disposals(conn: psycopg.Connection, scope: str | None, *, status: str, now: float, limit: int = 50,
                   offset: int = 0) -> tuple[list[DisposalRecord], int]:
    """status: pending (no feedback yet), overdue (no feedback, past the limit), answered, all."""
    cond = {"pending": "feedback_at IS NULL", "overdue": "feedback_at IS NULL AND due_at < %(now)s",
            "answered": "feedback_at IS NOT NULL", "all": "true"}[status]
    where = f"(%(scope)s::text IS NULL OR enterprise_id = %(scope)s) AND {cond}"
    args = {"scope": scope, "now": ts(now), "limit": limit, "offset": offset}
    rows = conn.execute(f"SELECT {_COLS} FROM alarm_disposals WHERE {where} ORDER BY due_at, id"
                        " LIMIT %(limit)s OFFSET %(offset)s", args).fetchall()
    total = conn.execute(f"SELECT count(*) FROM alarm_disposals WHERE {where}", args).fetchone()
    return [_record(r) for r in rows], int(total[0]) if total else 0


def outcomes(conn: psycopg.Connection, scope: str | None, since: float, until: float) -> list[disposal.Outcome]:
    """Disposals of warnings activated in [since, until), for `disposal.response_stats`."""
    return [disposal.Outcome(r[0], r[1].timestamp(), r[2].timestamp(), secs(r[3])) for r in conn.execute(
        """SELECT enterprise_id, activated_at, due_at, feedback_at FROM alarm_disposals
           WHERE activated_at >= %s AND activated_at < %s AND (%s::text IS NULL OR enterprise_id = %s)""",
        (ts(since), ts(until), scope, scope))]
