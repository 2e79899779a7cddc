-- Registry: enterprise -> plant -> gateway -> device -> point.
CREATE TABLE enterprises (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    credit_code       text,                 -- 统一社会信用代码
    address           text,
    principal_name    text,                 -- 主要负责人
    principal_phone   text,
    principal_email   text,
    controller_name   text,                 -- 实际控制人
    controller_phone  text,
    controller_email  text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plants (
    id             text PRIMARY KEY,
    enterprise_id  text NOT NULL REFERENCES enterprises (id),
    name           text NOT NULL,
    industry       text NOT NULL CHECK (industry IN ('cement', 'lime', 'refractory', 'foundry', 'machinery')),
    address        text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plants_enterprise ON plants (enterprise_id);

CREATE TABLE gateways (
    id                    text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    plant_id              text NOT NULL REFERENCES plants (id),
    name                  text,
    enabled               boolean NOT NULL DEFAULT true,
    credential_hash       text,             -- Mosquitto $7$ PBKDF2-SHA512; the secret is shown once
    credential_issued_at  timestamptz,
    online                boolean,
    status_at             timestamptz,
    last_seen             timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX gateways_plant ON gateways (plant_id);

CREATE TABLE devices (
    id          serial PRIMARY KEY,
    plant_id    text NOT NULL REFERENCES plants (id),
    code        text NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,              -- equipment kind, e.g. bag_filter, coal_bin, kiln
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (plant_id, code)
);

CREATE TABLE points (
    id           serial PRIMARY KEY,
    device_id    integer NOT NULL REFERENCES devices (id),
    gateway_id   text NOT NULL REFERENCES gateways (id),
    tag          text NOT NULL,
    name         text,
    quantity     text NOT NULL,             -- temperature, co, pressure_diff, flow, state, ...
    unit         text NOT NULL DEFAULT '',
    kind         text NOT NULL CHECK (kind IN ('analog', 'boolean', 'enum')),
    required     boolean NOT NULL DEFAULT false,
    interval_s   double precision NOT NULL DEFAULT 1 CHECK (interval_s > 0),
    states       jsonb,                     -- enum code -> label
    setpoints    jsonb,                     -- per-point overrides of rule setpoints
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway_id, tag)
);
CREATE INDEX points_device ON points (device_id);
