"""Issue 15, several collectors: gateways spread over collectors by per-gateway leases in PostgreSQL.

Three `riskwatch collect --group` processes share one private Mosquitto (TLS) and one PostgreSQL; confirming
publishers (simulators.gateway.ConfirmingPublisher) keep each message until the collector's retained
`rw/v1/{gw}/stored` covers it and re-send the unconfirmed ones. One collector is SIGKILLed while a
temperature is above its limit with a 20 s on-delay running on one of its gateways. The claim: its gateways
are held by a live collector within the stated takeover time (lease ttl + renew interval); every reading
sent is stored once (stored == acknowledged end to end: what the confirmations covered is stored, the rest
was re-sent); and the on-delay, started under the dead collector, fires exactly once, at the data time it
would have fired without the kill.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import orjson
import psycopg
import pytest

from core.clock import FakeClock
from core.services import COLLECTOR_USER, LocalMosquitto
from ingest.leases import Keeper, Leases, LeaseSettings
from simulators.gateway import ConfirmingPublisher
from tests.conftest import CollectorProcess, Site, sql_one, wait_for

pytestmark = pytest.mark.integration

GATEWAYS = [f"gw-{i}" for i in range(1, 7)]
TTL_S, RENEW_S = 6.0, 2.0
ON_DELAY_S = 20
STEP_MS = 200  # 5 Hz per gateway

CATALOG = """catalog: scale
title: {zh: 多采集器测试清单, en: Several collectors test list}
version: "s1"
industries: all
rules:
  - id: sc.temp
    title: {zh: 入口温度高, en: Inlet temperature high}
    basis: 《工贸企业重大事故隐患判定标准》第六条第（一）项
    applies: {equipment: [bag_filter], point: {quantity: temperature}}
    shape: threshold
    limits: {hi: 70}
    deadband: 2
    on_delay_s: ON_DELAY
""".replace("ON_DELAY", str(ON_DELAY_S))


def site_yaml() -> str:
    gws = "\n".join(f"          - id: {g}" for g in GATEWAYS)
    devs = "\n".join(
        f"          - code: bf-{i}\n            name: 袋收尘器{i}\n            kind: bag_filter\n"
        f"            gateway: {g}\n            points:\n"
        f"              - {{tag: TT-{i}, name: 入口温度, quantity: temperature, unit: degC}}"
        for i, g in enumerate(GATEWAYS, 1))
    return ("version: 1\nname: 多采集器站点\nenterprises:\n  - id: ent-s\n    name: 丙水泥有限公司\n"
            "    principal: {name: 张三}\n    controller: {name: 李四}\n    plants:\n      - id: plant-s\n"
            f"        name: 丙一号线\n        industry: cement\n        gateways:\n{gws}\n        devices:\n{devs}\n")


@pytest.fixture
def scale_site(db_url: str, broker: LocalMosquitto, tmp_path: Path) -> Site:
    # One login per collector: the broker makes each client's id its username (issue 11).
    broker.state.collector_instances = 3
    path = tmp_path / "site.yaml"
    path.write_text(site_yaml())
    return Site(db_url, broker, path)


def leases(db_url: str) -> dict[str, tuple[str | None, int]]:
    with psycopg.connect(db_url) as conn:
        return {r[0]: (r[1], int(r[2])) for r in conn.execute(
            "SELECT gateway_id, collector_id, epoch FROM gateway_leases WHERE expires_at > now()")}


def stored_seqs(db_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(db_url) as conn:
        return [(r[0], int(r[1])) for r in conn.execute("SELECT gateway_id, seq FROM gateway_stored_seq")]


def test_three_collectors_one_killed_gateways_move_nothing_lost_and_on_delay_fires_once(
    scale_site: Site, db_url: str, broker: LocalMosquitto, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    names = [COLLECTOR_USER, f"{COLLECTOR_USER}-2", f"{COLLECTOR_USER}-3"]
    cols: dict[str, CollectorProcess] = {}
    pubs: dict[str, ConfirmingPublisher] = {}
    try:
        for name in names:
            work = tmp_path / name
            work.mkdir()
            c = CollectorProcess(db_url, broker, work)
            c.env["RISKWATCH_MQTT_URL"] = broker.url(name)
            c.extra_args = ["--catalog", str(catalog), "--group", "--lease-ttl", str(TTL_S),
                            "--lease-renew", str(RENEW_S)]
            c.start()
            cols[name] = c
        # Fair shares: 6 gateways over 3 live collectors, 2 each, every gateway on exactly one.
        wait_for(lambda: sorted(o for o, _ in leases(db_url).values()) == sorted(names * 2), timeout=30,
                 message="two leases per collector")
        for g in GATEWAYS:
            p = ConfirmingPublisher(g, scale_site.credentials[g], "127.0.0.1", broker.state.mqtt_port,
                                    tls=scale_site.tls, resend_after_s=3.0)
            p.start()
            pubs[g] = p
        owner = leases(db_url)
        hot = GATEWAYS[0]  # its temperature goes above the limit; its collector is the one killed
        victim = owner[hot][0]
        assert victim is not None
        victim_gws = sorted(g for g, (o, _) in owner.items() if o == victim)
        sent: dict[str, list[int]] = {g: [] for g in GATEWAYS}
        t_start = (int(time.time() * 1000) // 1000) * 1000
        t0 = t_start + 2000  # the condition starts here, in data time
        k_kill = (t0 - t_start + 5000) // STEP_MS  # 5 s into the 20 s on-delay
        k_end = (t0 - t_start + (ON_DELAY_S + 10) * 1000) // STEP_MS
        killed_at = 0.0
        pick_up_s = None
        for k in range(k_end + 1):
            t_ms = t_start + k * STEP_MS
            for i, g in enumerate(GATEWAYS, 1):
                v = 75.0 if (g == hot and t_ms >= t0) else 50.0 + (k % 7) * 0.1
                pubs[g].publish_telemetry([f"TT-{i}"], [v], [t_ms])
                sent[g].append(t_ms)
            if k == k_kill:
                # The on-delay is recorded as running (cond since t0), not yet active.
                wait_for(lambda: sql_one(db_url, "SELECT cond_since IS NOT NULL AND NOT active FROM alarms"
                                                 " WHERE rule_id = 'sc.temp:hi'") is True,
                         timeout=10, message="on-delay running before the kill")
                cols[victim].kill()
                killed_at = time.monotonic()
            if killed_at and pick_up_s is None:
                now_owner = leases(db_url)
                if all(now_owner.get(g, (victim, 0))[0] not in (None, victim) for g in victim_gws):
                    pick_up_s = time.monotonic() - killed_at
            time.sleep(max(0.0, (t_start + (k + 1) * STEP_MS) / 1000 - time.time()))
        try:
            wait_for(lambda: all(not pubs[g].buffered() for g in GATEWAYS), timeout=60, message="all confirmed")
        except AssertionError:
            raise AssertionError("unconfirmed: " + "; ".join(
                f"{g}: {pubs[g].buffered()} buffered, confirmed {pubs[g].confirmed_seq}, last {pubs[g].last_seq}"
                for g in GATEWAYS) + f"; stored seqs {dict(stored_seqs(db_url))}; leases {leases(db_url)}") from None
        if pick_up_s is None:
            now_owner = leases(db_url)
            assert all(now_owner[g][0] not in (None, victim) for g in victim_gws)
            pick_up_s = time.monotonic() - killed_at
        # Stated: a dead collector's gateways have a new owner within ttl + renew (8 s); 15 s with scheduling.
        print(f"gateways of the killed collector picked up after {pick_up_s:.1f} s; re-sends",
              {g: p.resends for g, p in pubs.items()})
        assert pick_up_s <= LeaseSettings(TTL_S, RENEW_S).takeover_s + 7, pick_up_s
        final = leases(db_url)
        assert sorted(final) == GATEWAYS and victim not in {o for o, _ in final.values()}
        assert all(final[g][1] >= 2 for g in victim_gws)  # claimed again: a new epoch
        # stored == sent, exactly once: every confirmed reading is stored, nothing doubled, nothing else.
        with psycopg.connect(db_url) as conn:
            for g in GATEWAYS:
                rows = conn.execute(
                    "SELECT (extract(epoch FROM r.time) * 1000)::bigint FROM readings r JOIN points p"
                    " ON p.id = r.point_id WHERE p.gateway_id = %s ORDER BY r.time", (g,)).fetchall()
                assert [r[0] for r in rows] == sent[g], g
            events = conn.execute(
                "SELECT event, extract(epoch FROM time) FROM alarm_events WHERE event IN ('activate', 'clear')"
            ).fetchall()
            alarm = conn.execute("SELECT gateway_id, active FROM alarms WHERE active").fetchall()
        # The on-delay ran across the handover and fired once, at t0 + 20 s of data time, on the new owner.
        assert len(events) == 1 and events[0][0] == "activate", events
        assert abs(float(events[0][1]) - (t0 / 1000 + ON_DELAY_S)) < 1e-3, (events, t0)
        assert alarm == [(hot, True)]
        # The killed collector comes back: it rejoins and gets its share again (a rebalance). What its session
        # still queued for the gateways it lost is stored once more at most (the unique key absorbs it), and it
        # neither doubles the alarm nor raises one for gateways whose state it did not own.
        cols[victim].start()
        wait_for(lambda: sorted(o for o, _ in leases(db_url).values()) == sorted(names * 2), timeout=30,
                 message="two leases per collector again")
        time.sleep(2 * RENEW_S)
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT count(*) FROM alarm_events WHERE event IN ('activate', 'clear')"
                                ).fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM readings").fetchone() == (sum(map(len, sent.values())),)
        for c in cols.values():
            assert c.stop() == 0
        assert sql_one(db_url, "SELECT count(*) FROM gateway_leases WHERE collector_id IS NOT NULL") == 0
    finally:
        for p in pubs.values():
            p.close()
        for c in cols.values():
            if c.alive():
                c.kill()


def test_lease_fence_and_takeover_on_the_database(db_url: str, scale_site: Site) -> None:
    """The adapter on real PostgreSQL with a fake lease clock: claim, expiry, takeover, fence, rebalance."""
    clock = FakeClock()
    settings = LeaseSettings(TTL_S, RENEW_S)
    a, b = Leases("col-a", settings, clock=clock), Leases("col-b", settings, clock=clock)
    with psycopg.connect(db_url) as ca, psycopg.connect(db_url) as cb:
        assert a.round(ca).gained == GATEWAYS  # alone: everything
        clock.advance(RENEW_S)
        assert b.round(cb).gained == []  # nothing is free; a still renews
        clock.advance(RENEW_S)
        lost = a.round(ca).lost  # two live: a gives back half
        assert len(lost) == 3 and sorted(a.held) == sorted(set(GATEWAYS) - set(lost))
        clock.advance(RENEW_S)
        assert sorted(b.round(cb).gained) == sorted(lost)
        # a forged epoch, or another collector's gateway, does not pass the fence
        mine = sorted(a.held)
        with ca.transaction():
            assert a.fence(ca, GATEWAYS) == frozenset(mine)
        a.held[mine[0]] += 1
        with ca.transaction():
            assert mine[0] not in a.fence(ca, mine)
        a.held[mine[0]] -= 1
        # a stops renewing (dead); past the ttl, b takes its gateways over with a new epoch
        got: list[str] = []
        for _ in range(4):  # b renews every RENEW_S; a's leases run out after TTL_S
            clock.advance(RENEW_S)
            ch = b.round(cb)
            assert not ch.lost
            got += ch.gained
        assert sorted(got) == mine and all(b.held[g] == 2 for g in got)
        with ca.transaction():
            assert a.fence(ca, mine) == frozenset()  # a woke up: it may write no rule state for them
        assert sorted(a.round(ca).lost) == mine
        # A claim waits for a batch in flight that fenced the gateway, then wins only once it has committed.
        clock.advance(TTL_S + 1)  # b is silent now; a claims again, but b's batch holds the row
        done = threading.Event()
        with cb.transaction():
            assert b.fence(cb, [mine[0]]) == frozenset({mine[0]})

            def claim() -> None:
                with psycopg.connect(db_url) as c2:
                    a.round(c2)
                done.set()

            th = threading.Thread(target=claim)
            th.start()
            assert not done.wait(1.0)  # blocked on b's FOR SHARE
        th.join(10)
        assert done.is_set() and mine[0] in a.held and a.held[mine[0]] == 3
        a.leave(ca)
        assert sql_one(db_url, "SELECT count(*) FROM gateway_leases WHERE collector_id = 'col-a'") == 0


def test_keeper_holds_the_leases_of_a_busy_loop_and_lets_a_stuck_one_go(db_url: str, scale_site: Site) -> None:
    """A member busy longer than its lease (at 200,000 points the rule reload of a takeover takes ~8 s, beyond
    an 8 s ttl) keeps its gateways at the same epoch while the keeper renews; a loop stuck past stall_s loses
    them to the other member within stall_s + ttl_s. On the database's own clock, in real time."""
    settings = LeaseSettings(ttl_s=2.0, renew_s=0.5, stall_s=4.0)
    a, b = Leases("col-a", settings), Leases("col-b", settings)
    alive = [time.monotonic()]
    with psycopg.connect(db_url) as ca, psycopg.connect(db_url) as cb:
        assert a.round(ca).gained == GATEWAYS
        epochs = dict(a.held)
        keeper = Keeper(a, lambda: psycopg.connect(db_url), lambda: alive[0])
        keeper.start()
        try:
            # a's loop is busy (no round, no progress) for 1.5 ttl: b, joining, finds nothing free
            busy_until = time.monotonic() + 1.5 * settings.ttl_s
            while time.monotonic() < busy_until:
                assert b.round(cb).gained == []
                time.sleep(settings.renew_s)
            assert leases(db_url) == {g: ("col-a", epochs[g]) for g in GATEWAYS}
            assert a.renewals >= 4
            # then stuck: past stall_s the keeper stops renewing and b takes everything over
            got: list[str] = []
            t_stuck = alive[0]
            while len(got) < len(GATEWAYS) and time.monotonic() - t_stuck < settings.stall_s + 3 * settings.ttl_s:
                got += b.round(cb).gained
                time.sleep(settings.renew_s)
            took = time.monotonic() - t_stuck
            assert sorted(got) == GATEWAYS, got
            assert settings.stall_s <= took <= settings.stall_s + settings.ttl_s + 2 * settings.renew_s, took
        finally:
            keeper.stop()
    assert all(owner == "col-b" and epoch == epochs[g] + 1 for g, (owner, epoch) in leases(db_url).items())


def test_a_takeover_restores_only_the_gained_gateways_as_a_restart_would_and_compiles_nothing(
    mini_site: Site, collector: CollectorProcess
) -> None:
    """`RuleEngine.handover` (a group member claiming gateways) reads back the gained gateways' recorded state,
    the same a full restart restores, and keeps its rules compiled: recompiling for every claim took ~8 s at
    200,000 points, longer than a lease. Member B loaded before any traffic; the previous owner (a real
    collector) then ran an on-delay on gw-a1, took gw-a2 offline and stored gw-b1's data. B takes over gw-a1 and
    gw-a2: its state of those equals a fresh engine's load; gw-b1's, not claimed, stays B's own old copy."""
    from core.clock import SystemClock
    from rules.engine import RuleEngine
    from rules.model import load_catalog
    from tests.integration.test_restart_truth import CATALOG
    from tests.integration.test_rules_restart import Gateway

    db = mini_site.db_url
    catalog = load_catalog(CATALOG)
    b = RuleEngine(catalog=catalog, clock=SystemClock())
    with psycopg.connect(db) as conn:
        b.load(conn)
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    t0 = int(time.time() * 1000) - 5_000
    a1 = Gateway(mini_site, "gw-a1")
    a1.send([("TT-101", t0 + k * 1000, 75.0) for k in range(5)] + [("CO-101", t0, 3.0)])
    a1.close()
    a2 = Gateway(mini_site, "gw-a2")
    a2.send([("TT-201", t0, 40.0)])
    a2.infos.append(a2.c.publish("rw/v1/gw-a2/status", orjson.dumps({"online": False}), qos=1))
    a2.close()
    b1 = Gateway(mini_site, "gw-b1")
    b1.send([("FT-301", t0, 12.0)])
    b1.close()
    wait_for(lambda: sql_one(db, "SELECT cond FROM alarms WHERE rule_id = 'rt.temp:hi'") is True)
    wait_for(lambda: sql_one(db, "SELECT online FROM gateways WHERE id = 'gw-a2'") is False)
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM readings") == 8)
    assert collector.stop() == 0

    gained = ["gw-a1", "gw-a2"]
    with psycopg.connect(db) as conn:
        b.handover(conn, gained)
        fresh = RuleEngine(catalog=catalog, clock=SystemClock())
        fresh.load(conn)
        pid_gw = dict(conn.execute("SELECT id, gateway_id FROM points").fetchall())
    assert b.stats.compiles == 1  # the claim compiled nothing
    assert b.state is not None and fresh.state is not None and b.compiled is not None
    mine = sorted(p for p, g in pid_gw.items() if g in gained)
    other = sorted(p for p, g in pid_gw.items() if g not in gained)
    bp, fp = b.state.points, fresh.state.points
    assert (bp.last_t[mine] == fp.last_t[mine]).all() and (fp.last_t[mine] > 0).sum() == 3
    np.testing.assert_array_equal(bp.last_v[mine], fp.last_v[mine])
    np.testing.assert_array_equal(bp.arrival[mine], fp.arrival[mine])
    ours = {i for i, x in enumerate(b.compiled.instances) if x.gateway_id in gained}
    assert {i: s for i, s in b.state.inst.items() if i in ours} == {
        i: s for i, s in fresh.state.inst.items() if i in ours}
    assert any(s.cond and not s.active for i, s in b.state.inst.items() if i in ours)  # the on-delay running
    for g in gained:
        assert b.state.gw_last_seen.get(g) == fresh.state.gw_last_seen.get(g)
        assert b.state.gw_offline_at.get(g) == fresh.state.gw_offline_at.get(g)
    assert "gw-a2" in b.state.gw_offline_at
    assert {k: v for k, v in b.state.history.items() if k in mine} == {
        k: v for k, v in fresh.state.history.items() if k in mine}
    # gw-b1 was not claimed: B still holds what it loaded (nothing), the fresh engine sees its reading
    assert (bp.last_t[other] == -1).all() and (fp.last_t[other] > 0).any()
