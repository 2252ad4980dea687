"""The one settings object: every ``IMGTAG_*`` variable is read here, and nowhere else.

Each entry point builds :class:`Settings` once (``Settings.from_env()``: the ``imgtag``
command, the catalog's Django settings, ``make demo``) and passes it down; library functions
take it as an argument and never read the environment themselves, so what a test or a Django
override sets is what the broker, the tagger and the stages see. The Airflow side has its own,
:class:`dags.imgtag_stage.StageSettings` (where stage pods run), because it configures Airflow,
not imgtag. A bad value stops the entry point with a :class:`core.errors.UsageError` naming the
variable and what it accepts. This module imports only the standard library: the DAG files may
import it.

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_HOME`` | ``./var`` | folder holding the SQLite catalog and the original images |
| ``DATABASE_URL`` | ``sqlite:///$IMGTAG_HOME/catalog.sqlite3`` | catalog database (``postgres://...`` in production) |
| ``IMGTAG_STORAGE_URL`` | ``$IMGTAG_HOME/storage`` | fsspec URL of the content-addressed originals (``s3://bucket/prefix``) |
| ``IMGTAG_MAX_UPLOAD_MB`` | ``50`` | largest accepted original, in MiB |
| ``IMGTAG_MAX_REQUEST_MB`` | ``200`` | largest upload request (all its files together), in MiB: refused with 413 while it streams in |
| ``IMGTAG_THUMBNAIL_CACHE_MB`` | ``1024`` | most disk the catalog's thumbnail cache may take; the least recently used are evicted |
| ``IMGTAG_MAX_PIXELS`` | ``100000000`` | largest accepted image, width x height (decompression bombs) |
| ``IMGTAG_MAX_DECODE_BYTES`` | ``629145600`` (600 MiB) | most bytes one image's decode may spend (:meth:`core.imageio.ImageInfo.decode_cost`: the decoder's buffers at the stored depth, channels, strips or tiles, frames); checked from the header before decoding, everywhere images are read |
| ``IMGTAG_DECODE_MEMORY_MB`` | 1024, or 30% of the cgroup's memory limit when less (at least ``IMGTAG_MAX_DECODE_BYTES``) | most MiB the decodes of one process may hold at once (:mod:`core.decode_budget`); a decode waits for room |
| ``IMGTAG_DECODE_WAIT_SECONDS`` | ``10`` | how long a web request waits for that room before a 503 with ``Retry-After`` (the worker and the command line wait as long as it takes) |
| ``IMGTAG_BATCH_SIZE`` | ``32`` | images per inference batch |
| ``IMGTAG_DECODE_THREADS`` | CPUs of the cgroup's quota (:func:`core.cgroup.available_cpus`) | threads decoding images ahead of the model |
| ``IMGTAG_INGEST_ROOTS`` | none | folders ``imgtag ingest`` may read labelled images from, separated by ``:`` (``os.pathsep``); when set, only these (see :mod:`pipelines.training.ingest`) |
| ``IMGTAG_AMQP_URL`` | ``amqp://guest:guest@127.0.0.1:5672/%2F`` | RabbitMQ for the tagging queue |
| ``IMGTAG_QUEUE`` | ``imgtag.tagging`` | tagging queue; its dead letters go to ``<name>.dead`` |
| ``IMGTAG_DELIVERY_LIMIT`` | ``5`` | deliveries of one message before the broker dead-letters it |
| ``IMGTAG_UPLOAD_TAGGING`` | ``queue`` | API uploads: ``queue`` publishes a tagging message (a worker tags), ``inprocess`` tags in the web process |
| ``IMGTAG_CACHE_DIR`` | ``$IMGTAG_HOME/cache`` | converted models (LiteRT), made on first use (bake them into an image to skip that); the catalog's thumbnails |
| ``IMGTAG_RUNTIME`` | ``litert`` | in-process inference: ``litert`` (XNNPACK, about 2x faster on CPU) or ``tensorflow`` |
| ``IMGTAG_TAGMAP_DIR`` | the packaged ``core/data`` | the tag map's CSV files (ImageNet classes to tags, thresholds, hierarchy), for a tag map of your own |
| ``IMGTAG_TF_VERBOSE`` | ``false`` | ``true``: let TensorFlow's C++ start-up lines through (:mod:`core.tf_runtime`) |
| ``IMGTAG_RUNS_DIR`` | ``$IMGTAG_HOME/runs`` | training runs: datasets, trained models, reports (a DVC repository) |
| ``IMGTAG_MODEL_BASE`` | ``$IMGTAG_HOME/models`` | the TF Serving model repository (numbered versions, ``models.config``) |
| ``IMGTAG_STARTER`` | ``on`` | before any promotion, tag with the shipped starter model (people, the 80 COCO objects and the general tags); ``off``: the general ImageNet tags only |
| ``IMGTAG_MODEL_NAME`` | ``imgtag-tagger`` | the model's name in the repository and in the MLflow registry |
| ``IMGTAG_SERVING_BASE_PATH`` | ``$IMGTAG_MODEL_BASE`` | where TF Serving sees the repository (``/models`` in its container) |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///$IMGTAG_HOME/mlflow.db`` | MLflow tracking and registry (``http://mlflow:5000`` in production) |
| ``IMGTAG_MLFLOW_EXPERIMENT`` | ``imgtag-training`` | MLflow experiment of the training runs |
| ``IMGTAG_DVC_REMOTE`` | ``$IMGTAG_HOME/dvc-remote`` | DVC remote the datasets are pushed to (``s3://bucket/dvc``); empty: no push |
| ``IMGTAG_GIT_COMMIT`` | ``git rev-parse HEAD`` | the code's commit, recorded with each training run (set in container images, which have no ``.git``) |
| ``IMGTAG_PROMETHEUS`` | ``make tools``' package, else ``PATH`` | the ``prometheus`` binary ``imgtag platform`` starts |

Which model predicts (:class:`ServingSettings`, ``settings.serving``):

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_PREDICTOR`` | ``inprocess`` | ``inprocess``, ``rest`` or ``grpc`` (:mod:`serving.predictors`) |
| ``IMGTAG_SERVING_URL`` | ``http://127.0.0.1:8501`` (rest), ``127.0.0.1:8500`` (grpc) | TF Serving's REST base URL or gRPC target |
| ``IMGTAG_SERVING_LABEL`` | ``champion`` | version label to ask for; digits pin a version number |
| ``IMGTAG_SERVING_TIMEOUT`` | ``10`` | seconds per request attempt |
| ``IMGTAG_SERVING_STATUS_URL`` | the REST URL with ``rest``, else none | TF Serving's REST base URL, for ``promote`` and ``rollback`` to wait until a version is loaded before moving its label |
| ``IMGTAG_SERVING_LOAD_TIMEOUT`` | ``600`` | seconds they wait for it |

The catalog's web server (:class:`WebSettings`, ``settings.web``; used by :mod:`catalog.settings`):

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_SECRET_KEY`` | see :mod:`catalog.settings` | ``SECRET_KEY``: required by the web server in production |
| ``IMGTAG_DEBUG`` | ``false`` | Django's ``DEBUG`` |
| ``IMGTAG_ALLOWED_HOSTS`` | ``127.0.0.1,localhost`` | comma-separated host names to answer to |
| ``IMGTAG_HTTPS`` | ``false`` | behind an HTTPS proxy: HTTPS redirect, HSTS, secure cookies |
| ``IMGTAG_NUM_PROXIES`` | ``0`` | trusted proxies whose ``X-Forwarded-For`` names the client |
| ``IMGTAG_REQUIRE_SECRET_KEY`` | ``true`` under ``catalog.wsgi`` (it sets the default), else ``false`` | no start without ``IMGTAG_SECRET_KEY`` |
| ``IMGTAG_STATIC_ROOT`` | ``catalog/staticfiles`` in the package | where ``collectstatic`` puts files (optional) |

Yes/no variables take ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off`` (or empty).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import core.cgroup as cgroup
from core.errors import UsageError

PREDICTOR_KINDS = ("inprocess", "rest", "grpc")
DEFAULT_REST_URL = "http://127.0.0.1:8501"
DEFAULT_GRPC_TARGET = "127.0.0.1:8500"
CHAMPION_LABEL = (
    "champion"  # serving.repository.CHAMPION; this module imports nothing of the project's above it
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class SettingsError(UsageError, ValueError):
    """An environment variable has a value imgtag cannot use; the message names it and what it accepts.

    Also a ``ValueError``, which this was before :class:`core.errors.UsageError` existed.
    """


@dataclass(frozen=True)
class ServingSettings:
    """Which predictor to use and where TF Serving is (see the module docstring for the variables).

    Attributes:
        predictor: ``inprocess``, ``rest`` or ``grpc``.
        url: the REST base URL (``http://...``) or gRPC target (``host:port``); unused in process.
        label: the version label asked for, or None when ``version`` pins a number.
        version: a pinned version number (``IMGTAG_SERVING_LABEL`` of digits), or None.
        timeout: seconds per request attempt.
        status_url: TF Serving's REST base URL, to wait for a version to load ("" : do not wait).
        load_timeout: seconds to wait for it.
    """

    predictor: str = "inprocess"
    url: str = ""
    label: str | None = CHAMPION_LABEL
    version: int | None = None
    timeout: float = 10.0
    status_url: str = ""
    load_timeout: float = 600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        """Read ``IMGTAG_PREDICTOR`` and the ``IMGTAG_SERVING_*`` variables.

        Args:
            env: the environment (``os.environ`` when None).

        Raises:
            SettingsError: an unknown predictor, a URL that does not fit it, an empty or
                malformed label, or a timeout that is not a positive number.
        """
        env = os.environ if env is None else env
        kind = _choice(env, "IMGTAG_PREDICTOR", "inprocess", PREDICTOR_KINDS)
        url = env.get("IMGTAG_SERVING_URL", "").strip()
        if kind == "rest":
            url = url or DEFAULT_REST_URL
            if not url.startswith(("http://", "https://")):
                raise SettingsError(
                    f"IMGTAG_SERVING_URL={url!r}: the rest predictor needs http://host:port (TF Serving's REST port)"
                )
        elif kind == "grpc":
            url = url or DEFAULT_GRPC_TARGET
            url = url.removeprefix("grpc://")
            if "://" in url or ":" not in url:
                raise SettingsError(
                    f"IMGTAG_SERVING_URL={url!r}: the grpc predictor needs host:port (TF Serving's gRPC port)"
                )
        raw_label = env.get("IMGTAG_SERVING_LABEL", CHAMPION_LABEL).strip()
        if not raw_label or "/" in raw_label or ":" in raw_label:
            raise SettingsError(f"IMGTAG_SERVING_LABEL={raw_label!r}: expected a version label or number")
        label, version = (None, int(raw_label)) if raw_label.isdigit() else (raw_label, None)
        timeout = _seconds(env, "IMGTAG_SERVING_TIMEOUT", "10", finite=True)
        status_url = env.get("IMGTAG_SERVING_STATUS_URL", "").strip() or (url if kind == "rest" else "")
        if status_url and not status_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"IMGTAG_SERVING_STATUS_URL={status_url!r}: expected http://host:port (TF Serving's REST port)"
            )
        load_timeout = _seconds(env, "IMGTAG_SERVING_LOAD_TIMEOUT", "600", finite=False)
        return cls(
            predictor=kind,
            url=url,
            label=label,
            version=version,
            timeout=timeout,
            status_url=status_url,
            load_timeout=load_timeout,
        )


@dataclass(frozen=True)
class WebSettings:
    """The catalog's web server: what :mod:`catalog.settings` turns into Django settings.

    Attributes:
        secret_key: ``IMGTAG_SECRET_KEY``, or "" (the catalog then uses the installation's own).
        debug: Django's ``DEBUG``.
        allowed_hosts: host names to answer to.
        https: behind an HTTPS proxy (redirect, HSTS, secure cookies).
        num_proxies: trusted proxies in front, for the client address.
        static_root: where ``collectstatic`` puts files, or "" (the package's ``staticfiles``).
        require_secret_key: refuse to start without ``secret_key`` (with ``debug`` off).
    """

    secret_key: str = field(default="", repr=False)
    debug: bool = False
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    https: bool = False
    num_proxies: int = 0
    static_root: str = ""
    require_secret_key: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        """Read the catalog's web variables (``os.environ`` when ``env`` is None)."""
        env = os.environ if env is None else env
        return cls(
            secret_key=env.get("IMGTAG_SECRET_KEY", "").strip(),
            debug=_flag(env, "IMGTAG_DEBUG", False),
            allowed_hosts=tuple(
                host.strip()
                for host in env.get("IMGTAG_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
                if host.strip()
            ),
            https=_flag(env, "IMGTAG_HTTPS", False),
            num_proxies=_int(env, "IMGTAG_NUM_PROXIES", "0", minimum=0, empty_ok=True),
            static_root=env.get("IMGTAG_STATIC_ROOT", ""),
            require_secret_key=_flag(env, "IMGTAG_REQUIRE_SECRET_KEY", False),
        )


#: The variables that place a run's results outside IMGTAG_HOME (:meth:`Settings.in_own_home`).
_RUN_PLACES = ("MLFLOW_TRACKING_URI", "IMGTAG_RUNS_DIR", "IMGTAG_DVC_REMOTE", "IMGTAG_MODEL_BASE")


@dataclass(frozen=True)
class Settings:
    """imgtag's settings (see the module docstring for the variable behind each)."""

    home: Path
    database_url: str
    storage_url: str
    max_upload_bytes: int
    max_request_bytes: int
    thumbnail_cache_bytes: int
    max_pixels: int
    max_decode_bytes: int
    batch_size: int
    decode_threads: int
    runtime: str
    amqp_url: str
    queue: str
    delivery_limit: int
    upload_tagging: str
    cache_dir: Path
    runs_dir: Path
    model_base: Path
    model_name: str
    starter: bool
    serving_base_path: str
    mlflow_tracking_uri: str
    mlflow_experiment: str
    dvc_remote: str
    tagmap_dir: Path | None = None  # None: the packaged tag map (core/data)
    tf_verbose: bool = False
    git_commit: str = ""  # "": ask git
    prometheus: str = ""  # "": look for it (pipelines.platform)
    serving: ServingSettings = ServingSettings()
    web: WebSettings = WebSettings()
    decode_memory_bytes: int = 1024 * 1024 * 1024
    decode_wait_seconds: float = 10.0
    ingest_roots: tuple[Path, ...] = ()

    @classmethod
    def in_own_home(cls, home: Path, *, starter: bool, env: Mapping[str, str] | None = None) -> Settings:
        """The environment's settings (``os.environ`` when ``env`` is None; left as it is), but
        with everything a run keeps under ``home``: its dataset, MLflow's store, the DVC remote
        and the model base, whatever the environment names for them (``make starter-model``'s
        build). ``starter``: whether the shipped starter is served."""
        own = {k: v for k, v in (os.environ if env is None else env).items() if k not in _RUN_PLACES}
        own.update({"IMGTAG_HOME": str(home), "IMGTAG_STARTER": "on" if starter else "off"})
        return cls.from_env(own)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable of the module docstring.

        Args:
            env: the environment (``os.environ`` when None); tests pass a dict.

        Raises:
            SettingsError: a variable has a value imgtag cannot use (the message names it).
        """
        env = os.environ if env is None else env
        home = _path(env.get("IMGTAG_HOME", "var"))
        mib = 1024 * 1024
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{home / 'catalog.sqlite3'}",
            storage_url=env.get("IMGTAG_STORAGE_URL") or str(home / "storage"),
            max_upload_bytes=int(_number(env, "IMGTAG_MAX_UPLOAD_MB", "50") * mib),
            max_request_bytes=int(_number(env, "IMGTAG_MAX_REQUEST_MB", "200") * mib),
            thumbnail_cache_bytes=int(_number(env, "IMGTAG_THUMBNAIL_CACHE_MB", "1024") * mib),
            max_pixels=_int(env, "IMGTAG_MAX_PIXELS", "100000000"),
            max_decode_bytes=(max_decode := _int(env, "IMGTAG_MAX_DECODE_BYTES", str(600 * mib))),
            batch_size=_int(env, "IMGTAG_BATCH_SIZE", "32"),
            decode_threads=_int(env, "IMGTAG_DECODE_THREADS", str(cgroup.available_cpus())),
            runtime=_choice(env, "IMGTAG_RUNTIME", "litert", ("litert", "tensorflow")),
            amqp_url=env.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            queue=env.get("IMGTAG_QUEUE", "imgtag.tagging"),
            delivery_limit=_int(env, "IMGTAG_DELIVERY_LIMIT", "5"),
            cache_dir=_path(env.get("IMGTAG_CACHE_DIR") or home / "cache"),
            upload_tagging=_choice(env, "IMGTAG_UPLOAD_TAGGING", "queue", ("queue", "inprocess")),
            runs_dir=_path(env.get("IMGTAG_RUNS_DIR") or home / "runs"),
            model_base=(model_base := _path(env.get("IMGTAG_MODEL_BASE") or home / "models")),
            model_name=env.get("IMGTAG_MODEL_NAME", "imgtag-tagger"),
            starter=_choice(env, "IMGTAG_STARTER", "on", ("on", "off")) == "on",
            serving_base_path=env.get("IMGTAG_SERVING_BASE_PATH") or str(model_base),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            mlflow_experiment=env.get("IMGTAG_MLFLOW_EXPERIMENT", "imgtag-training"),
            dvc_remote=env.get("IMGTAG_DVC_REMOTE", str(home / "dvc-remote")),
            tagmap_dir=_path(env["IMGTAG_TAGMAP_DIR"]) if env.get("IMGTAG_TAGMAP_DIR") else None,
            tf_verbose=_flag(env, "IMGTAG_TF_VERBOSE", False),
            git_commit=env.get("IMGTAG_GIT_COMMIT", "").strip(),
            prometheus=env.get("IMGTAG_PROMETHEUS", ""),
            serving=ServingSettings.from_env(env),
            web=WebSettings.from_env(env),
            decode_memory_bytes=_decode_memory(env, max_decode),
            decode_wait_seconds=_seconds(env, "IMGTAG_DECODE_WAIT_SECONDS", "10", finite=True),
            ingest_roots=tuple(
                _path(p) for p in env.get("IMGTAG_INGEST_ROOTS", "").split(os.pathsep) if p.strip()
            ),
        )

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def suspect_queue(self) -> str:
        """Messages a worker died holding: tagged one at a time (see :mod:`core.broker`)."""
        return f"{self.queue}.suspect"


def _decode_memory(env: Mapping[str, str], max_decode_bytes: int) -> int:
    """``IMGTAG_DECODE_MEMORY_MB`` in bytes: what one process's decodes may hold at once.

    The default is 1 GiB, or 30% of the cgroup's memory limit (a pod's) when that is less; never
    below one image's budget. A value below ``IMGTAG_MAX_DECODE_BYTES`` is refused: an image
    the per-image budget allows could never be decoded.
    """
    mib = 1024 * 1024
    if env.get("IMGTAG_DECODE_MEMORY_MB", "").strip():
        value = int(_number(env, "IMGTAG_DECODE_MEMORY_MB", "1024") * mib)
        if value < max_decode_bytes:
            raise SettingsError(
                f"IMGTAG_DECODE_MEMORY_MB={env['IMGTAG_DECODE_MEMORY_MB']!r}: at least one image's budget, "
                f"IMGTAG_MAX_DECODE_BYTES ({max_decode_bytes / mib:,.0f} MiB), or lower that too"
            )
        return value
    limit = cgroup.memory_limit()
    default = 1024 * mib if limit is None else min(1024 * mib, int(0.3 * limit))
    return max(default, max_decode_bytes)


def _path(value) -> Path:
    return Path(value).expanduser().resolve()


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower() or default
    if value not in allowed:
        raise SettingsError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    if name not in env:
        return default
    value = env[name].strip().lower()
    if value not in _TRUE + _FALSE:
        raise SettingsError(
            f"{name}={env[name]!r}: expected yes or no (1, true, yes, on / 0, false, no, off)"
        )
    return value in _TRUE


def _number(env: Mapping[str, str], name: str, default: str) -> float:
    raw = env.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name}={raw!r}: expected a positive number")
    return value


def _int(env: Mapping[str, str], name: str, default: str, *, minimum: int = 1, empty_ok: bool = False) -> int:
    raw = env.get(name, default)
    text = raw.strip() or (default if empty_ok else "")
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingsError(f"{name}={raw!r}: expected a whole number of at least {minimum}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: str, *, finite: bool) -> float:
    """A positive number of seconds from ``env[name]`` (``inf`` only when not ``finite``)."""
    raw = env.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or (finite and value == float("inf")):
        raise SettingsError(f"{name}={raw!r}: expected a positive number of seconds")
    return value
