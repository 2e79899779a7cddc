"""报警 Alarms: list and filter, history, and the operator actions of the ISA-18.2 lifecycle.

Actions go through `rules.actions`, which locks the alarm row and applies the
pure lifecycle, so they compose safely with the collector changing the same
alarm. An action the alarm's state does not allow answers 409.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.http.deps import ALL, Auth, Conn, Now, Page, require
from api.http.problems import not_found
from api.http.queries import telemetry as q
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, NOT_FOUND, RulePath, SubjectPath, page
from api.http.schemas.common import Ident, Short
from api.http.schemas.common import Page as PageOf
from api.http.schemas.telemetry import (
    AckRequest,
    AlarmActionResult,
    AlarmEventPublic,
    AlarmPublic,
    AlarmTransitionPublic,
    ShelveRequest,
)
from core.clock import ts
from rules import actions, lifecycle

router = APIRouter(prefix=API_PREFIX + "/alarms", tags=["alarms"], responses=AUTH)

State = Literal["normal", "unack", "ack", "rtn_unack"]
Severity = Literal["urgent", "high", "medium", "low"]


def _get(conn: Conn, rule_id: str, subject: str, who: Auth) -> AlarmPublic:
    row = q.get_alarm(conn, rule_id, subject, who.scope)
    if row is None:
        raise not_found("报警", "Alarm", f"{rule_id} {subject}")
    return AlarmPublic.model_validate(row)


@router.get("", summary="报警列表 List alarms (active or awaiting acknowledgement by default)")
def list_alarms(who: Auth, conn: Conn, p: Page,
                plant_id: Annotated[Ident | None, Query()] = None,
                enterprise_id: Annotated[Ident | None, Query()] = None,
                state: Annotated[list[State] | None, Query()] = None,
                severity: Annotated[list[Severity] | None, Query()] = None,
                active: Annotated[bool | None, Query()] = None,
                candidate: Annotated[bool | None, Query(description="rules that open candidate hazards")] = None,
                rule_id: Annotated[Short | None, Query()] = None,
                include_normal: Annotated[bool, Query(description="also alarms back to normal")] = False,
                ) -> PageOf[AlarmPublic]:
    rows, total = q.list_alarms(conn, who.scope, plant_id=plant_id, enterprise_id=enterprise_id,
                                state=list(state or []), severity=list(severity or []), active=active,
                                candidate=candidate, rule_id=rule_id, include_normal=include_normal,
                                limit=p.limit, offset=p.offset)
    return PageOf[AlarmPublic].model_validate(page(rows, total, p.limit, p.offset))


@router.get("/{rule_id}/{subject}", responses=NOT_FOUND, summary="报警详情 Get an alarm")
def get_alarm(rule_id: RulePath, subject: SubjectPath, who: Auth, conn: Conn) -> AlarmPublic:
    return _get(conn, rule_id, subject, who)


@router.get("/{rule_id}/{subject}/events", responses=NOT_FOUND, summary="报警记录 An alarm's history, newest first")
def alarm_events(rule_id: RulePath, subject: SubjectPath, who: Auth, conn: Conn, p: Page) -> list[AlarmEventPublic]:
    _get(conn, rule_id, subject, who)
    return [AlarmEventPublic.model_validate(r) for r in q.alarm_events(conn, rule_id, subject, p.limit, p.offset)]


def _result(conn: Conn, rule_id: str, subject: str, who: Auth, events: list[lifecycle.Event]) -> AlarmActionResult:
    return AlarmActionResult(alarm=_get(conn, rule_id, subject, who), events=[
        AlarmTransitionPublic(time=ts(e.time), event=e.event, from_state=e.from_state,
                              to_state=e.to_state, annunciate=e.annunciate, actor=e.actor, reason=e.reason)
        for e in events])


@router.post("/{rule_id}/{subject}/ack", responses={**NOT_FOUND, **CONFLICT}, summary="确认报警 Acknowledge")
def acknowledge(rule_id: RulePath, subject: SubjectPath, body: AckRequest, who: Auth, conn: Conn,
                now: Now) -> AlarmActionResult:
    _get(conn, rule_id, subject, who)
    require(who, *ALL)
    events = actions.acknowledge(conn, rule_id, subject, who.name, body.comment, now)
    return _result(conn, rule_id, subject, who, events)


@router.post("/{rule_id}/{subject}/shelve", responses={**NOT_FOUND, **CONFLICT},
             summary="搁置报警 Shelve for a time, with a reason")
def shelve(rule_id: RulePath, subject: SubjectPath, body: ShelveRequest, who: Auth, conn: Conn,
           now: Now) -> AlarmActionResult:
    _get(conn, rule_id, subject, who)
    require(who, *ALL)
    events = actions.shelve(conn, rule_id, subject, who.name, body.minutes * 60, body.reason, now)
    return _result(conn, rule_id, subject, who, events)


@router.post("/{rule_id}/{subject}/unshelve", responses={**NOT_FOUND, **CONFLICT}, summary="取消搁置 Unshelve now")
def unshelve(rule_id: RulePath, subject: SubjectPath, who: Auth, conn: Conn, now: Now) -> AlarmActionResult:
    _get(conn, rule_id, subject, who)
    require(who, *ALL)
    events = actions.unshelve(conn, rule_id, subject, who.name, now)
    return _result(conn, rule_id, subject, who, events)
