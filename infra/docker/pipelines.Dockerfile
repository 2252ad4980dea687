# imgtag pipelines image: the `imgtag` command (stages, tagging worker, consumer).
#   docker build -f infra/docker/pipelines.Dockerfile -t ghcr.io/imgtag/imgtag-pipelines:dev .
# The build context is the repository root (see /.dockerignore).
# Runs as uid/gid 10001 on a read-only root filesystem: /data (PVC imgtag-data), /models
# (PVC imgtag-models) and /tmp (emptyDir; HOME and IMGTAG_CACHE_DIR live there) are mounted.

# ---------------------------------------------------------------- builder
FROM python:3.11.17-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# Every dependency ships a manylinux wheel for CPython 3.11 (TensorFlow, OpenCV headless,
# LiteRT, psycopg[binary] ...), so no compiler or -dev package is needed here.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when setup.cfg changes, not on
# every code change (TensorFlow alone is several hundred MB).
COPY setup.cfg pyproject.toml ./
# The extras: `server` (S3, DVC's S3 remote), `tagger` (TensorFlow, LiteRT, TF Serving's protos),
# `training` (MLflow, DVC, Great Expectations ...); `training` names `imgtag[tagger]`, a line
# left out here (the package is installed below).
RUN python -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); reqs = c['options']['install_requires'] + '\n' + c['options.extras_require']['server'] + '\n' + c['options.extras_require']['tagger'] + '\n' + c['options.extras_require']['training']; print('\n'.join(r.strip() for r in reqs.splitlines() if r.strip() and not r.strip().startswith('imgtag[')))" > /tmp/requirements.txt \
 && pip install --no-cache-dir --upgrade pip \
 && pip install --no-cache-dir -r /tmp/requirements.txt

# The package itself (README.md: setup.cfg reads long_description from it).
COPY README.md ./
COPY core ./core
COPY pipelines ./pipelines
COPY serving ./serving
COPY catalog ./catalog
RUN pip install --no-cache-dir '.[server,tagger,training]' \
 && imgtag --help > /dev/null

# ---------------------------------------------------------------- runtime
FROM python:3.11.17-slim-bookworm AS runtime

# Set by CI (the commit the image is built from); recorded with every training run.
ARG IMGTAG_GIT_COMMIT=unknown

LABEL org.opencontainers.image.title="imgtag-pipelines" \
      org.opencontainers.image.description="imgtag: the imgtag command (pipeline stages, tagging worker)" \
      org.opencontainers.image.source="https://github.com/imgtag/imgtag" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${IMGTAG_GIT_COMMIT}"

# No apt package is added: the wheels' native libraries need only glibc, libstdc++, libgcc
# and zlib, all in the base image (opencv-python-headless bundles its own libraries and needs
# no libGL/libglib).
RUN groupadd --system --gid 10001 imgtag \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin imgtag \
 && mkdir -p /data /models \
 && chown 10001:10001 /data

COPY --from=builder /opt/venv /opt/venv
COPY infra/docker/pipelines-healthcheck.py /usr/local/lib/imgtag/healthcheck.py

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    IMGTAG_HOME=/data \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    GIT_PYTHON_REFRESH=quiet \
    IMGTAG_GIT_COMMIT=${IMGTAG_GIT_COMMIT}

WORKDIR /app
USER 10001:10001

# Worker metrics (`imgtag worker`, Service tagging-worker-metrics).
EXPOSE 9100

# True for every use of the image: `imgtag worker` is healthy while /metrics answers on its
# metrics port (9100); one-shot stages have nothing to probe and report healthy (their exit
# status is their health). See infra/docker/pipelines-healthcheck.py.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/usr/local/lib/imgtag/healthcheck.py"]

ENTRYPOINT ["imgtag"]
CMD ["--help"]
