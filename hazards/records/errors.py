"""Errors of the records package.

    RecordError (hazards.errors.HazardError, core.errors.RiskwatchError)
    ├── RecordNotFound   no such record, or not visible to the caller (never tells which)  -> 404
    ├── RecordForbidden  the caller's role may not do this                                   -> 403
    └── RecordInvalid    the request itself is incomplete or inconsistent                    -> 422

Each also derives from the hazard ledger's error of the same meaning
(ReferenceNotFound, ActionForbidden, InvalidAction), so every face that already
maps the ledger's errors (the HTTP API's problem documents, the CLI) maps these
without knowing the records package. Messages are Chinese first with the
English alongside, like the ledger's.
"""

from __future__ import annotations

from hazards.errors import ActionForbidden, HazardError, InvalidAction, ReferenceNotFound


class RecordError(HazardError):
    code = "record-error"


class RecordNotFound(RecordError, ReferenceNotFound):
    code = "record-not-found"


class RecordForbidden(RecordError, ActionForbidden):
    code = "record-forbidden"


class RecordInvalid(RecordError, InvalidAction):
    code = "record-invalid"


def not_found(what_zh: str, what_en: str, ident: object) -> RecordNotFound:
    return RecordNotFound(f"{what_zh} {ident} 不存在。 {what_en} {ident} not found.", ref=str(ident))
