"""Redaction of URLs (userinfo, query values) in texts that are logged or stored, SMTP AUTH over plain TCP,
canonical acknowledgement tokens, and formula-neutralised spreadsheet cells — pure, table-driven."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from alerting import ack
from alerting.channels import ChannelConfig, Contact, Message, PermanentError, TransientError
from alerting.channels.smtp import SmtpChannel, SmtpConfig
from alerting.config import load_config
from core.errors import SourceError
from core.redact import RedactingFilter, redact_text, redact_url
from hazards.export import neutralise

URLS = [
    ("http://user:pass@host/path?key=secret", "http://***@host/path?key=***"),
    ("https://hook.example.gov.cn/a?access_token=t0k&sign=s1g&timestamp=1", "https://hook.example.gov.cn/a?"
     "access_token=***&sign=***&timestamp=***"),
    ("http://u:p@127.0.0.1:9/hook", "http://***@127.0.0.1:9/hook"),
    ("http://only-user@h/", "http://***@h/"),
    ("http://u:p%40ss@h:80/x#frag", "http://***@h:80/x#frag"),
    ("http://u:pa@ss@h/x", "http://***@h/x"),           # an unescaped "@" in the password
    ("http://u:pa/ss@h/x?k=v", "http://***@h/x?k=***"),  # an unescaped "/" in the password
    ("https://plain.example/path", "https://plain.example/path"),
    ("http://h/users/@me", "http://h/users/@me"),      # an "@" in the path is not userinfo
]


@pytest.mark.parametrize(("url", "want"), URLS)
def test_redact_url(url: str, want: str) -> None:
    assert redact_url(url) == want
    assert redact_url(want) == want  # idempotent


def test_redact_text_finds_every_url_in_a_message() -> None:
    text = ("hook: POST http://alice:S3cret@127.0.0.1:9/hook?key=K3y — ConnectError: "
            "[Errno 111] Connection refused (url='https://bob:Pw@x.example/?token=T0k&a=1')")
    out = redact_text(text)
    for secret in ("alice", "S3cret", "K3y", "bob", "Pw", "T0k"):
        assert secret not in out, out
    assert "127.0.0.1:9/hook" in out and "x.example" in out and "Connection refused" in out


def test_delivery_errors_are_redacted_where_they_are_made() -> None:
    exc = TransientError("hook: POST http://u:pw-1@h/x?key=k-2: refused", detail="GET http://u:pw-1@h/?key=k-2")
    shown = f"{exc} {exc.detail}"
    assert "pw-1" not in shown and "k-2" not in shown and "http://***@h/x" in shown


def test_logging_filter_redacts_library_lines(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redact.lib")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact.lib"):
        logger.info('HTTP Request: %s %s "%s"', "POST", "http://u:pw-3@h/x?key=k-4", "HTTP/1.1 500")
    assert "pw-3" not in caplog.text and "k-4" not in caplog.text and "http://***@h/x?key=***" in caplog.text


# --- SMTP: AUTH needs an encrypted connection -----------------------------------------------------

SMTP: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)
BASE = {"type": "smtp", "host": "127.0.0.1", "sender": "x@example.gov.cn", "username": "u", "password": "pw"}


@pytest.mark.parametrize(("extra", "ok"), [
    ({}, False), ({"ssl": True}, True), ({"starttls": True}, True), ({"allow_plaintext_auth": True}, True),
])
def test_smtp_auth_over_plain_tcp_is_refused_unless_allowed(extra: dict[str, object], ok: bool) -> None:
    if ok:
        SMTP.validate_python({**BASE, **extra})
    else:
        with pytest.raises(ValidationError, match="AUTH over plain TCP"):
            SMTP.validate_python({**BASE, **extra})


def test_smtp_without_username_may_stay_plain() -> None:
    SMTP.validate_python({"type": "smtp", "host": "127.0.0.1", "sender": "x@example.gov.cn"})


ROUTING = """\
version: 1
timezone: Asia/Shanghai
channels:
  email:
    type: smtp
    host: smtp.example.gov.cn
    port: 25
    username: riskwatch@example.gov.cn
    password: pw
    sender: "风险预警 <riskwatch@example.gov.cn>"{extra}
people:
  duty: {{name: 值班员, email: duty@example.gov.cn}}
receivers:
  bureau-duty: {{to: [{{person: duty}}], via: [email]}}
  enterprise-leaders: {{to: [{{enterprise: principal}}, {{enterprise: controller}}], via: [email]}}
routes:
  receiver: bureau-duty
  routes:
    - match: {{kind: hazard, event: confirmed}}
      receiver: [bureau-duty, enterprise-leaders]
"""


def test_routing_file_with_plaintext_auth_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "alerting.yaml"
    path.write_text(ROUTING.format(extra=""), encoding="utf-8")
    with pytest.raises(SourceError) as err:
        load_config(path)
    problems = [p for p in err.value.problems if "AUTH over plain TCP" in str(p)]
    assert problems, str(err.value)
    assert f"{path}:" in str(problems[0]) and problems[0].line in range(4, 12), str(problems[0])
    path.write_text(ROUTING.format(extra="\n    allow_plaintext_auth: true"), encoding="utf-8")
    assert load_config(path).channels["email"].allow_plaintext_auth is True  # type: ignore[union-attr]


def test_smtp_send_refuses_plaintext_auth_even_unvalidated() -> None:
    cfg = SmtpConfig.model_construct(host="127.0.0.1", port=1, sender="x@example.gov.cn", username="u",
                                     password=None, starttls=False, ssl=False, allow_plaintext_auth=False,
                                     timeout_s=1.0, type="smtp")
    msg = Message("k-1", "主题", "text", "", "", "")
    with pytest.raises(PermanentError, match="AUTH over plain TCP"):
        SmtpChannel("email", cfg).send(msg, [Contact("c", "值班员", email="duty@example.gov.cn")])


def test_the_example_routing_file_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RW_SMTP_PASSWORD", "RW_SMS_TOKEN", "RW_DINGTALK_URL", "RW_DINGTALK_SECRET", "RW_PLATFORM_SECRET"):
        monkeypatch.setenv(name, "https://oapi.dingtalk.com/robot/send?access_token=x" if "URL" in name else "s")
    load_config(Path(__file__).resolve().parents[2] / "deploy" / "alerting.example.yaml")


# --- acknowledgement tokens: one spelling only ------------------------------------------------------

KEY = b"link-key"


def _variants(token: str) -> list[str]:
    body, mac = token.split(".")
    raw_mac = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return [
        f"{body}.{mac}=",                                            # padding
        f"{body}={'=' * (-len(body) % 4)}.{mac}" if len(body) % 4 else f"{body}==.{mac}",
        f"{body}.{base64.b64encode(raw_mac).decode().rstrip('=')}",  # the +/ alphabet (differs when the MAC has -_)
        f"{body}.{mac}.junk",                                        # trailing junk
        f"{body}.{mac} ",
        f"{body}.{mac}\n",
        f"{body}.{mac.swapcase()}",
        f"{body.swapcase()}.{mac}",
        f"{body}.{flipped}",
        f"{body}.{raw_mac.hex()}",                                   # hex instead of base64
        f"{body}.{raw_mac.hex().upper()}",
        f" {token}",
        f"{body}.{mac}".replace(".", "..", 1),
    ]


def test_only_the_canonical_token_is_accepted() -> None:
    # find a token whose MAC's base64url holds "-" or "_", so the +/ variant really differs
    for n in range(200):
        token = ack.sign(KEY, f"rw-1-{n}-email-c", 2e9)
        if any(c in token.split(".")[1] for c in "-_"):
            break
    assert ack.verify(KEY, token, 1e9).key.startswith("rw-1-")
    variants = [v for v in _variants(token) if v != token]
    assert len(variants) >= 12
    for v in variants:
        with pytest.raises(ack.LinkInvalid):
            ack.verify(KEY, v, 1e9)


def test_last_character_with_unused_bits_set_is_refused() -> None:
    token = ack.sign(KEY, "rw-2-1-email-c", 2e9)
    body, mac = token.split(".")
    # a 32-byte MAC is 43 base64 characters: the last carries 2 unused bits; set them
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(mac[-1])
    other = alphabet[last | 1] if last | 1 != last else alphabet[last & ~1]
    variant = f"{body}.{mac[:-1]}{other}"
    assert base64.urlsafe_b64decode(mac[:-1] + other + "=") == base64.urlsafe_b64decode(mac + "=")
    with pytest.raises(ack.LinkInvalid):
        ack.verify(KEY, variant, 1e9)


# --- spreadsheet cells -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "want"), [
    ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'), ("+1", "'+1"), ("-1+1", "'-1+1"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"), ("甲水泥", "甲水泥"), ("", ""),
    (-1, -1), (3.5, 3.5), (None, None),
])
def test_neutralise(value: object, want: object) -> None:
    assert neutralise(value) == want
