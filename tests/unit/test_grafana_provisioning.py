"""deploy/: the provisioning files and the compose file agree with the generated dashboards."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from api.grafana.dashboards import DATASOURCE_UID, FOLDER_UID
from api.grafana.pgquery import PLUGIN_ID

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_datasource_is_timescaledb_from_environment() -> None:
    doc = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/riskwatch.yaml").read_text())
    (ds,) = doc["datasources"]
    assert ds["uid"] == DATASOURCE_UID and ds["type"] == PLUGIN_ID
    assert ds["jsonData"]["timescaledb"] is True
    env = re.compile(r"^\$\{[A-Z0-9_]+\}$")
    for value in (ds["url"], ds["user"], ds["jsonData"]["database"], ds["jsonData"]["sslmode"],
                  ds["secureJsonData"]["password"]):
        assert env.match(value), value


def test_dashboard_provider_and_compose_agree() -> None:
    doc = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/riskwatch.yaml").read_text())
    (prov,) = doc["providers"]
    assert prov["type"] == "file" and prov["folderUid"] == FOLDER_UID
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"timescaledb", "mosquitto", "riskwatch", "dashboards", "grafana"} <= set(services)
    assert services["riskwatch"]["command"][0] == "serve"  # the image's entry point is riskwatch
    assert services["grafana"]["environment"]["RISKWATCH_GRAFANA_DB_USER"] == "grafana"  # member of grafana_reader
    assert "timescale/timescaledb" in services["timescaledb"]["image"]
    grafana = services["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.count(":") == 2)
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["dashboards"] == prov["options"]["path"]
    # every variable the datasource file reads is set for Grafana
    text = (DEPLOY / "grafana/provisioning/datasources/riskwatch.yaml").read_text()
    needed = set(re.findall(r"\$\{([A-Z0-9_]+)\}", "\n".join(ln.split("#")[0] for ln in text.splitlines())))
    assert needed <= set(grafana["environment"])
    assert (DEPLOY / "mosquitto/mosquitto.conf.example").exists()
