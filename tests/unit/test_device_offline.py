"""A Sparkplug device reported dead (DDEATH) as the rule engine sees it: compiled instances per (gateway, device),
the offline state a batch records, and the shipped `common.device.offline` rule on the tick's clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.keys import Subject
from rules.compile import DeviceRow, GatewayRow, PlantRow, PointRow, RegistryView, compile_rules
from rules.evaluate import (
    Index,
    InstState,
    PointState,
    State,
    TickInputs,
    Updates,
    apply,
    evaluate_tick,
    note_devices,
    note_gateways,
)
from rules.model import Catalog, load_file
from rules.stops import SILENCE_SHAPES

T0 = 1_764_460_800.0
GW = "gw-sp"
COMMON = Path(__file__).parents[2] / "rules" / "catalog" / "common.yaml"
RULE = "common.device.offline"
GW_RULE = "common.gateway.offline"


def _view() -> RegistryView:
    def pt(i: int, gw: str, tag: str) -> PointRow:
        return PointRow(i, gw, tag, 1, "temperature", None, False, 1.0, {}, None, "degC")

    points = [pt(1, GW, "plc1:TT-101"), pt(2, GW, "plc1:CO-101"), pt(3, GW, "plc2:TT-201"), pt(4, GW, "CAB-T"),
              pt(5, "gw-json", "TT-301"), pt(6, "gw-off", "plc9:TT-901")]
    return RegistryView(points, {1: DeviceRow(1, "p1", "bag_filter", "BF")}, {"p1": PlantRow("p1", "cement", "e1")},
                        [GatewayRow(GW, "p1", True), GatewayRow("gw-json", "p1", True),
                         GatewayRow("gw-off", "p1", False)])


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog([(COMMON, load_file(COMMON))])


def test_the_shipped_rule(catalog: Catalog) -> None:
    _, rule = catalog.rules[RULE]
    _, gw_rule = catalog.rules[GW_RULE]
    assert rule.shape == "device_offline" and rule.title.zh == "设备离线"
    assert rule.silent_s == gw_rule.silent_s == 30 and rule.severity == "high" and not rule.candidate
    assert rule.basis == gw_rule.basis
    assert "device_offline" in SILENCE_SHAPES  # a stopped plant's devices are dead by design


def test_one_instance_per_gateway_and_sparkplug_device_its_tags_name(catalog: Catalog) -> None:
    insts = [i for i in compile_rules(catalog, _view()).instances if i.base_id == RULE]
    # plc1 once for its two points; no instance for a node metric, a tag without a prefix, a disabled gateway
    assert [(i.subject, i.gateway_id, i.device_id, i.point_id, i.plant_id) for i in insts] == [
        ("d:gw-sp/plc1", GW, "plc1", None, "p1"), ("d:gw-sp/plc2", GW, "plc2", None, "p1")]
    assert Subject.parse(insts[0].subject) == Subject.device(GW, "plc1")


class Engine:
    """The evaluator as rules.engine drives it: batches note traffic, status and devices; ticks decide."""

    def __init__(self, catalog: Catalog, dev_offline_at: dict[tuple[str, str], float] | None = None,
                 inst: dict[int, InstState] | None = None):
        self.compiled = compile_rules(catalog, _view())
        self.index = Index(self.compiled, 7)
        self.state = State(PointState.empty(7), seen=np.zeros(7, bool), gw_last_seen={GW: T0},
                           dev_offline_at=dict(dev_offline_at or {}))
        self.state.inst.update(inst or {})

    def index_of(self, rule_id: str, subject: str) -> int:
        return next(k for k, i in enumerate(self.compiled.instances) if i.rule_id == rule_id and i.subject == subject)

    def batch(self, at: float, devices: dict[str, bool] | None = None, online: bool | None = None) -> Updates:
        now = T0 + at
        u = Updates(arrival_now=now)
        note_gateways(u, {GW: now}, {} if online is None else {GW: (online, now)}, None, self.state, {})
        note_devices(u, {(GW, d): (alive, now) for d, alive in (devices or {}).items()}, self.state)
        apply(self.state, u)
        return u

    def tick(self, at: float) -> list[tuple[str, str, str]]:
        u, trs = evaluate_tick(self.state, self.index, TickInputs(T0 + at, np.full(7, T0), {GW: T0}))
        apply(self.state, u)
        insts = self.compiled.instances
        return [(tr.kind, insts[tr.index].rule_id, insts[tr.index].subject) for tr in trs
                if insts[tr.index].gateway_id == GW]


def test_ddeath_raises_the_device_alarm_after_its_limit_and_the_dbirth_clears_it(catalog: Catalog) -> None:
    e = Engine(catalog)
    u = e.batch(0, {"plc1": True, "plc2": True})
    assert u.dev_offline_at == {}  # a live device was never dead: nothing to record
    u = e.batch(1, {"plc1": False})
    assert u.dev_offline_at == {(GW, "plc1"): T0 + 1}
    for s in range(2, 31):
        e.batch(s, {"plc2": True})  # the edge node and its other device go on
        assert e.tick(s) == []
    e.batch(32, {"plc2": True})
    assert e.tick(32) == [("activate", RULE, "d:gw-sp/plc1")]
    # the edge says it again: still dead since the first DDEATH
    assert e.batch(33, {"plc1": False}).dev_offline_at == {}
    assert e.state.dev_offline_at == {(GW, "plc1"): T0 + 1}
    assert e.tick(34) == []
    assert e.batch(35, {"plc1": True}).dev_offline_at == {(GW, "plc1"): None}
    assert e.tick(35) == [("clear", RULE, "d:gw-sp/plc1")]
    assert e.state.dev_offline_at == {}


def test_a_gateway_offline_covers_its_devices(catalog: Catalog) -> None:
    """A DDEATH and then the NDEATH (an edge node shutting down): the gateway's alarm, not one per device too."""
    e = Engine(catalog)
    e.batch(0, {"plc1": False})
    e.batch(5, online=False)
    assert e.tick(40) == [("activate", GW_RULE, f"g:{GW}")]
    assert e.tick(100) == []
    # the gateway back (NBIRTH) without plc1's DBIRTH: the device is still dead and now raised
    e.batch(101, online=True)
    assert e.tick(101) == [("clear", GW_RULE, f"g:{GW}"), ("activate", RULE, "d:gw-sp/plc1")]
    # an alarm already active stays through a gateway offline (the device is no less dead) until its DBIRTH
    e.batch(102, {"plc2": False})
    e.batch(103, online=False)
    assert e.tick(200) == [("activate", GW_RULE, f"g:{GW}")]
    e.batch(201, {"plc1": True, "plc2": True}, online=True)
    assert e.tick(201) == [("clear", GW_RULE, f"g:{GW}"), ("clear", RULE, "d:gw-sp/plc1")]


def test_a_device_dead_while_its_edge_node_is_quiet_is_raised(catalog: Catalog) -> None:
    """Silence is not the gateway down: an edge node whose one device died may have nothing more to say (its
    own silence is the gateway rule's business)."""
    e = Engine(catalog)
    e.batch(0, {"plc1": False})
    assert ("activate", RULE, "d:gw-sp/plc1") in e.tick(31)


def test_restored_state_raises_and_clears_nothing(catalog: Catalog) -> None:
    """After a restart the engine holds what was recorded: an active alarm on a device still dead stays, with no
    transition, through the rebirth the restarted host asks for (NBIRTH and only the living devices' DBIRTHs)."""
    fresh = Engine(catalog)
    i = fresh.index_of(RULE, "d:gw-sp/plc1")
    e = Engine(catalog, {(GW, "plc1"): T0 - 600}, {i: InstState(True, int((T0 - 570) * 1e6), True)})
    assert e.tick(1) == []
    e.batch(2, {"plc2": True}, online=True)
    assert e.tick(3) == []
    assert e.state.inst[i].active
