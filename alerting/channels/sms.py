"""SMS through a configurable HTTP gateway: the request is a template, so any provider's API fits.

Placeholders `{phone} {text} {idempotency_key} {name} {token}` may appear in `url`, `body` and header
values; an identifier in braces that is not one of them is rejected at load time. Values are escaped for
where they land: JSON-string-escaped in a JSON body (the template supplies the quotes), URL-encoded in
the URL and in a GET or form body, verbatim in headers. For GET the rendered `body` becomes the query
string. With `secret` set, `X-Signature` is hex HMAC-SHA256(secret, rendered body). With `success_field`
set, the answer's JSON value at that dotted path must equal `success_value`, or the send is permanent-failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerting.channels import _http
from alerting.channels.base import Contact, Message, PermanentError, Receipt, SecretField, redact_url, secret_value

log = logging.getLogger("riskwatch.alerting.channels")

PLACEHOLDERS = frozenset({"phone", "text", "idempotency_key", "name", "token"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PHONE = re.compile(r"^\+?\d{5,20}$")


def render(template: str, values: dict[str, str], escape: Callable[[str], str]) -> str:
    return _PLACEHOLDER.sub(lambda m: escape(values[m.group(1)]), template)


def _json_escape(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)[1:-1]


def _url_escape(v: str) -> str:
    return urllib.parse.quote(v, safe="")


def _header_escape(v: str) -> str:
    return re.sub(r"[\r\n]+", " ", v)


class SmsConfig(SecretField, BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs may be secrets

    type: Literal["sms"] = "sms"
    url: str
    method: Literal["POST", "GET"] = "POST"
    body: str  # '{"phone": "{phone}", "text": "{text}", "key": "{idempotency_key}"}'
    content_type: str = "application/json"
    headers: dict[str, str] = {}  # values may be templates: "Authorization": "Bearer {token}"
    token: SecretStr | None = None
    secret: SecretStr | None = None
    success_field: str | None = None  # dotted path into the JSON answer, e.g. "result.code"
    success_value: str | None = None
    max_chars: int = Field(300, ge=1)
    timeout_s: float = 10

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _http.check_url(v)

    @model_validator(mode="after")
    def _check_templates(self) -> SmsConfig:
        for where, template in [("url", self.url), ("body", self.body),
                                *((f"header {k}", v) for k, v in self.headers.items())]:
            for name in _PLACEHOLDER.findall(template):
                if name not in PLACEHOLDERS:
                    raise ValueError(f"{where}: unknown placeholder {{{name}}}; "
                                     f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}")
                if name == "token" and self.token is None:
                    raise ValueError(f"{where}: uses {{token}} but token is not set")
        if _escape_for_body(self) is _json_escape:
            sample = render(self.body, dict.fromkeys(PLACEHOLDERS, 'x"\n'), _json_escape)
            try:
                json.loads(sample)
            except ValueError as exc:
                raise ValueError(f"body is not valid JSON once filled in: {exc}") from exc
        if (self.success_field is None) != (self.success_value is None):
            raise ValueError("success_field and success_value go together")
        return self


def _escape_for_body(cfg: SmsConfig) -> Callable[[str], str]:
    if cfg.method == "GET" or "x-www-form-urlencoded" in cfg.content_type:
        return _url_escape
    return _json_escape if "json" in cfg.content_type else str


def _lookup(answer: Any, path: str) -> Any:
    for part in path.split("."):
        answer = answer[int(part)] if isinstance(answer, list) else answer[part]
    return answer


class SmsChannel:
    per_contact = True

    def __init__(self, name: str, cfg: SmsConfig):
        self.name = name
        self._cfg = cfg
        self._client = _http.client(cfg.timeout_s)

    def address(self, contact: Contact) -> str | None:
        phone = re.sub(r"[\s-]", "", contact.phone or "")
        return phone if _PHONE.match(phone) else None

    def send(self, msg: Message, to: list[Contact]) -> Receipt:
        """One gateway request per contact with a valid phone (the dispatcher passes one)."""
        targets = [(c, p) for c in to if (p := self.address(c))]
        if not targets:
            raise PermanentError(f"{self.name}: no recipient has a valid mobile number")
        return Receipt(detail="; ".join(self._send_one(msg, c, p) for c, p in targets))

    def _send_one(self, msg: Message, contact: Contact, phone: str) -> str:
        cfg = self._cfg
        text = msg.short if len(msg.short) <= cfg.max_chars else msg.short[: cfg.max_chars - 1] + "…"
        values = {"phone": phone, "text": text, "idempotency_key": msg.idempotency_key,
                  "name": contact.name, "token": secret_value(cfg.token) or ""}
        url = render(cfg.url, values, _url_escape)
        body = render(cfg.body, values, _escape_for_body(cfg))
        headers = {k: render(v, values, _header_escape) for k, v in cfg.headers.items()}
        secret = secret_value(cfg.secret)
        if secret:
            headers["X-Signature"] = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        if cfg.method == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{body}" if body else url
            resp = _http.request(self._client, self.name, "GET", url, headers=headers, shown_url=cfg.url)
        else:
            headers.setdefault("Content-Type", cfg.content_type)
            resp = _http.request(self._client, self.name, "POST", url, content=body.encode(), headers=headers,
                                 shown_url=cfg.url)
        if cfg.success_field is not None:
            try:
                got = _lookup(resp.json(), cfg.success_field)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise PermanentError(f"{self.name}: gateway answer has no {cfg.success_field}",
                                     detail=resp.text[:200]) from exc
            got = got if isinstance(got, str) else json.dumps(got)
            if got != cfg.success_value:
                raise PermanentError(f"{self.name}: gateway refused: {cfg.success_field}={got}",
                                     detail=resp.text[:200])
        log.info("%s: SMS %s via %s accepted", self.name, msg.idempotency_key, redact_url(cfg.url))
        return f"{resp.status_code} {resp.text[:100]}".strip()

    def close(self) -> None:
        self._client.close()
