-- Issue 14: the warning-disposal loop (预警处置闭环) and production-stop filing (停产报备).
--
-- alarm_disposals: one row per annunciated activation of an alarm at or above the policy's severity
-- (rules/disposal.yaml). The enterprise owes a feedback (cause category, measures, who handled it) by
-- due_at; until it comes the engine's tick escalates tier by tier (tier_reached counts the steps taken,
-- next_at is when the next one is due, NULL when none is). Each step and the feedback are also alarm_events
-- rows, so the alarm's timeline shows them with their actor.
CREATE TABLE alarm_disposals (
    id               bigserial PRIMARY KEY,
    rule_id          text NOT NULL,
    subject          text NOT NULL,
    activated_at     timestamptz NOT NULL,
    plant_id         text NOT NULL REFERENCES plants (id),
    enterprise_id    text NOT NULL,
    severity         text NOT NULL,
    due_at           timestamptz NOT NULL,
    tier_reached     smallint NOT NULL DEFAULT 0,
    next_at          timestamptz,
    cause            text,
    measures         text,
    handled_by       text,
    feedback_at      timestamptz,
    feedback_actor   text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, subject, activated_at),
    FOREIGN KEY (rule_id, subject) REFERENCES alarms (rule_id, subject),
    CHECK ((feedback_at IS NULL) = (cause IS NULL))
);
CREATE INDEX alarm_disposals_due ON alarm_disposals (next_at) WHERE feedback_at IS NULL AND next_at IS NOT NULL;
CREATE INDEX alarm_disposals_enterprise ON alarm_disposals (enterprise_id, activated_at DESC);

-- Escalation steps travel through the outbox as kind 'disposal' (event = the tier).
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('alarm', 'hazard', 'disposal'));
ALTER TABLE outbox ADD COLUMN disposal_id bigint REFERENCES alarm_disposals (id);

-- production_stops: a stop or maintenance period an enterprise files for a plant or one of its devices;
-- the bureau approves or rejects it. While an approved stop holds, silence rules open no candidates and
-- alarms in its scope are recorded as not annunciated (rules.engine). The CLI's maintenance windows
-- (table maintenance_windows, kept for history) become approved stops filed and approved by the operator.
CREATE TABLE production_stops (
    id               bigserial PRIMARY KEY,
    enterprise_id    text NOT NULL REFERENCES enterprises (id),
    plant_id         text NOT NULL REFERENCES plants (id),
    device_id        integer REFERENCES devices (id),
    kind             text NOT NULL CHECK (kind IN ('stop', 'maintenance')),
    reason           text NOT NULL,
    starts_at        timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL CHECK (ends_at > starts_at),
    status           text NOT NULL DEFAULT 'filed' CHECK (status IN ('filed', 'approved', 'rejected', 'withdrawn')),
    filed_by         text NOT NULL,
    filed_at         timestamptz NOT NULL DEFAULT now(),
    decided_by       text,
    decided_at       timestamptz,
    decision_comment text,
    migrated_from_window bigint UNIQUE
);
CREATE INDEX production_stops_active ON production_stops (plant_id, ends_at) WHERE status = 'approved';
CREATE INDEX production_stops_enterprise ON production_stops (enterprise_id, filed_at DESC);

-- The audit trail of a stop: filed, approved, rejected, withdrawn, each with actor and comment. Append-only.
CREATE TABLE production_stop_events (
    id        bigserial PRIMARY KEY,
    stop_id   bigint NOT NULL REFERENCES production_stops (id),
    time      timestamptz NOT NULL,
    action    text NOT NULL,
    actor     text NOT NULL,
    comment   text NOT NULL DEFAULT ''
);
CREATE INDEX production_stop_events_stop ON production_stop_events (stop_id, id);
CREATE FUNCTION production_stop_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'production_stop_events is append-only';
END $$;
CREATE TRIGGER production_stop_events_append_only BEFORE UPDATE OR DELETE ON production_stop_events
    FOR EACH ROW EXECUTE FUNCTION production_stop_events_append_only();

-- Existing maintenance windows become bureau-approved stops, with their operator as filer and approver.
INSERT INTO production_stops (enterprise_id, plant_id, device_id, kind, reason, starts_at, ends_at, status, filed_by,
                              filed_at, decided_by, decided_at, decision_comment, migrated_from_window)
SELECT p.enterprise_id, w.plant_id, w.device_id, 'maintenance', w.reason, w.starts_at, w.ends_at, 'approved',
       w.created_by, w.created_at, w.created_by, w.created_at, '由检修窗口迁移 migrated from a CLI maintenance window', w.id
FROM maintenance_windows w JOIN plants p ON p.id = w.plant_id;
INSERT INTO production_stop_events (stop_id, time, action, actor, comment)
SELECT s.id, s.filed_at, a.action, s.filed_by, s.decision_comment
FROM production_stops s CROSS JOIN (VALUES ('file'), ('approve')) AS a (action)
WHERE s.migrated_from_window IS NOT NULL;
