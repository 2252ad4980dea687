"""Bulk import: files and folders into the catalog, deduplicated by sha256, tagged in process.

Three things overlap so that the model is never idle waiting for the database:

1. a thread pool reads, hashes, validates and stores the originals of the next chunk;
2. the main thread creates their catalog rows (one query per chunk) and records the tags of
   finished images (one transaction per group of results) — all database work stays on
   this one thread and its connection;
3. a tagger thread decodes and tags the queued images in fixed-size batches
   (:meth:`core.tagger.Tagger.tag_images`; TensorFlow releases the GIL).

The main thread stays at most a few chunks ahead of the tagger, so memory is bounded
whatever the size of the folder. An asset left ``pending`` by an interrupted import is
tagged by the next import of the same files.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core import broker
from core.errors import MissingFile
from core.imageio import IMAGE_EXTENSIONS, ImageError
from core.tagger import lower_thread_priority

_DONE = object()


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    failed: list[dict] = field(default_factory=list)
    published: int | None = None  # with --queue: tagging messages published
    broker_error: str | None = None  # with --queue: why nothing was published
    already_pending: int | None = None  # with --queue: in the catalog, pending, so not published again

    def as_dict(self) -> dict:
        out = {"imported": self.imported, "duplicates": self.duplicates, "failed": self.failed}
        if self.published is not None:
            out.update(
                published=self.published, broker_error=self.broker_error, already_pending=self.already_pending
            )
        return out


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to import: explicit files as given, folders walked for image extensions.

    Raises:
        FileNotFoundError: a path that does not exist (nothing is imported then).
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise MissingFile(f"{raw}: no such file or folder")
    return list(dict.fromkeys(files))


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _message(exc: Exception, path) -> str:
    text = str(exc)
    return text if str(path) in text or Path(str(path)).name in text else f"{path}: {text}"


class _TaggerThread:
    """Runs ``tagger.tag_images`` over a queue in a thread; results come out of another."""

    def __init__(self, tagger):
        self.feed: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(tagger,), name="tagger", daemon=True)
        self.thread.start()

    def _run(self, tagger) -> None:
        try:
            for result in tagger.tag_images(iter(self.feed.get, _DONE)):
                self.results.put(result)
        except BaseException as exc:  # handed to the main thread, which raises it
            self.results.put(exc)

    def take(self, block: bool) -> list:
        """Finished results: at least one if ``block``, else whatever is ready."""
        out = [self.results.get()] if block else []
        while True:
            try:
                out.append(self.results.get_nowait())
            except queue.Empty:
                break
        for item in out:
            if isinstance(item, BaseException):
                raise item
        return out


def _prepare(path: Path):
    """Read, hash, validate and store one file (thread-safe, no database)."""
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog import services

    try:
        data = path.read_bytes()
    except OSError as exc:
        return path, None, f"{path}: cannot read: {exc.strerror or exc}"
    try:
        return path, services.prepare(data, path.name, hashlib.sha256(data).hexdigest()), None
    except (ImageError, services.UploadTooLarge) as exc:
        return path, None, _message(exc, path)


def _new_assets(
    files: list[Path],
    summary: ImportSummary,
    chunk_size: int,
    threads: int,
    on_progress,
    *,
    pending: bool = True,
):
    """Store and register ``files`` chunk by chunk; yields the assets of each chunk to tag.

    Duplicates are counted; an asset that an interrupted run left ``pending`` is yielded again
    when ``pending`` (tagging in process), and only counted otherwise (``already_pending``: its
    message is queued, or ``imgtag requeue --pending`` sends it).
    """
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog import services

    # Django models: importable only once catalog.runtime.setup() has run
    from catalog.models import Asset

    queued: set[int] = set()
    with ThreadPoolExecutor(threads, thread_name_prefix="store", initializer=lower_thread_priority) as pool:
        for chunk in _chunks(files, chunk_size):
            prepared = []
            for path, item, error in pool.map(_prepare, chunk):
                if error:
                    summary.failed.append({"path": str(path), "error": error})
                else:
                    prepared.append((path, item))
            registered = services.register([item for _, item in prepared])
            to_tag = []
            for (path, _), (asset, created) in zip(prepared, registered, strict=True):
                waiting = asset.status == Asset.Status.PENDING
                if (created or (pending and waiting)) and asset.pk not in queued:
                    queued.add(asset.pk)
                    to_tag.append((asset, path))
                else:
                    summary.duplicates += 1
                    if waiting and not pending and summary.already_pending is not None:
                        summary.already_pending += 1
            on_progress(len(chunk) - len(to_tag))
            yield to_tag


def import_files(
    files: list[Path],
    tagger,
    *,
    chunk_size: int = 128,
    on_progress: Callable[[int], None] = lambda n: None,
) -> ImportSummary:
    """Import ``files`` into the catalog and tag the new ones with ``tagger``, in process.

    Args:
        files: from :func:`collect_files`.
        tagger: a :class:`core.tagger.Tagger`; the thresholds people set for its model
            (``catalog.services.threshold_overrides``) apply.
        chunk_size: files read and registered together.
        on_progress: called with the number of files finished after each step.
    """
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog import services

    tagger = services.with_catalog_thresholds(tagger)
    summary = ImportSummary()

    def record(results: list) -> int:
        if not results:
            return 0
        services.record_results(results, tagger)
        for result in results:
            if result.ok:
                summary.imported += 1
            else:
                summary.failed.append({"path": result.name, "error": _message(result.error, result.name)})
        on_progress(len(results))
        return len(results)

    outstanding = 0
    worker = _TaggerThread(tagger)
    try:
        for to_tag in _new_assets(files, summary, chunk_size, tagger.decode_threads, on_progress):
            for asset, path in to_tag:
                worker.feed.put((asset, path, str(path)))
            outstanding += len(to_tag)
            outstanding -= record(worker.take(block=False))
            while outstanding > 2 * chunk_size:  # stay a bounded distance ahead
                outstanding -= record(worker.take(block=True))
        worker.feed.put(_DONE)
        while outstanding > 0:
            outstanding -= record(worker.take(block=True))
    finally:
        worker.feed.put(_DONE)
        worker.thread.join(timeout=60)
    return summary


def queue_files(
    files: list[Path],
    settings,
    *,
    chunk_size: int = 128,
    on_progress: Callable[[int], None] = lambda n: None,
) -> ImportSummary:
    """Import ``files`` and publish a tagging message for each new asset instead of tagging.

    Only new assets are published: a file already in the catalog and still ``pending`` has its
    message in the queue already (a second would tag it twice), or, stored while the broker was
    down, gets one from ``imgtag requeue --pending``; the summary counts them (``already_pending``).
    If RabbitMQ cannot be reached the originals are still stored and their assets stay
    ``pending`` (``imgtag requeue --pending`` publishes them later); the summary says so.
    """

    summary = ImportSummary()
    summary.published = 0
    summary.already_pending = 0
    try:
        publisher = broker.Publisher(settings)
    except broker.BrokerUnavailable as exc:
        publisher, summary.broker_error = None, str(exc)
    try:
        for to_tag in _new_assets(
            files, summary, chunk_size, settings.decode_threads, on_progress, pending=False
        ):
            summary.imported += len(to_tag)
            if publisher is not None:
                publisher.publish_many(broker.TaggingMessage.for_asset(asset) for asset, _ in to_tag)
                summary.published += len(to_tag)
            on_progress(len(to_tag))
    finally:
        if publisher is not None:
            publisher.close()
    return summary
