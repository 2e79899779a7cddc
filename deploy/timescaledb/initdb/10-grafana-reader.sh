#!/bin/sh
# Runs once, when the timescaledb container initialises an empty data directory:
# a SELECT-only role for Grafana's data source. Tables are created later by
# `riskwatch migrate` as $POSTGRES_USER; default privileges grant them to the
# reader (TimescaleDB passes a hypertable's grants on to its chunks).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v owner="$POSTGRES_USER" -v db="$POSTGRES_DB" -v pw="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE grafana_reader LOGIN PASSWORD :'pw';
ALTER ROLE grafana_reader SET statement_timeout = '30s';
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"db" TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
SQL
