"""Loading the northbound file (RISKWATCH_NORTHBOUND): the upstream targets and what each is sent.

Validated as written, every problem at its file:line (core.yamlsrc, as the routing file): the schema
first, then each target's `${ENV}` header secrets and its body template, rendered once over a sample
batch so a template that does not produce JSON, or that drops the items' idempotency keys, is refused
at load rather than on the first send to the province.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerting.channels._http import check_url
from alerting.channels.base import expand_secret
from core import yamlsrc
from core.errors import SourceError, SourceProblem

__all__ = ["DEFAULT_TEMPLATE", "KINDS", "NorthboundConfig", "Target", "load_northbound", "render_body"]

#: What a target may take; the file says readings/alarms/hazards, the tables say reading/alarm/hazard.
KINDS = {"readings": "reading", "alarms": "alarm", "hazards": "hazard"}

#: The body when a target gives none: every item with its key, kind and data, and the batch key.
DEFAULT_TEMPLATE = '{"batch_key": {{ batch_key | tojson }}, "items": {{ items | tojson }}}'

_ENV = ImmutableSandboxedEnvironment(autoescape=False)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(_Strict):
    initial_s: float = Field(5.0, gt=0, le=3600)
    max_s: float = Field(600.0, gt=0, le=86400)


class Target(_Strict):
    """One upstream platform. Only `http` for now (MQTT targets: see docs/northbound.md)."""

    kind: Literal["http"]
    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(10.0, gt=0, le=120)
    send: list[Literal["readings", "alarms", "hazards"]] = Field(min_length=1)
    batch_size: int = Field(50, ge=1, le=1000)
    max_attempts: int = Field(10, ge=1, le=1000)
    backoff: Backoff = Backoff()
    content_type: str = "application/json"
    template: str = DEFAULT_TEMPLATE

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("send")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each of readings, alarms, hazards at most once")
        return v

    @property
    def kinds(self) -> list[str]:
        return [KINDS[s] for s in self.send]


class File(_Strict):
    version: Literal[1]
    targets: dict[str, Target] = Field(min_length=1)

    @field_validator("targets")
    @classmethod
    def _names(cls, v: dict[str, Target]) -> dict[str, Target]:
        for name in v:
            if not name or len(name) > 64 or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"target name {name!r}: letters, digits, - and _ (at most 64)")
        return v


@dataclass(frozen=True)
class Resolved:
    """A target ready to send: its secrets read from the environment."""

    name: str
    spec: Target
    headers: dict[str, str]


@dataclass(frozen=True)
class NorthboundConfig:
    source: str
    targets: dict[str, Resolved]


def render_body(spec: Target, items: list[dict[str, Any]], batch_key: str, target: str) -> bytes:
    """The body of one batch, from the target's sandboxed template (no file, no attribute of Python objects)."""
    text = _ENV.from_string(spec.template).render(items=items, batch_key=batch_key, target=target)
    return text.encode("utf-8")


_SAMPLE: list[dict[str, Any]] = [
    {"key": "rw-a-1", "kind": "alarm", "data": {"id": 1, "rule_id": "r", "event": "activate"}},
    {"key": "rw-r-7-1764460800000000", "kind": "reading", "data": {"point_id": 7, "value": 1.5}}]


def _check_template(spec: Target) -> str | None:
    """Why the template cannot serve, or None: it must render, keep every item's key, and be JSON when JSON."""
    try:
        body = render_body(spec, _SAMPLE, "rw-b-sample", "sample").decode()
    except TemplateError as exc:
        return f"template does not render: {exc}"
    if "json" in spec.content_type:
        try:
            json.loads(body)
        except ValueError as exc:
            return f"template does not produce JSON ({exc}); rendered: {body[:120]}"
    missing = [str(i["key"]) for i in _SAMPLE if str(i["key"]) not in body]
    if missing:
        return "template drops the items' idempotency keys (render each item's `key`)"
    return None


def load_northbound(path: str | Path, text: str | None = None) -> NorthboundConfig:
    """Validate a northbound file; SourceError lists every problem with file:line."""
    spec, lines = yamlsrc.validate(path, File, text)
    problems: list[SourceProblem] = []
    targets: dict[str, Resolved] = {}
    for name, t in spec.targets.items():
        headers: dict[str, str] = {}
        for h, v in t.headers.items():
            try:
                headers[h] = str(expand_secret(v))
            except ValueError as exc:
                loc = ("targets", name, "headers", h)
                problems.append(SourceProblem(str(path), yamlsrc.line_for(lines, loc), f"{'.'.join(loc)}: {exc}"))
        why = _check_template(t)
        if why is not None:
            where: tuple[str, ...] = ("targets", name, "template")
            problems.append(SourceProblem(str(path), yamlsrc.line_for(lines, where) or yamlsrc.line_for(
                lines, ("targets", name)), f"{'.'.join(where)}: {why}"))
        targets[name] = Resolved(name, t, headers)
    if problems:
        raise SourceError(problems)
    return NorthboundConfig(str(path), targets)
