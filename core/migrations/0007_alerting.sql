-- Alerting: the transactional outbox, alert groups and their members, notifications and every
-- delivery attempt.
--
-- outbox rows are written in the same transaction as the alarm or hazard transition they
-- announce; the dispatcher routes them into groups (one per route, receiver and group key),
-- decides when a group is due (group wait / interval, reminders, escalation, resolved notices)
-- and turns each decision into notifications, one per channel and contact, each with an
-- idempotency key that every retry carries.

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    kind         text NOT NULL CHECK (kind IN ('alarm', 'hazard')),
    event        text NOT NULL,          -- alarm: firing | resolved | acked; hazard: the workflow action
    event_time   timestamptz NOT NULL,
    rule_id      text,
    subject      text,
    plant_id     text,
    severity     text,
    hazard_id    bigint,
    value        double precision,
    actor        text,
    reason       text,
    routed_at    timestamptz
);
CREATE INDEX outbox_pending ON outbox (id) WHERE routed_at IS NULL;

CREATE TABLE alert_groups (
    id                bigserial PRIMARY KEY,
    route             text NOT NULL,     -- the route's path in the routing tree, e.g. root.1
    receiver          text NOT NULL,
    group_key         text NOT NULL,
    enterprise_id     text,              -- set when every member belongs to one enterprise (API scoping)
    group_wait        double precision NOT NULL,
    group_interval    double precision NOT NULL,
    repeat_interval   double precision NOT NULL,
    escalation        jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL,
    flush_at          timestamptz,       -- when the stages next look at the group; NULL: nothing pending
    last_notified_at  timestamptz,
    seq               integer NOT NULL DEFAULT 0,
    UNIQUE (route, receiver, group_key)
);
CREATE INDEX alert_groups_due ON alert_groups (flush_at) WHERE flush_at IS NOT NULL;

CREATE TABLE alert_members (
    group_id            bigint NOT NULL REFERENCES alert_groups (id),
    item                text NOT NULL,   -- alarm:<rule>|<subject> or hazard:<id>:<event>
    kind                text NOT NULL,
    rule_id             text,
    subject             text,
    hazard_id           bigint,
    plant_id            text,
    enterprise_id       text,
    severity            text,
    event               text NOT NULL,
    status              text NOT NULL CHECK (status IN ('firing', 'resolved', 'acked')),
    needs_ack           boolean NOT NULL DEFAULT true,   -- false: announced once (a ticket closed, dismissed)
    since               timestamptz NOT NULL,    -- when it (last) started firing
    pending_at          timestamptz NOT NULL,    -- when the change still to announce was routed
    value               double precision,
    reason              text,
    notified_at         timestamptz,     -- first notification of this firing
    escalated           integer NOT NULL DEFAULT 0,
    resolved_at         timestamptz,
    resolved_notified   boolean NOT NULL DEFAULT false,
    acked_at            timestamptz,
    acked_by            text,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (group_id, item)
);
CREATE INDEX alert_members_item ON alert_members (item);

CREATE TABLE notifications (
    id                bigserial PRIMARY KEY,
    idempotency_key   text NOT NULL UNIQUE,
    group_id          bigint NOT NULL REFERENCES alert_groups (id),
    seq               integer NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('firing', 'reminder', 'escalation', 'resolved')),
    reason            text NOT NULL,      -- the stage's decision, e.g. "group_wait 10s elapsed: 3 new"
    receiver          text NOT NULL,
    channel           text NOT NULL,
    contact_id        text,               -- NULL for group robots and webhooks
    address           text,
    enterprise_id     text,
    items             jsonb NOT NULL,     -- the members it announces
    contacts          jsonb NOT NULL DEFAULT '[]',  -- who it reaches (group robots @-mention them)
    message           jsonb NOT NULL,     -- the rendered message, resent unchanged on every attempt
    status            text NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    last_error        text,
    created_at        timestamptz NOT NULL,
    sent_at           timestamptz,
    acked_at          timestamptz,
    acked_by          text
);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_group ON notifications (group_id, seq);
CREATE INDEX notifications_status ON notifications (status, created_at);

CREATE TABLE deliveries (
    id               bigserial PRIMARY KEY,
    notification_id  bigint NOT NULL REFERENCES notifications (id),
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz NOT NULL,
    ok               boolean NOT NULL,
    transient        boolean,
    detail           text NOT NULL
);
CREATE INDEX deliveries_notification ON deliveries (notification_id, attempt);
CREATE TRIGGER deliveries_append_only BEFORE UPDATE OR DELETE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION riskwatch_append_only();
