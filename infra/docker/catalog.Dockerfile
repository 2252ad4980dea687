# imgtag catalog image: the Django catalog (REST API, admin) under gunicorn on port 8000.
#   docker build -f infra/docker/catalog.Dockerfile -t ghcr.io/imgtag/imgtag-catalog:dev .
# The build context is the repository root (see /.dockerignore).
#
# imgtag is installed with its base dependencies and the `server` extra only (setup.cfg): no
# TensorFlow, Keras, LiteRT, MLflow or DVC. The catalog imports core and serving, whose model
# code imports TensorFlow only when it tags (tests/catalog/test_slim.py runs the catalog
# with those packages missing). Tagging uploads in the web process
# (IMGTAG_UPLOAD_TAGGING=inprocess) needs the `tagger` extra: without it the catalog refuses to
# start and says so (catalog/apps.py); install '.[server,tagger]' for that. The default,
# IMGTAG_UPLOAD_TAGGING=queue, leaves tagging to the pipelines image's workers.
#
# collectstatic is not run: WhiteNoise serves the static files the catalog package ships
# straight from site-packages (WHITENOISE_USE_FINDERS in catalog/settings.py), under gunicorn
# too; `imgtag`'s web pages load nothing from a CDN.
#
# Migrations are not applied by this image's server: run `imgtag` or `python -m catalog migrate`
# (e.g. a Job or init container with `--entrypoint python` and args `-m catalog migrate`).

# ---------------------------------------------------------------- builder
FROM python:3.11.17-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships a manylinux wheel for CPython 3.11: no compiler needed.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer (same layer as in pipelines.Dockerfile).
COPY setup.cfg pyproject.toml ./
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); reqs = c['options']['install_requires'] + '\n' + c['options.extras_require']['server']; print('\n'.join(r.strip() for r in reqs.splitlines() if r.strip()))" > /tmp/requirements.txt \
 && pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir -r /tmp/requirements.txt

# TF Serving's config protos: the catalog reads which version is champion from models.config
# with them (serving.repository). They import protobuf alone (a base requirement), so the
# package goes in without its dependencies (TensorFlow, gRPC); the pin is setup.cfg's `tagger`
# extra's (tests/infra/test_docker.py checks it).
RUN pip install --no-cache-dir --no-deps 'tensorflow-serving-api>=2.21,<2.22'

COPY README.md ./
COPY core ./core
COPY pipelines ./pipelines
COPY serving ./serving
COPY catalog ./catalog
RUN pip install --no-cache-dir '.[server]' \
 && cd /tmp && python -c "import catalog.wsgi, gunicorn, importlib.util, tensorflow_serving.config.model_server_config_pb2; assert importlib.util.find_spec('tensorflow') is None, 'TensorFlow in the catalog image'"

# ---------------------------------------------------------------- runtime
FROM python:3.11.17-slim-bookworm AS runtime

ARG IMGTAG_GIT_COMMIT=unknown

LABEL org.opencontainers.image.title="imgtag-catalog" \
      org.opencontainers.image.description="imgtag: the Django catalog (REST API, admin) under gunicorn" \
      org.opencontainers.image.source="https://github.com/imgtag/imgtag" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${IMGTAG_GIT_COMMIT}"

# No apt package is added (see pipelines.Dockerfile: the wheels need only the base image's libs).
RUN groupadd --system --gid 10001 imgtag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin imgtag \
 && mkdir -p /data \
 && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    IMGTAG_HOME=/data \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    GIT_PYTHON_REFRESH=quiet \
    DJANGO_SETTINGS_MODULE=catalog.settings \
    IMGTAG_GIT_COMMIT=${IMGTAG_GIT_COMMIT}

WORKDIR /app
USER 10001:10001

EXPOSE 8000

# /healthz is answered by catalog.health.HealthCheckMiddleware before the host check and
# without touching the database (liveness); /readyz adds the database check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# --worker-tmp-dir /dev/shm: gunicorn's worker heartbeat files must not need a writable root
# filesystem (the root is read-only in Kubernetes). Tune workers with the container's args.
ENTRYPOINT ["gunicorn", "catalog.wsgi:application"]
CMD ["--bind", "0.0.0.0:8000", "--workers", "2", "--threads", "4", "--timeout", "60", "--access-logfile", "-", "--worker-tmp-dir", "/dev/shm"]
