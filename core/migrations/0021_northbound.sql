-- Northbound forwarding to the provincial platform (issue 18, docs/northbound.md).
--
-- Outbox semantics by trigger: each forwarded item is written IN THE SAME TRANSACTION as the row that
-- produced it (a reading of a point flagged `required`, an alarm_events row, a hazard_events row), one
-- row per configured target that wants its kind. Nothing waits on the forwarder: a trigger only inserts,
-- and with no target configured (northbound_targets empty) it inserts nothing. The forwarder claims due
-- rows with FOR UPDATE SKIP LOCKED, holds the lock while it sends and records the outcome in the same
-- transaction, so a forwarder killed mid-send leaves the rows pending: they are sent again, same key.

-- The targets of the running configuration and what each takes (the forwarder writes this at start).
CREATE TABLE northbound_targets (
    name        text        PRIMARY KEY,
    kinds       text[]      NOT NULL,            -- subset of {reading, alarm, hazard}
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE northbound_items (
    id          bigserial   PRIMARY KEY,
    target      text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('reading', 'alarm', 'hazard')),
    key         text        NOT NULL,            -- idempotency key, stable across retries and restarts
    data        jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'dead')),
    attempts    integer     NOT NULL DEFAULT 0,
    next_at     timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz,
    last_error  text,
    UNIQUE (target, key)
);
CREATE INDEX northbound_items_due ON northbound_items (target, next_at, id) WHERE status = 'pending';

-- Every attempt, one row per item sent in it.
CREATE TABLE northbound_attempts (
    id           bigserial   PRIMARY KEY,
    item_id      bigint      NOT NULL REFERENCES northbound_items (id) ON DELETE CASCADE,
    target       text        NOT NULL,
    at           timestamptz NOT NULL,
    batch_key    text        NOT NULL,
    ok           boolean     NOT NULL,
    http_status  integer,
    error        text,
    duration_ms  double precision NOT NULL
);
CREATE INDEX northbound_attempts_item ON northbound_attempts (item_id, id);

CREATE FUNCTION riskwatch_northbound_enqueue(p_kind text, p_key text, p_data jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO northbound_items (target, kind, key, data)
    SELECT t.name, p_kind, p_key, p_data FROM northbound_targets t WHERE p_kind = ANY (t.kinds)
    ON CONFLICT (target, key) DO NOTHING
$$;

CREATE FUNCTION riskwatch_northbound_reading() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    d jsonb;
BEGIN
    -- Cheap exits first: no target takes readings, or the point is not flagged required.
    IF NOT EXISTS (SELECT 1 FROM northbound_targets WHERE 'reading' = ANY (kinds)) THEN
        RETURN NULL;
    END IF;
    SELECT jsonb_build_object('point_id', p.id, 'tag', p.tag, 'quantity', p.quantity, 'unit', p.unit,
                              'device_id', p.device_id, 'plant_id', dv.plant_id, 'enterprise_id', pl.enterprise_id,
                              'time', NEW.time, 'value', NEW.value, 'quality', NEW.quality)
      INTO d
      FROM points p JOIN devices dv ON dv.id = p.device_id JOIN plants pl ON pl.id = dv.plant_id
     WHERE p.id = NEW.point_id AND p.required;
    IF d IS NOT NULL THEN
        PERFORM riskwatch_northbound_enqueue(
            'reading', 'rw-r-' || NEW.point_id || '-' || (extract(epoch FROM NEW.time) * 1000000)::bigint, d);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION riskwatch_northbound_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM northbound_targets WHERE 'alarm' = ANY (kinds)) THEN
        PERFORM riskwatch_northbound_enqueue('alarm', 'rw-a-' || NEW.id,
            to_jsonb(NEW) - 'catalog_version' - 'recorded_at'
            || jsonb_build_object('enterprise_id', (SELECT enterprise_id FROM plants WHERE id = NEW.plant_id)));
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION riskwatch_northbound_hazard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM northbound_targets WHERE 'hazard' = ANY (kinds)) THEN
        PERFORM riskwatch_northbound_enqueue('hazard', 'rw-h-' || NEW.id,
            (to_jsonb(NEW) - 'recorded_at' - 'data')
            || (SELECT jsonb_build_object('enterprise_id', h.enterprise_id, 'plant_id', h.plant_id,
                                          'title', h.title, 'status', h.status)
                  FROM hazards h WHERE h.id = NEW.hazard_id));
    END IF;
    RETURN NULL;
END $$;

-- The readings trigger is not created here: a row trigger on every reading costs the collector's COPY even
-- when nothing is forwarded. `alerting.northbound_store.register_targets` creates it (readings_northbound)
-- when a configured target takes readings, and drops it when none does.
CREATE TRIGGER alarm_events_northbound AFTER INSERT ON alarm_events
    FOR EACH ROW EXECUTE FUNCTION riskwatch_northbound_alarm();
CREATE TRIGGER hazard_events_northbound AFTER INSERT ON hazard_events
    FOR EACH ROW EXECUTE FUNCTION riskwatch_northbound_hazard();
