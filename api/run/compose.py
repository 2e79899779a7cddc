"""The composition root: the one place that builds settings, the clock and the rule catalog, and
injects them into the rule engine, the collector and the alerting dispatcher.

Constructors downstream take what they need as arguments and load nothing themselves; every
command that runs a stage (`serve`, `collect`, `alerting dispatch`, `demo`, the bench's collector)
gets its parts from here, so one clock and one catalog are shared by the parts of one process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

from alerting.config import AlertingConfig
from alerting.dispatcher import Dispatcher
from api.run.settings import build_clock, load_settings
from core.clock import Clock
from core.settings import MqttUrl, Settings
from ingest.collector import Collector
from ingest.leases import Leases, LeaseSettings
from ingest.quarantine import Sweeper
from rules.disposal import Policy, load_policy
from rules.engine import RuleEngine
from rules.model import Catalog, load_catalog

__all__ = ["Titles", "build_clock", "build_collector", "build_dispatcher", "build_engine", "load_rule_catalog",
           "load_settings", "rule_titles"]

#: Rule id -> (Chinese title, legal basis): how notices name alarms, from the catalog the engine runs.
Titles = dict[str, tuple[str, str | None]]


def load_rule_catalog(path: Path | None = None) -> Catalog:
    """The rule catalog the collector runs: `path` (a dir or file) or the shipped one."""
    return load_catalog(path)


def rule_titles(catalog: Catalog) -> Titles:
    """What alerting needs of the catalog, so alerting never imports rules."""
    return catalog.titles()


def build_engine(catalog: Catalog, clock: Clock,
                 on_candidate: Callable[[psycopg.Connection, int], object] | None = None,
                 disposal_policy: Policy | None = None) -> RuleEngine:
    """The rule engine with the ledger's intake hook (called with each new hazard candidate's id) and the
    warning-disposal policy (the shipped rules/disposal.yaml unless one is given)."""
    return RuleEngine(catalog=catalog, clock=clock, on_candidate=on_candidate,
                      disposal_policy=disposal_policy or load_policy())


def build_collector(settings: Settings, clock: Clock, engine: RuleEngine, *, db_url: str | None = None,
                    mqtt: MqttUrl | None = None, group: LeaseSettings | None = None) -> Collector:
    """The MQTT -> TimescaleDB collector running `engine` on every batch. `settings` has its URLs resolved.

    `group`: one collector of several, holding gateways by lease (ingest.leases); its id is its MQTT
    username, which the broker also makes its client id, so each member needs a login of its own."""
    url = db_url or settings.db_url
    assert url is not None and (mqtt is not None or settings.mqtt_url is not None)
    murl = mqtt or MqttUrl.parse(settings.mqtt_url or "")
    leases = None
    if group is not None:
        leases = Leases(murl.username or settings.collector.client_id or "riskwatch-collector", group)
    # Sweeper: backfills quarantined readings of tags mapped by other means (a points POST, a site file)
    return Collector(url, murl, settings.collector, settings.limits, clock=clock, processors=[engine, Sweeper()],
                     leases=leases)


def build_dispatcher(db_url: str, cfg: AlertingConfig, clock: Clock, titles: Titles, *, public_url: str,
                     link_secret: bytes, workers: int = 4) -> Dispatcher:
    """The alerting dispatcher: outbox -> notifications -> channels."""
    return Dispatcher(db_url, cfg, public_url=public_url, link_secret=link_secret, clock=clock, titles=titles,
                      workers=workers)
