-- Console accounts (issue 13): people log in with a username and an Argon2id password; sessions are
-- kept server-side with only the SHA-256 of their random id; every login attempt is recorded so
-- failures can be limited per account and per client address. Machines keep their API tokens.

CREATE TABLE console_users (
    id                  serial PRIMARY KEY,
    username            text NOT NULL CHECK (username ~ '^[a-z0-9][a-z0-9_.-]{1,63}$'),
    display_name        text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    password_hash       text NOT NULL,
    -- admin; bureau: leader (局领导), section chief (科长), duty officer (值班员);
    -- enterprise: manager (企业负责人), officer (安全员), each bound to one enterprise
    role                text NOT NULL CHECK (role IN ('admin', 'bureau_leader', 'section_chief', 'duty_officer',
                                                      'enterprise_manager', 'enterprise_officer')),
    enterprise_id       text REFERENCES enterprises (id),
    active              boolean NOT NULL DEFAULT true,
    failed_logins       integer NOT NULL DEFAULT 0,
    locked_until        timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    created_by          text NOT NULL,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    last_login_at       timestamptz,
    CHECK ((role LIKE 'enterprise\_%') = (enterprise_id IS NOT NULL))
);
CREATE UNIQUE INDEX console_users_username ON console_users (username);

CREATE TABLE console_sessions (
    id_hash       text PRIMARY KEY,                 -- sha256 of the cookie value; the value itself is never stored
    user_id       integer NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,             -- absolute end; idle expiry is last_seen_at + idle limit
    client        text,
    user_agent    text
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);

-- Every attempt, for the per-address limit (the per-account count lives on the user row).
CREATE TABLE console_login_attempts (
    time      timestamptz NOT NULL,
    username  text NOT NULL,
    client    text NOT NULL,
    ok        boolean NOT NULL
);
CREATE INDEX console_login_attempts_client ON console_login_attempts (client, time);
CREATE INDEX console_login_attempts_time ON console_login_attempts (time);  -- pruning (the audit log keeps history)

-- The live alarm board: each alarm transition is announced after its transaction commits (NOTIFY is
-- delivered on commit, never for a rolled-back insert). The payload carries the enterprise so the
-- console fans an event out only to those allowed to see it; it stays far below NOTIFY's 8000 bytes.
CREATE FUNCTION riskwatch_notify_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('rw_alarm', json_build_object(
        'id', NEW.id, 'rule_id', left(NEW.rule_id, 200), 'subject', left(NEW.subject, 200),
        'plant_id', NEW.plant_id,
        'enterprise_id', (SELECT enterprise_id FROM plants WHERE id = NEW.plant_id),
        'event', NEW.event, 'to_state', NEW.to_state, 'severity', NEW.severity,
        'time', extract(epoch FROM NEW.time))::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER alarm_events_notify AFTER INSERT ON alarm_events
    FOR EACH ROW EXECUTE FUNCTION riskwatch_notify_alarm();
