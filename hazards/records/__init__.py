"""Records the county's 2024-2026 action plan asks for, and alarm-system health (issue 17).

    cadence     pure: self-inspection cadence per industry (YAML, validated) and compliance per period
    health      pure: ISA-18.2 / EEMUA 191 alarm-system figures of one operator position from its history
    store       SQL of inspections, findings, drills, training, headcount, meetings, positions (scoped)
    service     one transaction per operation; a finding opens a linked self-report hazard in one step
    evaluation  the annual summary and the 2024-2026 three-year evaluation: figures from the raw tables
    export      those figures as XLSX (text cells neutralised against formula injection)

Every store and report function takes `scope`: the enterprise a caller is bound to, or None for the
bureau. A row outside the scope is not found, so a caller cannot tell "not yours" from "does not exist".
Dependencies: stdlib, third-party, `core`, `hazards` (never `api`).
"""
