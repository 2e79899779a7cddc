"""Every channel against a real far end on loopback: an aiosmtpd server and an HTTP receiver.

What arrives is checked as a receiver would read it (decoded headers, parsed JSON, signatures verified
with the secret), and every failure class is produced for real: refused connection, slow answer,
503/400, robot errcodes, a rejected recipient.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from email.headerregistry import Address
from typing import Any

import pytest
from pydantic import TypeAdapter

from alerting.channels import (
    ChannelConfig,
    Contact,
    Message,
    PermanentError,
    TransientError,
    build_channel,
)
from alerting.channels.dingtalk import DingTalkChannel
from alerting.channels.webhook import WebhookChannel, verify_signature
from core.services import free_port
from tests.alerting_fixtures import HttpReceiver, SmtpSink

CONFIG: TypeAdapter[Any] = TypeAdapter(ChannelConfig)
NOW = 1_764_460_800.0

MSG = Message(
    idempotency_key="alarm-42-escalate-1",
    subject="【一级预警】一号罐区 液位高高 Tank level high-high",
    text='一号罐区 T-101 液位 "高高" 报警：9.6 m（限值 9.0 m）\n请立即处置。',
    html="<p>一号罐区 T-101 液位 <b>高高</b> 报警：9.6 m</p>",
    markdown="### 一号罐区 液位高高\n- 当前值：9.6 m\n- 限值：9.0 m",
    short='【预警】一号罐区 T-101 液位"高高" 9.6m，请立即处置',
    ack_url="https://riskwatch.example.gov.cn/ack/abc",
    data={"alarm_id": 42, "level": 1, "enterprise": "甲化工"},
)
ZHANG = Contact("u1", "张三", email="zhang@example.gov.cn", phone="13800138000")
LI = Contact("u2", "李四", email="li@example.gov.cn", phone=None)


def channel(name: str, **raw: Any) -> Any:
    return build_channel(name, CONFIG.validate_python(raw))


# --- SMTP -------------------------------------------------------------------------------------------


def test_email_arrives_decoded(smtp_sink: SmtpSink) -> None:
    ch = channel("mail", type="smtp", host="127.0.0.1", port=smtp_sink.port,
                 sender="riskwatch 预警 <alerts@example.gov.cn>")
    receipt = ch.send(MSG, [ZHANG, LI])
    assert receipt.detail.startswith("250")

    mail = smtp_sink.wait(1)[0]
    assert mail.mail_from == "alerts@example.gov.cn"
    assert mail.rcpt_tos == ["zhang@example.gov.cn", "li@example.gov.cn"]
    em = mail.message
    assert em["Subject"] == MSG.subject  # decoded from RFC 2047
    assert "=?utf-8?" in em.as_string().lower()  # and it was encoded on the wire
    assert em["From"].addresses[0] == Address("riskwatch 预警", addr_spec="alerts@example.gov.cn")
    assert [(a.display_name, a.addr_spec) for a in em["To"].addresses] == [
        ("张三", "zhang@example.gov.cn"), ("李四", "li@example.gov.cn")]
    assert em["Message-ID"] == "<alarm-42-escalate-1@riskwatch>"
    assert em["X-Riskwatch-Idempotency-Key"] == "alarm-42-escalate-1"
    assert em.get_content_type() == "multipart/alternative"
    plain, html = em.get_body(("plain",)), em.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content_charset() == "utf-8"
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == MSG.text  # CRLF on the wire
    assert html.get_content().replace("\r\n", "\n").rstrip("\n") == MSG.html


def test_email_rejected_recipient_is_permanent() -> None:
    sink = SmtpSink(reject={"zhang@example.gov.cn"}).start()
    try:
        ch = channel("mail", type="smtp", host="127.0.0.1", port=sink.port, sender="alerts@example.gov.cn")
        with pytest.raises(PermanentError, match="recipients refused") as err:
            ch.send(MSG, [ZHANG])
        assert "550" in err.value.detail
        assert sink.messages == []
    finally:
        sink.stop()


def test_email_4xx_is_transient_and_no_server_is_transient() -> None:
    sink = SmtpSink(data_reply="451 4.3.0 try again later").start()
    try:
        ch = channel("mail", type="smtp", host="127.0.0.1", port=sink.port, sender="alerts@example.gov.cn")
        with pytest.raises(TransientError, match="451"):
            ch.send(MSG, [ZHANG])
    finally:
        sink.stop()
    ch = channel("mail", type="smtp", host="127.0.0.1", port=free_port(), sender="alerts@example.gov.cn")
    with pytest.raises(TransientError, match="ConnectionRefusedError"):
        ch.send(MSG, [ZHANG])


# --- Webhook ----------------------------------------------------------------------------------------


def test_webhook_body_headers_and_signature(http_receiver: HttpReceiver) -> None:
    cfg = CONFIG.validate_python({"type": "webhook", "url": f"{http_receiver.url}/riskwatch?tenant=county",
                                  "secret": "hook-s3cret", "headers": {"Authorization": "Bearer abc"}})
    ch = WebhookChannel("hook", cfg, clock=lambda: NOW)
    assert ch.send(MSG, [ZHANG, LI]).detail == "200 OK"

    req = http_receiver.wait(1)[0]
    assert (req.method, req.path, req.query) == ("POST", "/riskwatch", {"tenant": "county"})
    assert req.headers["content-type"] == "application/json; charset=utf-8"
    assert req.headers["idempotency-key"] == MSG.idempotency_key
    assert req.headers["authorization"] == "Bearer abc"
    assert req.headers["x-riskwatch-timestamp"] == str(int(NOW))
    assert verify_signature("hook-s3cret", req.headers["x-riskwatch-timestamp"], req.body,
                            req.headers["x-riskwatch-signature"], now=NOW + 5)
    assert not verify_signature("hook-s3cret", req.headers["x-riskwatch-timestamp"], req.body + b" ",
                                req.headers["x-riskwatch-signature"], now=NOW + 5)
    assert "一号罐区".encode() in req.body  # UTF-8, not \\u escapes
    assert req.json() == {
        "idempotency_key": MSG.idempotency_key, "subject": MSG.subject, "text": MSG.text, "ack_url": MSG.ack_url,
        "recipients": [{"id": "u1", "name": "张三", "phone": "13800138000", "email": "zhang@example.gov.cn"},
                       {"id": "u2", "name": "李四", "phone": None, "email": "li@example.gov.cn"}],
        "data": MSG.data,
    }
    ch.close()


def test_webhook_without_secret_is_unsigned(http_receiver: HttpReceiver) -> None:
    ch = channel("hook", type="webhook", url=http_receiver.url)
    ch.send(MSG, [])
    assert "x-riskwatch-signature" not in http_receiver.wait(1)[0].headers
    ch.close()


@pytest.mark.parametrize(("status", "error"), [
    (503, TransientError), (500, TransientError), (429, TransientError), (408, TransientError),
    (400, PermanentError), (401, PermanentError), (404, PermanentError),
])
def test_webhook_status_mapping(http_receiver: HttpReceiver, status: int, error: type[Exception]) -> None:
    http_receiver.status, http_receiver.body = status, b'{"error":"nope"}'
    ch = channel("hook", type="webhook", url=http_receiver.url)
    with pytest.raises(error, match=f"HTTP {status}") as err:
        ch.send(MSG, [ZHANG])
    assert err.type is error
    ch.close()


def test_webhook_slow_receiver_is_transient(http_receiver: HttpReceiver) -> None:
    http_receiver.delay = 1.5
    ch = channel("hook", type="webhook", url=http_receiver.url, timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out"):
        ch.send(MSG, [ZHANG])
    assert time.monotonic() - started < 1.2
    ch.close()


def test_webhook_receiver_down_then_up(http_receiver: HttpReceiver) -> None:
    ch = channel("hook", type="webhook", url=http_receiver.url)
    port = http_receiver.port
    http_receiver.down()
    with pytest.raises(TransientError, match="ConnectError"):
        ch.send(MSG, [ZHANG])
    http_receiver.up()
    assert http_receiver.port == port
    assert ch.send(MSG, [ZHANG]).detail == "200 OK"
    assert len(http_receiver.wait(1)) == 1
    ch.close()


def test_nothing_listening_is_transient() -> None:
    ch = channel("hook", type="webhook", url=f"http://127.0.0.1:{free_port()}/x")
    with pytest.raises(TransientError):
        ch.send(MSG, [ZHANG])
    ch.close()


# --- DingTalk ---------------------------------------------------------------------------------------


def test_dingtalk_signed_markdown_with_mentions(http_receiver: HttpReceiver, caplog: pytest.LogCaptureFixture) -> None:
    http_receiver.body = b'{"errcode":0,"errmsg":"ok"}'
    cfg = CONFIG.validate_python({"type": "dingtalk", "url": f"{http_receiver.url}/robot/send?access_token=ding-tok-1",
                                  "secret": "SECding-secret"})
    ch = DingTalkChannel("ding", cfg, clock=lambda: NOW)
    with caplog.at_level(logging.DEBUG, logger="riskwatch.alerting.channels"):
        assert ch.send(MSG, [ZHANG, LI]).detail == "errcode 0 ok"

    req = http_receiver.wait(1)[0]
    assert req.path == "/robot/send"
    assert req.query["access_token"] == "ding-tok-1"
    ts = req.query["timestamp"]
    assert ts == str(int(NOW * 1000))
    mac = hmac.new(b"SECding-secret", f"{ts}\nSECding-secret".encode(), hashlib.sha256).digest()
    assert req.query["sign"] == base64.b64encode(mac).decode()  # parse_qsl undid the URL-encoding
    body = req.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == MSG.subject
    assert body["markdown"]["text"].startswith(MSG.markdown)
    assert "@13800138000" in body["markdown"]["text"]
    assert body["at"] == {"atMobiles": ["13800138000"], "isAtAll": False}
    assert "ding-tok-1" not in caplog.text and "SECding-secret" not in caplog.text
    ch.close()


@pytest.mark.parametrize(("status", "answer", "error"), [
    (200, b'{"errcode":310000,"errmsg":"sign not match"}', PermanentError),
    (200, b'{"errcode":300001,"errmsg":"token is not exist"}', PermanentError),
    (200, b'{"errcode":130101,"errmsg":"send too fast"}', TransientError),
    (200, b"<html>gateway</html>", PermanentError),
    (502, b"bad gateway", TransientError),
])
def test_dingtalk_errors(http_receiver: HttpReceiver, status: int, answer: bytes, error: type[Exception]) -> None:
    http_receiver.status, http_receiver.body = status, answer
    ch = channel("ding", type="dingtalk", url=f"{http_receiver.url}/robot/send?access_token=ding-tok-1")
    with pytest.raises(error) as err:
        ch.send(MSG, [ZHANG])
    assert err.type is error
    assert "ding-tok-1" not in str(err.value)
    ch.close()


# --- WeCom ------------------------------------------------------------------------------------------


def test_wecom_text_with_mentions_else_markdown(http_receiver: HttpReceiver) -> None:
    http_receiver.body = b'{"errcode":0,"errmsg":"ok"}'
    ch = channel("wecom", type="wecom", url=f"{http_receiver.url}/cgi-bin/webhook/send?key=wecom-key-1")
    ch.send(MSG, [ZHANG, LI])
    ch.send(MSG, [LI])
    with_phone, without = (r.json() for r in http_receiver.wait(2))
    assert with_phone == {"msgtype": "text", "text": {"content": MSG.text, "mentioned_mobile_list": ["13800138000"]}}
    assert without == {"msgtype": "markdown", "markdown": {"content": MSG.markdown}}
    assert http_receiver.requests[0].query == {"key": "wecom-key-1"}
    ch.close()


@pytest.mark.parametrize(("answer", "error"), [
    (b'{"errcode":45009,"errmsg":"api freq out of limit"}', TransientError),
    (b'{"errcode":93000,"errmsg":"invalid webhook url"}', PermanentError),
])
def test_wecom_errors(http_receiver: HttpReceiver, answer: bytes, error: type[Exception]) -> None:
    http_receiver.body = answer
    ch = channel("wecom", type="wecom", url=f"{http_receiver.url}/cgi-bin/webhook/send?key=wecom-key-1")
    with pytest.raises(error) as err:
        ch.send(MSG, [LI])
    assert err.type is error
    assert "wecom-key-1" not in str(err.value)
    ch.close()


# --- SMS --------------------------------------------------------------------------------------------


def test_sms_json_template_escapes_and_signs(http_receiver: HttpReceiver) -> None:
    http_receiver.body = b'{"result":{"code":"0"},"msgid":"m-1"}'
    ch = channel("sms", type="sms", url=f"{http_receiver.url}/sms/send",
                 body='{"phone": "{phone}", "text": "{text}", "key": "{idempotency_key}", "name": "{name}"}',
                 headers={"Authorization": "Bearer {token}"}, token="sms-token-1", secret="sms-secret-1",
                 success_field="result.code", success_value="0")
    assert ch.address(ZHANG) == "13800138000"
    assert ch.address(LI) is None
    receipt = ch.send(MSG, [ZHANG])
    assert receipt.detail.startswith("200 ")

    req = http_receiver.wait(1)[0]
    assert req.headers["content-type"] == "application/json"
    assert req.headers["authorization"] == "Bearer sms-token-1"
    assert req.headers["x-signature"] == hmac.new(b"sms-secret-1", req.body, hashlib.sha256).hexdigest()
    assert json.loads(req.body) == {"phone": "13800138000", "text": MSG.short, "key": MSG.idempotency_key,
                                    "name": "张三"}
    ch.close()


def test_sms_get_template_url_encodes_and_truncates(http_receiver: HttpReceiver) -> None:
    ch = channel("sms", type="sms", method="GET", url=f"{http_receiver.url}/send?user=rw&key={{token}}",
                 body="mobile={phone}&content={text}", token="t&k=1", max_chars=10)
    ch.send(MSG, [Contact("u3", "王五", phone="+86 138-0013-8001")])
    req = http_receiver.wait(1)[0]
    assert req.method == "GET" and req.body == b""
    assert req.query == {"user": "rw", "key": "t&k=1", "mobile": "+8613800138001", "content": MSG.short[:9] + "…"}
    ch.close()


@pytest.mark.parametrize(("status", "answer", "error"), [
    (200, b'{"result":{"code":"1001"}}', PermanentError),  # the gateway said no
    (200, b"OK", PermanentError),  # no JSON where a code was expected
    (503, b"busy", TransientError),
    (400, b"bad request", PermanentError),
])
def test_sms_errors(http_receiver: HttpReceiver, status: int, answer: bytes, error: type[Exception]) -> None:
    http_receiver.status, http_receiver.body = status, answer
    ch = channel("sms", type="sms", url=f"{http_receiver.url}/sms", body='{"p": "{phone}", "t": "{text}"}',
                 success_field="result.code", success_value="0")
    with pytest.raises(error) as err:
        ch.send(MSG, [ZHANG])
    assert err.type is error
    with pytest.raises(PermanentError, match="no recipient"):
        ch.send(MSG, [LI])
    ch.close()
