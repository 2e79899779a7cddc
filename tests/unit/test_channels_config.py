"""Channel configs as a table: what loads, what is refused and why; secrets never shown; both signatures
checked against values computed here from the documented algorithms, not from the code under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from alerting.channels import ChannelConfig, Contact, build_channel
from alerting.channels.dingtalk import dingtalk_sign
from alerting.channels.sms import SmsChannel
from alerting.channels.webhook import sign, verify_signature
from alerting.channels.wecom import cut_utf8

CONFIG: TypeAdapter[Any] = TypeAdapter(ChannelConfig)
JSON_BODY = '{"phone": "{phone}", "text": "{text}", "key": "{idempotency_key}"}'
ENV = {"RW_TEST_SMTP_PW": "pw-from-env-1", "RW_TEST_ROBOT": "https://oapi.dingtalk.com/robot/send?access_token=tok-9",
       "RW_TEST_HOOK_TOKEN": "Bearer hook-env-7"}

#: (config, None when it loads / a fragment of the error)
CASES: list[tuple[dict[str, Any], str | None]] = [
    ({"type": "smtp", "host": "127.0.0.1", "sender": "riskwatch 预警 <alerts@example.gov.cn>"}, None),
    ({"type": "smtp", "host": "h", "sender": "x@y", "colour": "red"}, "Extra inputs are not permitted"),
    ({"type": "smtp", "host": "h", "sender": "nobody"}, "has no e-mail address"),
    ({"type": "smtp", "host": "h", "sender": "x@y", "starttls": True, "ssl": True}, "choose one of starttls and ssl"),
    ({"type": "smtp", "host": "h", "sender": "x@y", "username": "u"}, "password is not"),
    ({"type": "smtp", "host": "h", "sender": "x@y", "username": "u", "password": "${RW_TEST_SMTP_PW}",
      "starttls": True}, None),
    ({"type": "smtp", "host": "h", "sender": "x@y", "username": "u", "password": "${RW_TEST_UNSET_VAR}"},
     "environment variable RW_TEST_UNSET_VAR is not set"),
    ({"type": "smtp", "host": "h", "sender": "x@y", "username": "u", "password": "pw"}, "AUTH over plain TCP"),
    ({"type": "smtp", "host": "h", "sender": "x@y", "username": "u", "password": "pw", "ssl": True}, None),
    ({"type": "smtp", "host": "h", "sender": "x@y", "username": "u", "password": "pw",
      "allow_plaintext_auth": True}, None),
    ({"type": "webhook", "url": "http://127.0.0.1:1/hook", "secret": "s"}, None),
    ({"type": "webhook", "url": "http://h/", "headers": {"Authorization": "${RW_TEST_HOOK_TOKEN}"}}, None),
    ({"type": "webhook", "url": "ftp://h/"}, "http:// or https://"),
    ({"type": "dingtalk", "url": "${RW_TEST_ROBOT}", "secret": "SECabc"}, None),
    ({"type": "dingtalk", "url": "oapi.dingtalk.com/robot/send"}, "http:// or https://"),
    ({"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}, None),
    ({"type": "wecom", "url": "https://qyapi.weixin.qq.com/", "secret": "x"}, "Extra inputs are not permitted"),
    ({"type": "sms", "url": "http://h/send", "body": JSON_BODY}, None),
    ({"type": "sms", "url": "http://h/send", "body": '{"to": "{phone}", "msg": "{txt}"}'}, "unknown placeholder {txt}"),
    ({"type": "sms", "url": "http://h/send?u={user}", "method": "GET", "body": "m={phone}"},
     "url: unknown placeholder {user}"),
    ({"type": "sms", "url": "http://h/send", "body": JSON_BODY, "headers": {"X-App": "{app_id}"}},
     "header X-App: unknown placeholder {app_id}"),
    ({"type": "sms", "url": "http://h/send", "body": JSON_BODY, "headers": {"Authorization": "Bearer {token}"}},
     "uses {token} but token is not set"),
    ({"type": "sms", "url": "http://h/send", "body": '{"phone": {phone}}'}, "not valid JSON once filled in"),
    ({"type": "sms", "url": "http://h/send", "body": JSON_BODY, "success_field": "code"}, "go together"),
    ({"type": "sms", "url": "http://h/send", "method": "GET", "body": "to={phone}&msg={text}"}, None),
    ({"type": "pager", "url": "http://h/"}, "does not match any of the expected tags"),
]


@pytest.mark.parametrize(("raw", "error"), CASES, ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_config_table(raw: dict[str, Any], error: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RW_TEST_UNSET_VAR", raising=False)
    if error is None:
        cfg = CONFIG.validate_python(raw)
        assert cfg.type == raw["type"]
        channel = build_channel("c1", cfg)
        assert channel.name == "c1"
        channel.close()
    else:
        with pytest.raises(ValidationError, match=error.replace("{", r"\{").replace("}", r"\}")):
            CONFIG.validate_python(raw)


SECRET_CONFIGS = [
    {"type": "smtp", "host": "h", "sender": "x@y", "username": "u", "password": "${RW_TEST_SMTP_PW}", "ssl": True},
    {"type": "webhook", "url": "http://h/", "secret": "hook-secret-3",
     "headers": {"Authorization": "${RW_TEST_HOOK_TOKEN}"}},
    {"type": "dingtalk", "url": "${RW_TEST_ROBOT}", "secret": "SEC-ding-5"},
    {"type": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wecom-key-8"},
    {"type": "sms", "url": "http://h/", "body": JSON_BODY, "token": "sms-token-4", "secret": "sms-secret-6"},
]
SECRETS = ["pw-from-env-1", "hook-secret-3", "hook-env-7", "tok-9", "SEC-ding-5", "wecom-key-8", "sms-token-4",
           "sms-secret-6"]


@pytest.mark.parametrize("raw", SECRET_CONFIGS, ids=[c["type"] for c in SECRET_CONFIGS])
def test_secrets_expand_from_env_and_never_show(raw: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = CONFIG.validate_python(raw)
    shown = repr(cfg) + str(cfg) + cfg.model_dump_json()
    assert [s for s in SECRETS if s in shown] == []


def test_env_expansion_gives_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    ding = CONFIG.validate_python({"type": "dingtalk", "url": " ${RW_TEST_ROBOT} "})
    assert ding.url.get_secret_value() == ENV["RW_TEST_ROBOT"]
    hook = CONFIG.validate_python({"type": "webhook", "url": "http://h/",
                                   "headers": {"Authorization": "${RW_TEST_HOOK_TOKEN}", "X-Plain": "a${B}"}})
    assert {k: v.get_secret_value() for k, v in hook.headers.items()} == {
        "Authorization": "Bearer hook-env-7", "X-Plain": "a${B}"}


def test_dingtalk_sign_matches_documented_algorithm() -> None:
    # DingTalk docs (自定义机器人 加签): string_to_sign = timestamp + "\n" + secret,
    # HmacSHA256 keyed with the secret, Base64, then urlEncode.
    secret, ts = "SEC0123456789abcdef", 1_700_000_000_123
    mac = hmac.new(secret.encode(), f"{ts}\n{secret}".encode(), digestmod=hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode("ascii")
    assert dingtalk_sign(secret, ts) == expected


NOW = 1_764_460_800.0
BODY = '{"subject":"一号罐区 液位高高报警"}'.encode()


@pytest.mark.parametrize(("timestamp", "body", "secret", "ok"), [
    (str(int(NOW)), BODY, "s3cret", True),
    (str(int(NOW) - 299), BODY, "s3cret", True),
    (str(int(NOW)), BODY.replace("高高".encode(), "高".encode()), "s3cret", False),  # tampered body
    (str(int(NOW)), BODY, "other", False),  # wrong secret
    (str(int(NOW) - 301), BODY, "s3cret", False),  # too old: a replay
    (str(int(NOW) + 301), BODY, "s3cret", False),  # from the future
    ("yesterday", BODY, "s3cret", False),
])
def test_verify_signature(timestamp: str, body: bytes, secret: str, ok: bool) -> None:
    # Signed as sent: the receiver got (timestamp, body, header) and checks them against its secret.
    header = "sha256=" + hmac.new(b"s3cret", f"{timestamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", timestamp, BODY) == header
    assert verify_signature(secret, timestamp, body, header, now=NOW) is ok


def test_verify_signature_rejects_a_timestamp_other_than_the_signed_one() -> None:
    header = sign("s3cret", str(int(NOW)), BODY)
    assert not verify_signature("s3cret", str(int(NOW) - 1), BODY, header, now=NOW)


@pytest.mark.parametrize(("phone", "address"), [
    ("13800138000", "13800138000"),
    ("+86 138-0013-8000", "+8613800138000"),
    ("138001380x0", None),
    ("", None),
    (None, None),
])
def test_sms_address(phone: str | None, address: str | None) -> None:
    channel = SmsChannel("sms", CONFIG.validate_python({"type": "sms", "url": "http://h/", "body": JSON_BODY}))
    assert channel.address(Contact("u1", "张三", phone=phone)) == address
    channel.close()


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("液位高", 9, "液位高"),
    ("液位高高", 9, "液位…"),  # 3 bytes a character, "…" included
    ("液位高高", 10, "液位…"),  # never half a character
    ("abcdef", 5, "ab…"),
])
def test_cut_utf8(text: str, limit: int, expected: str) -> None:
    assert cut_utf8(text, limit) == expected
    assert len(cut_utf8(text, limit).encode()) <= limit
