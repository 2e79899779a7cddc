"""通知 Notifications: the delivery log of alerting — sent, pending, dead — and putting a dead one back.

Enterprise callers see only the notifications sent to their own people (principal, actual controller)
about their own enterprise — never the bureau's duty staff, chiefs or leaders and their addresses — and
no error text: delivery errors come from far ends and libraries and may carry what the bureau keeps
to itself (a relay's name, an address, a URL).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from alerting import store, visibility
from api.http.auth import Principal
from api.http.deps import ALL, BUREAU, Auth, Conn, Now, require
from api.http.problems import ApiProblem, not_found
from api.http.routers._common import API_PREFIX, AUTH, CONFLICT, NOT_FOUND
from api.http.schemas.alerting import DeliveryPublic, NotificationDetail, NotificationPublic, NotificationStatus
from api.http.schemas.common import Int64Id, Short

router = APIRouter(prefix=API_PREFIX + "/notifications", tags=["notifications"], responses=AUTH)


def _public(n: store.NotificationRecord, who: Principal) -> NotificationPublic:
    return NotificationPublic.model_validate(visibility.notification_for(n, who.scope))


def _delivery(d: store.DeliveryRecord, who: Principal) -> DeliveryPublic:
    return DeliveryPublic.model_validate(visibility.delivery_for(d, who.scope))


@router.get("", summary="通知记录 List notifications, newest first (status=dead: the undeliverable)")
def list_notifications(who: Auth, conn: Conn,
                       status: Annotated[NotificationStatus | None, Query()] = None,
                       item: Annotated[Short | None, Query(description="alarm:<rule>|<subject> or hazard:<id>:<event>")
                                       ] = None,
                       before_id: Annotated[Int64Id | None, Query(description="page backwards from this id")] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[NotificationPublic]:
    require(who, *ALL)
    rows = store.list_notifications(conn, scope=who.scope, status=status, item=item, limit=limit,
                                    before_id=before_id)
    return [_public(r, who) for r in rows]


def _get(conn: Conn, nid: int, scope: str | None) -> store.NotificationRecord:
    n = store.get_notification(conn, nid, scope)
    if n is None:
        raise not_found("通知", "Notification", nid)
    return n


@router.get("/{notification_id}", responses=NOT_FOUND, summary="通知详情 A notification and its delivery attempts")
def get_notification(notification_id: Int64Id, who: Auth, conn: Conn) -> NotificationDetail:
    n = _get(conn, notification_id, who.scope)
    return NotificationDetail(**_public(n, who).model_dump(), deliveries=[
        _delivery(d, who) for d in store.deliveries(conn, n.id)])


@router.post("/{notification_id}/retry", responses={**NOT_FOUND, **CONFLICT},
             summary="重新投递 Put a dead notification back in the queue")
def retry_notification(notification_id: Int64Id, who: Auth, conn: Conn, now: Now) -> NotificationPublic:
    outcome = visibility.retry(conn, notification_id, who.scope, who.role, now)
    if outcome is visibility.RetryOutcome.NOT_FOUND:
        raise not_found("通知", "Notification", notification_id)
    if outcome is visibility.RetryOutcome.FORBIDDEN:
        require(who, *BUREAU)
    if outcome is visibility.RetryOutcome.NOT_DEAD:
        raise ApiProblem(409, "conflict", "冲突 Conflict",
                         "只有投递失败的通知可以重投。 Only a dead notification can be retried.")
    return _public(_get(conn, notification_id, who.scope), who)
