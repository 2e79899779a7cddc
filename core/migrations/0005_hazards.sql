-- Hazard ledger (重大事故隐患数据库): tickets, their append-only history, evidence,
-- warning interviews (约谈); API tokens (hashed) and the audit log of every mutating API call.

-- Rows of an append-only table are never changed or removed: the ledger is the
-- bureau's record of who decided what and when.
CREATE FUNCTION riskwatch_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (只允许追加)', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TABLE hazards (
    id                      bigserial PRIMARY KEY,
    enterprise_id           text NOT NULL REFERENCES enterprises (id),
    plant_id                text REFERENCES plants (id),
    device_id               integer REFERENCES devices (id),
    point_id                integer REFERENCES points (id),
    gateway_id              text REFERENCES gateways (id),
    rule_id                 text,                  -- sensor tickets: the rule and its subject are the
    subject                 text,                  -- (point, rule) key of "one open ticket per point and rule"
    source                  text NOT NULL CHECK (source IN ('sensor', 'self_report', 'inspection', 'public_tip')),
    status                  text NOT NULL CHECK (status IN ('candidate', 'confirmed', 'dismissed', 'plan_filed',
                                                            'rectifying', 'submitted', 'closed')),
    title                   text NOT NULL,
    description             text NOT NULL DEFAULT '',
    basis                   text,                  -- legal basis, e.g. 判定标准第七条第（四）项
    location                text,
    detected_at             timestamptz NOT NULL,
    created_at              timestamptz NOT NULL,
    created_by              text NOT NULL,
    updated_at              timestamptz NOT NULL,
    confirmed_at            timestamptz,
    confirmed_by            text,
    dismissed_at            timestamptz,
    dismissed_reason        text,
    -- 五落实: responsibility, measures, funds, deadline, contingency plan
    plan_responsible        text,
    plan_responsible_phone  text,
    plan_measures           text,
    plan_funds_yuan         numeric(16, 2),
    plan_deadline           timestamptz,
    plan_contingency        text,
    plan_filed_at           timestamptz,
    submitted_at            timestamptz,
    closed_at               timestamptz,
    closed_by               text,
    sent_back_count         integer NOT NULL DEFAULT 0,
    -- 挂牌督办
    supervision_level       text CHECK (supervision_level IN ('county', 'city')),
    supervised_at           timestamptz,
    supervised_by           text,
    supervision_reason      text,
    supervision_lifted_at   timestamptz,
    -- inspection finding (督导检查)
    inspection_team         text,
    -- public tip (群众举报): the reporter is never shown to the enterprise
    tip_reporter_name       text,
    tip_reporter_contact    text,
    tip_internal            boolean,               -- an employee of the enterprise (内部举报人)
    reward_status           text CHECK (reward_status IN ('pending', 'approved', 'declined', 'paid')),
    reward_amount_yuan      numeric(12, 2),
    reward_note             text,
    occurrences             integer NOT NULL DEFAULT 1,   -- detections attached (sensor repeats)
    evidence_count          integer NOT NULL DEFAULT 0,
    last_evidence_at        timestamptz,
    CHECK ((rule_id IS NULL) = (subject IS NULL)),
    CHECK (source <> 'sensor' OR rule_id IS NOT NULL),
    CHECK ((source = 'public_tip') = (reward_status IS NOT NULL))
);
-- One open ticket per (rule, point or gateway): repeats attach evidence to it.
CREATE UNIQUE INDEX hazards_one_open ON hazards (rule_id, subject)
    WHERE rule_id IS NOT NULL AND status NOT IN ('dismissed', 'closed');
CREATE INDEX hazards_enterprise ON hazards (enterprise_id, status);
CREATE INDEX hazards_status ON hazards (status, plan_deadline);
CREATE INDEX hazards_created ON hazards (created_at);

CREATE TABLE hazard_events (
    id                   bigserial PRIMARY KEY,
    hazard_id            bigint NOT NULL REFERENCES hazards (id),
    time                 timestamptz NOT NULL,
    action               text NOT NULL,
    from_status          text NOT NULL,
    to_status            text NOT NULL,
    actor                text NOT NULL,
    actor_role           text NOT NULL CHECK (actor_role IN ('admin', 'bureau', 'enterprise', 'system')),
    actor_enterprise_id  text,
    comment              text NOT NULL DEFAULT '',
    data                 jsonb NOT NULL DEFAULT '{}',
    recorded_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hazard_events_hazard ON hazard_events (hazard_id, id);
CREATE TRIGGER hazard_events_append_only BEFORE UPDATE OR DELETE ON hazard_events
    FOR EACH ROW EXECUTE FUNCTION riskwatch_append_only();
CREATE TRIGGER hazard_events_no_truncate BEFORE TRUNCATE ON hazard_events
    FOR EACH STATEMENT EXECUTE FUNCTION riskwatch_append_only();

-- Evidence: an alarm, a window of readings (copied, so retention cannot erase it), an attachment's metadata.
CREATE TABLE hazard_evidence (
    id               bigserial PRIMARY KEY,
    hazard_id        bigint NOT NULL REFERENCES hazards (id),
    kind             text NOT NULL CHECK (kind IN ('alarm', 'readings', 'attachment')),
    added_at         timestamptz NOT NULL,
    added_by         text NOT NULL,
    candidate_id     bigint REFERENCES hazard_candidates (id),
    alarm_rule_id    text,
    alarm_subject    text,
    alarm_event_id   bigint,
    alarm_time       timestamptz,
    point_ids        integer[],
    window_from      timestamptz,
    window_to        timestamptz,
    readings         jsonb,
    attachment       jsonb,                  -- {filename, content_type, size_bytes, sha256, uri}
    note             text NOT NULL DEFAULT '',
    CHECK (kind <> 'alarm' OR (alarm_rule_id IS NOT NULL AND alarm_subject IS NOT NULL)),
    CHECK (kind <> 'readings' OR (window_from IS NOT NULL AND window_to IS NOT NULL AND readings IS NOT NULL)),
    CHECK (kind <> 'attachment' OR attachment IS NOT NULL)
);
CREATE INDEX hazard_evidence_hazard ON hazard_evidence (hazard_id, id);
CREATE TRIGGER hazard_evidence_append_only BEFORE UPDATE OR DELETE ON hazard_evidence
    FOR EACH ROW EXECUTE FUNCTION riskwatch_append_only();

ALTER TABLE hazard_candidates
    ADD CONSTRAINT hazard_candidates_ticket FOREIGN KEY (ticket_id) REFERENCES hazards (id);

-- 警示约谈 records: with an enterprise, optionally about one ticket.
CREATE TABLE hazard_interviews (
    id             bigserial PRIMARY KEY,
    enterprise_id  text NOT NULL REFERENCES enterprises (id),
    hazard_id      bigint REFERENCES hazards (id),
    held_at        timestamptz NOT NULL,
    interviewer    text NOT NULL,           -- 约谈人
    interviewees   text NOT NULL,           -- 被约谈人 (e.g. 主要负责人)
    reason         text NOT NULL,
    summary        text NOT NULL DEFAULT '',
    follow_up      text NOT NULL DEFAULT '',
    recorded_by    text NOT NULL,
    recorded_at    timestamptz NOT NULL
);
CREATE INDEX hazard_interviews_enterprise ON hazard_interviews (enterprise_id, held_at);

-- Bearer tokens: only the SHA-256 of a 256-bit random token is stored.
CREATE TABLE api_tokens (
    id             serial PRIMARY KEY,
    name           text NOT NULL,
    role           text NOT NULL CHECK (role IN ('admin', 'bureau', 'enterprise')),
    enterprise_id  text REFERENCES enterprises (id),
    token_hash     text NOT NULL UNIQUE,
    prefix         text NOT NULL,           -- first characters, to recognise a token in lists and logs
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    CHECK ((role = 'enterprise') = (enterprise_id IS NOT NULL))
);

-- One row per mutating API call, allowed or refused.
CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    time           timestamptz NOT NULL DEFAULT now(),
    token_id       integer,
    actor          text NOT NULL,
    role           text,
    enterprise_id  text,
    method         text NOT NULL,
    path           text NOT NULL,
    route          text,
    query          text,
    status         integer NOT NULL,
    duration_ms    double precision,
    client         text
);
CREATE INDEX audit_log_time ON audit_log (time);
CREATE INDEX audit_log_token ON audit_log (token_id, time);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION riskwatch_append_only();
