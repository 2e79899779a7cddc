-- Readings of tags the registry does not map to a point yet (issue 13, "Data problems"): kept, not dropped,
-- so that mapping the tag later (ingest/quarantine.py `map_tag`) backfills its history into `readings`.
--
-- Written by the collector in the batch's own transaction (ingest/store.py), only for unmapped tags, so the
-- mapped hot path is untouched. Unique per (gateway_id, tag, ts) like readings' (point_id, time): a QoS1
-- redelivery of the same message adds nothing (ON CONFLICT DO NOTHING).
--
-- Bounded by the operational retention (core/retention_operational.py): per (gateway, tag) the newest
-- 100,000 rows, and nothing received more than 30 days ago (both configurable). A tag nobody maps within a
-- month is not going to be mapped; a runaway 1 Hz tag cannot grow past ~28 h of rows.
CREATE TABLE quarantined_readings (
    gateway_id   text             NOT NULL,
    tag          text             NOT NULL,
    ts           timestamptz      NOT NULL,
    value        double precision NOT NULL,
    quality      smallint         NOT NULL DEFAULT 0,
    received_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, tag, ts)
);
CREATE INDEX quarantined_readings_received ON quarantined_readings (received_at);
