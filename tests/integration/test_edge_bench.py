"""The bench's edge part runs and measures something real (a short run; the bench itself runs longer)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.services import LocalMosquitto
from simulators.plc import edge_throughput
from tests.conftest import ROOT, CollectorProcess, Site

pytestmark = pytest.mark.integration


def test_edge_throughput_counts_readings_stored_through_modbus_and_the_agent(
    db_url: str, broker: LocalMosquitto, collector: CollectorProcess, tmp_path: Path
) -> None:
    site = Site(db_url, broker, ROOT / "simulators" / "sites" / "county.yaml")
    collector.start()
    tags = ["CO-101", "PDT-101", "TT-101", "TT-111"]  # points of gw-cem-01
    url = f"mqtts://gw-cem-01@127.0.0.1:{broker.state.mqtt_port}?cafile={broker.cafile}"
    r = edge_throughput(gateway="gw-cem-01", password=site.credentials["gw-cem-01"], broker_url=url, db_url=db_url,
                        tags=tags, workdir=tmp_path, duration_s=5, poll_s=0.05)
    print("edge_throughput", r)
    # 4 tags polled at 20 Hz: ~80 readings/s offered; most of it must reach the database within the window
    assert r["readings"] >= 0.5 * 4 * 20 * 5, r
    assert 30 < r["readings_per_s"] <= 4 * 20 * 1.2, r
