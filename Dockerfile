# riskwatch: the `riskwatch` CLI and service (serve, collect, grafana render, retention) in one image.
#
#   docker build -t riskwatch:latest .          # or: cd deploy && docker compose build
#
# The project is installed with pip from this repository (not editable); at run time the image needs no network
# beyond the services it is pointed at (RISKWATCH_DB_URL, RISKWATCH_MQTT_URL): no downloads, no telemetry.
# It runs as the unprivileged user `riskwatch`; state (the link-signing key when RISKWATCH_LINK_SECRET is unset)
# lives in /var/lib/riskwatch, a volume in deploy/compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
# Only what the package is built from (see .dockerignore): no tests, no deploy secrets, no local data dir.
COPY pyproject.toml README.md ./
COPY core ./core
COPY ingest ./ingest
COPY rules ./rules
COPY hazards ./hazards
COPY alerting ./alerting
COPY api ./api
COPY simulators ./simulators
RUN pip install . \
    && rm -rf /build \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/riskwatch --create-home \
               --shell /usr/sbin/nologin riskwatch

USER riskwatch
WORKDIR /var/lib/riskwatch
ENV RISKWATCH_DATA_DIR=/var/lib/riskwatch \
    RISKWATCH_HEALTHCHECK_URL=http://127.0.0.1:8080/healthz
EXPOSE 8080

# /healthz answers 200 only when the database, the broker login and every background task are ok. With
# `serve --certfile` set RISKWATCH_HEALTHCHECK_URL=https://127.0.0.1:8080/healthz (a loopback probe: the
# certificate is not verified here; clients verify it). Services that do not serve HTTP disable the check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request as u; ctx = ssl._create_unverified_context(); sys.exit(0 if u.urlopen(os.environ['RISKWATCH_HEALTHCHECK_URL'], timeout=8, context=ctx).status == 200 else 1)"]

ENTRYPOINT ["riskwatch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
