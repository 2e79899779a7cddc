-- What the collector could not store, and why.
CREATE TABLE dead_letters (
    id             bigserial PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    gateway_id     text,
    topic          text NOT NULL,
    reason         text NOT NULL,           -- machine-readable, e.g. invalid_json, timestamp_out_of_range
    detail         text,
    reading_index  integer,                 -- which reading of the message, when only some were bad
    payload        bytea
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
CREATE INDEX dead_letters_reason ON dead_letters (reason);

-- Tags a gateway sent that the registry does not map to a point (awaiting approval).
CREATE TABLE unmapped_points (
    gateway_id   text NOT NULL,
    tag          text NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    count        bigint NOT NULL,
    last_value   double precision,
    PRIMARY KEY (gateway_id, tag)
);
