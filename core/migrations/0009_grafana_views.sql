-- Grafana reads only views made for the dashboards (issue #11, item 11).
--
-- Grafana runs the SQL of any panel a dashboard editor writes, so its database
-- role must not be able to read what the dashboards do not show: whistle-blower
-- identity and rewards, API token hashes, gateway credential hashes, enterprise
-- contacts' phones and e-mail, the audit log, notifications and deliveries.
--
-- The schema `grafana` holds one view per thing a dashboard shows, with only the
-- columns it shows. The group role `grafana_reader` (NOLOGIN) gets USAGE on that
-- schema and SELECT on those views and nothing in `public`; Grafana logs in as a
-- LOGIN role that is a member of it (deploy/timescaledb/initdb/10-grafana-reader.sh,
-- or `riskwatch grafana grants` for a database riskwatch does not administer).
-- A view runs with its owner's rights, so the reader never needs the tables;
-- views that filter rows are security_barrier, so a function in a panel's WHERE
-- clause cannot see the rows the view leaves out.
--
-- Idempotent: re-running this file changes nothing. A migration role without
-- CREATEROLE cannot create `grafana_reader`: the views are still created and the
-- grants are applied by `SELECT riskwatch_grafana_grants()` once the role exists.

CREATE SCHEMA IF NOT EXISTS grafana;
COMMENT ON SCHEMA grafana IS 'Views for Grafana dashboards only; granted to grafana_reader (see 0009_grafana_views.sql)';

-- --- telemetry -------------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW grafana.readings AS
SELECT time, point_id, value, quality FROM public.readings;

CREATE OR REPLACE VIEW grafana.readings_1m AS
SELECT bucket, point_id, min, max, sum, count, last_time, last FROM public.readings_1m;

-- --- registry: descriptive columns only (no contacts, no credit code, no credential hashes) ---------------------

CREATE OR REPLACE VIEW grafana.enterprises AS
SELECT id, name FROM public.enterprises;

CREATE OR REPLACE VIEW grafana.plants AS
SELECT id, enterprise_id, name, industry FROM public.plants;

CREATE OR REPLACE VIEW grafana.gateways AS
SELECT id, plant_id, name, enabled, online, status_at, last_seen FROM public.gateways;

CREATE OR REPLACE VIEW grafana.devices AS
SELECT id, plant_id, code, name, kind FROM public.devices;

CREATE OR REPLACE VIEW grafana.points AS
SELECT id, device_id, gateway_id, tag, name, quantity, unit, kind, required, interval_s, states FROM public.points;

-- --- alarms (who acknowledged or shelved, and their comments, stay out; the history's actor is shown) -----------

CREATE OR REPLACE VIEW grafana.alarms AS
SELECT rule_id, point_id, gateway_id, plant_id, severity, candidate, active, state, activated_at, cleared_at,
       shelved_until, out_of_service, chattering, value, reason
FROM public.alarms;

CREATE OR REPLACE VIEW grafana.alarm_events AS
SELECT time, rule_id, point_id, gateway_id, plant_id, event, from_state, to_state, actor, reason, value, severity
FROM public.alarm_events;

-- --- ingest errors (the raw payload stays out) --------------------------------------------------------------------

CREATE OR REPLACE VIEW grafana.dead_letters AS
SELECT received_at, gateway_id, topic, reason, detail FROM public.dead_letters;

-- --- hazard ledger: counts of every ticket, rows of open tickets only -------------------------------------------
-- Neither has the ticket's description, plan contacts, tip reporter, tip reward or inspection team.

CREATE OR REPLACE VIEW grafana.hazard_counts AS
SELECT h.enterprise_id, e.name AS enterprise_name, pl.industry, h.source, h.status,
       count(*) AS tickets, min(h.detected_at) AS oldest_detected_at
FROM public.hazards h
JOIN public.enterprises e ON e.id = h.enterprise_id
LEFT JOIN public.plants pl ON pl.id = h.plant_id
GROUP BY h.enterprise_id, e.name, pl.industry, h.source, h.status;

CREATE OR REPLACE VIEW grafana.open_hazards WITH (security_barrier = true) AS
SELECT h.id, h.enterprise_id, h.plant_id, h.source, h.status, h.title, h.basis, h.detected_at, h.plan_deadline,
       h.supervision_level
FROM public.hazards h
WHERE h.status NOT IN ('dismissed', 'closed');

-- --- the reader role and its grants ---------------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') THEN
        BEGIN
            CREATE ROLE grafana_reader NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;  -- another database of the cluster raced us
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'riskwatch: cannot create role grafana_reader (no CREATEROLE); create it, then run '
                             'SELECT riskwatch_grafana_grants(); (riskwatch grafana grants prints the SQL)';
        END;
    END IF;
END
$$;

-- Grants SELECT on the grafana views and removes every privilege the reader holds anywhere else (the earlier init
-- script granted it SELECT on all of public and default privileges for future tables). Safe to call again, e.g.
-- after a later migration adds a view to `grafana`.
CREATE OR REPLACE FUNCTION riskwatch_grafana_grants() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    rel record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') THEN
        RAISE NOTICE 'riskwatch: role grafana_reader does not exist; no grants applied';
        RETURN;
    END IF;
    -- Relations outside `grafana` the reader holds any privilege on (tables, hypertable chunks, sequences).
    FOR rel IN
        SELECT c.relkind, n.nspname, c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        CROSS JOIN LATERAL aclexplode(c.relacl) AS a
        WHERE n.nspname <> 'grafana' AND a.grantee = 'grafana_reader'::regrole
        GROUP BY c.relkind, n.nspname, c.relname
    LOOP
        EXECUTE format('REVOKE ALL ON %s %I.%I FROM grafana_reader',
                       CASE rel.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, rel.nspname, rel.relname);
    END LOOP;
    REVOKE ALL ON SCHEMA public FROM grafana_reader;
    -- Default privileges the migration role gave the reader for future tables (the old init script did).
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM grafana_reader;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM grafana_reader;
    ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM grafana_reader;
    GRANT USAGE ON SCHEMA grafana TO grafana_reader;
    GRANT SELECT ON ALL TABLES IN SCHEMA grafana TO grafana_reader;
END
$$;
REVOKE ALL ON FUNCTION riskwatch_grafana_grants() FROM PUBLIC;

SELECT riskwatch_grafana_grants();
