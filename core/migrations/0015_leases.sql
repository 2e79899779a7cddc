-- Several collectors on a broker without sticky shared subscriptions (Mosquitto), issue 15.
--
-- Each gateway is on exactly one collector at a time, so its rule state (conditions,
-- on-delays, alarms) is written by one process only. A collector holds a gateway by a
-- lease here, renews it every few seconds, and subscribes to rw/v1/{gateway}/# only
-- while it holds it. Times are the database's clock (one clock for every collector).
--
-- collectors: one row per live collector process (its stable id: the MQTT username),
-- renewed with its leases; a row whose expires_at has passed is a dead collector. The
-- count of live rows sets each collector's fair share of gateways.
CREATE TABLE collectors (
    collector_id  text        PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    heartbeat_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);

-- gateway_leases: who may write rule state for a gateway. `epoch` rises by one at every
-- claim; a collector checks (collector_id, epoch) of the gateways of a batch in the
-- batch's own transaction (SELECT ... FOR SHARE), so a collector whose lease was taken
-- over commits no rule state for that gateway, and a claim waits for a batch in flight.
-- collector_id NULL: released (a clean stop or a rebalance), free to claim at once.
CREATE TABLE gateway_leases (
    gateway_id    text        PRIMARY KEY,
    collector_id  text,
    expires_at    timestamptz NOT NULL,
    epoch         bigint      NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    acquired_at   timestamptz
) WITH (fillfactor = 70);
