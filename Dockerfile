# syntax=docker/dockerfile:1
# tenantgate image: the package in a virtualenv on a slim Python, run as an unprivileged numeric user so
# Kubernetes can enforce runAsNonRoot. Build: docker build -t tenantgate .
ARG PYTHON_IMAGE=python:3.12-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# Compilers only for dependencies without a wheel for this platform; none of this reaches the final stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies from the lock (exact versions, hashes checked) in a layer of their own, so a code change
# reinstalls only the package; then the package without resolving anything, built by the locked hatchling, which
# stays in this stage's system Python.
COPY requirements/ requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r requirements/pip.txt \
    && /opt/venv/bin/pip install --require-hashes -r requirements/base.txt \
    && pip install --require-hashes -r requirements/build.txt
COPY . .
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/dist . \
    && /opt/venv/bin/pip install --no-deps /tmp/dist/tenantgate-*.whl \
    && /opt/venv/bin/pip check

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TENANTGATE_SPOOL_DIR=/var/lib/tenantgate/spool
RUN groupadd --system --gid 10001 tenantgate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tenantgate \
    && mkdir -p /var/lib/tenantgate/spool \
    && chown 10001:10001 /var/lib/tenantgate/spool
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8080
# Workers: append `--workers N` to the command, e.g. `docker run IMAGE serve --host 0.0.0.0 --port 8080 --workers 4`
# (the Helm chart passes its `workers` value this way).
ENTRYPOINT ["tenantgate"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
