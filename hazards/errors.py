"""Errors of the hazard ledger.

    HazardError (core.errors.RiskwatchError)
    ├── TicketNotFound      no such ticket, or not visible to the caller (never tells which)
    ├── ReferenceNotFound   a plant, point, alarm or enterprise named in a request is not visible
    ├── ActionForbidden     the caller's role may not take this action
    ├── TransitionRefused   the ticket's state does not allow the action (HTTP 409)
    └── InvalidAction       the action itself is incomplete (missing reason, deadline in the past, ...)

Every message is Chinese first with the English alongside: duty officers and
enterprise staff read them in the API's problem documents and the CLI.
"""

from __future__ import annotations

from core.errors import RiskwatchError


class HazardError(RiskwatchError):
    code = "hazard-error"

    def __init__(self, message: str, **context: object):
        super().__init__(message)
        self.message = message
        self.context = context


class TicketNotFound(HazardError):
    code = "hazard-not-found"


class ReferenceNotFound(HazardError):
    code = "reference-not-found"


class ActionForbidden(HazardError):
    code = "action-forbidden"


class TransitionRefused(HazardError):
    code = "transition-not-allowed"


class InvalidAction(HazardError):
    code = "invalid-action"
