"""The console's gateway and point pages over HTTP (TestClient on the real app and a real TimescaleDB).

Scoping as the API's (another enterprise's gateway, plant or point is 404 in every page, fragment and form; a
forged plant id attaches nothing), reserved and malformed ids refused, CSRF required, the password shown once
(no-store, never in a later page, the audit table, the session table or a log line) and really the broker's
credential (its stored hash verifies), rotation invalidating the old one, disable of a gateway feeding a required
point filed as a change request exactly as the API files it, and the points' live values.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from api.web import gateways as pages
from core import registry
from core.services import LocalMosquitto, mosquitto_verify
from core.settings import Settings
from core.tls import ClientCerts
from tests.conftest import pub_args
from tests.web.fix_console import Console, console_fixture  # noqa: F401

pytestmark = pytest.mark.integration


def page(console: Console, user: str, path: str = "/gateways") -> str:
    assert console.login(user).status_code == 303
    r = console.client.get(console.url(path))
    assert r.status_code == 200, r.text
    return r.text


def secret_of(html: str) -> str:
    m = re.search(r'data-testid="password">([^<]+)<', html)
    assert m is not None, html
    return m.group(1)


def attach(console: Console, csrf: str, gateway_id: str, plant: str, name: str = "") -> object:
    return console.client.post(console.url("/gateways"), data={"csrf": csrf, "id": gateway_id, "plant_id": plant,
                                                                "name": name}, follow_redirects=False)


def gateway_count(console: Console, gateway_id: str) -> int:
    return int(console.sql("SELECT count(*) FROM gateways WHERE id = %s", (gateway_id,))[0][0])


def test_enterprise_sees_only_its_own_gateways_and_points(console: Console) -> None:
    html = page(console, "ea")
    assert 'data-gateway="gw-a1"' in html and 'data-gateway="gw-a2"' in html
    assert "gw-b1" not in html and "plant-b" not in html and "乙" not in html
    for path in ("/gateways/gw-b1", "/points?gateway=gw-b1", "/points/rows?gateway=gw-b1", "/points?plant=plant-b",
                 "/points/rows?plant=plant-b", "/gateways?plant=plant-b", "/gateways/no-such-gw"):
        r = console.client.get(console.url(path))
        assert r.status_code == 404, path
        assert "FT-301" not in r.text and "乙厂" not in r.text
    pts = console.client.get(console.url("/points")).text
    assert 'data-tag="TT-101"' in pts and "FT-301" not in pts
    frag = console.client.get(console.url("/points/rows?plant=plant-a")).text
    assert 'data-tag="TT-101"' in frag and "FT-301" not in frag and "<html" not in frag
    # the enterprise filter is the bureau's: an enterprise naming another sees still only its own
    assert "gw-b1" not in console.client.get(console.url("/gateways?enterprise=ent-b")).text


def test_bureau_sees_all_and_filters_by_enterprise(console: Console) -> None:
    html = page(console, "duty")
    assert 'data-gateway="gw-a1"' in html and 'data-gateway="gw-b1"' in html
    only_b = console.client.get(console.url("/gateways?enterprise=ent-b")).text
    assert 'data-gateway="gw-b1"' in only_b and 'data-gateway="gw-a1"' not in only_b
    row = re.search(r'<tr data-gateway="gw-a1" data-status="(\w+)">.*?</tr>', html, re.S)
    assert row is not None and row.group(1) == "never"  # never heard from
    assert re.search(r'data-gateway="gw-a-off" data-status="disabled"', html)
    assert console.client.get(console.url("/gateways/gw-b1")).status_code == 200


def test_attach_shows_the_password_once_and_nowhere_else(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    synced: list[str] = []
    console.client.app.state.ctx.broker_sync = lambda conn: synced.append("sync")  # type: ignore[attr-defined]
    caplog.set_level(logging.DEBUG)
    csrf = console.csrf_of(page(console, "ea"))
    r = attach(console, csrf, "gw-a-new", "plant-a", "新网关")
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    assert "no-store" in r.headers["cache-control"]  # type: ignore[attr-defined]
    assert "location" not in r.headers and "set-cookie" not in r.headers  # type: ignore[attr-defined]
    secret = secret_of(r.text)  # type: ignore[attr-defined]
    assert len(secret) >= 24 and synced == ["sync"]
    stored = console.sql("SELECT credential_hash, plant_id, name FROM gateways WHERE id = 'gw-a-new'")[0]
    assert mosquitto_verify(secret, stored[0]) and stored[1:] == ("plant-a", "新网关")
    # the copy-ready snippet carries exactly these credentials, and the page the copy script
    snippet = re.search(r'data-testid="snippet">([^<]+)<', r.text).group(1)  # type: ignore[union-attr,attr-defined]
    args = shlex.split(snippet.replace("&#39;", "'").replace("&#34;", '"').replace("&quot;", '"'))
    assert args[:1] == ["mosquitto_pub"]
    assert args[args.index("-P") + 1] == secret and args[args.index("-u") + 1] == "gw-a-new"
    assert args[args.index("-i") + 1] == "gw-a-new" and args[args.index("-t") + 1] == "rw/v1/gw-a-new/telemetry"
    assert args[args.index("-q") + 1] == "1" and "--cafile" in args
    assert "copy.js" in r.text and "<script>" not in r.text  # type: ignore[attr-defined]
    # never again: not in the gateway's pages, the audit table, the session table, or any log record
    for path in ("/gateways", "/gateways/gw-a-new", "/points?gateway=gw-a-new"):
        assert secret not in console.client.get(console.url(path)).text
    audit = console.sql("SELECT changes::text, path FROM audit_log WHERE path LIKE '/console/gateways%%'")
    assert any('"gateway_attach"' in a for a, _ in audit)
    assert all(secret not in a and secret not in p for a, p in audit)
    assert not console.sql("SELECT 1 FROM console_sessions WHERE row_to_json(console_sessions)::text LIKE %s",
                           (f"%{secret}%",))
    assert not [rec for rec in caplog.records if secret in rec.getMessage()]


def test_a_forged_plant_id_attaches_nothing(console: Console) -> None:
    csrf = console.csrf_of(page(console, "ea"))
    r = attach(console, csrf, "gw-sneaky", "plant-b")
    assert r.status_code == 404 and "乙厂" not in r.text  # type: ignore[attr-defined]
    assert gateway_count(console, "gw-sneaky") == 0
    assert attach(console, csrf, "gw-sneaky", "no-such-plant").status_code == 404  # type: ignore[attr-defined]
    refused = console.sql("SELECT changes->>'action' FROM audit_log WHERE path = '/console/gateways' AND status = 404")
    assert refused and all(a == "refused" for (a,) in refused)


@pytest.mark.parametrize(("gateway_id", "code"), [("riskwatch-collector", "保留"), ("RiskWatch-health", "保留"),
                                                 ("$SYS", "保留"), ("bad/id", "不合法"), ("a b", "不合法"),
                                                 ("x" * 65, "不合法"), ("-lead", "不合法")])
def test_reserved_and_malformed_ids_are_refused(console: Console, gateway_id: str, code: str) -> None:
    csrf = console.csrf_of(page(console, "ea"))
    r = attach(console, csrf, gateway_id, "plant-a")
    assert r.status_code == 422 and code in r.text  # type: ignore[attr-defined]
    assert 'data-testid="password"' not in r.text  # type: ignore[attr-defined]
    assert gateway_count(console, gateway_id) == 0
    assert int(console.sql("SELECT count(*) FROM gateways")[0][0]) == 4


def test_an_existing_id_is_a_conflict_and_changes_nothing(console: Console) -> None:
    csrf = console.csrf_of(page(console, "ea"))
    before = console.sql("SELECT plant_id, credential_hash FROM gateways WHERE id = 'gw-b1'")
    r = attach(console, csrf, "gw-b1", "plant-a")
    assert r.status_code == 409 and 'data-testid="password"' not in r.text  # type: ignore[attr-defined]
    assert console.sql("SELECT plant_id, credential_hash FROM gateways WHERE id = 'gw-b1'") == before


def test_every_gateway_form_needs_the_csrf_token(console: Console) -> None:
    page(console, "ea")
    posts = [("/gateways", {"id": "gw-x", "plant_id": "plant-a"}), ("/gateways/gw-a2/credentials", {}),
             ("/gateways/gw-a2/disable", {}), ("/gateways/gw-a-off/enable", {})]
    for path, data in posts:
        for token in (None, "forged-token"):
            body = {**data, **({"csrf": token} if token else {})}
            assert console.client.post(console.url(path), data=body).status_code == 403, path
    assert gateway_count(console, "gw-x") == 0
    assert console.sql("SELECT enabled, credential_hash FROM gateways WHERE id IN ('gw-a2', 'gw-a-off') ORDER BY id") \
        == [(False, None), (True, None)]


def test_oversized_or_nul_input_is_refused_cleanly(console: Console) -> None:
    csrf = console.csrf_of(page(console, "ea"))
    r = console.client.post(console.url("/gateways"), data={"csrf": csrf, "id": "gw-big", "plant_id": "plant-a",
                                                            "name": "x" * 70_000})
    assert r.status_code == 413
    r = console.client.post(console.url("/gateways"), data={"csrf": csrf, "id": "gw-nul", "plant_id": "plant-a",
                                                            "name": "a\x00b"})
    assert r.status_code == 422
    assert gateway_count(console, "gw-big") + gateway_count(console, "gw-nul") == 0
    assert console.client.get(console.url("/gateways")).status_code == 200  # nothing else lost


def test_rotate_shows_a_new_password_once_and_the_old_one_stops_working(console: Console) -> None:
    csrf = console.csrf_of(page(console, "ea"))
    first = secret_of(attach(console, csrf, "gw-a-rot", "plant-a").text)  # type: ignore[attr-defined]
    r = console.client.post(console.url("/gateways/gw-a-rot/credentials"), data={"csrf": csrf})
    assert r.status_code == 201 and "no-store" in r.headers["cache-control"]
    second = secret_of(r.text)
    stored = console.sql("SELECT credential_hash FROM gateways WHERE id = 'gw-a-rot'")[0][0]
    assert second != first and mosquitto_verify(second, stored) and not mosquitto_verify(first, stored)
    # another enterprise's gateway: 404, its credential untouched
    before = console.sql("SELECT credential_hash FROM gateways WHERE id = 'gw-b1'")
    assert console.client.post(console.url("/gateways/gw-b1/credentials"), data={"csrf": csrf}).status_code == 404
    assert console.sql("SELECT credential_hash FROM gateways WHERE id = 'gw-b1'") == before


def test_disabling_a_gateway_that_feeds_a_required_point_is_a_change_request(console: Console) -> None:
    csrf = console.csrf_of(page(console, "ea"))
    r = console.client.post(console.url("/gateways/gw-a1/disable"), data={"csrf": csrf, "reason": "检修"})
    assert r.status_code == 202 and "变更申请" in r.text
    assert console.sql("SELECT enabled FROM gateways WHERE id = 'gw-a1'") == [(True,)]
    req = console.sql("""SELECT enterprise_id, object_kind, object_id, changes::text, old_values::text, reason, status,
                                requested_by, requested_token_id FROM change_requests""")
    assert req == [("ent-a", "gateway", "gw-a1", '{"enabled": false}', '{"enabled": true}', "检修", "pending", "ea",
                    None)]
    m = re.search(r"#(\d+)", re.search(r'data-testid="notice">([^<]+)<', r.text).group(1))  # type: ignore[union-attr]
    assert m is not None and int(m.group(1)) == int(console.sql("SELECT id FROM change_requests")[0][0])
    # a gateway feeding nothing required is the enterprise's own to switch off and on
    r = console.client.post(console.url("/gateways/gw-a2/disable"), data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and console.sql("SELECT enabled FROM gateways WHERE id = 'gw-a2'") == [(False,)]
    r = console.client.post(console.url("/gateways/gw-a2/enable"), data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and console.sql("SELECT enabled FROM gateways WHERE id = 'gw-a2'") == [(True,)]
    # another enterprise's: 404 and unchanged; an unknown action: 404
    assert console.client.post(console.url("/gateways/gw-b1/disable"), data={"csrf": csrf}).status_code == 404
    assert console.client.post(console.url("/gateways/gw-a2/explode"), data={"csrf": csrf}).status_code == 404
    assert console.sql("SELECT enabled FROM gateways WHERE id = 'gw-b1'") == [(True,)]
    assert console.sql("SELECT count(*) FROM change_requests")[0][0] == 1


def test_the_bureau_disables_a_required_gateway_directly(console: Console) -> None:
    csrf = console.csrf_of(page(console, "duty"))
    r = console.client.post(console.url("/gateways/gw-b1/disable"), data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and console.sql("SELECT enabled FROM gateways WHERE id = 'gw-b1'") == [(False,)]
    assert console.sql("SELECT count(*) FROM change_requests")[0][0] == 0
    # and attaches a gateway to any enterprise's plant
    r = attach(console, csrf, "gw-b-new", "plant-b")
    assert r.status_code == 201 and secret_of(r.text)  # type: ignore[attr-defined]


def test_points_show_the_latest_reading_and_whether_it_is_stale(console: Console) -> None:
    pid = console.sql("SELECT id FROM points WHERE gateway_id = 'gw-a1' AND tag = 'TT-101'")[0][0]
    pid2 = console.sql("SELECT id FROM points WHERE gateway_id = 'gw-a1' AND tag = 'CO-101'")[0][0]
    now = console.clock.now()
    console.sql("INSERT INTO readings (time, point_id, value, quality) VALUES (%s, %s, 71.25, 0), (%s, %s, 70, 0),"
                " (%s, %s, 3, 0) RETURNING point_id", (datetime.fromtimestamp(now - 2, UTC), pid,
                                                       datetime.fromtimestamp(now - 30, UTC), pid,
                                                       datetime.fromtimestamp(now - 3600, UTC), pid2))
    html = page(console, "ea", "/points?gateway=gw-a1")
    assert 'hx-get="/console/points/rows?gateway=gw-a1"' in html and 'hx-trigger="every 5s"' in html
    row = re.search(rf'<tr data-point="{pid}"[^>]*data-status="(\w+)">(.*?)</tr>', html, re.S)
    assert row is not None and row.group(1) == "ok" and "71.25 degC" in row.group(2)
    stale = re.search(rf'<tr data-point="{pid2}"[^>]*data-status="(\w+)">', html)
    assert stale is not None and stale.group(1) == "stale"
    assert re.search(r'data-tag="PDT-101"[^>]*data-status="none"', html)
    assert 'data-tag="TT-201"' not in html  # another gateway's point, filtered out


def test_snippet_and_broker_address_never_carry_the_collectors_credentials(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, mqtt_url="mqtts://riskwatch-collector:collector-pw@127.0.0.1:18883?cafile=/x/ca.crt")
    b = pages.broker_of(s)
    assert b is not None and (b.host, b.port, b.tls, str(b.cafile)) == ("127.0.0.1", 18883, True, "/x/ca.crt")
    pub = pages.broker_of(Settings(data_dir=tmp_path, mqtt_url=s.mqtt_url,
                                   mqtt_public_url="mqtts://mqtt.county.gov.cn:8883"))
    assert pub is not None and (pub.host, pub.port, str(pub.cafile)) == ("mqtt.county.gov.cn", 8883, "/x/ca.crt")
    line = pages.pub_snippet(pub, "gw-1", "s3cr-et_x", "TT-101")
    assert "collector-pw" not in line and "riskwatch-collector" not in line
    assert "-h mqtt.county.gov.cn -p 8883 --cafile ca.crt -i gw-1 -u gw-1 -P s3cr-et_x -q 1 -t rw/v1/gw-1/telemetry" \
        in line
    assert "'\"$(date +%s%3N)\"'" in line  # the message's ts: now, in epoch milliseconds
    odd = pages.pub_snippet(pub, "gw-1", "x", "bad'tag")  # a tag that would break the shell quoting: the example's
    assert '"tag": "TT-101"' in odd and "bad'tag" not in odd
    assert pages.broker_of(Settings(data_dir=tmp_path)) is None


def test_every_status_label_is_translated() -> None:
    from babel.messages.pofile import read_po

    po = Path(pages.__file__).parent / "locale" / "zh_CN" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        zh = {m.id: m.string for m in read_po(f) if m.id}
    assert [m for m in pages.MESSAGE_IDS if not zh.get(m)] == []


def test_with_mutual_tls_on_the_page_issues_a_client_certificate_that_the_broker_takes(
        console: Console, broker: LocalMosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Where the private broker's mutual-TLS listener is on, attaching a gateway also shows its client
    certificate and key, once; a real mosquitto_pub with exactly those files, no password, is let in as the
    gateway, and the key is nowhere afterwards."""
    ctx = console.client.app.state.ctx  # type: ignore[attr-defined]
    ctx.client_certs = ClientCerts(broker.ca, broker.state.mqtt_mtls_port)
    ctx.broker_sync = lambda conn: broker.write_auth(registry.broker_credentials(conn), reload=True,
                                                     disabled=registry.disabled_gateways(conn))
    caplog.set_level(logging.DEBUG)
    r = attach(console, console.csrf_of(page(console, "ea")), "gw-a-mtls", "plant-a")
    assert r.status_code == 201, r.text  # type: ignore[attr-defined]
    html = r.text  # type: ignore[attr-defined]
    pem = re.search(r'data-testid="cert-pem">([^<]+)<', html)
    key = re.search(r'data-testid="key-pem">([^<]+)<', html)
    assert pem and key and "PRIVATE KEY" in key.group(1)
    cert = x509.load_pem_x509_certificate(pem.group(1).encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gw-a-mtls"
    assert f'data-testid="mtls-port">{broker.state.mqtt_mtls_port}<' in html
    raw = re.search(r'data-testid="mtls-snippet">([^<]+)<', html)
    assert raw is not None, html
    snippet = shlex.split(unescape(raw.group(1)))
    assert snippet[snippet.index("--cert") + 1] == "gw-a-mtls.crt" and "-P" not in snippet
    (tmp_path / "c.crt").write_text(pem.group(1))
    (tmp_path / "c.key").write_text(key.group(1))
    (tmp_path / "c.key").chmod(0o600)

    def publish(certfile: Path, keyfile: Path) -> int:
        return subprocess.run(["mosquitto_pub", *pub_args(broker, mtls=True), "--cert", str(certfile), "--key",
                               str(keyfile), "-i", "gw-a-mtls", "-q", "1", "-t", "rw/v1/gw-a-mtls/telemetry",
                               "-m", '{"readings": []}'], capture_output=True, timeout=20).returncode

    assert publish(tmp_path / "c.crt", tmp_path / "c.key") == 0
    # a key from anywhere else does not go with this certificate
    other = ClientCerts(broker.ca, broker.state.mqtt_mtls_port).issue("gw-a1")
    (tmp_path / "o.key").write_bytes(other.key_pem)
    (tmp_path / "o.key").chmod(0o600)
    assert publish(tmp_path / "c.crt", tmp_path / "o.key") != 0
    secret_key = key.group(1).strip().splitlines()[1]
    for path in ("/gateways", "/gateways/gw-a-mtls"):
        assert secret_key not in console.client.get(console.url(path)).text
    assert all(secret_key not in a for (a,) in console.sql("SELECT changes::text FROM audit_log"))
    assert not [rec for rec in caplog.records if secret_key in rec.getMessage()]
    # without the listener, no certificate is offered
    ctx.client_certs = None
    r2 = attach(console, console.csrf_of(page(console, "ea")), "gw-a-plain", "plant-a")
    assert r2.status_code == 201 and 'data-testid="client-cert"' not in r2.text  # type: ignore[attr-defined]
