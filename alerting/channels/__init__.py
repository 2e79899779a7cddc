"""Notification channels: SMTP e-mail, signed webhook, DingTalk and WeCom group robots, SMS over HTTP."""

from typing import Annotated

from pydantic import Field

from alerting.channels.base import (
    Channel,
    Contact,
    DeliveryError,
    Message,
    PermanentError,
    Receipt,
    TransientError,
)
from alerting.channels.dingtalk import DingTalkChannel, DingTalkConfig
from alerting.channels.sms import SmsChannel, SmsConfig
from alerting.channels.smtp import SmtpChannel, SmtpConfig
from alerting.channels.webhook import WebhookChannel, WebhookConfig, verify_signature
from alerting.channels.wecom import WeComChannel, WeComConfig

ChannelConfig = Annotated[
    SmtpConfig | WebhookConfig | DingTalkConfig | WeComConfig | SmsConfig,
    Field(discriminator="type"),
]


def build_channel(name: str, cfg: ChannelConfig) -> Channel:
    """The channel for one validated config entry; it opens no connection until the first send."""
    if isinstance(cfg, SmtpConfig):
        return SmtpChannel(name, cfg)
    if isinstance(cfg, WebhookConfig):
        return WebhookChannel(name, cfg)
    if isinstance(cfg, DingTalkConfig):
        return DingTalkChannel(name, cfg)
    if isinstance(cfg, WeComConfig):
        return WeComChannel(name, cfg)
    if isinstance(cfg, SmsConfig):
        return SmsChannel(name, cfg)
    raise TypeError(f"unknown channel config {type(cfg).__name__}")


__all__ = [
    "Channel",
    "ChannelConfig",
    "Contact",
    "DeliveryError",
    "DingTalkChannel",
    "DingTalkConfig",
    "Message",
    "PermanentError",
    "Receipt",
    "SmsChannel",
    "SmsConfig",
    "SmtpChannel",
    "SmtpConfig",
    "TransientError",
    "WeComChannel",
    "WeComConfig",
    "WebhookChannel",
    "WebhookConfig",
    "build_channel",
    "verify_signature",
]
