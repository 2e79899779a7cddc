-- End-to-end confirmation and retained-message bookkeeping of the collector (issue 15).
--
-- gateway_stored_seq: per gateway the highest JSON v1 `seq` whose message is durably
-- stored, raised (never lowered) in the same transaction as the readings. The
-- collector publishes it, after the commit, as the retained rw/v1/{gateway}/stored;
-- keeping it here makes the published value monotonic across collector restarts.
CREATE TABLE gateway_stored_seq (
    gateway_id  text        PRIMARY KEY,
    seq         bigint      NOT NULL CHECK (seq >= 0),
    stored_at   timestamptz NOT NULL
);

-- retained_seen: retained messages (topic, SHA-256 of the payload) already handled
-- once. The broker replays every retained message on each (re)subscription; a
-- replay found here is skipped, so an invalid retained message is dead-lettered
-- once, not once per reconnect. A zero-length retained publish (a clear) deletes
-- the topic's rows.
CREATE TABLE retained_seen (
    topic       text        NOT NULL,
    digest      bytea       NOT NULL,
    first_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, digest)
);
