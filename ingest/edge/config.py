"""The edge agent's YAML configuration, validated with pydantic; every error names file and line.

One file describes one gateway box: which broker to reach as which gateway, where the on-disk buffer lives and
how big it may grow, how readings are published (JSON v1, or Sparkplug B with `format: sparkplug_b`, a
`group_id` and the primary host it waits for), and the southbound sources (Modbus TCP devices, OPC UA servers)
with their tags.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core import yamlsrc
from core.errors import ConfigError, SourceError, SourceProblem
from core.settings import MqttUrl
from ingest.edge.registers import Order, RegType, register_count
from ingest.sparkplug import topics as sp_topics

GATEWAY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A Sparkplug topic element: no MQTT level separator or wildcard (Sparkplug 3.0, topic namespace). Spaces are legal
# in Sparkplug but not at either end, where an integrator would never see them.
GROUP_ID = re.compile(r"^[^/+#\s\x00-\x1f](?:[^/+#\x00-\x1f]{0,62}[^/+#\s\x00-\x1f])?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Strict):
    """`url` is an `mqtts://` URL (cafile in the query); the password may live in a separate file (mode 0600)
    so the YAML can be shared with the integrator without the secret."""

    url: str
    password_file: Path | None = None
    allow_plain: bool = False  # mqtt:// only for a broker on the same trusted host
    keepalive_s: int = Field(20, ge=5, le=600)
    backoff_initial_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            MqttUrl.parse(v)
        except ConfigError as exc:
            raise ValueError(str(exc).replace("RISKWATCH_MQTT_URL", "url")) from None
        return v

    @model_validator(mode="after")
    def _tls(self) -> BrokerConfig:
        if not MqttUrl.parse(self.url).tls and not self.allow_plain:
            raise ValueError("url must be mqtts:// (TLS); set allow_plain: true only for a loopback broker")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class BufferConfig(_Strict):
    """The store-and-forward buffer. `when_full`: `drop_oldest` keeps the newest data (the usual choice for
    monitoring: the present matters most), `refuse` keeps the oldest and drops new readings; either way every
    drop is counted, logged and reported in the status."""

    path: Path
    max_readings: int = Field(2_000_000, ge=100)
    when_full: Literal["drop_oldest", "refuse"] = "drop_oldest"


class PublishConfig(_Strict):
    """`format`: `json_v1` (riskwatch's own contract) or `sparkplug_b` (Sparkplug 3.0 edge node, the gateway id as
    edge node id, under `group_id`; see docs/edge.md "Sparkplug B").

    `primary_host_id` (sparkplug_b only): the Sparkplug primary host application whose STATE the agent waits for
    before its NBIRTH. Default `riskwatch`, the collector's own STATE: riskwatch is the only host that confirms
    what the agent sends, so while it is away the readings are better kept in the agent's disk buffer than queued
    at the broker. `null` births at once (the behaviour before the wait existed).
    """

    format: Literal["json_v1", "sparkplug_b"] = "json_v1"
    group_id: str | None = None  # Sparkplug group id; required for sparkplug_b, meaningless for json_v1
    primary_host_id: str | None = None  # riskwatch's host id by default with sparkplug_b (see `_default_host`)
    max_readings_per_message: int = Field(500, ge=1, le=5000)
    flush_interval_s: float = Field(0.5, gt=0, le=60)
    window: int = Field(100, ge=1, le=10_000)  # messages handed to the broker and not yet PUBACKed
    resend_after_s: float = Field(15.0, gt=0)  # unconfirmed for this long while connected: send again

    @model_validator(mode="before")
    @classmethod
    def _default_host(cls, data: object) -> object:
        """sparkplug_b waits for riskwatch unless told otherwise; an explicit `primary_host_id: null` stays null."""
        if isinstance(data, dict) and data.get("format") == "sparkplug_b" and "primary_host_id" not in data:
            return {**data, "primary_host_id": sp_topics.HOST_ID}
        return data

    @field_validator("group_id")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        if v is not None and not GROUP_ID.match(v):
            raise ValueError("group_id must be 1-64 characters without '/', '+', '#' and without spaces at the ends "
                             "(a Sparkplug topic element)")
        return v

    @field_validator("primary_host_id")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None and not GROUP_ID.match(v):
            raise ValueError("primary_host_id must be 1-64 characters without '/', '+', '#' and without spaces at "
                             f"the ends (the last level of spBv1.0/STATE/{{host_id}}; riskwatch's is "
                             f"{sp_topics.HOST_ID!r})")
        return v

    @model_validator(mode="after")
    def _format(self) -> PublishConfig:
        if self.format == "sparkplug_b" and self.group_id is None:
            raise ValueError("format sparkplug_b needs group_id (the Sparkplug group this edge node publishes under)")
        if self.format == "json_v1" and self.group_id is not None:
            raise ValueError("group_id applies to format sparkplug_b only (json_v1 topics have no group)")
        if self.format == "json_v1" and self.primary_host_id is not None:
            raise ValueError("primary_host_id applies to format sparkplug_b only (json_v1 has no host STATE)")
        return self


class HealthConfig(_Strict):
    status_interval_s: float = Field(10.0, gt=0)
    max_clock_skew_s: float = Field(5.0, gt=0)


class ModbusTag(_Strict):
    tag: str = Field(min_length=1, max_length=64)
    function: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: int = Field(ge=0, le=65535)
    type: RegType = "uint16"
    byte_order: Order = "big"
    word_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    interval_s: float = Field(1.0, gt=0, le=86_400)
    on_change: bool = False  # record only when the value differs from the last one recorded

    @model_validator(mode="after")
    def _span(self) -> ModbusTag:
        n = register_count(self.type) if self.function in ("holding", "input") else 1
        if self.address + n > 65536:
            raise ValueError(f"{self.type} at address {self.address} runs past register 65535")
        return self

    @property
    def count(self) -> int:
        return register_count(self.type) if self.function in ("holding", "input") else 1


class ModbusSource(_Strict):
    kind: Literal["modbus"]
    name: str = Field(min_length=1)
    host: str
    port: int = Field(502, ge=1, le=65535)
    unit: int = Field(1, ge=0, le=255)
    timeout_s: float = Field(2.0, gt=0, le=60)
    tags: list[ModbusTag] = Field(min_length=1)


class OpcuaTag(_Strict):
    tag: str = Field(min_length=1, max_length=64)
    node: str = Field(min_length=3)  # e.g. "ns=2;s=TT-101"
    mode: Literal["subscribe", "poll"] = "subscribe"
    interval_s: float = Field(1.0, gt=0, le=86_400)  # publishing interval or poll period

    @field_validator("node")
    @classmethod
    def _node(cls, v: str) -> str:
        if not re.match(r"^(ns=\d+;)?[isgb]=.+$", v):
            raise ValueError(f"{v!r} is not an OPC UA node id (e.g. ns=2;s=TT-101 or i=2258)")
        return v


class OpcuaSource(_Strict):
    kind: Literal["opcua"]
    name: str = Field(min_length=1)
    endpoint: str = Field(pattern=r"^opc\.tcp://")
    timeout_s: float = Field(4.0, gt=0, le=60)
    tags: list[OpcuaTag] = Field(min_length=1)


Source = Annotated[ModbusSource | OpcuaSource, Field(discriminator="kind")]


class EdgeConfig(_Strict):
    version: Literal[1] = 1
    gateway: str
    broker: BrokerConfig
    buffer: BufferConfig
    publish: PublishConfig = PublishConfig()
    health: HealthConfig = HealthConfig()
    sources: list[Source] = Field(min_length=1)

    @field_validator("gateway")
    @classmethod
    def _gateway(cls, v: str) -> str:
        if not GATEWAY_ID.match(v):
            raise ValueError("gateway must be 1-64 of A-Z a-z 0-9 . _ - (the id `riskwatch gateway add` issued)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> EdgeConfig:
        url = MqttUrl.parse(self.broker.url)
        if url.username and url.username != self.gateway:
            raise ValueError(f"broker url user {url.username!r} is not the gateway id {self.gateway!r} "
                             "(the broker only accepts a gateway under its own id)")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("source names must be unique")
        return self

    def tags(self) -> list[str]:
        """Every configured tag, in config order (Sparkplug declares them in its births)."""
        return [t.tag for src in self.sources for t in src.tags]

    def mqtt_url(self) -> MqttUrl:
        """The broker URL with the gateway as user and the password from `password_file` if given."""
        url = MqttUrl.parse(self.broker.url).with_user(self.gateway, MqttUrl.parse(self.broker.url).password)
        if self.broker.password_file is not None:
            url = url.with_user(self.gateway, self.broker.password_file.read_text(encoding="utf-8").strip())
        return url


def _duplicate_tags(path: str, cfg: EdgeConfig, lines: yamlsrc.Lines) -> list[SourceProblem]:
    seen: dict[str, tuple[int, int]] = {}
    out = []
    for si, src in enumerate(cfg.sources):
        names = [t.tag for t in src.tags] if isinstance(src, ModbusSource) else [t.tag for t in src.tags]
        for ti, name in enumerate(names):
            if name in seen:
                a, b = seen[name]
                first = yamlsrc.line_for(lines, ("sources", a, "tags", b))
                out.append(SourceProblem(path, yamlsrc.line_for(lines, ("sources", si, "tags", ti, "tag")),
                                         f"sources.{si}.tags.{ti}.tag: {name!r} already mapped (line {first})"))
            else:
                seen[name] = (si, ti)
    return out


def load_config(path: str | Path, text: str | None = None) -> EdgeConfig:
    """Parse and validate; raises SourceError (file:line per problem) on anything wrong."""
    cfg, lines = yamlsrc.validate(path, EdgeConfig, text)
    problems = _duplicate_tags(str(path), cfg, lines)
    pw = cfg.broker.password_file
    if pw is not None and text is None and not pw.is_file():
        problems.append(SourceProblem(str(path), yamlsrc.line_for(lines, ("broker", "password_file")),
                                      f"broker.password_file: {pw} does not exist"))
    if problems:
        raise SourceError(problems)
    return cfg


__all__ = ["EdgeConfig", "ModbusSource", "ModbusTag", "OpcuaSource", "OpcuaTag", "load_config"]
