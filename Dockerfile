# syntax=docker/dockerfile:1
# Herald: a wheel built from the sources, installed with its locked, hashed dependencies into a
# virtualenv, copied into a slim image that runs as an unprivileged user.
#   docker build -t herald .
#   docker run --rm -p 8080:8080 -e HERALD_TOKEN_OPERATOR=... herald
# Secrets (HERALD_TOKEN_*, HERALD_SMTP__PASSWORD, HERALD_TWILIO__AUTH_TOKEN, HERALD_ACK__SECRET,
# HERALD_WEBHOOK__SECRET) come from the environment at run time, never from the image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first (a layer that changes only with the locks), every file checked against its
# hash. The locks are made by `make lock` (pip-compile --generate-hashes): setuptools first, then
# Herald's dependencies without build isolation, so the one source-only package (dkimpy) builds
# with the locked setuptools rather than one fetched unpinned.
COPY requirements-build.lock requirements.lock ./
RUN python -m venv /opt/herald \
    && /opt/herald/bin/pip install --require-hashes --no-deps -r requirements-build.lock \
    && /opt/herald/bin/pip install --require-hashes --no-deps --no-build-isolation -r requirements.lock
# The package: code, built-in templates, reference configuration and migrations, as one wheel.
COPY pyproject.toml README.md ./
COPY service ./service
COPY channels ./channels
COPY templates ./templates
COPY config ./config
RUN /opt/herald/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/herald/bin/pip install --no-deps --no-index /wheels/herald-*.whl \
    && /opt/herald/bin/pip uninstall --yes setuptools \
    && /opt/herald/bin/python -m compileall -q /opt/herald/lib

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 herald \
    && useradd --system --uid 10001 --gid herald --home-dir /var/lib/herald --create-home --shell /usr/sbin/nologin herald
COPY --from=build /opt/herald /opt/herald
COPY config/sample-incident.json /opt/herald/share/sample-incident.json
ENV PATH=/opt/herald/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HERALD_SERVER__HOST=0.0.0.0 \
    HERALD_SERVER__PORT=8080 \
    HERALD_DATABASE__URL=sqlite+aiosqlite:////var/lib/herald/herald.db
USER herald:herald
WORKDIR /var/lib/herald
VOLUME ["/var/lib/herald"]
EXPOSE 8080
# Ready means the database answers; /readyz also lists configuration warnings (ready all the same).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=4).status != 200)"]
# Migrations run at start (database.auto_migrate). With several replicas, run `herald db upgrade`
# once as a job and set HERALD_DATABASE__AUTO_MIGRATE=false (compose.yaml shows both).
CMD ["herald", "serve"]
