"""Operator actions through the CLI on alarms the collector raised: ack, shelve, history, flood,
baseline, maintenance windows."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.conftest import FIXTURES, CollectorProcess, Site, sql_one, wait_for
from tests.integration.test_rules_restart import Gateway

pytestmark = pytest.mark.integration
RISKWATCH = str(Path(sys.executable).parent / "riskwatch")


def cli(collector: CollectorProcess, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([RISKWATCH, *args], env={**collector.env, "COLUMNS": "220"}, capture_output=True,
                         text=True, timeout=60)
    if ok:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


def test_operator_actions(mini_site: Site, collector: CollectorProcess) -> None:
    collector.extra_args = ["--catalog", str(FIXTURES / "rules_test.yaml")]
    collector.start()
    gw = Gateway(mini_site, "gw-a1")
    t0 = int(time.time() * 1000) - 30_000
    gw.send([("CO-101", t0, 30.0)])
    gw.flush()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT state FROM alarms WHERE rule_id = 'it.co:hi'") == "unack")

    listed = cli(collector, "alarms", "list").stdout
    assert "it.co:hi" in listed and "CO-101" in listed and "★" in listed
    out = cli(collector, "alarms", "ack", "it.co:hi", "gw-a1", "CO-101", "--by", "值班员张",
              "--comment", "已通知企业").stdout
    assert "unack -> ack" in out
    again = cli(collector, "alarms", "ack", "it.co:hi", "gw-a1", "CO-101", ok=False)
    assert again.returncode == 2 and "nothing to acknowledge" in again.stderr
    assert "shelving needs a reason" in cli(collector, "alarms", "shelve", "it.co:hi", "gw-a1", "CO-101",
                                            ok=False).stderr
    cli(collector, "alarms", "shelve", "it.co:hi", "gw-a1", "CO-101", "--minutes", "5", "--reason", "更换传感器")
    cli(collector, "alarms", "unshelve", "it.co:hi", "gw-a1", "CO-101")
    hist = cli(collector, "alarms", "history", "it.co:hi", "gw-a1", "CO-101").stdout
    for ev in ("activate", "ack", "shelve", "unshelve"):
        assert ev in hist
    assert "值班员张" in hist and "已通知企业" in hist
    assert "plant-a" in cli(collector, "alarms", "flood").stdout

    # a maintenance window: the next activation is recorded but not annunciated
    cli(collector, "maintenance", "add", "plant-a", "--device", "coal-bf", "--minutes", "10", "--reason", "换袋检修")
    time.sleep(11)  # the engine reads windows every 10 s
    t1 = int(time.time() * 1000)  # maintenance windows apply to readings taken inside them
    gw.send([("TT-101", t1 + k * 1000, 80.0) for k in range(8)])
    gw.close()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM alarm_events WHERE rule_id = 'it.temp:hi'"
                                               " AND event = 'activate'") == 1)
    with psycopg.connect(mini_site.db_url) as conn:
        ann, reason = conn.execute("SELECT annunciate, reason FROM alarm_events WHERE rule_id = 'it.temp:hi'"
                                   " AND event = 'activate'").fetchone()  # type: ignore[misc]
    assert ann is False and "maintenance window" in reason and "换袋检修" in reason

    # baselines: by value and captured from recent readings
    assert "= 1000" in cli(collector, "baseline", "set", "gw-a1", "PDT-101", "--value", "1000").stdout
    assert "no valid readings" in cli(collector, "baseline", "set", "gw-a1", "PDT-101", "--capture-minutes", "5",
                                      ok=False).stderr
    assert "= 30" in cli(collector, "baseline", "set", "gw-a1", "CO-101", "--capture-minutes", "5").stdout
    assert collector.stop() == 0
