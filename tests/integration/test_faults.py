"""Fault injection: nothing lost, nothing doubled, whatever crashes.

The simulator publishes the sample site at QoS1 through real Mosquitto while
we SIGKILL the collector, restart the broker, or stop PostgreSQL. Afterwards
the number of stored readings must equal exactly the number of distinct
readings the simulator logged as sent.
"""

from __future__ import annotations

import csv
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from core.services import LocalMosquitto, LocalPostgres
from simulators.run import default_site_path, simulate
from tests.conftest import CollectorProcess, Site, sql_one, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def county(db_url: str, broker: LocalMosquitto) -> Site:
    return Site(db_url, broker, default_site_path())


class SimThread(threading.Thread):
    def __init__(self, site: Site, log: Path, duration_s: float, rate_hz: float, batch: int):
        super().__init__(name="simulator", daemon=True)
        self.site, self.log = site, log
        self.kw = {"duration_s": duration_s, "rate_hz": rate_hz, "batch": batch}
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = simulate(self.site.spec, "127.0.0.1", self.site.broker.state.mqtt_port,
                                   self.site.credentials, log_path=self.log, seed=7, tls=self.site.tls, **self.kw)
        except BaseException as exc:  # surfaced by finish()
            self.error = exc

    def finish(self, timeout: float) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "simulator did not finish"
        if self.error:
            raise self.error
        assert self.result.acked, f"broker did not acknowledge everything: {self.result}"
        return self.result


def distinct_sent(log: Path) -> int:
    with log.open() as f:
        return len({(row[0], row[1], row[2]) for row in csv.reader(f)})


def assert_exactly_once(site: Site, log: Path, collector: CollectorProcess, settle_s: float = 120) -> int:
    sent = distinct_sent(log)

    def stored() -> int:
        return int(sql_one(site.db_url, "SELECT count(*) FROM readings"))  # type: ignore[arg-type]

    wait_for(lambda: stored() >= sent, timeout=settle_s, interval=0.5,
             message=f"{sent} readings stored (have {stored()})")
    time.sleep(1.0)  # anything extra would show up now
    assert stored() == sent
    assert sql_one(site.db_url, "SELECT count(*) FROM dead_letters") == 0
    assert collector.alive()
    assert collector.stop() == 0
    return sent


def test_collector_sigkilled_repeatedly_loses_and_doubles_nothing(
    county: Site, collector: CollectorProcess, tmp_path: Path
) -> None:
    collector.start()
    log = tmp_path / "sent.csv"
    points = len(county.spec.points())
    duration = 24.0
    rate = max(10.0, round(110_000 / (points * duration)))
    sim = SimThread(county, log, duration_s=duration, rate_hz=rate, batch=50)
    sim.start()
    rng = random.Random()
    kills = sorted(rng.uniform(2.0, duration - 3.0) for _ in range(4))
    t0 = time.monotonic()
    for at in kills:
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        collector.kill()
        time.sleep(rng.uniform(0.0, 1.0))
        collector.start()
    res = sim.finish(timeout=duration + 120)
    assert res.readings_sent >= 100_000
    sent = assert_exactly_once(county, log, collector)
    assert sent == res.readings_sent
    assert collector.starts == 5


def test_broker_restart_mid_stream(county: Site, collector: CollectorProcess, tmp_path: Path) -> None:
    collector.start()
    log = tmp_path / "sent.csv"
    sim = SimThread(county, log, duration_s=15, rate_hz=20, batch=20)
    sim.start()
    time.sleep(5)
    county.broker.stop()
    time.sleep(1.5)
    county.broker.start()
    res = sim.finish(timeout=120)
    sent = assert_exactly_once(county, log, collector)
    assert sent == res.readings_sent


def test_database_down_for_20s_mid_stream(
    county: Site, collector: CollectorProcess, pg: LocalPostgres, tmp_path: Path
) -> None:
    collector.start()
    log = tmp_path / "sent.csv"
    sim = SimThread(county, log, duration_s=32, rate_hz=10, batch=10)
    sim.start()
    time.sleep(4)
    pg.stop(mode="fast")
    try:
        down_since = time.monotonic()
        while time.monotonic() - down_since < 21:
            assert collector.alive(), collector.log.read_text()[-3000:]
            time.sleep(0.5)
    finally:
        pg.start()
    res = sim.finish(timeout=120)
    sent = assert_exactly_once(county, log, collector)
    assert sent == res.readings_sent
    assert "database unavailable" in collector.log.read_text()
