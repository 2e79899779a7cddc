-- Records the 2024-2026 action plan asks for (issue 17): self-inspections (自查) and their findings,
-- emergency drills (应急演练), safety training (安全培训) against headcount, monthly analysis meetings
-- (月度分析会), and the operator positions alarm-system health is measured per (ISA-18.2 / EEMUA 191).
--
-- Every record carries its enterprise_id, so a caller bound to one enterprise is scoped with one
-- predicate. Findings link both ways to the self-report hazard they opened: findings.hazard_id is
-- UNIQUE, so from a hazard its finding (and through it the inspection or drill) is one index lookup.

-- --- headcount: training coverage is distinct attendees / headcount of that year ---------------------------------
CREATE TABLE IF NOT EXISTS enterprise_headcounts (
    enterprise_id  text        NOT NULL REFERENCES enterprises (id),
    year           integer     NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    headcount      integer     NOT NULL CHECK (headcount > 0 AND headcount <= 1000000),
    recorded_by    text        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (enterprise_id, year)
);

-- --- self-inspections (自查): company / plant / workshop / team ----------------------------------------------------
CREATE TABLE IF NOT EXISTS self_inspections (
    id             bigserial   PRIMARY KEY,
    enterprise_id  text        NOT NULL REFERENCES enterprises (id),
    plant_id       text        REFERENCES plants (id),
    level          text        NOT NULL CHECK (level IN ('company', 'plant', 'workshop', 'team')),
    inspected_on   date        NOT NULL,          -- the bureau's calendar day (China Standard Time)
    inspector      text        NOT NULL CHECK (length(inspector) BETWEEN 1 AND 200),
    scope          text        NOT NULL DEFAULT '' CHECK (length(scope) <= 2000),
    summary        text        NOT NULL DEFAULT '' CHECK (length(summary) <= 10000),
    recorded_by    text        NOT NULL,
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS self_inspections_enterprise ON self_inspections (enterprise_id, level, inspected_on);

-- --- drills (应急演练) ---------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS drills (
    id                 bigserial   PRIMARY KEY,
    enterprise_id      text        NOT NULL REFERENCES enterprises (id),
    plant_id           text        REFERENCES plants (id),
    held_on            date        NOT NULL,
    scenario           text        NOT NULL CHECK (length(scenario) BETWEEN 1 AND 500),
    participants       integer     NOT NULL CHECK (participants BETWEEN 0 AND 1000000),
    participant_names  text        NOT NULL DEFAULT '' CHECK (length(participant_names) <= 10000),
    summary            text        NOT NULL DEFAULT '' CHECK (length(summary) <= 10000),
    recorded_by        text        NOT NULL,
    recorded_at        timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS drills_enterprise ON drills (enterprise_id, held_on);

-- --- findings of an inspection or a drill; a finding may open a self-report hazard (rectification) ----------------
CREATE TABLE IF NOT EXISTS record_findings (
    id             bigserial   PRIMARY KEY,
    enterprise_id  text        NOT NULL REFERENCES enterprises (id),
    inspection_id  bigint      REFERENCES self_inspections (id),
    drill_id       bigint      REFERENCES drills (id),
    description    text        NOT NULL CHECK (length(description) BETWEEN 1 AND 2000),
    location       text        NOT NULL DEFAULT '' CHECK (length(location) <= 500),
    hazard_id      bigint      UNIQUE REFERENCES hazards (id),
    hazard_opened_at timestamptz,
    recorded_by    text        NOT NULL,
    recorded_at    timestamptz NOT NULL,
    CHECK ((inspection_id IS NULL) <> (drill_id IS NULL)),
    CHECK ((hazard_id IS NULL) = (hazard_opened_at IS NULL))
);
CREATE INDEX IF NOT EXISTS record_findings_inspection ON record_findings (inspection_id) WHERE inspection_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS record_findings_drill ON record_findings (drill_id) WHERE drill_id IS NOT NULL;

-- --- training (安全培训) -------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS trainings (
    id             bigserial   PRIMARY KEY,
    enterprise_id  text        NOT NULL REFERENCES enterprises (id),
    held_on        date        NOT NULL,
    course         text        NOT NULL CHECK (length(course) BETWEEN 1 AND 500),
    hours          numeric(6, 1) NOT NULL DEFAULT 0 CHECK (hours >= 0 AND hours <= 1000),
    trainer        text        NOT NULL DEFAULT '' CHECK (length(trainer) <= 200),
    recorded_by    text        NOT NULL,
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS trainings_enterprise ON trainings (enterprise_id, held_on);

-- One row per person per course; person_key is the enterprise's own staff number (or ID-card digest), so a
-- person trained twice in a year counts once in coverage.
CREATE TABLE IF NOT EXISTS training_attendees (
    training_id    bigint      NOT NULL REFERENCES trainings (id),
    person_key     text        NOT NULL CHECK (length(person_key) BETWEEN 1 AND 100),
    name           text        NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    PRIMARY KEY (training_id, person_key)
);

-- --- monthly analysis meetings (月度安全分析会); enterprise_id NULL: the bureau's own county meeting ---------------
CREATE TABLE IF NOT EXISTS analysis_meetings (
    id             bigserial   PRIMARY KEY,
    enterprise_id  text        REFERENCES enterprises (id),
    held_on        date        NOT NULL,
    chair          text        NOT NULL DEFAULT '' CHECK (length(chair) <= 200),
    attendees      text[]      NOT NULL CHECK (cardinality(attendees) BETWEEN 1 AND 500),
    decisions      text[]      NOT NULL DEFAULT '{}' CHECK (cardinality(decisions) <= 200),
    summary        text        NOT NULL DEFAULT '' CHECK (length(summary) <= 20000),
    recorded_by    text        NOT NULL,
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS analysis_meetings_enterprise ON analysis_meetings (enterprise_id, held_on);

-- --- operator positions (ISA-18.2 "operating position") ---------------------------------------------------------
-- A plant without a row in plant_positions is its own control room (position id 'cr-<plant id>'); two lines
-- run from one control room share a position by mapping both plants to it. A bureau desk sees the alarms of
-- every plant at or above its min_severity (the county duty desk is seeded: urgent alarms).
CREATE TABLE IF NOT EXISTS operator_positions (
    id             text        PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    kind           text        NOT NULL CHECK (kind IN ('control_room', 'bureau_desk')),
    enterprise_id  text        REFERENCES enterprises (id),
    min_severity   text        NOT NULL DEFAULT 'medium' CHECK (min_severity IN ('medium', 'high', 'urgent')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'control_room') = (enterprise_id IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS plant_positions (
    plant_id       text        PRIMARY KEY REFERENCES plants (id),
    position_id    text        NOT NULL REFERENCES operator_positions (id)
);
INSERT INTO operator_positions (id, name, kind, min_severity)
VALUES ('bureau-desk', '工信局值班席 bureau duty desk', 'bureau_desk', 'urgent')
ON CONFLICT (id) DO NOTHING;

-- Alarm-health reads alarm_events through its existing (plant_id, time DESC) index: no index is added to the
-- collector's hot insert path.
