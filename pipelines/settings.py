"""Typed settings read once from the environment, where they are used; no import-time effects.

| variable | default | meaning |
|---|---|---|
| ``IMGTAG_HOME`` | ``./var`` | folder holding the SQLite catalog and the original images |
| ``DATABASE_URL`` | ``sqlite:///$IMGTAG_HOME/catalog.sqlite3`` | catalog database (``postgres://...`` in production) |
| ``IMGTAG_STORAGE_URL`` | ``$IMGTAG_HOME/storage`` | fsspec URL of the content-addressed originals (``s3://bucket/prefix``) |
| ``IMGTAG_MAX_UPLOAD_MB`` | ``50`` | largest accepted original, in MiB |
| ``IMGTAG_MAX_PIXELS`` | ``100000000`` | largest accepted image, width x height (decompression bombs) |
| ``IMGTAG_BATCH_SIZE`` | ``32`` | images per inference batch |
| ``IMGTAG_DECODE_THREADS`` | number of CPUs | threads decoding images ahead of the model |
| ``IMGTAG_AMQP_URL`` | ``amqp://guest:guest@127.0.0.1:5672/%2F`` | RabbitMQ for the tagging queue |
| ``IMGTAG_QUEUE`` | ``imgtag.tagging`` | tagging queue; its dead letters go to ``<name>.dead`` |
| ``IMGTAG_DELIVERY_LIMIT`` | ``5`` | deliveries of one message before the broker dead-letters it |
| ``IMGTAG_UPLOAD_TAGGING`` | ``queue`` | API uploads: ``queue`` publishes a tagging message (a worker tags), ``inprocess`` tags in the web process |
| ``IMGTAG_CACHE_DIR`` | ``$IMGTAG_HOME/cache`` | converted models (LiteRT), made on first use; bake it into an image to skip that |
| ``IMGTAG_RUNTIME`` | ``litert`` | in-process inference: ``litert`` (XNNPACK, about 2x faster on CPU) or ``tensorflow`` |
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
    max_pixels: int
    batch_size: int
    decode_threads: int
    runtime: str
    amqp_url: str
    queue: str
    delivery_limit: int
    upload_tagging: str
    cache_dir: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        home = Path(env.get("IMGTAG_HOME", "var")).expanduser().resolve()
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or f"sqlite:///{home / 'catalog.sqlite3'}",
            storage_url=env.get("IMGTAG_STORAGE_URL") or str(home / "storage"),
            max_upload_bytes=int(float(env.get("IMGTAG_MAX_UPLOAD_MB", "50")) * 1024 * 1024),
            max_pixels=int(env.get("IMGTAG_MAX_PIXELS", "100000000")),
            batch_size=int(env.get("IMGTAG_BATCH_SIZE", "32")),
            decode_threads=int(env.get("IMGTAG_DECODE_THREADS", str(os.cpu_count() or 2))),
            runtime=_choice(env, "IMGTAG_RUNTIME", "litert", ("litert", "tensorflow")),
            amqp_url=env.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
            queue=env.get("IMGTAG_QUEUE", "imgtag.tagging"),
            delivery_limit=int(env.get("IMGTAG_DELIVERY_LIMIT", "5")),
            cache_dir=Path(env.get("IMGTAG_CACHE_DIR") or home / "cache").expanduser().resolve(),
            upload_tagging=_choice(env, "IMGTAG_UPLOAD_TAGGING", "queue", ("queue", "inprocess")),
        )

    @property
    def dead_queue(self) -> str:
        return f"{self.queue}.dead"


def _choice(env, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value
