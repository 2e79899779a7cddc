"""The console's 数据问题 page over HTTP (TestClient on the real app and a real TimescaleDB).

Scoping as the API's (another enterprise's dead letters, payloads and unmapped tags never shown; mapping one
of its tags, or a forged gateway, is 404 and changes nothing), CSRF required, malicious tag names and
payloads rendered escaped, a bad form refused with a clear error and nothing lost, and a good map moving the
quarantined readings into `readings` with an audit row.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from ingest.batch import Batch, DeadLetter
from ingest.store import store_batch
from tests.web.fix_console import Console, console_fixture  # noqa: F401

pytestmark = pytest.mark.integration

EVIL_TAG = '<script>alert("t")</script>'
EVIL_PAYLOAD = b'{"x": "<img src=x onerror=alert(1)>"}\xff\xfe'


def seed(console: Console) -> None:
    """Through the real store: quarantined readings of A's and B's unknown tags, and dead letters of each."""
    t0 = int(time.time() - 600) * 1_000_000
    b = Batch(messages=3)
    for i in range(25):
        b.add_unmapped("gw-a1", "XA-1", t0 + i * 1_000_000, 20.0 + i)
        b.add_unmapped("gw-a1", EVIL_TAG, t0 + i * 1_000_000, 1.0)
        b.add_unmapped("gw-b1", "SECRET-B-TAG", t0 + i * 1_000_000, 5.0)
    b.dead.append(DeadLetter("gw-a1", "rw/v1/gw-a1/telemetry", "invalid_json", "Expecting value", None, EVIL_PAYLOAD))
    b.dead.append(DeadLetter("gw-a1", "rw/v1/gw-a1/telemetry", "timestamp_out_of_range", "far away", 0, b"{}"))
    b.dead.append(DeadLetter("gw-b1", "rw/v1/gw-b1/telemetry", "bad_schema", "B-SECRET-DETAIL", None,
                             b'{"b-secret-payload": 1}'))
    with psycopg.connect(console.db_url) as conn, conn.transaction():
        store_batch(conn, b)


def page(console: Console, user: str) -> str:
    assert console.login(user).status_code == 303
    r = console.client.get(console.url("/data-problems"))
    assert r.status_code == 200, r.text
    return r.text


def device(console: Console, code: str) -> int:
    return int(console.sql("SELECT id FROM devices WHERE code = %s", (code,))[0][0])


def map_form(console: Console, csrf: str, gateway: str, tag: str, dev: int, **extra: str) -> object:
    data = {"csrf": csrf, "gateway_id": gateway, "tag": tag, "device_id": str(dev), "quantity": "temperature",
            "unit": "degC", "kind": "analog", "interval_s": "1", "setpoints": "", **extra}
    return console.client.post(console.url("/data-problems/map"), data=data, follow_redirects=False)


def test_enterprise_sees_its_own_problems_in_plain_chinese_escaped(console: Console) -> None:
    seed(console)
    html = page(console, "ea")
    assert 'data-tag="XA-1"' in html and "数据问题" in html
    assert "读数时间与服务器时间相差过大（网关时钟可能不准），请校准网关时间" in html
    assert "消息不是有效的 JSON 格式" in html
    # B's tag, dead letter, detail and payload are nowhere
    for secret in ("SECRET-B-TAG", "B-SECRET-DETAIL", "b-secret-payload", "gw-b1", "乙厂"):
        assert secret not in html, secret
    # the malicious tag and payload are text, never markup
    assert EVIL_TAG not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "\\xff\\xfe" in html  # undecodable bytes shown escaped
    held = console.sql("SELECT count(*) FROM quarantined_readings WHERE tag = 'XA-1'")[0][0]
    assert held == 25 and 'data-testid="quarantined">25<' in html


def test_bureau_sees_every_enterprise(console: Console) -> None:
    seed(console)
    html = page(console, "duty")
    assert "SECRET-B-TAG" in html and "B-SECRET-DETAIL" in html and 'data-tag="XA-1"' in html


def test_map_backfills_and_is_audited(console: Console) -> None:
    seed(console)
    csrf = console.csrf_of(page(console, "ea"))
    r = map_form(console, csrf, "gw-a1", "XA-1", device(console, "coal-bf"), setpoints="bm.coal.temp.hi=70")
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    assert "回填读数 25 条" in r.text  # type: ignore[attr-defined]
    assert 'data-tag="XA-1"' not in r.text  # type: ignore[attr-defined]
    pid, sp = console.sql("SELECT id, setpoints FROM points WHERE gateway_id = 'gw-a1' AND tag = 'XA-1'")[0]
    assert sp == {"bm.coal.temp.hi": 70.0}
    assert console.sql("SELECT count(*), min(value), max(value) FROM readings WHERE point_id = %s", (pid,))[0] \
        == (25, 20.0, 44.0)
    assert console.sql("SELECT count(*) FROM quarantined_readings WHERE tag = 'XA-1'")[0][0] == 0
    audit = console.sql("SELECT actor, status, changes FROM audit_log WHERE changes->>'action' = 'map_tag'")
    assert len(audit) == 1 and audit[0][1] == 200 and audit[0][2]["backfilled"] == 25
    assert audit[0][2]["point_id"] == pid


def test_map_of_another_enterprise_or_forged_gateway_is_404(console: Console) -> None:
    seed(console)
    csrf = console.csrf_of(page(console, "ea"))
    for gw, tag, dev in [("gw-b1", "SECRET-B-TAG", device(console, "furnace")),   # B's tag, B's device
                         ("gw-b1", "SECRET-B-TAG", device(console, "coal-bf")),   # B's tag, A's device
                         ("gw-nope", "XA-1", device(console, "coal-bf")),        # forged gateway
                         ("gw-a1", "NEVER-SEEN", device(console, "coal-bf"))]:   # forged tag
        r = map_form(console, csrf, gw, tag, dev)
        assert r.status_code == 404, (gw, tag, r.text)  # type: ignore[attr-defined]
        assert "SECRET-B-TAG" not in r.text  # type: ignore[attr-defined]
    # A's tag onto B's device: refused, named
    r = map_form(console, csrf, "gw-a1", "XA-1", device(console, "furnace"))
    assert r.status_code == 422 and "所选设备不在该网关所属厂区" in r.text  # type: ignore[attr-defined]
    assert console.sql("SELECT count(*) FROM points WHERE tag IN ('XA-1', 'SECRET-B-TAG', 'NEVER-SEEN')")[0][0] == 0
    assert console.sql("SELECT count(*) FROM quarantined_readings")[0][0] == 75  # nothing lost


def test_map_without_csrf_is_refused(console: Console) -> None:
    seed(console)
    page(console, "ea")
    for token in ("", "forged-token"):
        r = map_form(console, token, "gw-a1", "XA-1", device(console, "coal-bf"))
        assert r.status_code == 403  # type: ignore[attr-defined]
    assert console.sql("SELECT count(*) FROM points WHERE tag = 'XA-1'")[0][0] == 0
    assert console.sql("SELECT count(*) FROM quarantined_readings WHERE tag = 'XA-1'")[0][0] == 25


@pytest.mark.parametrize("extra, message", [
    ({"quantity": "Temp; DROP TABLE points"}, "物理量须为小写英文标识"),
    ({"quantity": "x" * 300}, "过长"),
    ({"interval_s": "-5"}, "上报周期"),
    ({"interval_s": "abc"}, "上报周期"),
    ({"kind": "<b>"}, "类型须为"),
    ({"setpoints": "no equals sign"}, "限值格式"),
    ({"setpoints": "a=inf"}, "限值格式"),
    ({"device_id": "x"}, "请选择设备"),
    ({"unit": "a\x00b"}, "非法字符"),
])
def test_bad_map_forms_say_why_and_lose_nothing(console: Console, extra: dict[str, str], message: str) -> None:
    seed(console)
    csrf = console.csrf_of(page(console, "ea"))
    r = map_form(console, csrf, "gw-a1", "XA-1", device(console, "coal-bf"), **extra)
    assert r.status_code == 422 and message in r.text, r.text  # type: ignore[attr-defined]
    assert "<b>" not in r.text.split("<main", 1)[-1]  # type: ignore[attr-defined]
    assert console.sql("SELECT count(*) FROM points WHERE tag = 'XA-1'")[0][0] == 0
    assert console.sql("SELECT count(*) FROM quarantined_readings WHERE tag = 'XA-1'")[0][0] == 25


def test_evil_tag_can_be_mapped_and_api_agrees(console: Console) -> None:
    seed(console)
    csrf = console.csrf_of(page(console, "ea"))
    r = map_form(console, csrf, "gw-a1", EVIL_TAG, device(console, "coal-bf"))
    assert r.status_code == 200 and EVIL_TAG not in r.text  # type: ignore[attr-defined]
    assert console.sql("SELECT count(*) FROM points WHERE tag = %s", (EVIL_TAG,))[0][0] == 1
