"""Vocabulary every stage speaks: alarm severities, plant industries, where a hazard came from.

These are enumerations of the domain, not of one stage: the rule catalog assigns severities and
industries, the hazard ledger records a ticket's source, and the routing file matches on all three.
They live here so that alerting can check a routing file's `match:` values without importing
`rules` or `hazards`. StrEnum members are str, so the database, JSON and f-strings see the plain
value ("urgent"), exactly as before.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DISPOSAL_TIERS", "HAZARD_SOURCES", "INDUSTRIES", "SEVERITIES", "DisposalTier", "Industry", "Severity",
           "Source"]


class Severity(StrEnum):
    """Alarm priority (ISA-18.2), lowest first: the order is the ranking."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    URGENT = "urgent"


class Industry(StrEnum):
    """Industries the county supervises (building materials, metallurgy and machinery)."""

    CEMENT = "cement"
    LIME = "lime"
    REFRACTORY = "refractory"
    FOUNDRY = "foundry"
    MACHINERY = "machinery"


class Source(StrEnum):
    """How a hazard ticket came to the ledger."""

    SENSOR = "sensor"
    SELF_REPORT = "self_report"
    INSPECTION = "inspection"
    PUBLIC_TIP = "public_tip"


class DisposalTier(StrEnum):
    """Who is told, in this order, when an enterprise has not fed back how it handled a warning (三级报警):
    the disposal policy (rules) names the times, the routing file (alerting) the receivers of each tier."""

    PRINCIPAL = "principal"          # 企业主要负责人
    DUTY_OFFICER = "duty_officer"    # 局值班人员
    SECTION_CHIEF = "section_chief"  # 科室负责人
    LEADER = "leader"                # 分管局领导


SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
INDUSTRIES: tuple[str, ...] = tuple(i.value for i in Industry)
HAZARD_SOURCES: tuple[str, ...] = tuple(s.value for s in Source)
DISPOSAL_TIERS: tuple[str, ...] = tuple(t.value for t in DisposalTier)
