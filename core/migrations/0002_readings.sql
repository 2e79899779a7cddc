-- Telemetry: raw readings (hypertable, 1-day chunks) and the 1-minute rollup.
CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE readings (
    time      timestamptz      NOT NULL,
    point_id  integer          NOT NULL,
    value     double precision NOT NULL,
    quality   smallint         NOT NULL DEFAULT 0   -- 0 good, 1 uncertain, 2 bad
);
SELECT create_hypertable('readings', 'time', chunk_time_interval => interval '1 day');
-- Absorbs QoS1 redelivery: a reading is identified by (point, time).
CREATE UNIQUE INDEX readings_point_time ON readings (point_id, time DESC);

CREATE TABLE readings_1m (
    bucket      timestamptz      NOT NULL,
    point_id    integer          NOT NULL,
    min         double precision NOT NULL,
    max         double precision NOT NULL,
    sum         double precision NOT NULL,
    count       bigint           NOT NULL,
    last_time   timestamptz      NOT NULL,
    last        double precision NOT NULL,
    PRIMARY KEY (point_id, bucket)
);
SELECT create_hypertable('readings_1m', 'bucket', chunk_time_interval => interval '30 days');
