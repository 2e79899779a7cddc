"""Credentials in a channel URL never leak, and an enterprise reads only notices to its own people (issue #11,
item 4). Real PostgreSQL, a real SMTP sink, a webhook that fails for real (a closed loopback port, or a
receiver answering 500 with the URL echoed), the dispatcher's real steps, then the real API."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from alerting.config import load_config
from alerting.dispatcher import Dispatcher
from api.http.app import create_app
from core.clock import FakeClock
from core.services import free_port
from core.settings import Settings
from hazards import ledger, workflow
from hazards.model import Actor
from rules.model import load_catalog
from tests.alerting_fixtures import HttpReceiver, SmtpSink
from tests.fix_alerting import load_site, raise_alarm, routing_file
from tests.fix_api import make_tokens

pytestmark = pytest.mark.integration

USER, PASSWORD, KEY = "hookuser-x1", "hookpass-S3cret", "keysecret-42"
SECRETS = (USER, PASSWORD, KEY)
BUREAU_ADDRESSES = ("duty@example.gov.cn", "13900000001", "chief@example.gov.cn", "leader@example.gov.cn")


@pytest.fixture(params=["closed-port", "answers-500"])
def hook_url(request: pytest.FixtureRequest, http_receiver: HttpReceiver) -> Iterator[str]:
    if request.param == "closed-port":
        port = free_port()  # nothing listens there: httpx raises ConnectError
    else:
        port = http_receiver.port
        http_receiver.status = 500  # and the body echoes the URL, as some servers' error pages do
        http_receiver.body = json.dumps({"error": f"boom at http://{USER}:{PASSWORD}@127.0.0.1:{port}/hook?key={KEY}"
                                         }).encode()
    yield f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/hook?key={KEY}&x=1"


def test_webhook_credentials_never_leak_and_enterprises_see_only_their_own(
        db_url: str, tmp_path: Path, smtp_sink: SmtpSink, hook_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    points = load_site(db_url)
    clock = FakeClock(float(int(time.time())))
    path = routing_file(tmp_path, smtp_port=smtp_sink.port, webhook_url=hook_url, max_attempts=2,
                        backoff_initial="1s", backoff_max="1s", repeat_interval="0")
    d = Dispatcher(db_url, load_config(path), public_url="http://riskwatch.test", link_secret=b"k", clock=clock,
                   rng=random.Random(1), titles=load_catalog().titles())
    try:
        with psycopg.connect(db_url) as conn:
            raise_alarm(conn, points["CO-101"], clock.now())
            ledger.open_ticket(conn, ledger.NewTicket(  # an inspection finding opens confirmed: leaders are told
                source=workflow.Source.INSPECTION, enterprise_id="ent-a", title="煤粉仓未设CO监测",
                plant_id="plant-a", inspection_team="县督导组"), Actor("局值班员", "bureau"), clock.now())
            for _ in range(4):
                while d.route_once(conn):
                    pass
                d.flush_once(conn)
                while d.deliver_once(conn):
                    pass
                clock.advance(5)
            stored = conn.execute("SELECT channel, status, last_error FROM notifications").fetchall()
            everything = " ".join(str(r) for r in conn.execute("SELECT * FROM notifications").fetchall())
            everything += " ".join(str(r) for r in conn.execute("SELECT * FROM deliveries").fetchall())
    finally:
        d.close()

    hook_rows = [r for r in stored if r[0] == "hook"]
    assert hook_rows and all(r[1] == "dead" for r in hook_rows), stored  # it really failed, twice
    assert all(r[2] and "127.0.0.1" in r[2] and "***" in r[2] for r in hook_rows), hook_rows
    assert smtp_sink.messages, "the e-mails went out"
    for secret in SECRETS:
        assert secret not in everything, secret
        assert secret not in caplog.text, (secret, [r.getMessage() for r in caplog.records if secret in r.getMessage()])
        assert secret not in str(d.stats), secret

    app = create_app(Settings(data_dir=tmp_path, db_url=db_url), clock=clock)
    tokens = make_tokens(db_url)
    with TestClient(app) as client:
        def get(role: str, url: str) -> str:
            r = client.get(url, headers={"Authorization": f"Bearer {tokens[role]}"})
            assert r.status_code == 200, r.text
            return r.text

        bureau = json.loads(get("bureau", "/api/v1/notifications"))
        assert {n["receiver"] for n in bureau} >= {"bureau-duty", "enterprise-leaders"}
        texts = [get("bureau", "/api/v1/notifications"), get("bureau", "/api/v1/notifications?status=dead")]
        texts += [get("bureau", f"/api/v1/notifications/{n['id']}") for n in bureau]
        for secret in SECRETS:
            assert not [t for t in texts if secret in t], secret

        mine = json.loads(get("ent_a", "/api/v1/notifications"))
        assert mine, "the enterprise's leaders were notified of the confirmed hazard"
        assert all(n["contact_id"].startswith("enterprise:ent-a:") for n in mine), mine
        assert all(n["last_error"] is None for n in mine)
        ent_texts = [get("ent_a", "/api/v1/notifications"), get("ent_a", "/api/v1/notifications?status=dead")]
        for n in mine:
            detail = json.loads(get("ent_a", f"/api/v1/notifications/{n['id']}"))
            assert all(x["detail"] == "" for x in detail["deliveries"])
            ent_texts.append(json.dumps(detail, ensure_ascii=False))
        joined = " ".join(ent_texts)
        for hidden in (*SECRETS, *BUREAU_ADDRESSES, "127.0.0.1"):
            assert hidden not in joined, hidden
        for n in bureau:  # nothing addressed to bureau staff or systems answers an enterprise token
            if not (n["contact_id"] or "").startswith("enterprise:ent-a:"):
                r = client.get(f"/api/v1/notifications/{n['id']}",
                               headers={"Authorization": f"Bearer {tokens['ent_a']}"})
                assert r.status_code == 404, (n, r.status_code)
        assert json.loads(get("ent_b", "/api/v1/notifications")) == []
