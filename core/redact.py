"""Redaction of secrets carried inside URLs, before anything is logged, stored or shown.

Channel URLs hold credentials in two places: the userinfo (`http://user:pass@host/`) and the
query (`?access_token=…`, `?key=…`). Library error messages (httpx, smtplib) quote the URL they
failed on, so redaction happens where errors are produced, with this one pair of functions:

    redact_url("http://u:p@host/hook?key=s&x=1")  ->  "http://***@host/hook?key=***&x=***"
    redact_text("POST http://u:p@host/?k=v: refused")  ->  "POST http://***@host/?k=***: refused"

Both are total: any input gives a string, and applying them twice changes nothing more.
"""

from __future__ import annotations

import logging
import re

__all__ = ["RedactingFilter", "redact_logger", "redact_text", "redact_url"]

MASK = "***"

# scheme://[userinfo@]rest — stops at whitespace and at quotes/brackets that usually end a URL in prose
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{1,15})://(?P<rest>[^\s\"'<>`]+)")
_QUERY_VALUE = re.compile(r"([?&;][^=&#;\s]*)=[^&#;\s]*")
_MASKED_VALUE = r"\1=" + MASK


def redact_url(url: str) -> str:
    """The URL with its userinfo and every query value replaced by `***` (names kept, for debugging)."""
    m = _URL.match(url)
    if m is None:
        return _QUERY_VALUE.sub(_MASKED_VALUE, url)
    return _redact_match(m) + url[m.end():]


def _redact_match(m: re.Match[str]) -> str:
    rest = m.group("rest")
    # userinfo is everything before the last "@" of the authority (passwords may contain "@")
    authority_end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            authority_end = min(authority_end, i)
    authority, tail = rest[:authority_end], rest[authority_end:]
    at = authority.rfind("@")
    if at != -1:
        authority = f"{MASK}@{authority[at + 1:]}"
    elif ":" in authority and "@" in tail.split("?", 1)[0].split("#", 1)[0]:
        # a password holding "/" makes the authority look short ("user:pa/ss@host"): hide up to the "@"
        path = tail.split("?", 1)[0].split("#", 1)[0]
        authority, tail = f"{MASK}@{path[path.rfind('@') + 1:]}", tail[len(path):]
    return f"{m.group('scheme')}://{authority}{_QUERY_VALUE.sub(_MASKED_VALUE, tail)}"


def redact_text(text: str) -> str:
    """Redact every URL found in a free-text message (an exception's text, a server's answer)."""
    return _URL.sub(_redact_match, text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with its URLs redacted: for libraries that log the URLs we hand them
    (httpx logs every request line, query and userinfo included, at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is the logging module's business, not ours
            return True
        record.msg, record.args = redact_text(text), None
        return True


def redact_logger(name: str) -> None:
    """Install one RedactingFilter on the named logger (idempotent)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
