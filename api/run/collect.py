"""`riskwatch collect` and `riskwatch alerting dispatch`: one stage alone in its process, composed here.

Each builds its parts through `api.run.compose` (settings resolved by the caller, one clock, the
catalog loaded once) and runs until SIGTERM / SIGINT. What they print goes through `say`, so the
CLI decides where it goes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from alerting.ack import link_secret
from alerting.config import AlertingConfig
from api.run import compose
from core.settings import MqttUrl, Settings
from hazards.intake import open_or_attach
from ingest.leases import LeaseSettings

__all__ = ["collect", "dispatch"]


def collect(settings: Settings, catalog: Path | None, *, say: Callable[[str], None],
            profile: str | None = None, group: LeaseSettings | None = None) -> None:
    """The MQTT -> TimescaleDB collector with the rule engine and the ledger's intake, until a signal.

    `profile`: write a cProfile of the flush loop there (for `riskwatch bench` and tuning).
    `group`: one of several collectors, gateways by lease (ingest.leases); None: the only one, on rw/v1/#.
    """
    assert settings.db_url is not None and settings.mqtt_url is not None
    clock = compose.build_clock()
    engine = compose.build_engine(compose.load_rule_catalog(catalog), clock, on_candidate=open_or_attach)
    col = compose.build_collector(settings, clock, engine, group=group)

    def _term(_sig: int, _frame: object) -> None:
        col.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    say(f"collector: {MqttUrl.parse(settings.mqtt_url).redacted()} -> database; SIGTERM flushes and exits")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.runcall(col.run)
        prof.dump_stats(profile)
    else:
        col.run()
    st = col.stats
    say(f"collector stopped: {st.messages} messages, {st.readings_stored} readings stored, "
        f"{st.readings_duplicate} duplicates absorbed, {st.dead_letters} dead letters; "
        f"{engine.stats.activations} alarm activations, {engine.stats.candidates} hazard candidates; "
        f"at most {st.max_inbox} messages waiting")


def dispatch(settings: Settings, cfg: AlertingConfig, catalog: Path | None, *, public_url: str, workers: int,
             say: Callable[[str], None]) -> None:
    """The alerting dispatcher alone: outbox -> notifications -> channels, until a signal."""
    assert settings.db_url is not None
    d = compose.build_dispatcher(settings.db_url, cfg, compose.build_clock(),
                                 compose.rule_titles(compose.load_rule_catalog(catalog)), public_url=public_url,
                                 link_secret=link_secret(settings.link_secret, settings.data_dir), workers=workers)
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    signal.signal(signal.SIGINT, lambda *_: d.stop())
    say(f"riskwatch alerting dispatch: {len(cfg.receivers)} receivers, links → {public_url}; SIGTERM stops")
    try:
        d.run()
    finally:
        d.close()
    say(f"dispatcher stopped: {d.stats.sent} sent, {d.stats.failed} failed attempts, {d.stats.dead} dead")
