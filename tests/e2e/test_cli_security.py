"""The CLI keeps secrets and hands out the right keys: `services status` prints no password unless asked
(issue #11 item 9), `gateway add --cert` issues a client certificate that the mutual-TLS listener takes as the
gateway, and `broker export` writes files an external Mosquitto can use, without reserved ids."""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from core.services import BRIDGE_USER, COLLECTOR_USER, HEALTH_USER, LocalServices, mosquitto_verify
from core.settings import MqttUrl
from core.tls import common_name
from tests.conftest import FIXTURES
from tests.e2e.test_cli import Cli, cli  # noqa: F401


def _secrets(data_dir: Path) -> list[str]:
    st = LocalServices(data_dir).state
    return [st.pg_password, st.collector_password, st.health_password]


def test_services_status_prints_no_secret_unless_asked(cli: Cli) -> None:  # noqa: F811
    cli("services", "up")
    secrets = _secrets(cli.data_dir)
    for args in (("services", "status"), ("services", "up")):
        res = cli(*args)
        out = res.stdout + res.stderr
        assert "PostgreSQL" in out and "mqtts://" in out
        leaked = [s for s in secrets if s in out]
        assert not leaked, f"`riskwatch {' '.join(args)}` printed a secret"
    shown = cli("services", "status", "--show-secrets").stdout
    assert all(s in shown for s in secrets[:2])
    env = cli("services", "status", "--env").stdout
    assert "RISKWATCH_MQTT_URL='mqtts://" in env and secrets[1] in env


def test_gateway_cert_is_the_gateway_on_the_mutual_tls_listener(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    cli("services", "up")
    cli("registry", "load", str(FIXTURES / "mini_site.yaml"))
    out_dir = tmp_path / "certs"
    out = cli("gateway", "add", "gw-a1", "--cert", "--out", str(out_dir)).stdout
    key, crt, ca = out_dir / "gw-a1.key", out_dir / "gw-a1.crt", out_dir / "ca.crt"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert common_name(crt.read_bytes()) == "gw-a1"
    assert "mutual TLS" in out
    s = LocalServices(cli.data_dir)
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(s.state.mqtt_mtls_port), "--cafile", str(ca),
           "--cert", str(crt), "--key", str(key), "-q", "1", "-t", "rw/v1/gw-a1/telemetry", "-m", "{}"]
    res = subprocess.run(pub, capture_output=True, text=True, timeout=20)
    assert res.returncode == 0, res.stderr
    # the broker took the certificate's CN as the username (and so as the client id)
    log = s.mqtt.logfile.read_text()
    assert "as gw-a1 (" in log
    # no certificate at all on that listener: refused
    res = subprocess.run([*pub[:7], "-q", "1", "-t", "rw/v1/gw-a1/telemetry", "-m", "{}", "-u", "gw-a1", "-P", "x"],
                         capture_output=True, text=True, timeout=20)
    assert res.returncode != 0

    # a disabled gateway's certificate still logs in (the certificate is the login) but may publish nothing
    def reaches_collector(payload: str) -> bool:
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(s.state.mqtt_port), "--cafile",
                                str(s.mqtt.cafile), "-u", COLLECTOR_USER, "-P", s.state.collector_password,
                                "-t", "rw/v1/#", "-C", "1", "-W", "4"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.7)  # subscribed
        subprocess.run([*pub[:-1], payload], capture_output=True, timeout=20)
        out, _ = sub.communicate(timeout=10)
        return payload in out

    assert reaches_collector('{"probe": 1}')
    cli("gateway", "disable", "gw-a1")
    time.sleep(0.5)  # SIGHUP re-read the ACL
    assert not reaches_collector('{"probe": 2}')


def test_gateway_ids_the_service_keeps_are_refused_by_the_cli(cli: Cli) -> None:  # noqa: F811
    cli("services", "up")
    cli("registry", "load", str(FIXTURES / "mini_site.yaml"))
    for gid in (COLLECTOR_USER, "Riskwatch-collector", HEALTH_USER):
        res = cli("gateway", "add", gid, "--plant", "plant-a", check=False)
        assert res.returncode != 0, f"{gid} was accepted"
        assert "reserved" in (res.stdout + res.stderr).lower()
    users = [line.split(":", 1)[0] for line in LocalServices(cli.data_dir).mqtt.passwd.read_text().splitlines()]
    assert users.count(COLLECTOR_USER) == 1 and len(users) == len(set(users))


@pytest.mark.parametrize("with_health", [False, True], ids=["collector-only", "health-and-http-bridge"])
def test_broker_export_for_an_external_broker(cli: Cli, tmp_path: Path, with_health: bool) -> None:  # noqa: F811
    cli("services", "up")
    cli("registry", "load", str(FIXTURES / "mini_site.yaml"))
    cli("gateway", "add", "gw-a1")
    s = LocalServices(cli.data_dir)
    # an operator running against "external" services: the URLs come from the environment
    cli.env["RISKWATCH_DB_URL"] = s.db_url
    cli.env["RISKWATCH_MQTT_URL"] = MqttUrl.parse(s.mqtt_url).with_user(COLLECTOR_USER, "ext-collector-pw").url()
    if with_health:
        cli.env["RISKWATCH_MQTT_HEALTH_URL"] = MqttUrl.parse(s.mqtt_url).with_user(HEALTH_USER, "ext-health").url()
        cli.env["RISKWATCH_MQTT_BRIDGE_URL"] = MqttUrl.parse(s.mqtt_url).with_user(BRIDGE_USER, "ext-bridge").url()
    dest = tmp_path / "export"
    cli("broker", "export", str(dest), *(["--collectors", "2"] if with_health else []))
    passwd = (dest / "passwd").read_text()
    users = {line.split(":", 1)[0]: line.split(":", 1)[1] for line in passwd.splitlines()}
    assert mosquitto_verify("ext-collector-pw", users[COLLECTOR_USER])
    group = f"{COLLECTOR_USER}-2"
    assert (group in users) == with_health and (not with_health or mosquitto_verify("ext-collector-pw", users[group]))
    users.pop(group, None)
    assert (HEALTH_USER in users) == with_health == (BRIDGE_USER in users)
    if with_health:
        assert mosquitto_verify("ext-bridge", users[BRIDGE_USER])
        acl = (dest / "acl").read_text()
        assert f"user {BRIDGE_USER}\ntopic write rw/v1/+/telemetry\ntopic read rw/v1/+/stored\n" in acl
    with psycopg.connect(s.db_url) as conn:
        want = dict(conn.execute("SELECT id, credential_hash FROM gateways WHERE enabled AND credential_hash "
                                 "IS NOT NULL").fetchall())
    assert {u: h for u, h in users.items() if u not in (COLLECTOR_USER, HEALTH_USER, BRIDGE_USER)} == want
    assert "pattern write rw/v1/%u/#" in (dest / "acl").read_text()
    assert stat.S_IMODE((dest / "passwd").stat().st_mode) == 0o600
