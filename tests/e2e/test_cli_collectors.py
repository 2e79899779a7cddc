"""`riskwatch services collectors N`: the private broker's logins for a collector group (docs/scaling.md)."""
from __future__ import annotations

import subprocess

from core.services import COLLECTOR_USER, LocalServices
from core.settings import MqttUrl
from tests.conftest import FIXTURES
from tests.e2e.test_cli import Cli, cli  # noqa: F401  (the fixture)


def logs_in(s: LocalServices, user: str) -> bool:
    """A real MQTT login (mosquitto_pub, TLS) as `user` with the collector's password and client id = user."""
    res = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(s.state.mqtt_port), "--cafile",
                          str(s.mqtt.cafile), "-u", user, "-P", s.state.collector_password, "-i", user,
                          "-t", "rw/v1/gw-a1/stored", "-m", "{}", "-q", "1"], capture_output=True, timeout=20)
    return res.returncode == 0


def test_collectors_adds_and_removes_group_logins(cli: Cli) -> None:  # noqa: F811
    cli("services", "up")
    cli("registry", "load", str(FIXTURES / "mini_site.yaml"))
    cli("gateway", "add", "gw-a1")
    s = LocalServices(cli.data_dir)
    assert "gw-a1:" in s.mqtt.passwd.read_text()
    assert logs_in(s, COLLECTOR_USER) and not logs_in(s, f"{COLLECTOR_USER}-3")

    out = cli("services", "collectors", "3").stdout
    assert "1 → 3" in out
    for user in (COLLECTOR_USER, f"{COLLECTOR_USER}-2", f"{COLLECTOR_USER}-3"):
        assert f"RISKWATCH_MQTT_URL='mqtts://{user}:" in out and logs_in(LocalServices(cli.data_dir), user), user
    assert s.state.collector_password not in out  # redacted unless asked
    assert s.state.collector_password in cli("services", "collectors", "3", "--show-secrets").stdout
    # what it printed is what a member starts with
    line = next(x for x in cli("services", "collectors", "3", "--show-secrets").stdout.splitlines() if "-2:" in x)
    url = MqttUrl.parse(line.split("'")[1])
    assert (url.username, url.port, url.tls) == (f"{COLLECTOR_USER}-2", s.state.mqtt_port, True)
    # the gateways kept their logins through the rewrite
    assert "gw-a1:" in s.mqtt.passwd.read_text()

    assert "3 → 1" in cli("services", "collectors", "1").stdout
    assert not logs_in(LocalServices(cli.data_dir), f"{COLLECTOR_USER}-2")
    assert logs_in(LocalServices(cli.data_dir), COLLECTOR_USER)
    bad = cli("services", "collectors", "0", check=False)
    assert bad.returncode == 2 and "N" in bad.stderr


def test_collectors_refuses_when_the_services_are_down(cli: Cli) -> None:  # noqa: F811
    cli("services", "up")
    cli("services", "down")
    res = cli("services", "collectors", "2", check=False)
    assert res.returncode == 3 and "riskwatch services up" in res.stderr
    assert LocalServices(cli.data_dir).state.collector_instances == 1
