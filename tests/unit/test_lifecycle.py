"""ISA-18.2 alarm lifecycle: every transition and refusal (pure, fake clock)."""

from __future__ import annotations

import pytest

from rules import lifecycle as lc

T = 1_000_000.0


def test_activate_ack_clear() -> None:
    a, ev = lc.activate(lc.Alarm(), T, "TT=71 ≥ 70")
    assert (a.state, a.active) == ("unack", True)
    assert [(e.event, e.from_state, e.to_state, e.annunciate) for e in ev] == [("activate", "normal", "unack", True)]
    a, ev = lc.acknowledge(a, "duty-1", "seen", T + 5)
    assert a.state == "ack" and a.acked_by == "duty-1" and ev[0].actor == "duty-1" and ev[0].reason == "seen"
    a, ev = lc.clear(a, T + 30, "back")
    assert (a.state, a.active) == ("normal", False) and ev[0].to_state == "normal"


def test_return_to_normal_unacked_then_ack() -> None:
    a, _ = lc.activate(lc.Alarm(), T, "x")
    a, _ = lc.clear(a, T + 1, "y")
    assert a.state == "rtn_unack"
    a, ev = lc.acknowledge(a, "duty", "", T + 2)
    assert a.state == "normal" and ev[0].from_state == "rtn_unack"


def test_reactivation_from_rtn_unack() -> None:
    a, _ = lc.activate(lc.Alarm(), T, "x")
    a, _ = lc.clear(a, T + 100, "y")
    a, ev = lc.activate(a, T + 200, "again")
    assert a.state == "unack" and ev[-1].from_state == "rtn_unack"


@pytest.mark.parametrize("state", ["normal", "ack"])
def test_nothing_to_acknowledge(state: str) -> None:
    with pytest.raises(lc.LifecycleError, match="nothing to acknowledge"):
        lc.acknowledge(lc.Alarm(state=state, active=state == "ack"), "x", "", T)


def test_duplicate_activation_is_ignored() -> None:
    a, _ = lc.activate(lc.Alarm(), T, "x")
    b, ev = lc.activate(a, T + 1, "x")
    assert b == a and ev == []
    c, ev = lc.clear(lc.Alarm(), T, "x")
    assert ev == []


def test_shelve_suppresses_then_auto_unshelve_reannunciates() -> None:
    a, ev = lc.shelve(lc.Alarm(), "chief", 600, "sensor being replaced", T)
    assert a.shelved(T + 1) and ev[0].event == "shelve"
    a, ev = lc.activate(a, T + 10, "x")
    assert a.state == "unack" and ev[-1].annunciate is False and "shelved" in ev[-1].reason
    a, ev = lc.tick(a, T + 599)
    assert ev == []
    a, ev = lc.tick(a, T + 600)
    assert a.shelved_until is None and ev[0].event == "unshelve" and ev[0].annunciate is True


def test_shelve_needs_reason_and_bounded_duration() -> None:
    with pytest.raises(lc.LifecycleError):
        lc.shelve(lc.Alarm(), "x", 600, " ", T)
    with pytest.raises(lc.LifecycleError):
        lc.shelve(lc.Alarm(), "x", 30 * 24 * 3600, "long", T)
    with pytest.raises(lc.LifecycleError):
        lc.unshelve(lc.Alarm(), "x", T)


def test_out_of_service_and_maintenance_window() -> None:
    a, _ = lc.set_out_of_service(lc.Alarm(), "eng", "calibration", T, True)
    a, ev = lc.activate(a, T + 1, "x")
    assert ev[-1].annunciate is False and "out of service" in ev[-1].reason
    a, ev = lc.set_out_of_service(a, "eng", "", T + 2, False)
    assert ev[0].event == "return_to_service" and ev[0].annunciate is True
    b, ev = lc.activate(lc.Alarm(), T, "x", in_maintenance="#3 bag change")
    assert ev[-1].annunciate is False and "maintenance window: #3" in ev[-1].reason
    with pytest.raises(lc.LifecycleError):
        lc.set_out_of_service(lc.Alarm(), "eng", "", T, True)


def test_chattering_holds_reannunciation_but_records() -> None:
    a = lc.Alarm()
    annunciated = []
    for k in range(5):
        a, ev = lc.activate(a, T + 10 * k, "x")
        annunciated.append([e.annunciate for e in ev if e.event == "activate"][0])
        a, _ = lc.clear(a, T + 10 * k + 5, "y")
        if k == 2:
            assert any(e.event == "chatter" for e in ev)
    assert annunciated == [True, True, False, False, False]
    assert a.chattering
    a, ev = lc.tick(a, T + 40 + 59)
    assert ev == []
    a, ev = lc.tick(a, T + 40 + 60)
    assert not a.chattering and ev[0].event == "chatter_end"


def test_activations_spread_out_do_not_chatter() -> None:
    a = lc.Alarm()
    for k in range(5):
        a, ev = lc.activate(a, T + 40 * k, "x")
        a, _ = lc.clear(a, T + 40 * k + 1, "y")
        assert all(e.event != "chatter" for e in ev)
