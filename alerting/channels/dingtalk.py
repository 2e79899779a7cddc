"""DingTalk (钉钉) custom group robot: one markdown message per alert, @-mentioning contacts by mobile.

The robot URL carries `access_token`, so it is a secret like the signing secret. With "加签" enabled,
each request appends `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(secret,
f"{timestamp}\\n{secret}"))); DingTalk rejects a timestamp more than an hour off, so the clock matters.
The robot answers HTTP 200 with an errcode: 130101 ("send too fast", 20 messages a minute) and -1
(system busy) are worth a retry; every other code (310000: bad sign, keyword or IP) is not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from alerting.channels import _http
from alerting.channels.base import Contact, Message, Receipt, SecretField, redact_url, secret_value
from core.timeconst import MS_PER_S

log = logging.getLogger("riskwatch.alerting.channels")

_TRANSIENT_ERRCODES = frozenset({-1, 130101})


class DingTalkConfig(SecretField, BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # inputs may be secrets

    type: Literal["dingtalk"] = "dingtalk"
    url: SecretStr  # https://oapi.dingtalk.com/robot/send?access_token=...
    secret: SecretStr | None = None  # "SEC..." from the robot's 加签 setting
    timeout_s: float = 10

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: SecretStr) -> SecretStr:
        _http.check_url(v.get_secret_value())
        return v


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` parameter before URL-encoding: base64(HMAC-SHA256(secret, f"{timestamp_ms}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class DingTalkChannel:
    per_contact = False

    def __init__(self, name: str, cfg: DingTalkConfig, *, clock: Callable[[], float] = time.time):
        self.name = name
        self._cfg = cfg
        self._clock = clock
        self._client = _http.client(cfg.timeout_s)

    def address(self, contact: Contact) -> str | None:
        return contact.phone

    def _url(self) -> str:
        url = self._cfg.url.get_secret_value()
        secret = secret_value(self._cfg.secret)
        if not secret:
            return url
        ts = int(self._clock() * MS_PER_S)
        query = urllib.parse.urlencode({"timestamp": ts, "sign": dingtalk_sign(secret, ts)})
        return f"{url}{'&' if '?' in url else '?'}{query}"

    def send(self, msg: Message, to: list[Contact]) -> Receipt:
        phones = [c.phone for c in to if c.phone]
        text = msg.markdown
        if phones:  # the @ must appear in the text as well for DingTalk to highlight it
            text += "\n\n" + " ".join(f"@{p}" for p in phones)
        payload = {
            "msgtype": "markdown",
            "markdown": {"title": msg.subject, "text": text},
            "at": {"atMobiles": phones, "isAtAll": False},
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        url = self._url()
        resp = _http.request(self._client, self.name, "POST", url, content=body,
                             headers={"Content-Type": "application/json; charset=utf-8"})
        receipt = _http.robot_receipt(resp, self.name, _TRANSIENT_ERRCODES)
        log.info("%s: DingTalk robot %s accepted %s", self.name, redact_url(url), msg.idempotency_key)
        return receipt

    def close(self) -> None:
        self._client.close()
