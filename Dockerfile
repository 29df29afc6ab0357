# syntax=docker/dockerfile:1.7
# One image for the producer, the consumer and the API, with the dashboard's static export
# baked in. Pick the process with the command: `sensorpipe producer|consumer|api|init`.

# --- 1. the dashboard's static export ---------------------------------------------------------
FROM node:20.18.1-bookworm-slim AS dashboard
WORKDIR /build/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/ ./
RUN npm run build

# --- 2. Python dependencies in a virtualenv -----------------------------------------------------
FROM python:3.11.11-slim-bookworm AS python-build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY requirements/main.txt requirements/main.txt
RUN pip install --require-hashes -r requirements/main.txt
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-deps .

# --- 3. runtime --------------------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="sensorpipe" \
      org.opencontainers.image.description="Sensor-event ingestion pipeline: producer, consumer, API and dashboard"
RUN groupadd --system --gid 10001 sensorpipe \
 && useradd --system --uid 10001 --gid sensorpipe --home-dir /app --shell /usr/sbin/nologin sensorpipe
COPY --from=python-build /opt/venv /opt/venv
COPY --from=dashboard /build/dashboard/out /app/dashboard/out
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SENSORPIPE_STATE_DIR=/app/state \
    SENSORPIPE_API_DASHBOARD_DIR=/app/dashboard/out \
    SENSORPIPE_CONSUMER_METRICS_HOST=0.0.0.0 \
    SENSORPIPE_PRODUCER_METRICS_HOST=0.0.0.0 \
    SENSORPIPE_COMPACTOR_METRICS_HOST=0.0.0.0 \
    SENSORPIPE_HEALTH_URL=http://127.0.0.1:8000/healthz
WORKDIR /app
RUN mkdir -p /app/state && chown sensorpipe:sensorpipe /app/state
USER sensorpipe
# Each process has an HTTP endpoint to probe: the API's /healthz, or the Prometheus port of
# the producer (9300), consumer (9400) and compactor (9450); compose sets SENSORPIPE_HEALTH_URL per service.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['SENSORPIPE_HEALTH_URL'], timeout=2)"]
ENTRYPOINT ["sensorpipe"]
CMD ["api", "--host", "0.0.0.0"]
