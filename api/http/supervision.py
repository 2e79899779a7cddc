"""What an enterprise may change in its own registry entries, and what only the bureau may change.

An enterprise is supervised through its registry rows: the setpoints its points are judged by, which points
must report and how often, the industry of a plant and the kind of a device (they decide which catalog
rules bind), and the principal responsible person (主要负责人) and actual controller (实际控制人) whom a
confirmed major hazard must reach. A hostile or careless enterprise could weaken its own supervision by
editing those, so an enterprise's change to a supervised field becomes a change request (变更申请) for the
bureau to approve; descriptions (names, addresses, units), its routine contacts and its gateways'
credentials stay its own to edit.

Pure: a requested change and the current values in, the split out. No SQL, no HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from core.gateways import disable_needs_approval

Kind = Literal["enterprise", "plant", "gateway", "device", "point"]
KINDS: tuple[Kind, ...] = ("enterprise", "plant", "gateway", "device", "point")

#: Fields only the bureau changes, per object kind. A gateway's `enabled` is supervised only when it would
#: turn a gateway that feeds a required point off (see `gateway_disable_needs_approval`).
SUPERVISED: Mapping[Kind, frozenset[str]] = {
    # the unified social credit code is who the enterprise is in law: not a description
    "enterprise": frozenset({"credit_code", "principal", "controller"}),
    "plant": frozenset({"industry"}),
    "gateway": frozenset({"enabled"}),
    "device": frozenset({"kind"}),
    "point": frozenset({"required", "interval_s", "states", "setpoints"}),
}

#: Fields where a JSON null in a PATCH means "leave as is" (NOT NULL columns, the two contacts of record);
#: elsewhere a null clears the field.
LEAVE_IF_NULL: Mapping[Kind, frozenset[str]] = {
    "enterprise": frozenset({"name", "principal", "controller", "routine_contacts"}),
    "plant": frozenset({"name", "industry"}),
    "gateway": frozenset({"enabled"}),
    "device": frozenset({"name", "kind"}),
    "point": frozenset({"unit", "required", "interval_s"}),
}

_CONTACT_FIELDS = ("name", "phone", "email")


def normalise(name: str, value: Any) -> Any:
    """One form per meaning, so "unchanged" is decided by equality: an empty map is no map (that is how
    points store it), a contact always has its three fields, numbers compare as floats."""
    if name in ("setpoints", "states"):
        if not value:
            return None
        return {str(k): (float(v) if name == "setpoints" else v) for k, v in dict(value).items()}
    if name in ("principal", "controller") and value is not None:
        return {f: dict(value).get(f) for f in _CONTACT_FIELDS}
    if name == "interval_s" and value is not None:
        return float(value)
    return value


@dataclass(frozen=True)
class Split:
    """A requested change divided by who may make it. Only fields whose value would change are kept."""

    free: dict[str, Any] = field(default_factory=dict)
    supervised: dict[str, Any] = field(default_factory=dict)
    old: dict[str, Any] = field(default_factory=dict)  # current values of every changed field

    @property
    def changed(self) -> dict[str, Any]:
        return {**self.free, **self.supervised}


def effective(kind: Kind, requested: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a PATCH body really asks to set (a null that means "leave as is" is dropped)."""
    leave = LEAVE_IF_NULL[kind]
    return {k: v for k, v in requested.items() if not (v is None and k in leave)}


def split(kind: Kind, requested: Mapping[str, Any], current: Mapping[str, Any]) -> Split:
    """Divide `requested` (a PATCH body, unset fields left out) against the object's `current` values."""
    free: dict[str, Any] = {}
    supervised: dict[str, Any] = {}
    old: dict[str, Any] = {}
    for name, value in effective(kind, requested).items():
        new, was = normalise(name, value), normalise(name, current.get(name))
        if new == was:
            continue
        old[name] = was
        (supervised if name in SUPERVISED[kind] else free)[name] = new
    return Split(free, supervised, old)


def gateway_disable_needs_approval(currently_enabled: bool, feeds_required_point: bool) -> bool:
    """Turning off a gateway that feeds a required point silences what the bureau requires to hear
    (its stale and never-reported rules would fire, but the data is gone): the bureau decides. Turning
    on, or off a gateway that feeds nothing required, removes no supervision. (The console decides with the
    same function, `core.gateways.disable_needs_approval`.)"""
    return disable_needs_approval(currently_enabled, feeds_required_point)


def stale_fields(old_values: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Fields whose value moved since a change request was filed: approving it would overwrite a change
    the approver never saw, so the request must be filed again."""
    return sorted(k for k, v in old_values.items() if normalise(k, current.get(k)) != normalise(k, v))


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"old": …, "new": …}} for the audit log."""
    return {k: {"old": old.get(k), "new": v} for k, v in new.items()}
