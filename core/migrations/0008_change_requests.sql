-- Supervision an enterprise cannot weaken (issue #11).
--
-- An enterprise may edit descriptions of its own objects, but what decides whether and how it is
-- supervised (setpoints, required flags, intervals, states, plant industry, device kind, the principal
-- and actual controller of record, disabling a gateway that feeds a required point) changes only when the
-- bureau says so: the enterprise files a change request (变更申请) that the bureau approves or rejects.

CREATE TABLE change_requests (
    id                 bigserial PRIMARY KEY,
    enterprise_id      text NOT NULL REFERENCES enterprises (id),
    object_kind        text NOT NULL CHECK (object_kind IN ('enterprise', 'plant', 'gateway', 'device', 'point')),
    object_id          text NOT NULL,           -- the object's key as text (point and device ids are integers)
    changes            jsonb NOT NULL CHECK (jsonb_typeof(changes) = 'object' AND changes <> '{}'),
    old_values         jsonb NOT NULL CHECK (jsonb_typeof(old_values) = 'object'),
    reason             text,
    status             text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_by       text NOT NULL,
    requested_token_id integer,
    requested_at       timestamptz NOT NULL,
    decided_by         text,
    decided_token_id   integer,
    decided_at         timestamptz,
    decision_comment   text,
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK (status = 'pending' OR decided_by IS NOT NULL)
);
CREATE INDEX change_requests_enterprise ON change_requests (enterprise_id, status, id);
CREATE INDEX change_requests_object ON change_requests (object_kind, object_id) WHERE status = 'pending';

-- A decided request is the bureau's record: it is never changed again nor removed.
CREATE FUNCTION riskwatch_change_request_decided_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'change request % is decided (已决定，不可修改)', OLD.id USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER change_requests_decided_once BEFORE UPDATE OR DELETE ON change_requests
    FOR EACH ROW EXECUTE FUNCTION riskwatch_change_request_decided_once();

-- What a mutating API call changed (fields with old and new values, a change request filed or decided),
-- written by the audit middleware alongside the method, route and status.
ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS changes jsonb;

-- The enterprise's own contacts for routine notices (name, phone, e-mail), editable by the enterprise and
-- kept apart from the principal and actual controller of record, whom only the bureau changes.
ALTER TABLE enterprises ADD COLUMN routine_contacts jsonb NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(routine_contacts) = 'array');

-- Reserved gateway ids (core.registry.check_gateway_id): ids starting with "riskwatch" in any case belong
-- to the service's own broker accounts. NOT VALID: enforced for every new or renamed row, without failing
-- the migration on a database that already holds one (broker_credentials leaves such a row out).
ALTER TABLE gateways ADD CONSTRAINT gateways_id_not_reserved CHECK (lower(id) NOT LIKE 'riskwatch%') NOT VALID;
