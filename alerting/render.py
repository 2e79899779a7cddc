"""Rendering a notice into one message for every channel: Chinese first, English alongside.

Pure: takes what the store looked up about each item and returns a
`Message`; the dispatcher stores it with the notification, so every retry
sends exactly the same words.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerting.channels.base import Message

SEVERITY_ZH = {"urgent": "紧急", "high": "高", "medium": "中", "low": "低"}
KIND_ZH = {"firing": "报警", "reminder": "提醒", "escalation": "升级", "resolved": "恢复"}
HAZARD_EVENT_ZH = {
    "opened": "新登记隐患", "confirmed": "确认为重大事故隐患", "dismissed": "排除隐患", "supervised": "挂牌督办",
    "sent_back": "退回整改", "closed": "验收销号",
}
#: Disposal tiers (core.vocab.DisposalTier) as the notice names them.
DISPOSAL_TIER_ZH = {"principal": "企业主要负责人", "duty_officer": "局值班人员", "section_chief": "科室负责人",
                    "leader": "分管局领导"}
SEVERITY_RANK = {"urgent": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class ItemInfo:
    """What a notice says about one member (looked up by the store)."""

    item: str
    kind: str                    # alarm | hazard
    title: str                   # rule or ticket title (zh)
    severity: str | None
    enterprise: str | None       # enterprise name
    plant: str | None            # plant name
    where: str | None            # point tag and name, or the gateway
    value: str | None            # formatted value with unit
    since: float                 # firing / event time
    detail: str | None           # rule reason, or hazard comment
    basis: str | None = None     # legal / technical basis
    event: str | None = None     # hazard: the workflow action
    status: str = "firing"       # firing | resolved | acked
    announced: bool = True       # False: it returned to normal before its firing was ever notified


def _t(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(tz).strftime("%m-%d %H:%M:%S")


def _line(i: ItemInfo, tz: ZoneInfo) -> str:
    if i.kind == "hazard":
        ev = HAZARD_EVENT_ZH.get(i.event or "", i.event or "")
        head = f"[{ev}] {i.title}"
    else:
        head = f"[{SEVERITY_ZH.get(i.severity or '', i.severity or '')}] {i.title}"
    parts: list[str] = []
    for p in (i.where, i.plant, i.enterprise):  # innermost first, so a location naming its plant is not doubled
        if p and not any(p in q for q in parts):
            parts.insert(0, p)
    tail = f" 值 {i.value}" if i.value else ""
    return f"{head} — {' / '.join(parts)}{tail}（{_t(i.since, tz)}）"


def subject(kind: str, items: Sequence[ItemInfo], resolved: Sequence[ItemInfo], escalation_after: float | None,
            ) -> str:
    first = (list(items) or list(resolved))[0]
    place = first.plant or first.enterprise or ""
    more = len(items) + len(resolved)
    n = f" 等{more}条" if more > 1 else ""
    if first.kind == "disposal":
        tier = DISPOSAL_TIER_ZH.get(first.event or "", first.event or "")
        return f"【处置超时·{tier}】{first.title}{n}未反馈处置情况 · {place}"
    if first.kind == "hazard":
        ev = HAZARD_EVENT_ZH.get(first.event or "", first.event or "")
        tag = "重大事故隐患" if first.event in ("confirmed", "supervised") else "隐患"
        prefix = {"reminder": "【提醒·未确认】", "escalation": "【升级】"}.get(kind, "")
        return f"{prefix}【{tag}】{ev}：{first.title}{n} · {place}"
    if kind == "resolved":
        if not any(i.announced for i in resolved):
            return f"【报警后已恢复】{first.title}{n}曾越限、通知前已恢复 · {place}"
        return f"【恢复】{first.title}{n}已恢复正常 · {place}"
    sev = SEVERITY_ZH.get(first.severity or "", "")
    if kind == "reminder":
        return f"【提醒·未确认】{first.title}{n}仍未确认 · {place}"
    if kind == "escalation":
        mins = f"{escalation_after / 60:g}分钟" if escalation_after else ""
        return f"【升级】报警{mins}未确认：{first.title}{n} · {place}"
    return f"【{sev}报警】{first.title}{n} · {place}"


def render(kind: str, key: str, items: Sequence[ItemInfo], resolved: Sequence[ItemInfo], *, reason: str,
           ack_url: str | None, tz: ZoneInfo, escalation_after: float | None = None,
           data: dict[str, Any] | None = None) -> Message:
    # Alarms lead: a rule that opens a candidate hazard announces both, and the alarm is the news.
    items = sorted(items, key=lambda i: (i.kind != "alarm", SEVERITY_RANK.get(i.severity or "", 9), i.since))
    subj = subject(kind, items, resolved, escalation_after)
    intro = {
        "firing": "riskwatch 监测预警：以下报警需要处置。",
        "reminder": "提醒：以下报警仍未确认，请尽快处置。",
        "escalation": "升级通知：以下报警在规定时间内无人确认，现报上一级。",
        "resolved": "以下报警已恢复正常。" if any(i.announced for i in resolved)
                    else "以下报警曾越限，在通知发出前已自行恢复正常，请留意是否反复。",
    }[kind]
    if items and all(i.kind == "hazard" for i in items):
        intro = "riskwatch 隐患台账通知："
    if items and all(i.kind == "disposal" for i in items):
        intro = "预警处置超时：以下预警在规定时限内企业未反馈处置情况，现逐级上报，请督促企业处置并反馈。"
    lines = [f"{n}. {_line(i, tz)}" for n, i in enumerate(items, 1)]
    back = [f"- {_line(i, tz)}" for i in resolved]
    details = [f"   依据 basis: {i.basis}" for i in items[:1] if i.basis] + \
              [f"   说明 detail: {i.detail}" for i in items[:1] if i.detail]
    text_parts = [intro, *lines, *details]
    if back:
        text_parts += ["已恢复 returned to normal:", *back]
    if ack_url:
        text_parts += ["", f"确认（停止提醒与升级）acknowledge: {ack_url}"]
    text_parts += ["", f"通知编号 notification: {key}"]
    text = "\n".join(text_parts)

    h = html.escape
    rows = "".join(f"<li>{h(_line(i, tz))}</li>" for i in items)
    back_rows = "".join(f"<li>{h(_line(i, tz))}</li>" for i in resolved)
    html_body = (
        f"<html><body><h3>{h(subj)}</h3><p>{h(intro)}</p>"
        + (f"<ol>{rows}</ol>" if rows else "")
        + "".join(f"<p>{h(d.strip())}</p>" for d in details)
        + (f"<p>已恢复 returned to normal:</p><ul>{back_rows}</ul>" if back_rows else "")
        + (f'<p><a href="{h(ack_url)}">确认报警 Acknowledge</a>（停止提醒与升级）</p>' if ack_url else "")
        + f"<p style=\"color:#888\">通知编号 {h(key)}</p></body></html>"
    )
    md = "\n\n".join([f"### {subj}", intro, *lines, *(d.strip() for d in details),
                      *(["**已恢复**", *back] if back else []),
                      *([f"[确认报警 Acknowledge]({ack_url})"] if ack_url else [])])
    short = subj + ("；确认: " + ack_url if ack_url else "")
    payload = {"kind": kind, "reason": reason,
               "items": [{"item": i.item, "kind": i.kind, "title": i.title, "severity": i.severity,
                          "enterprise": i.enterprise, "plant": i.plant, "where": i.where, "value": i.value,
                          "since": i.since, "status": i.status, "event": i.event} for i in items],
               "resolved": [i.item for i in resolved], **(data or {})}
    return Message(key, subj, text, html_body, md, short, ack_url, payload)
