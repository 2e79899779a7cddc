"""WeCom (企业微信) group robot: one message per alert.

WeCom robots have no signature: the `key` in the URL is the whole credential, so the URL is a
SecretStr and only its redacted form is logged.

Mentions: WeCom markdown cannot @ anyone by mobile, only `text` messages can
(`mentioned_mobile_list`). Rather than send two messages (markdown, then a bare @ text) that may
be split by a retry or a rate limit, the channel sends ONE message: `text` with the mentions when
any contact has a phone, otherwise `markdown`. Contents are cut to WeCom's byte limits
(text 2048, markdown 4096 bytes of UTF-8), which a long Chinese alarm text can reach.
The robot answers HTTP 200 with an errcode: 45009 (rate limit, 20 messages a minute) and -1
(system busy) are worth a retry; every other code (93000: invalid key) is not.
"""

from __future__ import annotations

import json
import logging
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from alerting.channels import _http
from alerting.channels.base import Contact, Message, Receipt, SecretField, redact_url

log = logging.getLogger("riskwatch.alerting.channels")

_TRANSIENT_ERRCODES = frozenset({-1, 45009})
_TEXT_MAX_BYTES = 2048
_MARKDOWN_MAX_BYTES = 4096


class WeComConfig(SecretField, BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs may be secrets

    type: Literal["wecom"] = "wecom"
    url: SecretStr  # https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...
    timeout_s: float = 10

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: SecretStr) -> SecretStr:
        _http.check_url(v.get_secret_value())
        return v


def cut_utf8(text: str, max_bytes: int) -> str:
    """`text` within `max_bytes` of UTF-8, ending in "…" when cut, never splitting a character."""
    if len(text.encode()) <= max_bytes:
        return text
    return text.encode()[: max_bytes - len("…".encode())].decode(errors="ignore") + "…"


class WeComChannel:
    per_contact = False

    def __init__(self, name: str, cfg: WeComConfig):
        self.name = name
        self._cfg = cfg
        self._client = _http.client(cfg.timeout_s)

    def address(self, contact: Contact) -> str | None:
        return contact.phone

    def send(self, msg: Message, to: list[Contact]) -> Receipt:
        phones = [c.phone for c in to if c.phone]
        if phones:
            payload: dict[str, object] = {"msgtype": "text", "text": {
                "content": cut_utf8(msg.text, _TEXT_MAX_BYTES), "mentioned_mobile_list": phones}}
        else:
            payload = {"msgtype": "markdown", "markdown": {"content": cut_utf8(msg.markdown, _MARKDOWN_MAX_BYTES)}}
        body = json.dumps(payload, ensure_ascii=False).encode()
        url = self._cfg.url.get_secret_value()
        resp = _http.request(self._client, self.name, "POST", url, content=body,
                             headers={"Content-Type": "application/json; charset=utf-8"})
        receipt = _http.robot_receipt(resp, self.name, _TRANSIENT_ERRCODES)
        log.info("%s: WeCom robot %s accepted %s", self.name, redact_url(url), msg.idempotency_key)
        return receipt

    def close(self) -> None:
        self._client.close()
