"""Identity of alarms, their subjects and alert items, as small immutable values.

The database keeps the same strings it always has (`alarms.subject` = "p:42", "g:gw-a1" or, for a Sparkplug
device behind a gateway, "d:gw-a1/bf1",
`alert_members.item` = "alarm:<rule>|<subject>" or "hazard:<id>:<event>"); these types are the
ONE place those strings are built (`format`) and read (`parse`), so no stage slices "p:" off a
string by hand.

`AlarmKey` is a NamedTuple rather than a dataclass on purpose: it is the (rule_id, subject) pair
the stores pass straight to SQL and use as dict keys, and equal to the plain tuple it replaces,
so code and tests that still hold a `(rule, subject)` tuple keep finding the same alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from core.errors import RiskwatchError

__all__ = ["AlarmItem", "AlarmKey", "DisposalItem", "HazardItem", "Item", "KeyFormatError", "Subject", "alarm_key_of",
           "parse_item"]

SubjectKind = Literal["point", "gateway", "device"]
_PREFIX: dict[SubjectKind, str] = {"point": "p:", "gateway": "g:", "device": "d:"}


class KeyFormatError(RiskwatchError, ValueError):
    """A subject or item string that is not in the form the database keeps."""


@dataclass(frozen=True, slots=True)
class Subject:
    """What an alarm is about: one point (by registry id), one gateway (by its id), or one Sparkplug device of a
    gateway (the `{device}` level of its topics; gateway ids hold no '/', so the first '/' splits the two)."""

    kind: SubjectKind
    point_id: int | None = None
    gateway_id: str | None = None
    device_id: str | None = None

    @classmethod
    def point(cls, point_id: int) -> Subject:
        return cls("point", point_id=int(point_id))

    @classmethod
    def gateway(cls, gateway_id: str) -> Subject:
        return cls("gateway", gateway_id=gateway_id)

    @classmethod
    def device(cls, gateway_id: str, device_id: str) -> Subject:
        return cls("device", gateway_id=gateway_id, device_id=device_id)

    @classmethod
    def parse(cls, text: str) -> Subject:
        """'p:42' -> point 42, 'g:gw-a1' -> gateway gw-a1, 'd:gw-a1/bf1' -> device bf1 of gw-a1; anything else
        raises KeyFormatError."""
        if text.startswith("p:"):
            digits = text[2:]
            if not digits.isascii() or not digits.isdigit():
                raise KeyFormatError(f"invalid point subject {text!r}")
            return cls.point(int(digits))
        if text.startswith("g:") and len(text) > 2:
            return cls.gateway(text[2:])
        if text.startswith("d:"):
            gateway_id, sep, device_id = text[2:].partition("/")
            if sep and gateway_id and device_id:
                return cls.device(gateway_id, device_id)
        raise KeyFormatError(f"invalid subject {text!r}: expected 'p:<point id>', 'g:<gateway id>'"
                             " or 'd:<gateway id>/<device id>'")

    @classmethod
    def is_subject(cls, text: str) -> bool:
        """Whether `text` is already a subject string (an operator may give one as is)."""
        try:
            cls.parse(text)
        except KeyFormatError:
            return False
        return True

    def format(self) -> str:
        if self.kind == "device":
            return f"{_PREFIX['device']}{self.gateway_id}/{self.device_id}"
        ident = self.point_id if self.kind == "point" else self.gateway_id
        return f"{_PREFIX[self.kind]}{ident}"

    def __str__(self) -> str:
        return self.format()


class AlarmKey(NamedTuple):
    """One alarm: a rule instance (`<rule id>` or `<rule id>:<limit>`) on one subject string."""

    rule_id: str
    subject: str

    @property
    def subject_key(self) -> Subject:
        return Subject.parse(self.subject)


@dataclass(frozen=True, slots=True)
class AlarmItem:
    """An alarm as a member of an alert group: 'alarm:<rule id>|<subject>'."""

    key: AlarmKey

    PREFIX = "alarm:"

    def format(self) -> str:
        return f"{self.PREFIX}{self.key.rule_id}|{self.key.subject}"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, slots=True)
class HazardItem:
    """A hazard workflow step as a member of an alert group: 'hazard:<ticket id>:<event>'."""

    hazard_id: int
    event: str

    PREFIX = "hazard:"

    def format(self) -> str:
        return f"{self.PREFIX}{self.hazard_id}:{self.event}"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True, slots=True)
class DisposalItem:
    """One escalation step of an unanswered warning as a member of an alert group: 'disposal:<id>:<tier>'.

    Keyed by the disposal (one per alarm activation) and the tier, so each tier of each activation is told
    once, and a later activation of the same alarm is a new member, not a duplicate.
    """

    disposal_id: int
    tier: str

    PREFIX = "disposal:"

    def format(self) -> str:
        return f"{self.PREFIX}{self.disposal_id}:{self.tier}"

    def __str__(self) -> str:
        return self.format()


Item = AlarmItem | HazardItem | DisposalItem


def parse_item(text: str) -> Item:
    """The one reader of alert item strings; raises KeyFormatError on anything else."""
    if text.startswith(AlarmItem.PREFIX):
        rule_id, sep, subject = text[len(AlarmItem.PREFIX):].partition("|")
        if not sep or not rule_id or not subject:
            raise KeyFormatError(f"invalid alarm item {text!r}: expected 'alarm:<rule>|<subject>'")
        return AlarmItem(AlarmKey(rule_id, subject))
    if text.startswith(HazardItem.PREFIX):
        ident, sep, event = text[len(HazardItem.PREFIX):].partition(":")
        if not sep or not ident.isascii() or not ident.isdigit() or not event:
            raise KeyFormatError(f"invalid hazard item {text!r}: expected 'hazard:<id>:<event>'")
        return HazardItem(int(ident), event)
    if text.startswith(DisposalItem.PREFIX):
        ident, sep, tier = text[len(DisposalItem.PREFIX):].partition(":")
        if not sep or not ident.isascii() or not ident.isdigit() or not tier:
            raise KeyFormatError(f"invalid disposal item {text!r}: expected 'disposal:<id>:<tier>'")
        return DisposalItem(int(ident), tier)
    raise KeyFormatError(f"invalid item {text!r}: expected 'alarm:…', 'hazard:…' or 'disposal:…'")


def alarm_key_of(text: str) -> AlarmKey | None:
    """The alarm an item names; None for a hazard item or a string that is no item (skipped, not an error:
    a group's members are read back from the database, and one bad row must not stop an acknowledgement)."""
    try:
        item = parse_item(text)
    except KeyFormatError:
        return None
    return item.key if isinstance(item, AlarmItem) else None
