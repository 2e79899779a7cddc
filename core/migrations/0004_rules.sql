-- Rule engine: point roles and baselines, alarms (current state), alarm history,
-- maintenance windows, and candidate major hazards for the ledger.
ALTER TABLE points
    ADD COLUMN role         text,
    ADD COLUMN baseline     double precision,      -- AQ 4273: recorded after installation / bag change
    ADD COLUMN baseline_at  timestamptz;

-- One row per (rule, subject) that ever left the normal state. The evaluator's
-- own state (condition, since when, hysteresis of composite conditions) lives
-- here too, so a restarted collector resumes on-delays without repeating or
-- missing a transition.
CREATE TABLE alarms (
    rule_id          text NOT NULL,
    subject          text NOT NULL,            -- 'p:<point id>' or 'g:<gateway id>'
    point_id         integer,
    gateway_id       text,
    plant_id         text NOT NULL,
    catalog_version  text NOT NULL,
    severity         text NOT NULL,
    candidate        boolean NOT NULL DEFAULT false,
    active           boolean NOT NULL DEFAULT false,     -- the process condition (after delays)
    state            text NOT NULL DEFAULT 'normal'
                     CHECK (state IN ('normal', 'unack', 'ack', 'rtn_unack')),
    cond             boolean NOT NULL DEFAULT false,     -- raw condition (after deadband)
    cond_since       timestamptz,
    leaves           jsonb,                               -- hysteresis state of composite conditions
    activated_at     timestamptz,
    cleared_at       timestamptz,
    acked_at         timestamptz,
    acked_by         text,
    ack_comment      text,
    shelved_until    timestamptz,
    shelved_by       text,
    shelve_reason    text,
    out_of_service   boolean NOT NULL DEFAULT false,
    chattering       boolean NOT NULL DEFAULT false,
    recent_activations timestamptz[] NOT NULL DEFAULT '{}',
    value            double precision,
    reason           text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_id, subject)
);
CREATE INDEX alarms_plant_state ON alarms (plant_id, state);
CREATE INDEX alarms_point ON alarms (point_id);

CREATE TABLE alarm_events (
    time             timestamptz NOT NULL,
    id               bigserial,
    rule_id          text NOT NULL,
    subject          text NOT NULL,
    point_id         integer,
    gateway_id       text,
    plant_id         text NOT NULL,
    event            text NOT NULL,   -- activate, clear, ack, shelve, unshelve, out_of_service, return_to_service, chatter, chatter_end
    from_state       text NOT NULL,
    to_state         text NOT NULL,
    annunciate       boolean NOT NULL DEFAULT false,
    actor            text NOT NULL DEFAULT 'system',
    reason           text,
    value            double precision,
    severity         text NOT NULL,
    catalog_version  text NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('alarm_events', 'time', chunk_time_interval => interval '7 days');
CREATE INDEX alarm_events_rule_subject ON alarm_events (rule_id, subject, time DESC);
CREATE INDEX alarm_events_plant ON alarm_events (plant_id, time DESC);

-- Maintenance / out-of-service windows: alarms in scope are recorded, not annunciated.
CREATE TABLE maintenance_windows (
    id          bigserial PRIMARY KEY,
    plant_id    text NOT NULL REFERENCES plants (id),
    device_id   integer REFERENCES devices (id),
    point_id    integer REFERENCES points (id),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX maintenance_windows_plant ON maintenance_windows (plant_id, ends_at);

-- Candidate major hazards raised by rules flagged `candidate`; the hazard
-- ledger turns them into tickets that bureau staff confirm or dismiss.
CREATE TABLE hazard_candidates (
    id               bigserial PRIMARY KEY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    detected_at      timestamptz NOT NULL,
    rule_id          text NOT NULL,
    subject          text NOT NULL,
    point_id         integer,
    gateway_id       text,
    plant_id         text NOT NULL,
    enterprise_id    text NOT NULL,
    basis            text NOT NULL,
    title_zh         text NOT NULL,
    title_en         text NOT NULL,
    catalog_version  text NOT NULL,
    reason           text,
    evidence         jsonb NOT NULL,
    ticket_id        bigint                      -- set when the ledger takes it up
);
CREATE INDEX hazard_candidates_open ON hazard_candidates (rule_id, subject) WHERE ticket_id IS NULL;
