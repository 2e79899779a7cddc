"""Production stops, pure: which stop covers what, what a filing may say, who decides it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rules.stops import Stop, StopError, act, check_filing, covering

T = 1_000_000.0
PLANT_STOP = Stop(1, "e1", "p1", None, T, T + 3600, "approved", "停窑检修")
DEVICE_STOP = Stop(2, "e1", "p1", 7, T, T + 3600, "approved", "换袋")


@pytest.mark.parametrize("stops, plant, device, t, covered", [
    ([PLANT_STOP], "p1", None, T, 1),             # the plant's gateways
    ([PLANT_STOP], "p1", 7, T + 10, 1),            # any device of the plant
    ([PLANT_STOP], "p2", None, T + 10, None),      # another plant
    ([PLANT_STOP], "p1", 7, T - 1, None),          # before its period
    ([PLANT_STOP], "p1", 7, T + 3600, None),       # its end is exclusive: expired
    ([DEVICE_STOP], "p1", 7, T + 10, 2),
    ([DEVICE_STOP], "p1", 8, T + 10, None),        # a device stop covers that device only
    ([DEVICE_STOP], "p1", None, T + 10, None),     # not the plant's gateways
    ([replace(PLANT_STOP, status="filed")], "p1", 7, T + 10, None),
    ([replace(PLANT_STOP, status="rejected")], "p1", 7, T + 10, None),
    ([replace(PLANT_STOP, status="withdrawn")], "p1", 7, T + 10, None),
])
def test_covering(stops: list[Stop], plant: str, device: int | None, t: float, covered: int | None) -> None:
    got = covering(stops, plant, device, t)
    assert (got.id if got else None) == covered


@pytest.mark.parametrize("filer, starts, ends, reason, error", [
    ("e1", T, T + 3600, "检修", None),
    (None, T, T + 3600, "检修", None),                 # the bureau files on the plant's behalf
    ("e2", T, T + 3600, "检修", "another enterprise"),
    ("e1", T, T + 3600, "  ", "reason"),
    ("e1", T + 3600, T, "检修", "after the start"),
    ("e1", T, T + 91 * 86400, "检修", "at most 90 days"),
    ("e1", T - 7200, T - 60, "检修", "already ended"),
    ("e1", T - 7200, T + 60, "检修", "at most 1 h before"),  # no excusing a silence after the fact
    ("e1", T - 1800, T + 60, "检修", None),
])
def test_check_filing(filer: str | None, starts: float, ends: float, reason: str, error: str | None) -> None:
    def run() -> None:
        check_filing(plant_enterprise="e1", filer_enterprise=filer, starts=starts, ends=ends, now=T, reason=reason)
    if error is None:
        run()
    else:
        with pytest.raises(StopError, match=error):
            run()


def test_only_the_bureau_decides_and_only_once() -> None:
    filed = replace(PLANT_STOP, status="filed")
    with pytest.raises(StopError, match="cannot approve"):
        act(filed, "approve", by_enterprise="e1", now=T)  # not even its own
    assert act(filed, "approve", by_enterprise=None, now=T).status == "approved"
    assert act(filed, "reject", by_enterprise=None, now=T).status == "rejected"
    with pytest.raises(StopError, match="not awaiting"):
        act(PLANT_STOP, "reject", by_enterprise=None, now=T)


def test_withdrawing_a_filing_or_ending_a_running_stop_early() -> None:
    filed = replace(PLANT_STOP, status="filed")
    assert act(filed, "withdraw", by_enterprise="e1", now=T).status == "withdrawn"
    with pytest.raises(StopError, match="another enterprise"):
        act(filed, "withdraw", by_enterprise="e2", now=T)
    ended = act(PLANT_STOP, "withdraw", by_enterprise="e1", now=T + 600)
    assert ended.status == "approved" and ended.ends == T + 600  # production resumed: its past stays covered
    with pytest.raises(StopError, match="nothing to withdraw"):
        act(PLANT_STOP, "withdraw", by_enterprise="e1", now=T + 7200)
