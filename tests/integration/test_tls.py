"""TLS end to end (issue #11, item 10): every MQTT hop is `mqtts://`, verified both ways where it should be.

The private broker has no plain-TCP listener: a password listener with the private CA's server certificate
(`mqtt_port`) and a mutual-TLS listener (`mqtt_mtls_port`) where the client certificate, signed by the
private CA, is the login and its CN the username (= gateway id). Each refusal below is the client's own
result — mosquitto_pub's exit code, the simulator's exception, the health check's answer — never a sleep.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from api.http import health
from core.services import COLLECTOR_USER, LocalMosquitto
from core.settings import MqttUrl
from core.tls import Issued, make_ca, make_client
from simulators.gateway import GatewayConnectError, GatewayPublisher, tls_context
from tests.conftest import CollectorProcess, Site, pub_args, sql_one, wait_for

pytestmark = pytest.mark.integration

A = "gw-a1"


def write_pair(d: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    cert.write_bytes(issued.cert_pem)
    key.write_bytes(issued.key_pem)
    key.chmod(0o600)
    return cert, key


def reading(tag: str, v: float, ts: int) -> str:
    return orjson.dumps({"ts": ts, "readings": [{"tag": tag, "v": v}]}).decode()


def mosquitto_pub(args: list[str], topic: str, message: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mosquitto_pub", *args, "-q", "1", "-t", topic, "-m", message],
                          capture_output=True, text=True, timeout=20)


def stored_for(db_url: str, gateway: str, tag: str) -> int:
    n = sql_one(db_url, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id"
                        " WHERE p.gateway_id = %s AND p.tag = %s", (gateway, tag))
    return int(n)  # type: ignore[call-overload]


@pytest.fixture
def foreign(tmp_path: Path) -> Issued:
    """A second CA, unknown to the broker and to our clients."""
    return make_ca("not the riskwatch CA")


def test_gateway_over_mqtts_and_the_simulator_client_are_stored(mini_site: Site, collector: CollectorProcess) -> None:
    collector.start()
    ts = int(time.time() * 1000)
    res = mosquitto_pub([*pub_args(mini_site.broker), "-u", A, "-P", mini_site.credentials[A]],
                        f"rw/v1/{A}/telemetry", reading("TT-101", 42.0, ts))
    assert res.returncode == 0, res.stderr
    wait_for(lambda: stored_for(mini_site.db_url, A, "TT-101") == 1, message="the mosquitto_pub reading")

    # the simulator's gateway client (what `riskwatch simulate` runs per gateway; the county-site runs over TLS
    # are tests/integration/test_scenarios.py and test_faults.py)
    pub = GatewayPublisher(A, mini_site.credentials[A], "127.0.0.1", mini_site.broker.state.mqtt_port,
                           tls=mini_site.tls)
    pub.start(10)
    try:
        for i in range(50):
            pub.publish_telemetry(["PDT-101", "CO-101"], [float(i), 1.0], [ts - 60_000 + i, ts - 60_000 + i])
        assert pub.wait_acked(20)
    finally:
        pub.close()
    wait_for(lambda: sql_one(mini_site.db_url, "SELECT count(*) FROM readings") == 101,
             message="every reading of the simulator's client")
    assert collector.stop() == 0


def test_password_listener_refuses_plain_tcp_and_a_broker_it_cannot_verify(
        mini_site: Site, foreign: Issued, tmp_path: Path) -> None:
    broker = mini_site.broker
    port = broker.state.mqtt_port
    login = ["-u", A, "-P", mini_site.credentials[A]]
    topic, msg = f"rw/v1/{A}/telemetry", reading("TT-101", 1.0, int(time.time() * 1000))
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(foreign.cert_pem)

    # control: the same client with the right CA gets through
    assert mosquitto_pub([*pub_args(broker), *login], topic, msg).returncode == 0

    # no TLS at all (plain MQTT to the TLS listener): the broker drops the connection
    plain = mosquitto_pub(["-h", "127.0.0.1", "-p", str(port), *login], topic, msg)
    assert plain.returncode != 0, plain
    check = health.broker(MqttUrl.parse(f"mqtt://{A}:{mini_site.credentials[A]}@127.0.0.1:{port}"))
    assert not check.ok and "closed before CONNACK" in str(check.detail) and "mqtts" in str(check.detail), check
    with pytest.raises(GatewayConnectError, match="no CONNACK"):
        GatewayPublisher(A, mini_site.credentials[A], "127.0.0.1", port).start(3)

    # a client that trusts another CA refuses the broker's certificate
    wrong = mosquitto_pub(["-h", "127.0.0.1", "-p", str(port), "--cafile", str(other_ca), *login], topic, msg)
    assert wrong.returncode != 0 and "TLS" in wrong.stderr, wrong
    with pytest.raises(GatewayConnectError, match="TLS: certificate verify failed"):
        GatewayPublisher(A, mini_site.credentials[A], "127.0.0.1", port, tls=tls_context(str(other_ca))).start(5)
    check = health.broker(MqttUrl(host="127.0.0.1", port=port, username=A, password=mini_site.credentials[A],
                                  tls=True, cafile=str(other_ca)))
    assert not check.ok and str(check.detail).startswith("TLS: certificate verify failed"), check

    # the right CA but another host name: the certificate names 127.0.0.1 and localhost only
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, pytest.raises(
            ssl.SSLCertVerificationError, match="Hostname mismatch"):
        tls_context(str(broker.cafile)).wrap_socket(raw, server_hostname="broker.example.org")


def mtls_args(broker: LocalMosquitto, cert: Path | None = None, key: Path | None = None) -> list[str]:
    args = pub_args(broker, mtls=True)
    return args + (["--cert", str(cert), "--key", str(key)] if cert and key else [])


def test_mutual_tls_listener_takes_only_certificates_of_the_private_ca(
        mini_site: Site, collector: CollectorProcess, foreign: Issued, tmp_path: Path) -> None:
    broker = mini_site.broker
    collector.start()
    ts = int(time.time() * 1000)
    topic = f"rw/v1/{A}/telemetry"

    # a valid certificate for gateway A: its CN is the login; the reading is stored under A
    cert, key = write_pair(tmp_path, A, broker.ca.issue_client(A))
    ok = mosquitto_pub(mtls_args(broker, cert, key), topic, reading("TT-101", 7.0, ts))
    assert ok.returncode == 0, ok.stderr
    wait_for(lambda: stored_for(mini_site.db_url, A, "TT-101") == 1, message="A's reading over mutual TLS")
    # the same certificate through the simulator's client (no password: the certificate is the login)
    pub = GatewayPublisher(A, None, "127.0.0.1", broker.state.mqtt_mtls_port,
                           tls=tls_context(str(broker.cafile), str(cert), str(key)))
    pub.start(10)
    try:
        pub.publish_telemetry(["CO-101"], [3.0], [ts])
        assert pub.wait_acked(10)
    finally:
        pub.close()
    wait_for(lambda: stored_for(mini_site.db_url, A, "CO-101") == 1, message="the simulator's reading over mTLS")
    # A's certificate cannot write under gateway B's topic: the ACL's %u is the certificate's CN
    assert mosquitto_pub(mtls_args(broker, cert, key), "rw/v1/gw-a2/telemetry",
                         reading("TT-201", 1.0, ts)).returncode == 0  # QoS1 is acknowledged, then dropped

    # no client certificate (a password instead does not help)
    nocert = mosquitto_pub([*mtls_args(broker), "-u", A, "-P", mini_site.credentials[A]], topic,
                           reading("TT-101", 8.0, ts + 1))
    assert nocert.returncode != 0, nocert
    check = health.broker(MqttUrl(host="127.0.0.1", port=broker.state.mqtt_mtls_port, tls=True,
                                  cafile=str(broker.cafile)))
    assert not check.ok and str(check.detail).startswith(("TLS:", "connection closed")), check

    # a certificate for A signed by a foreign CA
    f_cert, f_key = write_pair(tmp_path, "foreign-a", make_client(foreign, A))
    refused = mosquitto_pub(mtls_args(broker, f_cert, f_key), topic, reading("TT-101", 9.0, ts + 2))
    assert refused.returncode != 0, refused
    with pytest.raises(GatewayConnectError):
        GatewayPublisher(A, None, "127.0.0.1", broker.state.mqtt_mtls_port,
                         tls=tls_context(str(broker.cafile), str(f_cert), str(f_key))).start(5)

    # a certificate claiming to be the collector, signed by a foreign CA: refused before MQTT starts
    c_cert, c_key = write_pair(tmp_path, "foreign-collector", make_client(foreign, COLLECTOR_USER))
    sub = subprocess.run(["mosquitto_sub", *mtls_args(broker, c_cert, c_key), "-t", "rw/v1/#", "-C", "1",
                          "-W", "3"], capture_output=True, text=True, timeout=20)
    assert sub.returncode != 0 and sub.returncode != 27, sub  # 27: timed out, i.e. it was connected
    check = health.broker(MqttUrl(host="127.0.0.1", port=broker.state.mqtt_mtls_port, tls=True,
                                  cafile=str(broker.cafile), certfile=str(c_cert), keyfile=str(c_key)))
    assert not check.ok and str(check.detail).startswith(("TLS:", "connection closed")), check

    time.sleep(0.5)
    assert stored_for(mini_site.db_url, A, "TT-101") == 1  # the refused ones never arrived
    assert stored_for(mini_site.db_url, "gw-a2", "TT-201") == 0
    log = collector.log.read_text()
    assert log.count("MQTT connected") == 1 and "MQTT disconnected" not in log
    assert collector.stop() == 0


def test_collector_refuses_a_broker_it_cannot_verify(mini_site: Site, collector: CollectorProcess,
                                                     foreign: Issued, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(foreign.cert_pem)
    url = MqttUrl.parse(mini_site.broker.url(COLLECTOR_USER))
    collector.env["RISKWATCH_MQTT_URL"] = MqttUrl(host=url.host, port=url.port, username=url.username,
                                                  password=url.password, tls=True, cafile=str(other_ca)).url()
    with pytest.raises(AssertionError, match="collector exited"):
        collector.start()
    assert collector.proc is not None and collector.proc.returncode != 0
    text = collector.log.read_text()
    assert "TLS: certificate verify failed" in text, text[-2000:]
    assert url.password and url.password not in text
