-- The Sparkplug devices behind each gateway (the {device} level of DBIRTH/DDATA/DDEATH topics) as the rule
-- engine holds them: dead since a DDEATH of the edge node's current session, alive again at the device's next
-- DBIRTH or DDATA (ingest/sparkplug/host.py). Written in the batch's transaction, with the readings, only when
-- a state changes; read back at start so that a restart raises and clears nothing (issue 15), as
-- gateway_arrivals does for the gateways' own offline state (0010). A handful of rows.
CREATE TABLE sparkplug_devices (
    gateway_id  text        NOT NULL,
    device_id   text        NOT NULL,
    online      boolean     NOT NULL,    -- false: reported dead (DDEATH)
    status_at   timestamptz NOT NULL,    -- when that state began (collector clock: the message's arrival)
    PRIMARY KEY (gateway_id, device_id)
) WITH (fillfactor = 70);
