"""Typed settings read once from the environment, where they are used; no import-time effects.

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_HOME`` | ``./var`` | folder holding the SQLite catalog and the original images |
| ``DATABASE_URL`` | ``sqlite:///$IMGTAG_HOME/catalog.sqlite3`` | catalog database (``postgres://...`` in production) |
| ``IMGTAG_STORAGE_URL`` | ``$IMGTAG_HOME/storage`` | fsspec URL of the content-addressed originals (``s3://bucket/prefix``) |
| ``IMGTAG_MAX_UPLOAD_MB`` | ``50`` | largest accepted original, in MiB |
| ``IMGTAG_MAX_REQUEST_MB`` | ``200`` | largest upload request (all its files together), in MiB: refused with 413 while it streams in |
| ``IMGTAG_THUMBNAIL_CACHE_MB`` | ``1024`` | most disk the catalog's thumbnail cache may take; the least recently used are evicted |
| ``IMGTAG_MAX_PIXELS`` | ``100000000`` | largest accepted image, width x height (decompression bombs) |
| ``IMGTAG_MAX_DECODE_BYTES`` | ``536870912`` (512 MiB) | most bytes one image's pixels may take once decoded (width x height x channels x bytes per sample); checked from the header before decoding, everywhere images are read |
| ``IMGTAG_BATCH_SIZE`` | ``32`` | images per inference batch |
| ``IMGTAG_DECODE_THREADS`` | number of CPUs | threads decoding images ahead of the model |
| ``IMGTAG_AMQP_URL`` | ``amqp://guest:guest@127.0.0.1:5672/%2F`` | RabbitMQ for the tagging queue |
| ``IMGTAG_QUEUE`` | ``imgtag.tagging`` | tagging queue; its dead letters go to ``<name>.dead`` |
| ``IMGTAG_DELIVERY_LIMIT`` | ``5`` | deliveries of one message before the broker dead-letters it |
| ``IMGTAG_UPLOAD_TAGGING`` | ``queue`` | API uploads: ``queue`` publishes a tagging message (a worker tags), ``inprocess`` tags in the web process |
| ``IMGTAG_CACHE_DIR`` | ``$IMGTAG_HOME/cache`` | converted models (LiteRT), made on first use (bake them into an image to skip that); the catalog's thumbnails |
| ``IMGTAG_RUNTIME`` | ``litert`` | in-process inference: ``litert`` (XNNPACK, about 2x faster on CPU) or ``tensorflow`` |
| ``IMGTAG_RUNS_DIR`` | ``$IMGTAG_HOME/runs`` | training runs: datasets, trained models, reports (a DVC repository) |
| ``IMGTAG_MODEL_BASE`` | ``$IMGTAG_HOME/models`` | the TF Serving model repository (numbered versions, ``models.config``) |
| ``IMGTAG_STARTER`` | ``on`` | before any promotion, tag with the shipped starter model (people, the 80 COCO objects and the general tags); ``off``: the general ImageNet tags only |
| ``IMGTAG_MODEL_NAME`` | ``imgtag-tagger`` | the model's name in the repository and in the MLflow registry |
| ``IMGTAG_SERVING_BASE_PATH`` | ``$IMGTAG_MODEL_BASE`` | where TF Serving sees the repository (``/models`` in its container) |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///$IMGTAG_HOME/mlflow.db`` | MLflow tracking and registry (``http://mlflow:5000`` in production) |
| ``IMGTAG_MLFLOW_EXPERIMENT`` | ``imgtag-training`` | MLflow experiment of the training runs |
| ``IMGTAG_DVC_REMOTE`` | ``$IMGTAG_HOME/dvc-remote`` | DVC remote the datasets are pushed to (``s3://bucket/dvc``); empty: no push |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("IMGTAG_HOME", "var")).expanduser().resolve()
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{home / 'catalog.sqlite3'}",
            storage_url=env.get("IMGTAG_STORAGE_URL") or str(home / "storage"),
            max_upload_bytes=int(float(env.get("IMGTAG_MAX_UPLOAD_MB", "50")) * 1024 * 1024),
            max_request_bytes=int(float(env.get("IMGTAG_MAX_REQUEST_MB", "200")) * 1024 * 1024),
            thumbnail_cache_bytes=int(float(env.get("IMGTAG_THUMBNAIL_CACHE_MB", "1024")) * 1024 * 1024),
            max_pixels=int(env.get("IMGTAG_MAX_PIXELS", "100000000")),
            max_decode_bytes=int(env.get("IMGTAG_MAX_DECODE_BYTES", str(512 * 1024 * 1024))),
            batch_size=int(env.get("IMGTAG_BATCH_SIZE", "32")),
            decode_threads=int(env.get("IMGTAG_DECODE_THREADS", str(os.cpu_count() or 2))),
            runtime=_choice(env, "IMGTAG_RUNTIME", "litert", ("litert", "tensorflow")),
            amqp_url=env.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            queue=env.get("IMGTAG_QUEUE", "imgtag.tagging"),
            delivery_limit=int(env.get("IMGTAG_DELIVERY_LIMIT", "5")),
            cache_dir=Path(env.get("IMGTAG_CACHE_DIR") or home / "cache").expanduser().resolve(),
            upload_tagging=_choice(env, "IMGTAG_UPLOAD_TAGGING", "queue", ("queue", "inprocess")),
            runs_dir=_path(env.get("IMGTAG_RUNS_DIR") or home / "runs"),
            model_base=(model_base := _path(env.get("IMGTAG_MODEL_BASE") or home / "models")),
            model_name=env.get("IMGTAG_MODEL_NAME", "imgtag-tagger"),
            starter=_choice(env, "IMGTAG_STARTER", "on", ("on", "off")) == "on",
            serving_base_path=env.get("IMGTAG_SERVING_BASE_PATH") or str(model_base),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
            mlflow_experiment=env.get("IMGTAG_MLFLOW_EXPERIMENT", "imgtag-training"),
            dvc_remote=env.get("IMGTAG_DVC_REMOTE", str(home / "dvc-remote")),
        )

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"

    @property
    def suspect_queue(self) -> str:
        """Messages a worker died holding: tagged one at a time (see :mod:`core.broker`)."""
        return f"{self.queue}.suspect"


def _path(value) -> Path:
    return Path(value).expanduser().resolve()


def _choice(env, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value
