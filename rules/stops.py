"""Production-stop filing (停产报备): pure decisions over filed stops and their approval.

An enterprise files a stop or maintenance period for a plant or one of its devices (reason, start,
expected end); the bureau approves or rejects it. While an APPROVED stop holds:
- silence rules (`SILENCE_SHAPES`: no data, never reported, gateway or device offline) open no candidates and
  raise nothing — a stopped plant is expected to be silent; the condition is looked at again on the
  next tick, so a plant still silent when the stop ends is raised then, and only then;
- every other alarm in its scope is recorded as not annunciated (the lifecycle's maintenance overlay).
A filed, rejected, withdrawn or expired stop covers nothing.

The CLI's maintenance windows are approved stops filed and approved by the operator who opened them
(migration 0016 turned the old windows into such stops). `rules.store_stops` holds the SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from core.errors import RiskwatchError
from core.timeconst import S_PER_DAY, S_PER_H

__all__ = ["MAX_BACKDATE_S", "MAX_LENGTH_S", "SILENCE_SHAPES", "Stop", "StopAction", "StopError", "StopStatus",
           "act", "check_filing", "covering"]

StopStatus = Literal["filed", "approved", "rejected", "withdrawn"]
StopAction = Literal["approve", "reject", "withdraw"]

#: Rule shapes that a stopped plant trips by being stopped.
SILENCE_SHAPES = frozenset({"stale", "never_reported", "gateway_offline", "device_offline"})
#: A filing may start at most this long before it is filed: a stop is announced, not used to excuse a silence
#: after the fact (the bureau can still approve a short back-dated one, e.g. filed during the first hour).
MAX_BACKDATE_S = 1.0 * S_PER_H
MAX_LENGTH_S = 90.0 * S_PER_DAY
MAX_REASON = 500


class StopError(RiskwatchError, ValueError):
    """A filing or a decision the rules of filing refuse; the message is for the form."""


@dataclass(frozen=True)
class Stop:
    id: int
    enterprise_id: str
    plant_id: str
    device_id: int | None
    starts: float
    ends: float
    status: StopStatus
    reason: str = ""
    kind: str = "stop"


def covering(stops: list[Stop], plant_id: str, device_id: int | None, t: float) -> Stop | None:
    """The approved stop that covers (plant, device) at time t; a plant-wide stop covers all its devices
    and its gateways (device None), a device stop only that device."""
    for s in stops:
        if s.status != "approved" or s.plant_id != plant_id or not s.starts <= t < s.ends:
            continue
        if s.device_id is not None and s.device_id != device_id:
            continue
        return s
    return None


def check_filing(*, plant_enterprise: str, filer_enterprise: str | None, starts: float, ends: float, now: float,
                 reason: str) -> None:
    """Refuse a filing for another enterprise's plant, an empty or inverted period, one too long, one that
    ended already or starts too far back. `filer_enterprise` None: the bureau files on the plant's behalf."""
    if filer_enterprise is not None and filer_enterprise != plant_enterprise:
        raise StopError("不能为其他企业的厂区报备 cannot file a stop for another enterprise's plant")
    if not reason.strip() or len(reason) > MAX_REASON:
        raise StopError(f"请填写停产原因（不超过{MAX_REASON}字） give a reason of at most {MAX_REASON} characters")
    if ends <= starts:
        raise StopError("预计结束时间须晚于开始时间 the expected end must come after the start")
    if ends - starts > MAX_LENGTH_S:
        raise StopError(f"单次报备不超过{MAX_LENGTH_S / S_PER_DAY:g}天 a stop lasts at most "
                        f"{MAX_LENGTH_S / S_PER_DAY:g} days; file again to extend")
    if ends <= now:
        raise StopError("该时段已结束 the period has already ended")
    if starts < now - MAX_BACKDATE_S:
        raise StopError(f"开始时间最多可提前{MAX_BACKDATE_S / S_PER_H:g}小时补报 a stop may start at most "
                        f"{MAX_BACKDATE_S / S_PER_H:g} h before it is filed")


def act(stop: Stop, action: StopAction, *, by_enterprise: str | None, now: float) -> Stop:
    """The stop after `action`. The bureau (by_enterprise None) approves or rejects a filed stop; the enterprise
    that filed it withdraws it — a running approved stop is ended at `now` instead (its past stays covered)."""
    if action in ("approve", "reject"):
        if by_enterprise is not None:
            raise StopError("企业不能审批停产报备 an enterprise cannot approve or reject a stop filing")
        if stop.status != "filed":
            raise StopError(f"报备状态为 {stop.status}，不能再审批"
                            f" the filing is {stop.status}, not awaiting a decision")
        return replace(stop, status="approved" if action == "approve" else "rejected")
    if by_enterprise is not None and by_enterprise != stop.enterprise_id:
        raise StopError("不能撤回其他企业的报备 cannot withdraw another enterprise's filing")
    if stop.status == "filed" or (stop.status == "approved" and now <= stop.starts):
        return replace(stop, status="withdrawn")
    if stop.status == "approved" and now < stop.ends:
        return replace(stop, ends=now)  # ended early: production resumed
    raise StopError(f"报备状态为 {stop.status}，无需撤回 the filing is {stop.status}: nothing to withdraw")
