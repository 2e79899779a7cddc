"""What the composition root needs of its caller's context (the CLI's `Context` has it): the settings,
the private services and the resolved URLs. A Protocol, so `api.run` never imports `api.cli`.
"""

from __future__ import annotations

from typing import Protocol

import psycopg

from core.services import LocalServices
from core.settings import MqttUrl, Settings

__all__ = ["RunContext"]


class RunContext(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def services(self) -> LocalServices: ...

    @property
    def private(self) -> bool: ...

    @property
    def db_url(self) -> str: ...

    @property
    def mqtt(self) -> MqttUrl: ...

    def resolved(self) -> Settings: ...

    def sync_broker(self, conn: psycopg.Connection) -> bool: ...
