"""What a viewer may see of the delivery log, and putting a dead notification back: one policy for both faces.

The HTTP API (`api/http/routers/notifications.py`) and the console (`api/web/pages_more.py`) show the
same notifications to the same people. An enterprise sees only what was sent to its own people (the
store's scope) and no error text: delivery errors come from far ends and libraries and may carry what
the bureau keeps to itself (a relay's name, an address, a URL). Putting a notification back is the
bureau's decision, and only a dead one goes back.
"""

from __future__ import annotations

import re
from dataclasses import replace
from enum import Enum

import psycopg

from alerting import store
from core.redact import redact_url

__all__ = ["RetryOutcome", "delivery_for", "mask_address", "notification_for", "retry"]


def notification_for(n: store.NotificationRecord, scope: str | None) -> store.NotificationRecord:
    """The notification as a viewer of `scope` sees it: an enterprise never gets the error text."""
    return n if scope is None else replace(n, last_error=None)


def delivery_for(d: store.DeliveryRecord, scope: str | None) -> store.DeliveryRecord:
    """A delivery attempt as a viewer of `scope` sees it: an enterprise never gets the far end's answer."""
    return d if scope is None else replace(d, detail="")


_PHONE = re.compile(r"^\+?[0-9][0-9 -]{6,19}$")


def mask_address(address: str | None) -> str:
    """A recipient's address fit for a screen others may look at: a phone keeps its first three and last four
    digits, an e-mail its first letter and domain, a URL loses its credentials (userinfo, query values)."""
    if not address:
        return ""
    a = address.strip()
    if "://" in a:
        return redact_url(a)
    if "@" in a:
        local, _, domain = a.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if _PHONE.match(a):
        digits = re.sub(r"[^0-9]", "", a)
        return digits[:3] + "*" * max(0, len(digits) - 7) + digits[-4:] if len(digits) > 7 else "***"
    return a[:2] + "***" if len(a) > 4 else "***"


class RetryOutcome(Enum):
    RETRIED = "retried"
    NOT_FOUND = "not_found"  # absent, or outside the viewer's scope: the same answer
    FORBIDDEN = "forbidden"  # visible, but only the bureau puts notifications back
    NOT_DEAD = "not_dead"    # pending or sent: nothing to put back


def retry(conn: psycopg.Connection, nid: int, scope: str | None, role: str, now: float) -> RetryOutcome:
    """Put a dead notification back in the queue, if the viewer may see it and is the bureau (or admin)."""
    if store.get_notification(conn, nid, scope) is None:
        return RetryOutcome.NOT_FOUND
    if role not in ("admin", "bureau"):
        return RetryOutcome.FORBIDDEN
    return RetryOutcome.RETRIED if store.retry(conn, nid, now) else RetryOutcome.NOT_DEAD
