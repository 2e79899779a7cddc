"""Data availability, gateway online rate and missing mandatory points through the API, on the real database
with the mini site: readings rolled up by the collector's own rollup (`ingest.rollup`), offline history as the
rule engine records it (`alarm_events` of `common.gateway.offline`). Every expected figure is computed by hand
in the comments; an enterprise token sees only its own, and naming another enterprise's object answers 404."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest

from core.readings import Readings
from ingest.rollup import rollup
from tests.fix_api import T0, Api, api_fixture  # noqa: F401

pytestmark = pytest.mark.integration

H = 3600.0
FROM, TO = T0 - 2 * H, T0  # 06:00-08:00 Beijing time on 30 Nov 2025: two hour buckets


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def roll(api: Api, point_id: int, times: list[float]) -> None:
    """Readings of one point rolled up exactly as the collector does it in each batch."""
    n = len(times)
    r = Readings(np.full(n, point_id, np.int32), (np.array(times) * 1e6).astype(np.int64),
                 np.arange(n, dtype=np.float64), np.zeros(n, np.int16))
    with psycopg.connect(api.db_url) as conn:
        rollup(conn, r)


def offline_event(api: Api, gateway: str, t: float, event: str, rule: str = "common.gateway.offline") -> None:
    api.sql("""INSERT INTO alarm_events (time, rule_id, subject, gateway_id, plant_id, event, from_state, to_state,
                   severity, catalog_version) VALUES (to_timestamp(%s), %s, %s, %s, 'plant-a', %s, 'normal', 'unack',
                   'high', 'test')""", (t, rule, f"g:{gateway}", gateway, event))


@pytest.fixture
def site(api: Api) -> dict[str, int]:
    """gw-a1: TT-101 every 10 s, CO-101 every 60 s registered 30 min before T0, PDT-101 every 5 s silent;
    gw-a2 registered long ago; everything else registered "now" (wall clock, after T0: nothing expected)."""
    pts = {t: api.point_id("gw-a1", t) for t in ("TT-101", "CO-101", "PDT-101")}
    old = T0 - 10 * 86400
    for tag, interval, created in (("TT-101", 10, old), ("CO-101", 60, T0 - 1800), ("PDT-101", 5, old)):
        api.sql("UPDATE points SET interval_s = %s, created_at = to_timestamp(%s) WHERE id = %s",
                (interval, created, pts[tag]))
    api.sql("UPDATE gateways SET created_at = to_timestamp(%s) WHERE id IN ('gw-a1', 'gw-a2')", (old,))
    # TT-101: 270 of 360 in the first hour (the first 45 minutes), all 360 in the second
    roll(api, pts["TT-101"], [FROM + 10 * i for i in range(270)] + [FROM + H + 10 * i for i in range(360)])
    # CO-101: a reading every 20 s over its last 30 minutes = 90, capped at the 30 expected
    roll(api, pts["CO-101"], [T0 - 1800 + 20 * i for i in range(90)])
    # readings outside the window count nowhere
    roll(api, pts["TT-101"], [FROM - 5.0, TO + 5.0])
    # gw-a1: online at the start (an earlier outage ended before FROM), offline 10 min in hour 1, offline for the
    # last 5 min of hour 2 and still offline; an ack and another rule's activation do not count
    offline_event(api, "gw-a1", FROM - H, "activate")
    offline_event(api, "gw-a1", FROM - 60, "clear")
    offline_event(api, "gw-a1", T0 - 90 * 60, "activate")
    offline_event(api, "gw-a1", T0 - 85 * 60, "ack")
    offline_event(api, "gw-a1", T0 - 80 * 60, "clear")
    offline_event(api, "gw-a1", T0 - 5 * 60, "activate")
    offline_event(api, "gw-a1", T0 - 30 * 60, "activate", rule="common.gateway.offline_long")
    # gw-a2: offline since before the window, back at 06:30
    offline_event(api, "gw-a2", FROM - H, "activate")
    offline_event(api, "gw-a2", FROM + 1800, "clear")
    return pts


def get(api: Api, path: str, role: str = "bureau", **params: Any) -> Any:
    return api.ok("GET", f"/api/v1/{path}", role, params={"from": iso(FROM), "to": iso(TO), **params})


def by(items: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {i[key]: i for i in items}


def test_point_shares_by_hour(api: Api, site: dict[str, int]) -> None:
    body = get(api, "availability/points", gateway_id="gw-a1", granularity="hour")
    assert body["total"] == 3
    items = by(body["items"], "point_id")
    tt = items[site["TT-101"]]
    assert [(b["expected"], b["received"], b["share"]) for b in tt["buckets"]] == [(360, 270, 0.75),
                                                                                   (360, 360, 1.0)]
    assert (tt["total"]["expected"], tt["total"]["received"], tt["total"]["share"]) == (720, 630, 0.875)
    assert tt["buckets"][0]["start"].startswith("2025-11-29T22:00:00")
    co = items[site["CO-101"]]
    assert [(b["expected"], b["received"], b["share"]) for b in co["buckets"]] == [(0, 0, None), (30, 30, 1.0)]
    pdt = items[site["PDT-101"]]
    assert [(b["expected"], b["received"], b["share"]) for b in pdt["buckets"]] == [(720, 0, 0.0), (720, 0, 0.0)]


def test_day_granularity_and_window_cut_at_now(api: Api, site: dict[str, int]) -> None:
    # one Beijing day (30 Nov) clipped to the window
    tt = by(get(api, "availability/points", granularity="day", gateway_id="gw-a1")["items"], "point_id")
    assert [(b["expected"], b["received"]) for b in tt[site["TT-101"]]["buckets"]] == [(720, 630)]
    # a window reaching past now expects nothing after now
    api.clock.set(T0 - H)
    first = by(get(api, "availability/points", granularity="hour", gateway_id="gw-a1")["items"], "point_id")
    assert [(b["expected"], b["received"]) for b in first[site["TT-101"]]["buckets"]] == [(360, 270), (0, 0)]


def test_gateway_share_and_online_rate(api: Api, site: dict[str, int]) -> None:
    gws = by(get(api, "availability/gateways", granularity="hour")["items"], "gateway_id")
    a1 = gws["gw-a1"]
    assert a1["points"] == 3 and a1["enabled"] is True
    # hour 1: expected 360 + 0 + 720 = 1080, received 270; hour 2: 360 + 30 + 720 = 1110, received 390
    assert [(b["expected"], b["received"]) for b in a1["buckets"]] == [(1080, 270), (1110, 390)]
    assert a1["buckets"][0]["share"] == 0.25
    assert a1["total"]["share"] == pytest.approx(660 / 2190)
    # offline 10 min in hour 1, the last 5 min of hour 2
    assert [b["online_rate"] for b in a1["buckets"]] == [pytest.approx(3000 / 3600), pytest.approx(3300 / 3600)]
    assert a1["total"]["online_rate"] == pytest.approx(6300 / 7200)
    a2 = gws["gw-a2"]
    assert [b["online_rate"] for b in a2["buckets"]] == [0.5, 1.0]
    # registered after the window (wall clock): nothing observed, no rate
    assert gws["gw-a-off"]["enabled"] is False and gws["gw-a-off"]["total"]["online_rate"] is None


def test_enterprise_figures(api: Api, site: dict[str, int]) -> None:
    ents = by(get(api, "availability/enterprises", granularity="hour")["items"], "enterprise_id")
    a = ents["ent-a"]
    assert a["name"] == "甲水泥有限公司"
    assert (a["total"]["expected"], a["total"]["received"]) == (2190, 660)  # only gw-a1's points are expected
    # online seconds 3000 + 3300 (gw-a1) + 1800 + 3600 (gw-a2) over 4 gateway-hours; gw-a-off observed nothing
    assert a["total"]["online_rate"] == pytest.approx(11700 / 14400)
    assert ents["ent-b"]["total"]["expected"] == 0 and ents["ent-b"]["total"]["share"] is None


def test_enterprise_token_sees_only_its_own(api: Api, site: dict[str, int]) -> None:
    for path in ("availability/points", "availability/gateways", "availability/enterprises",
                 "registry/mandatory-missing"):
        body = get(api, path, "ent_a")
        assert {i["enterprise_id"] for i in body["items"]} == {"ent-a"}, path
        assert not any(m in str(body) for m in ("ent-b", "gw-b1", "乙耐材", "FT-301")), path
        # another enterprise named in a filter: as if it did not exist
        r = api.get(f"/api/v1/{path}", "ent_a", params={"enterprise_id": "ent-b"})
        assert r.status_code == 404, (path, r.text)
        assert api.get(f"/api/v1/{path}", "ent_b", params={"enterprise_id": "ent-a"}).status_code == 404
    for path in ("availability/points", "availability/gateways"):
        assert api.get(f"/api/v1/{path}", "ent_a", params={"gateway_id": "gw-b1"}).status_code == 404
        assert api.get(f"/api/v1/{path}", "bureau", params={"gateway_id": "gw-nope"}).status_code == 404
        assert api.get(f"/api/v1/{path}", "ent_b", params={"gateway_id": "gw-a1"}).status_code == 404
    assert api.get("/api/v1/availability/points", None).status_code == 401


@pytest.mark.parametrize("params", [
    {"gateway_id": "gw'; DROP TABLE points; --"},
    {"enterprise_id": "x" * 65},
    {"granularity": "week"},
    {"from": iso(T0), "to": iso(T0 - 1)},
    {"from": iso(T0 - 2 * 365 * 86400), "to": iso(T0), "granularity": "hour"},  # 17,520 buckets
    {"from": "0001-01-01T00:00:00+14:00"},
    {"to": "9999-12-31T23:59:59Z"},
    {"from": "2025-11-29T00:00:00"},  # naive datetime
    {"limit": 100_000},
])
def test_bad_queries_are_refused(api: Api, params: dict[str, Any]) -> None:
    r = api.get("/api/v1/availability/points", "bureau", params=params)
    assert r.status_code == 422, (params, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")


def test_mandatory_missing_per_enterprise_and_collector(api: Api) -> None:
    items = by(get(api, "registry/mandatory-missing")["items"], "enterprise_id")
    a = items["ent-a"]
    # coal-bf is a bag filter with none of the three dry-collector points (PDT-101 is `pressure_diff`)
    assert a["missing_count"] == 3
    assert {(m["plant_id"], m["device_code"], m["role"]) for m in a["missing"]} == {
        ("plant-a", "coal-bf", "hopper_temperature"), ("plant-a", "coal-bf", "pressure_difference"),
        ("plant-a", "coal-bf", "airlock_fault")}
    assert any(m["zh"] == "灰斗温度" and m["device_name"] == "煤磨袋收尘器" for m in a["missing"])
    assert items["ent-b"] == {"enterprise_id": "ent-b", "name": "乙耐材有限公司", "missing_count": 0, "missing": []}
    # the enterprise registers the pressure difference: one fewer missing
    device = int(api.sql("SELECT device_id FROM points WHERE tag = 'PDT-101'")[0][0])
    api.ok("POST", "/api/v1/points", "ent_a", json={"device_id": device, "gateway_id": "gw-a1", "tag": "PDT-102",
                                                    "quantity": "pressure_difference", "unit": "Pa"})
    a = get(api, "registry/mandatory-missing", "ent_a")["items"][0]
    assert a["missing_count"] == 2 and "pressure_difference" not in {m["role"] for m in a["missing"]}


def test_aggregate_work_is_bounded(api: Api, site: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The aggregate routes compute one cell per point and bucket: past the budget they answer 422 and ask for a
    filter, rather than tying up a worker. The mini site has 7 points, so 2 hourly buckets are 14 cells."""
    from core import availability as av

    monkeypatch.setattr(av, "MAX_CELLS", 10)
    for path in ("availability/gateways", "availability/enterprises"):
        r = api.get(f"/api/v1/{path}", "bureau", params={"from": iso(FROM), "to": iso(TO), "granularity": "hour"})
        assert r.status_code == 422 and "too-much-data" in r.text, (path, r.text)
    # gw-a1's 3 points x 2 buckets = 6 cells fit
    assert get(api, "availability/gateways", granularity="hour", gateway_id="gw-a1")["items"][0]["points"] == 3


@pytest.mark.parametrize("granularity", ["hour", "day"])
def test_enterprise_counts_in_sql_equal_the_report(api: Api, site: dict[str, int], granularity: str) -> None:
    """The risk board's per-enterprise counts (one SQL statement) are the report's enterprise totals, for a
    window ending at now and for one reaching past it, for the county and for one enterprise."""
    from core import availability

    with psycopg.connect(api.db_url) as conn:
        for now in (T0, T0 - H):
            rep = availability.report(conn, FROM, TO, now, granularity)  # type: ignore[arg-type]
            want = {s.enterprise_id: (s.total.expected, s.total.received) for s in rep.enterprises}
            got = availability.enterprise_counts(conn, FROM, TO, now, granularity)  # type: ignore[arg-type]
            assert {e: c for e, c in want.items() if c != (0, 0)} == {e: c for e, c in got.items() if c != (0, 0)}
            scoped = availability.enterprise_counts(conn, FROM, TO, now, granularity, scope="ent-b")  # type: ignore[arg-type]
            assert set(scoped) <= {"ent-b"}
    assert got["ent-a"] == (1080 + 0, 270)  # at T0 - H: hour 1 only (hour 2 lies after now)
