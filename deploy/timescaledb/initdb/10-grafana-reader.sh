#!/bin/sh
# Runs once, when the timescaledb container initialises an empty data directory.
#
# Grafana's data source logs in as `grafana`, a LOGIN role whose only membership is the NOLOGIN group
# `grafana_reader`. The group gets its privileges from riskwatch's migration 0009 (run by `riskwatch serve`
# as $POSTGRES_USER, the tables' owner): USAGE on the schema `grafana` and SELECT on its views, made for the
# dashboards, and nothing in `public` — no whistle-blowers, token or credential hashes, contacts, audit log
# or notifications, whatever SQL a dashboard editor types. Nothing is granted here on purpose.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v db="$POSTGRES_DB" -v pw="$GRAFANA_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE grafana_reader NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') \gexec
CREATE ROLE grafana LOGIN PASSWORD :'pw' IN ROLE grafana_reader;
ALTER ROLE grafana SET default_transaction_read_only = on;
ALTER ROLE grafana SET statement_timeout = '30s';
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO grafana;
SQL
