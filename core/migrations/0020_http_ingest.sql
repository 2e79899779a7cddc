-- HTTP ingest (issue 18): one bearer token per gateway, for gateways that cannot speak MQTT.
--
-- Only the token's SHA-256 is kept (as api_tokens: 256 random bits need no slow hash, and a
-- digest is found with one indexed lookup). One row per gateway: issuing again replaces the
-- hash, so the old token stops at once. A gateway token is not an API token (prefix rwg_, not
-- rwt_, another table): neither authenticates where the other is expected.
CREATE TABLE gateway_http_tokens (
    gateway_id    text        PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
    token_hash    text        NOT NULL UNIQUE,
    prefix        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text        NOT NULL,
    last_used_at  timestamptz
);
