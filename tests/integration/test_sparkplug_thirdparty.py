"""Issue 18 acceptance: a Sparkplug B edge node riskwatch did not write, against the real collector.

The edge node is pysparkplug 0.6.1 (PyPI), in its own virtualenv `.venv-sparkplug` (it needs paho-mqtt < 2; the
project locks paho-mqtt 2), driven as a subprocess through `tests/sparkplug_edge/edge_node.py`: it connects to
the private Mosquitto over TLS with the gateway's own credentials (client id = username = edge node id = gateway
id) and publishes what pysparkplug publishes — NBIRTH with bdSeq, DBIRTH, DDATA by alias only — while the
collector (`riskwatch collect`, a subprocess) stores into TimescaleDB. Every clause of the criterion is an
assertion here:

- births and aliased data are stored under the points the registry maps (`tests/fixtures/sparkplug_site.yaml`,
  device metric tag `{device}:{metric}`), with exactly the values and times the edge sent (its own report of
  every message it published, not a copy of what the test meant to send);
- one forced seq gap gets exactly one rebirth request (NCMD `Node Control/Rebirth`), which the edge answers;
- the broker's NDEATH (the edge SIGKILLed: its will) marks the gateway offline and raises the offline rule;
- a malformed DDATA is dead-lettered as `sparkplug_decode` and the next DDATA is stored;
- a device's DDEATH (pysparkplug's `deregister`) raises the device-offline rule for that device alone, a collector
  restart while it is dead raises and clears nothing, and its DBIRTH clears it.

The catalog is tests/fixtures/rules_restart.yaml: the shipped common rules with limits of seconds (gateway
offline after 8 s instead of 30 s, device offline after 3 s), so the offline alarms are seen without a long wait.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import FIXTURES, ROOT, CollectorProcess, Site, connect_to, mqtt_client, sql_one, wait_for

pytestmark = pytest.mark.integration

EDGE_PYTHON = ROOT / ".venv-sparkplug" / "bin" / "python"
EDGE_SCRIPT = ROOT / "tests" / "sparkplug_edge" / "edge_node.py"
CATALOG = FIXTURES / "rules_restart.yaml"
SITE = FIXTURES / "sparkplug_site.yaml"
GROUP = "plant-sp"
GW = "gw-sp1"
DATA_TYPES = ("NBIRTH", "DBIRTH", "NDATA", "DDATA")  # what carries values (births too: current values)


def now_ms() -> int:
    return int(time.time() * 1000)


def edge_config(t0: int) -> dict[str, Any]:
    """gw-sp1's metrics as a third-party edge declares them: aliases unique across the node and its device,
    a metric the registry does not know (DP-101: quarantined) and a non-numeric one (MODE: String)."""
    return {
        "node_metrics": [{"name": "CAB-T", "alias": 1, "datatype": "DOUBLE", "value": 30.5, "timestamp": t0}],
        "devices": [{"id": "bf1", "metrics": [
            {"name": "TT-101", "alias": 11, "datatype": "DOUBLE", "value": 60.25, "timestamp": t0},
            {"name": "CO-101", "alias": 12, "datatype": "FLOAT", "value": 8.5, "timestamp": t0},
            {"name": "RUN-101", "alias": 13, "datatype": "BOOLEAN", "value": True, "timestamp": t0},
            {"name": "CNT-101", "alias": 14, "datatype": "INT32", "value": -3, "timestamp": t0},
            {"name": "DP-101", "alias": 15, "datatype": "DOUBLE", "value": 850.0, "timestamp": t0},
            {"name": "MODE", "alias": 16, "datatype": "STRING", "value": "auto", "timestamp": t0},
        ]}],
    }


class Edge:
    """The pysparkplug edge node subprocess: JSON commands on its stdin; its replies and events read on a thread."""

    def __init__(self, site: Site, workdir: Path, *, gateway: str = GW, edge_node_id: str = GW,
                 metrics: dict[str, Any] | None = None):
        if not EDGE_PYTHON.exists():
            pytest.fail(f"{EDGE_PYTHON} is missing: run scripts/bootstrap (it makes .venv-sparkplug with the "
                        "third-party Sparkplug B edge node, pysparkplug, from requirements-sparkplug-edge.lock)")
        config = {"host": "127.0.0.1", "port": site.broker.state.mqtt_port, "cafile": str(site.broker.cafile),
                  "username": gateway, "password": site.credentials[gateway], "client_id": gateway,
                  "group_id": GROUP, "edge_node_id": edge_node_id, **(metrics or edge_config(now_ms()))}
        path = workdir / f"edge-{gateway}-{time.monotonic_ns()}.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(config))
        self.stderr = (workdir / f"edge-{gateway}.stderr").open("ab")
        self.proc = subprocess.Popen([str(EDGE_PYTHON), str(EDGE_SCRIPT), str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1)
        self.lines: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, name=f"edge-{gateway}", daemon=True)
        self.reader.start()
        ready = self.wait(lambda e: e.get("event") == "ready", "the edge's ready line")
        locked = re.search(r"^pysparkplug==(\S+)", (ROOT / "requirements-sparkplug-edge.lock").read_text(), re.M)
        assert locked is not None and ready["pysparkplug"] == locked[1], \
            f"{EDGE_PYTHON} runs pysparkplug {ready['pysparkplug']}, the lock pins {locked}: run scripts/bootstrap"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(json.loads(line))
                self.cond.notify_all()

    def wait(self, pred: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20,
             start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hit = next((e for e in self.lines[start:] if pred(e)), None)
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    raise AssertionError(f"edge: timed out waiting for {what}; its last lines: {self.lines[-8:]}")
                self.cond.wait(min(left, 0.2))

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Send one command, wait for its reply; a refused command fails the test with the edge's error."""
        with self.cond:
            start = len(self.lines)
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self.wait(lambda e: e.get("reply") == cmd, f"the reply to {cmd}", start=start)
        assert reply["ok"], reply
        return reply

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self.cond:
            return [e for e in self.lines if e.get("event") == kind]

    def published(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.events("published") if not types or e["type"] in types]

    def ddata(self, metrics: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
        return self.call("ddata", device="bf1", metrics=metrics, **kw)

    def die(self) -> None:
        """SIGKILL from inside: no DISCONNECT reaches the broker, which then publishes the NDEATH will."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": "die"}) + "\n")
        self.proc.stdin.flush()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.stderr.close()


@pytest.fixture
def sp_site(db_url: str, broker: Any) -> Site:
    return Site(db_url, broker, SITE)


@pytest.fixture
def edges(sp_site: Site, tmp_path: Path) -> Iterator[Callable[..., Edge]]:
    made: list[Edge] = []

    def make(**kw: Any) -> Edge:
        made.append(Edge(sp_site, tmp_path, **kw))
        return made[-1]

    yield make
    for e in made:
        e.close()


def start_collector(site: Site, collector: CollectorProcess) -> None:
    """The collector, and only once it is the Sparkplug primary host: its retained STATE says online.

    pysparkplug publishes its births (QoS0) the moment it is connected and does not wait for the host's STATE, as
    Sparkplug 3.0 edge nodes may; a birth sent before the collector's subscription exists is gone. So the test
    waits for STATE online (read with gw-sp2's account: every gateway may read spBv1.0/STATE/+).
    """
    collector.extra_args = ["--catalog", str(CATALOG)]
    collector.start()
    got: list[dict[str, Any]] = []
    c = mqtt_client(site.broker, "gw-sp2", site.credentials["gw-sp2"], client_id="gw-sp2")
    c.on_connect = lambda cl, _u, _f, _rc, _p: cl.subscribe("spBv1.0/STATE/riskwatch", qos=1)
    c.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload))
    connect_to(c, site.broker)
    c.loop_start()
    try:
        wait_for(lambda: any(s.get("online") is True for s in got), timeout=20,
                 message="the collector's retained spBv1.0/STATE/riskwatch {online: true}")
    finally:
        c.disconnect()
        c.loop_stop()


def sent_values(edge: Edge) -> set[tuple[str, int, float]]:
    """(tag, time ms, value) of every numeric metric the edge published with a value: names from the births,
    device metrics tagged `{device}:{name}`, as the registry maps them."""
    names: dict[int, str] = {}
    out: set[tuple[str, int, float]] = set()
    for e in edge.published(*DATA_TYPES):
        device = e["topic"].split("/")[4] if e["type"] in ("DBIRTH", "DDATA") else None
        for m in e.get("metrics", ()):  # raw bytes (the malformed corpus) have none
            if e["type"] in ("NBIRTH", "DBIRTH") and m["alias"] is not None:
                names[m["alias"]] = m["name"]
            name = m["name"] if m["name"] is not None else names.get(m["alias"])
            # an alias no birth declared is no reading (sparkplug_alias); nor bookkeeping, text or null
            if name is None or name == "bdSeq" or m["datatype"] == "STRING" or m["is_null"]:
                continue
            ts = m["timestamp"] if m["timestamp"] is not None else e["timestamp"]
            out.add((f"{device}:{name}" if device else name, ts, float(m["value"])))
    return out


def stored(db_url: str, gateway: str = GW) -> set[tuple[str, int, float]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT p.tag, (extract(epoch FROM r.time) * 1000)::bigint, r.value FROM readings r"
            " JOIN points p ON p.id = r.point_id WHERE p.gateway_id = %s", (gateway,)).fetchall()
    return {(tag, int(ms), float(v)) for tag, ms, v in rows}


def quarantined(db_url: str) -> set[tuple[str, int, float]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT tag, (extract(epoch FROM ts) * 1000)::bigint, value FROM quarantined_readings"
                            " WHERE gateway_id = %s", (GW,)).fetchall()
    return {(tag, int(ms), float(v)) for tag, ms, v in rows}


def dead_letters(db_url: str) -> list[tuple[str | None, str, str, int | None, bytes | None]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT gateway_id, topic, reason, reading_index, payload FROM dead_letters"
                            " ORDER BY id").fetchall()
    return [(g, t, r, i, bytes(p) if p is not None else None) for g, t, r, i, p in rows]


def split_mapped(values: set[tuple[str, int, float]]) -> tuple[set[tuple[str, int, float]],
                                                                set[tuple[str, int, float]]]:
    """The registry maps every gw-sp1 tag of the site file but bf1:DP-101 (quarantined instead)."""
    unmapped = {v for v in values if v[0] == "bf1:DP-101"}
    return values - unmapped, unmapped


def wait_stored(site: Site, edge: Edge, what: str, timeout: float = 20) -> None:
    """Until readings hold all the edge sent of mapped tags (the tests then compare the exact sets)."""
    wait_for(lambda: stored(site.db_url) >= split_mapped(sent_values(edge))[0], timeout=timeout, message=what)


def test_births_and_aliased_data_are_stored_under_the_mapped_points(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    start_collector(sp_site, collector)
    edge = edges()
    edge.call("connect")
    t = now_ms()
    # alias only: no name, no datatype (the host takes both from the DBIRTH); Int32 -3 travels as two's
    # complement, Float as float32, Boolean as 0/1
    r1 = edge.ddata([{"name": "TT-101", "value": 61.5, "timestamp": t},
                     {"name": "CO-101", "value": 12.25, "timestamp": t},
                     {"name": "RUN-101", "value": False, "timestamp": t},
                     {"name": "CNT-101", "value": -7, "timestamp": t}])
    # pysparkplug's own EdgeNode.update_device: name + alias + datatype
    edge.ddata([{"name": "TT-101", "value": 62.0, "timestamp": t + 1000}], alias_only=False)
    edge.call("ndata", metrics=[{"name": "CAB-T", "value": 31.75, "timestamp": t + 1000}])
    # a metric the registry does not map, beside a mapped one; a String metric, beside a mapped one
    edge.ddata([{"name": "DP-101", "value": 900.0, "timestamp": t + 2000},
                {"name": "TT-101", "value": 63.0, "timestamp": t + 2000}])
    edge.ddata([{"name": "MODE", "value": "manual", "timestamp": t + 3000},
                {"name": "TT-101", "value": 64.0, "timestamp": t + 3000}])

    mapped, unmapped = split_mapped(sent_values(edge))
    wait_stored(sp_site, edge, "every mapped value the edge sent")
    wait_for(lambda: quarantined(sp_site.db_url) == unmapped, message="bf1:DP-101 quarantined")
    got = stored(sp_site.db_url)
    assert got == mapped
    # what that set holds, spelled out: births' values at their own time, the alias-only DDATA decoded by the
    # birth's datatypes, the named DDATA, the NDATA of the node metric
    assert {("bf1:TT-101", t, 61.5), ("bf1:CO-101", t, 12.25), ("bf1:RUN-101", t, 0.0), ("bf1:CNT-101", t, -7.0),
            ("bf1:TT-101", t + 1000, 62.0), ("CAB-T", t + 1000, 31.75), ("bf1:TT-101", t + 2000, 63.0),
            ("bf1:TT-101", t + 3000, 64.0)} <= got
    t0 = edge.published("DBIRTH")[0]["metrics"][0]["timestamp"]
    assert {("bf1:TT-101", t0, 60.25), ("bf1:CO-101", t0, 8.5), ("bf1:RUN-101", t0, 1.0), ("bf1:CNT-101", t0, -3.0),
            ("CAB-T", t0, 30.5)} <= got
    assert r1["seq"] == 2  # NBIRTH 0, DBIRTH 1: the host saw no gap
    assert {("bf1:DP-101", t0, 850.0), ("bf1:DP-101", t + 2000, 900.0)} == unmapped
    assert sql_one(sp_site.db_url, "SELECT count FROM unmapped_points WHERE gateway_id = %s AND tag = %s",
                   (GW, "bf1:DP-101")) == 2
    # bdSeq is bookkeeping, never a reading nor quarantined; the String metric is a reading-level dead letter
    assert sql_one(sp_site.db_url, "SELECT count(*) FROM unmapped_points WHERE tag LIKE '%%bdSeq%%'") == 0
    wait_for(lambda: len(dead_letters(sp_site.db_url)) == 2, message="two sparkplug_type dead letters")
    letters = dead_letters(sp_site.db_url)
    assert [(g, t_, r) for g, t_, r, _, _ in letters] == [
        (GW, f"spBv1.0/{GROUP}/DBIRTH/{GW}/bf1", "sparkplug_type"),
        (GW, f"spBv1.0/{GROUP}/DDATA/{GW}/bf1", "sparkplug_type")]
    assert [i for _, _, _, i, _ in letters] == [5, 0]  # MODE's position in each payload
    assert sql_one(sp_site.db_url, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True
    stats = edge.call("stats")
    assert stats["ncmd"] == 0 and stats["errors"] == [], stats  # a clean stream needs no rebirth
    assert collector.stop() == 0


def test_one_seq_gap_gets_exactly_one_rebirth_request(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    start_collector(sp_site, collector)
    edge = edges()
    edge.call("connect")
    t = now_ms()
    edge.ddata([{"name": "TT-101", "value": 50.0, "timestamp": t}])
    wait_stored(sp_site, edge, "the DDATA before the gap")
    assert edge.call("stats")["ncmd"] == 0
    assert edge.call("skip_seq", n=1)["skipped"] == [3]  # the lost message
    gap = edge.ddata([{"name": "TT-101", "value": 51.0, "timestamp": t + 1000}])
    assert gap["seq"] == 4
    request = edge.wait(lambda e: e.get("event") == "ncmd", "the host's NCMD")
    assert request["topic"] == f"spBv1.0/{GROUP}/NCMD/{GW}"
    assert request["rebirth"] is True
    assert [m["name"] for m in request["metrics"]] == ["Node Control/Rebirth"]
    assert request["metrics"][0]["datatype"] == "BOOLEAN" and request["payload_timestamp"] is not None
    edge.wait(lambda e: e.get("event") == "rebirth", "the edge's answer: NBIRTH + DBIRTH")
    # the new session goes on from seq 0 (NBIRTH), 1 (DBIRTH)
    after = [edge.ddata([{"name": "TT-101", "value": 52.0 + k, "timestamp": t + 2000 + k * 1000}]) for k in range(3)]
    assert [a["seq"] for a in after] == [2, 3, 4]
    wait_stored(sp_site, edge, "the gap message and the data after the rebirth")
    time.sleep(2.0)  # room for a second request, were the host to send one
    stats = edge.call("stats")
    assert stats["ncmd"] == 1 and stats["rebirth_requests"] == 1, stats
    assert stats["errors"] == [], stats
    got = stored(sp_site.db_url)
    assert {("bf1:TT-101", t + k * 1000, 50.0 + k) for k in range(5)} <= got  # nothing lost, the gap message kept
    assert got == split_mapped(sent_values(edge))[0]
    assert len(edge.published("NBIRTH")) == 2  # connect, and the one rebirth


def test_gaps_within_the_hold_off_get_one_request_until_the_rebirth(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    """An edge that does not answer at once: more gaps within 10 s ask nothing more; its NBIRTH ends the hold."""
    start_collector(sp_site, collector)
    edge = edges()
    edge.call("rebirth_on_ncmd", enabled=False)
    edge.call("connect")
    t = now_ms()
    for k in range(3):
        edge.call("skip_seq", n=2)
        edge.ddata([{"name": "TT-101", "value": 40.0 + k, "timestamp": t + k * 1000}])
    edge.wait(lambda e: e.get("event") == "ncmd", "the host's NCMD")
    wait_stored(sp_site, edge, "the out-of-sequence data (kept)")
    time.sleep(1.5)
    assert edge.call("stats")["ncmd"] == 1
    edge.call("rebirth")
    edge.ddata([{"name": "TT-101", "value": 45.0, "timestamp": t + 5000}])
    wait_stored(sp_site, edge, "the data after the rebirth")
    time.sleep(1.5)
    stats = edge.call("stats")
    assert stats["ncmd"] == 1 and stats["errors"] == [], stats
    # after the NBIRTH, a new gap is a new request: the hold ended with the birth, not with the clock
    edge.call("skip_seq", n=1)
    edge.ddata([{"name": "TT-101", "value": 46.0, "timestamp": t + 6000}])
    wait_for(lambda: edge.call("stats")["ncmd"] == 2, timeout=10, message="a second request for a second gap")


def test_an_undeclared_alias_is_dead_lettered_and_asks_for_one_rebirth(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    """DDATA by an alias no birth declared: that metric is a reading-level dead letter, its neighbours are stored,
    and the host asks once for the births it lacks."""
    start_collector(sp_site, collector)
    edge = edges()
    edge.call("connect")
    t = now_ms()
    edge.ddata([{"name": "TT-101", "value": 70.0, "timestamp": t, "wire_alias": 99},
                {"name": "CO-101", "value": 4.5, "timestamp": t}])
    request = edge.wait(lambda e: e.get("event") == "ncmd", "the host's NCMD")
    assert request["rebirth"] is True
    edge.wait(lambda e: e.get("event") == "rebirth", "the edge's answer")
    edge.ddata([{"name": "TT-101", "value": 71.0, "timestamp": t + 1000}])
    wait_stored(sp_site, edge, "the neighbour of the bad alias and the data after the rebirth")
    got = stored(sp_site.db_url)
    assert {("bf1:CO-101", t, 4.5), ("bf1:TT-101", t + 1000, 71.0)} <= got
    # the host could not know what alias 99 was; the rebirth's DBIRTH carried the value again, by name
    rebirth_dbirth = edge.published("DBIRTH")[1]
    assert {"name": "TT-101", "value": 70.0, "timestamp": t}.items() <= rebirth_dbirth["metrics"][0].items()
    assert ("bf1:TT-101", t, 70.0) in got
    assert got == split_mapped(sent_values(edge))[0]
    letters = [x for x in dead_letters(sp_site.db_url) if x[2] != "sparkplug_type"]  # (MODE: each DBIRTH)
    assert [(g, tp, r, i) for g, tp, r, i, _ in letters] == [
        (GW, f"spBv1.0/{GROUP}/DDATA/{GW}/bf1", "sparkplug_alias", 0)]
    time.sleep(1.5)
    stats = edge.call("stats")
    assert stats["ncmd"] == 1 and stats["errors"] == [], stats
    assert collector.stop() == 0


def test_ndeath_marks_the_gateway_offline_and_raises_the_offline_rule(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    db = sp_site.db_url
    start_collector(sp_site, collector)
    edge = edges()
    bd_seq = edge.call("connect")["bd_seq"]
    edge.ddata([{"name": "TT-101", "value": 55.0, "timestamp": now_ms()}])
    wait_stored(sp_site, edge, "data of the live session")
    wait_for(lambda: sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True, message="online")
    # (on a slow machine gw-sp1 may have been silent 8 s before its edge connected: that alarm clears on its data)
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM alarms WHERE rule_id = 'rt.gateway.offline'"
                                 " AND subject = %s AND active", (f"g:{GW}",)) == 0, message="no offline alarm")
    before = sql_one(db, "SELECT count(*) FROM alarm_events WHERE rule_id = 'rt.gateway.offline' AND subject = %s",
                     (f"g:{GW}",))

    # the NDEATH will the broker will publish is pysparkplug's, with the NBIRTH's bdSeq
    will = edge.published("NBIRTH")[0]["metrics"]
    assert next(m for m in will if m["name"] == "bdSeq")["value"] == bd_seq
    died = time.time()
    edge.die()
    wait_for(lambda: sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is False, timeout=10,
             message="gateway offline after the broker's NDEATH")
    status_at = sql_one(db, "SELECT extract(epoch FROM status_at) FROM gateways WHERE id = %s", (GW,))
    assert status_at is not None and abs(float(status_at) - died) < 5  # type: ignore[arg-type]
    # the gateway-offline rule of the catalog (8 s here; the shipped common.gateway.offline: 30 s), as for a
    # JSON v1 {"online": false}: raised because the gateway reported itself offline, not for its silence
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM alarms WHERE rule_id = 'rt.gateway.offline'"
                                 " AND subject = %s AND active", (f"g:{GW}",)) == 1,
             timeout=30, message="rt.gateway.offline active for gw-sp1")
    with psycopg.connect(db) as conn:
        events = conn.execute("SELECT event, extract(epoch FROM time), reason FROM alarm_events"
                              " WHERE rule_id = 'rt.gateway.offline' AND subject = %s ORDER BY time OFFSET %s",
                              (f"g:{GW}", before)).fetchall()
        others = conn.execute("SELECT subject FROM alarms WHERE rule_id = 'rt.gateway.offline' AND active"
                              " AND subject <> %s", (f"g:{GW}",)).fetchall()
    assert [e[0] for e in events] == ["activate"], events
    assert "reported offline" in events[0][2], events
    assert float(events[0][1]) >= float(status_at) + 8 - 1e-3  # type: ignore[arg-type]
    assert others in ([], [("g:gw-sp2",)])  # gw-sp2 never spoke: its silence is its own alarm

    # the edge restarted (a new process, a new session): NBIRTH puts the gateway back online, its data clears
    # the alarm, and the new session's births and data are stored like the first's
    again = edges()
    again.call("connect")
    again.ddata([{"name": "TT-101", "value": 56.0, "timestamp": now_ms()}])
    wait_for(lambda: sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True, message="online again")
    wait_for(lambda: sql_one(db, "SELECT count(*) FROM alarms WHERE rule_id = 'rt.gateway.offline'"
                                 " AND subject = %s AND active", (f"g:{GW}",)) == 0,
             timeout=15, message="the offline alarm cleared by the new session's traffic")
    wait_stored(sp_site, again, "the new session's data")
    assert again.call("stats")["ncmd"] == 0
    assert collector.stop() == 0


def test_a_clean_pysparkplug_disconnect_marks_the_gateway_offline(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    """pysparkplug 0.6.1's clean `disconnect()` publishes an NDEATH whose bdSeq is its NBIRTH's + 1 (it has already
    prepared the next connection's will). Not older than the birth's, so not a stale will: the gateway is offline."""
    db = sp_site.db_url
    start_collector(sp_site, collector)
    edge = edges()
    bd_seq = edge.call("connect")["bd_seq"]
    edge.ddata([{"name": "TT-101", "value": 54.0, "timestamp": now_ms()}])
    wait_for(lambda: sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True, message="online")
    edge.call("disconnect")
    death = edge.published("NDEATH")
    assert [m["value"] for m in death[0]["metrics"]] == [bd_seq + 1]  # the quirk this test is about
    wait_for(lambda: sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is False, timeout=10,
             message="gateway offline after pysparkplug's own NDEATH")
    assert collector.stop() == 0


def test_malformed_ddata_is_dead_lettered_and_the_stream_continues(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    start_collector(sp_site, collector)
    edge = edges()
    edge.call("connect")
    t = now_ms()
    edge.ddata([{"name": "TT-101", "value": 58.0, "timestamp": t}])
    wait_stored(sp_site, edge, "the DDATA before")
    corpus = [b"\xff\xff\xff\xff", b"not a protobuf payload at all", b'{"ts": 1, "readings": []}',
              b"\x0a\x05\x08\x01"]  # the last: a field 1 header promising 5 bytes, 2 given (truncated)
    for raw in corpus:
        edge.call("raw", type="DDATA", device="bf1", hex=raw.hex())
    after = edge.ddata([{"name": "TT-101", "value": 59.0, "timestamp": t + 1000},
                        {"name": "CO-101", "value": 3.5, "timestamp": t + 1000}])
    assert after["seq"] == 3  # raw bytes carry no seq: the stream's own seq goes on
    wait_stored(sp_site, edge, "the DDATA after the malformed ones")
    # the DBIRTH's String metric (MODE) is one reading-level dead letter; then one per bad payload
    wait_for(lambda: len(dead_letters(sp_site.db_url)) == 1 + len(corpus), message="one dead letter per bad payload")
    letters = dead_letters(sp_site.db_url)
    assert letters[0][2] == "sparkplug_type"
    assert [(g, tp, r, i) for g, tp, r, i, _ in letters[1:]] == \
        [(GW, f"spBv1.0/{GROUP}/DDATA/{GW}/bf1", "sparkplug_decode", None)] * len(corpus)
    assert [p for *_, p in letters[1:]] == corpus  # kept as received, for whoever debugs the edge
    assert {("bf1:TT-101", t, 58.0), ("bf1:TT-101", t + 1000, 59.0), ("bf1:CO-101", t + 1000, 3.5)} \
        <= stored(sp_site.db_url)
    assert stored(sp_site.db_url) == split_mapped(sent_values(edge))[0]
    assert collector.alive()
    assert collector.stop() == 0


def test_another_gateway_cannot_speak_for_this_edge_node(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    """gw-sp2 (another enterprise) runs the same edge software claiming edge node id gw-sp1: the broker drops its
    births and data (the ACL binds the edge node position to the username) and its will cannot take gw-sp1
    offline; gw-sp1's own stream is untouched."""
    db = sp_site.db_url
    start_collector(sp_site, collector)
    real = edges()
    real.call("connect")
    t = now_ms()
    real.ddata([{"name": "TT-101", "value": 57.0, "timestamp": t}])
    wait_stored(sp_site, real, "gw-sp1's own data")
    forged_metrics = edge_config(t)
    for m in forged_metrics["devices"][0]["metrics"]:
        m["value"] = 999 if m["datatype"] != "STRING" else "x"
        m["timestamp"] = t + 500
    forger = edges(gateway="gw-sp2", edge_node_id=GW, metrics=forged_metrics)
    forger.call("connect")
    forger.ddata([{"name": "TT-101", "value": 999.0, "timestamp": t + 600}])
    forger.die()  # its will: an NDEATH on gw-sp1's topic
    # gw-sp1 goes on; once its next message is stored, the forged ones would have been too
    real.ddata([{"name": "TT-101", "value": 57.5, "timestamp": t + 1000}])
    wait_stored(sp_site, real, "gw-sp1's next data")
    time.sleep(1.0)
    assert stored(db) == split_mapped(sent_values(real))[0]
    assert not any(v == 999.0 for _, _, v in stored(db))
    assert sql_one(db, "SELECT count(*) FROM readings r JOIN points p ON p.id = r.point_id"
                       " WHERE p.gateway_id = 'gw-sp2'") == 0
    assert sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True
    assert real.call("stats")["ncmd"] == 0  # its session never saw a foreign birth nor a gap
    # nothing of the forger reached the collector; the one dead letter is gw-sp1's own String metric in its DBIRTH
    assert [(g, tp, r) for g, tp, r, _, _ in dead_letters(db)] == [
        (GW, f"spBv1.0/{GROUP}/DBIRTH/{GW}/bf1", "sparkplug_type")]
    assert collector.stop() == 0


def alarm_events(db_url: str, rule_id: str, subject: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        return [(e, r) for e, r in conn.execute(
            "SELECT event, reason FROM alarm_events WHERE rule_id = %s AND subject = %s ORDER BY time, id",
            (rule_id, subject))]


def active(db_url: str, rule_id: str, subject: str) -> bool:
    return sql_one(db_url, "SELECT count(*) FROM alarms WHERE rule_id = %s AND subject = %s AND active",
                   (rule_id, subject)) == 1


def test_ddeath_takes_the_device_offline_across_a_restart_until_its_dbirth(
        sp_site: Site, collector: CollectorProcess, edges: Callable[..., Edge]) -> None:
    """Issue 18: the PLC behind an edge node goes away (DDEATH) while the edge node stays up."""
    db = sp_site.db_url
    device, gateway = "d:gw-sp1/bf1", f"g:{GW}"
    start_collector(sp_site, collector)
    edge = edges()
    edge.call("connect")
    edge.ddata([{"name": "TT-101", "value": 55.0, "timestamp": now_ms()}])
    wait_stored(sp_site, edge, "data of the live session")
    wait_for(lambda: not active(db, "rt.gateway.offline", gateway), message="no gateway offline alarm")
    gw_events = len(alarm_events(db, "rt.gateway.offline", gateway))

    edge.call("deregister", device="bf1")
    death = edge.published("DDEATH")
    assert [(e["topic"], e["seq"]) for e in death] == [(f"spBv1.0/{GROUP}/DDEATH/{GW}/bf1", 3)]  # in sequence
    wait_for(lambda: active(db, "rt.device.offline", device), timeout=15, message="rt.device.offline for bf1")
    assert sql_one(db, "SELECT online FROM sparkplug_devices WHERE gateway_id = %s AND device_id = 'bf1'",
                   (GW,)) is False
    [(event, reason)] = alarm_events(db, "rt.device.offline", device)
    assert event == "activate" and "bf1" in reason and "DDEATH" in reason
    # the edge node itself is up, and said so: its node data goes on, no gateway alarm on top
    edge.call("ndata", metrics=[{"name": "CAB-T", "value": 31.0, "timestamp": now_ms()}])
    wait_stored(sp_site, edge, "the node data after the DDEATH")
    assert sql_one(db, "SELECT online FROM gateways WHERE id = %s", (GW,)) is True
    assert not active(db, "rt.gateway.offline", gateway)

    # a restart while the device is dead: the engine restores it from what was recorded. The restarted host lacks
    # the node's birth, asks for a rebirth at the next message, and the edge answers with NBIRTH and the DBIRTHs of
    # the devices it has: not bf1's. Nothing is raised or cleared.
    assert collector.stop() == 0
    start_collector(sp_site, collector)
    edge.call("ndata", metrics=[{"name": "CAB-T", "value": 31.5, "timestamp": now_ms()}])
    answer = edge.wait(lambda e: e.get("event") == "rebirth", "the edge's rebirth after the restart")
    assert [b["type"] for b in answer["sent"]] == ["NBIRTH"]
    edge.call("ndata", metrics=[{"name": "CAB-T", "value": 32.0, "timestamp": now_ms()}])
    wait_stored(sp_site, edge, "the node data after the restart")
    time.sleep(5.0)  # beyond the rule's 3 s: room for a clearance or a second activation, were there one
    assert active(db, "rt.device.offline", device)
    assert [e for e, _ in alarm_events(db, "rt.device.offline", device)] == ["activate"]

    # the device is back: its DBIRTH clears the alarm
    edge.call("register", device="bf1")
    wait_for(lambda: not active(db, "rt.device.offline", device), timeout=15, message="rt.device.offline cleared")
    assert [e for e, _ in alarm_events(db, "rt.device.offline", device)] == ["activate", "clear"]
    assert sql_one(db, "SELECT online FROM sparkplug_devices WHERE gateway_id = %s AND device_id = 'bf1'",
                   (GW,)) is True
    edge.ddata([{"name": "TT-101", "value": 56.0, "timestamp": now_ms()}])
    wait_stored(sp_site, edge, "the device's data after its rebirth")
    assert len(alarm_events(db, "rt.gateway.offline", gateway)) == gw_events  # never a gateway alarm meanwhile
    assert edge.call("stats")["errors"] == []
    assert collector.stop() == 0


def test_missing_edge_venv_fails_with_the_bootstrap_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without .venv-sparkplug the acceptance tests fail (never skip), saying what to run."""
    monkeypatch.setattr(f"{__name__}.EDGE_PYTHON", tmp_path / "no-such-python")

    class FakeSite:  # Edge checks the interpreter before it reads anything of the site
        pass

    with pytest.raises(pytest.fail.Exception, match="run scripts/bootstrap"):
        Edge(FakeSite(), tmp_path)  # type: ignore[arg-type]

