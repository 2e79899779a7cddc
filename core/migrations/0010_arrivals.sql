-- What the rule engine must restore after a restart, as it was recorded (issue 15):
-- the wall-clock time valid data of each point last ARRIVED (the batch's commit
-- clock, not the readings' own timestamps, which may be hours old for back-filled
-- data or minutes behind for a gateway with a slow clock), and per gateway its
-- last live traffic and the online state the engine holds, with when it was
-- observed. Written in the same transaction as the readings.
--
-- Point arrivals: one log row per batch (the point ids whose valid data arrived,
-- little-endian int4, and the batch's clock) — an upsert of one row per point
-- costs ~80 ms for a 20k-point batch, the log row ~2 ms. The collector's tick
-- folds the log into a single snapshot row every minute (the engine's arrival
-- per point id, little-endian float8 epoch seconds, 0 = none) and deletes the
-- log rows it covers. At start: the snapshot, then the log rows after `upto`.
CREATE TABLE point_arrival_log (
    id          bigserial   PRIMARY KEY,
    arrived_at  timestamptz NOT NULL,
    point_ids   bytea       NOT NULL
);

CREATE TABLE point_arrival_snapshot (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    upto        bigint      NOT NULL,    -- newest point_arrival_log id folded in
    taken_at    timestamptz NOT NULL,
    arrivals    bytea       NOT NULL     -- float8 per point id
);

-- A handful of rows, upserted per batch for the gateways heard from.
CREATE TABLE gateway_arrivals (
    gateway_id  text        PRIMARY KEY,
    last_seen   timestamptz,             -- last live message (telemetry or a live status), collector clock
    online      boolean,                 -- the engine's view: false = reported offline
    status_at   timestamptz              -- when that state began (offline: since when)
) WITH (fillfactor = 70);
