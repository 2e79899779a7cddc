"""Which routes an event takes, and which people a receiver stands for at a given time.

Pure decisions over a loaded `AlertingConfig` (inheritance already applied): the dispatcher calls
`route` for each outbox event, groups by `group_key`, and resolves contacts with `contacts_for` when
it sends. Every result carries a reason, so the delivery log can say why someone was (not) told.

Route walk (as Alertmanager): the root always matches; at a matching node the children are tried
in order, and a matching child stops the search among its siblings unless it has `continue: true`.
A node none of whose children matched is itself a result.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerting.channels.base import Contact
from alerting.roster import on_duty
from alerting.routing import AlertingConfig, Route, Timing
from alerting.schema import LABELS

__all__ = ["EnterpriseContacts", "Event", "Match", "Resolved", "contacts_for", "group_key", "route"]


@dataclass(frozen=True)
class Event:
    """What is being announced, as routing labels; a label the event does not have is None."""

    kind: str  # alarm | hazard
    event: str
    severity: str | None = None
    industry: str | None = None
    enterprise: str | None = None
    plant: str | None = None
    rule: str | None = None
    subject: str | None = None
    source: str | None = None
    hazard: str | None = None

    def label(self, name: str) -> str | None:
        if name not in LABELS:
            raise KeyError(f"unknown label {name!r}")
        value: str | None = getattr(self, name)
        return value


@dataclass(frozen=True)
class Match:
    path: str
    receivers: tuple[str, ...]
    timing: Timing
    reason: str


def _why(node: Route, ev: Event) -> str | None:
    """The labels that made `node` match, e.g. "severity=high"; None if it does not match."""
    shown = []
    for name, allowed in node.match.items():
        value = ev.label(name)
        if value is None or value not in allowed:
            return None
        shown.append(f"{name}={value}")
    return ", ".join(shown)


def _walk(node: Route, ev: Event, trail: tuple[str, ...], out: list[Match]) -> None:
    matched = False
    for child in node.routes:
        why = _why(child, ev)
        if why is None:
            continue
        _walk(child, ev, (*trail, f"{child.path} ({why})"), out)
        matched = True
        if not child.continue_:
            break
    if not matched:
        reason = "matched " + " > ".join(trail) if trail else "matched root (no more specific route)"
        out.append(Match(node.path, node.receivers, node.timing, reason))


def route(cfg: AlertingConfig, ev: Event) -> list[Match]:
    """The routes `ev` takes, in tree order; never empty (the root catches everything)."""
    out: list[Match] = []
    _walk(cfg.routes, ev, (), out)
    return out


def group_key(timing: Timing, ev: Event) -> str:
    """Events with the same key on one route and receiver are told together, e.g. "enterprise=E1,plant=P1"."""
    return ",".join(f"{name}={ev.label(name) or ''}" for name in timing.group_by)


# --- contacts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnterpriseContacts:
    """The enterprise's leaders on record in the registry (None: not on record)."""

    enterprise_id: str
    principal: Contact | None
    controller: Contact | None


@dataclass(frozen=True)
class Resolved:
    contacts: tuple[Contact, ...]
    missing: tuple[str, ...]  # why someone who should have been reached is not in `contacts`


_ROLES = {"principal": ("主要负责人", "principal responsible person"),
          "controller": ("实际控制人", "actual controller")}


def contacts_for(cfg: AlertingConfig, receiver: str, t: float, enterprise: EnterpriseContacts | None) -> Resolved:
    """The people `receiver` stands for at epoch time `t`: duty officers, named people, enterprise leaders.

    Deduplicated by contact id in the order of the receiver's `to`. A target that resolves to nobody
    is not an error here: it is reported in `missing` so the delivery log shows it.
    """
    contacts: list[Contact] = []
    missing: list[str] = []

    def person(pid: str) -> Contact:
        p = cfg.people[pid]
        return Contact(pid, p.name, p.email, p.phone)

    for target in cfg.receivers[receiver].to:
        if target.roster is not None:
            duty = on_duty(cfg.rosters[target.roster], t, cfg.tz)
            contacts.extend(person(pid) for pid in duty.people)
            if not duty.people:
                missing.append(f"值班表 {target.roster} 此时无人值班 nobody on duty ({duty.reason})")
        elif target.person is not None:
            contacts.append(person(target.person))
        elif target.enterprise is not None:
            zh, en = _ROLES[target.enterprise]
            if enterprise is None:
                missing.append(f"未指明企业，无法通知{zh} no enterprise given, cannot reach its {en}")
                continue
            found: Contact | None = getattr(enterprise, target.enterprise)
            eid = enterprise.enterprise_id
            if found is None:
                missing.append(f"企业 {eid} 未登记{zh} no {en} on record")
            elif not (found.email or found.phone):
                missing.append(f"企业 {eid} 的{zh} {found.name} 无电话和邮箱 {en} has no phone or e-mail")
            else:
                contacts.append(Contact(f"enterprise:{eid}:{target.enterprise}", found.name, found.email, found.phone))
    unique: dict[str, Contact] = {}
    for c in contacts:
        unique.setdefault(c.id, c)
    return Resolved(tuple(unique.values()), tuple(missing))
