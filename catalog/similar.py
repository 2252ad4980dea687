"""Similar images: a nearest-neighbour index over the assets' embeddings, one per model version.

The index is `usearch <https://github.com/unum-cloud/usearch>`_'s HNSW graph over the ``int8``
embeddings (:mod:`core.embedding`), cosine distance (tests/bench/bench_vector_index.py
compares it with hnswlib and faiss-cpu). Each process keeps one index per model version in
memory, built from the catalog on first use and brought up to date before every search with
the embeddings written since (:func:`index_for`): an asset tagged a moment ago is found by
the next search. A page or API call never waits on reading more than :data:`INLINE_UP_TO`
embeddings: a larger catch-up (the first build at a million assets takes minutes) runs in a
background thread, and meanwhile a search answers from the index as it is, or, while there is
none yet, :class:`IndexNotReady` (503 with ``Retry-After``; the asset page says so). One
process at a time builds a version's index from the catalog; the others (gunicorn's workers,
replicas sharing the cache folder) wait for it, then load the index it saved
(:meth:`VersionIndex.update`). Only embeddings of one model version are ever in one index, so a search
never compares vectors of two models. Every :data:`SAVE_EVERY` embeddings taken in, the index
is saved to ``IMGTAG_CACHE_DIR/similar/`` (named by the time its next refresh reads from), and a
new process loads it and reads only what was written since, instead of building it again
(``imgtag embeddings backfill`` saves it at its end).

A result's ``score`` is the cosine similarity, 1 for the same picture; an asset deleted since
the index saw it is left out.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from django.db.models import Max

from catalog.conf import imgtag_settings
from catalog.models import Asset, AssetEmbedding, ModelVersion
from core import atomic, embedding
from core.errors import Busy

log = logging.getLogger(__name__)

TOP = 24  # results of a similar-images search
MARGIN = 8  # asked for beyond TOP: deleted or re-embedded assets the index still holds are left out
BATCH = 10_000  # embeddings read at a time
SAVE_EVERY = 10_000  # embeddings taken in before the index is saved again
SETTLE = timedelta(seconds=30)  # how long a written row may take to be seen (see VersionIndex.refresh)
# HNSW's M, ef_construction, ef_search: at a million clustered vectors ef_search 64 found 0.92 of the true
# top 24 and 256 found 0.996, in 5.8 ms at p95 (tests/bench/bench_vector_index.py)
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 256
# embeddings a search reads itself (about a second); a larger catch-up runs in the background
INLINE_UP_TO = 2_000
RETRY_AFTER = 30  # seconds a client is asked to wait while the index is first built


class IndexNotReady(Busy):
    """The similar-images index of a model version is being built and holds nothing yet."""

    reason = "similar_index_building"

    def __init__(self, taken: int, total: int):
        super().__init__(
            f"similar images are being indexed ({taken:,} of {total:,} embeddings so far): "
            "try again in a minute",
            RETRY_AFTER,
        )
        self.taken, self.total = taken, total


@dataclass
class Similar:
    """One asset found near the query, with its cosine similarity (1: the same picture)."""

    asset: Asset
    score: float
    distance: float


class VersionIndex:
    """The embeddings of one model version in a usearch index, updated incrementally."""

    def __init__(self, model_version_id: int, folder: Path | None = None):
        self.model_version_id = model_version_id
        self.index = self._empty()
        self.since = None  # where the next refresh reads from (see refresh; names the saved index)
        self.recent: dict[int, datetime] = {}  # asset id: stamp, of the rows taken in since `since`
        self.unsaved = 0  # embeddings taken in since the index was saved or loaded
        self.folder = folder
        self.lock = threading.Lock()  # the index's graph: searches, and each batch added
        self.refreshing = threading.Lock()  # one refresh at a time (a search's, or the background's)
        self.ready = False  # caught up with the catalog once (loaded, or a refresh finished)
        self.taken = self.total = 0  # the running refresh's progress
        if folder is not None:
            self._load()

    @staticmethod
    def _empty():
        from usearch.index import Index  # only processes that search load the index library

        return Index(
            ndim=embedding.DIMENSIONS,
            metric="cos",
            dtype="i8",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )

    def _saved(self) -> list[Path]:
        """This version's saved indexes, newest first (the name ends with the time its next refresh
        reads from: every row stamped before it was in the index when it was saved)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(self.folder.glob(f"v{self.model_version_id}-*.usearch"), reverse=True)

    def _load(self) -> None:
        for path in self._saved():
            try:
                self.index.load(str(path))
            except (OSError, RuntimeError, ValueError):  # damaged or half copied: the next one, or build
                self.index = self._empty()  # a failed load leaves the index unusable
                continue
            self.since = datetime.fromtimestamp(int(path.stem.split("-")[1]) / 1e6, UTC)
            self.ready = True
            return

    def save(self) -> Path | None:
        """Write the index into the folder (others of this version removed); None without a folder."""
        if self.folder is None or self.since is None or len(self.index) == 0:
            return None
        path = self.folder / f"v{self.model_version_id}-{int(self.since.timestamp() * 1e6):020d}.usearch"
        with atomic.replacing(path) as temporary:
            self.index.save(str(temporary))
        for older in self._saved():
            if older != path:
                older.unlink(missing_ok=True)
        self.unsaved = 0
        return path

    def refresh(self) -> int:
        """Take in the embeddings written since the last refresh; returns how many.

        A transaction stamps its rows (``updated_at``) before it commits, so a row may become
        visible up to :data:`SETTLE` after its stamp. Each refresh therefore reads from
        :data:`SETTLE` before the previous refresh began, and skips the rows of that window it
        has already taken in (same asset, same stamp): what it reads is the last half minute of
        writes, not the index again."""
        began = datetime.now(UTC)
        rows = self._unread()
        newest = rows.aggregate(newest=Max("updated_at"))["newest"]
        added, last = 0, 0
        self.taken = 0
        while newest is not None:
            batch = list(
                rows.filter(asset_id__gt=last, updated_at__lte=newest)
                .order_by("asset_id")
                .values_list("asset_id", "updated_at", "vector")[:BATCH]
            )
            if not batch:
                break
            last = batch[-1][0]
            fresh = [(pk, v) for pk, stamp, v in batch if self.recent.get(pk) != stamp]
            self.recent.update((pk, stamp) for pk, stamp, _ in batch if stamp >= began - SETTLE)
            if fresh:
                with self.lock:  # searches go on between batches
                    self._take_in(fresh)
                added += len(fresh)
            self.taken += len(batch)
        self.since = began - SETTLE
        self.recent = {pk: stamp for pk, stamp in self.recent.items() if stamp >= self.since}
        self.unsaved += added
        self.ready = True
        if self.unsaved >= SAVE_EVERY:
            with self.lock:
                self.save()
        return added

    def _unread(self):
        """The embedding rows the next refresh reads."""
        rows = AssetEmbedding.objects.filter(model_version_id=self.model_version_id)
        return rows if self.since is None else rows.filter(updated_at__gte=self.since)

    def unread_over(self, limit: int) -> bool:
        """Whether the next refresh has more than ``limit`` rows to read (reads at most ``limit + 1``)."""
        return len(self._unread().values_list("asset_id", flat=True)[: limit + 1]) > limit

    def update(self) -> int:
        """:meth:`refresh`; an index not built yet is built by one process at a time (an
        exclusive lock on a file beside the saved indexes): the others wait, then load the index
        it saved and read only what came since, rather than each read every embedding again
        (at a million, minutes of two cores for each gunicorn worker)."""
        if self.since is not None or self.folder is None:
            return self.refresh()
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"v{self.model_version_id}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with self.lock:
                    self._load()  # saved meanwhile by the process that held the lock, if any
                return self.refresh()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def catch_up(self) -> None:
        """:meth:`update` in a background thread: the caller holds :attr:`refreshing`, released here."""
        from django.db import connection

        try:
            added = self.update()
            log.info(
                "similar images: model version %s indexed, %d embeddings read", self.model_version_id, added
            )
        except Exception:  # the next search starts another: it cannot reach a request, so say it here
            log.exception("similar images: indexing model version %s failed", self.model_version_id)
        finally:
            self.refreshing.release()
            connection.close()  # this thread's own connection

    def _take_in(self, rows: list[tuple[int, bytes]]) -> None:
        """Add ``(asset id, vector)`` rows; a vector the index holds for that asset is replaced."""
        keys = np.fromiter((pk for pk, _ in rows), np.uint64, len(rows))
        vectors = np.frombuffer(b"".join(bytes(v) for _, v in rows), np.int8).reshape(len(rows), -1)
        present = np.fromiter((key in self.index for key in keys.tolist()), bool, len(keys))
        if present.any():  # re-embedded: the new vector replaces the old
            self.index.remove(keys[present])
        self.index.add(keys, vectors)

    def search(self, vector: np.ndarray, count: int) -> list[tuple[int, float]]:
        """``(asset id, cosine distance)`` of the ``count`` nearest, nearest first."""
        with self.lock:  # not while a refresh removes and adds
            if len(self.index) == 0:
                return []
            matches = self.index.search(np.asarray(vector, np.int8), min(count, len(self.index)))
        return [(int(k), float(d)) for k, d in zip(matches.keys, matches.distances, strict=True)]


_indexes: dict[int, VersionIndex] = {}
_indexes_lock = threading.Lock()


def index_folder() -> Path:
    """Where indexes are saved: ``IMGTAG_CACHE_DIR/similar``."""
    return Path(imgtag_settings().cache_dir) / "similar"


def index_for(model_version_id: int, *, wait: bool = True) -> VersionIndex:
    """The process's index of this model version's embeddings, up to date with the catalog:
    loaded from :func:`index_folder` when saved there, else built from the catalog.

    ``wait=False`` (pages and API calls): reads at most :data:`INLINE_UP_TO` new embeddings
    itself; more are read by a background thread, and meanwhile the index is returned as it is
    (or, while it holds nothing yet, :class:`IndexNotReady` is raised), as it is while another
    thread refreshes it.

    Raises:
        IndexNotReady: ``wait=False`` and the index is being built.
    """
    with _indexes_lock:
        index = _indexes.get(model_version_id)
        if index is None:
            index = _indexes[model_version_id] = VersionIndex(model_version_id, index_folder())
    if wait:
        with index.refreshing:
            index.update()
        return index
    if index.refreshing.acquire(blocking=False):
        try:
            background = index.unread_over(INLINE_UP_TO)
            if background:
                index.taken, index.total = 0, index._unread().count()  # for the pages' progress note
            else:
                index.refresh()
        except BaseException:
            index.refreshing.release()
            raise
        if background:
            threading.Thread(
                target=index.catch_up, name=f"similar-index-v{model_version_id}", daemon=True
            ).start()  # it releases `refreshing` when done
        else:
            index.refreshing.release()
    if not index.ready:
        raise IndexNotReady(index.taken, index.total)
    return index


def forget_indexes() -> None:
    """Drop the process's indexes (tests, or after a restore of the database)."""
    with _indexes_lock:
        _indexes.clear()


def _results(
    pairs: list[tuple[int, float]], exclude: int | None, count: int, model_version_id: int
) -> list[Similar]:
    """The assets of the index's answer that still exist and are still embedded by its model version
    (an asset tagged again by another model since has left it)."""
    pairs = [(pk, d) for pk, d in pairs if pk != exclude]
    current = set(
        AssetEmbedding.objects.filter(
            asset_id__in=[pk for pk, _ in pairs], model_version_id=model_version_id
        ).values_list("asset_id", flat=True)
    )
    pairs = [(pk, d) for pk, d in pairs if pk in current][:count]
    assets = Asset.objects.in_bulk([pk for pk, _ in pairs])
    return [Similar(assets[pk], round(1.0 - d, 4), d) for pk, d in pairs if pk in assets]


def similar_to_asset(asset: Asset, count: int = TOP, *, wait: bool = True) -> list[Similar]:
    """The ``count`` assets most like ``asset``, best first, among those embedded by the same
    model version as it; empty when it has no embedding yet.

    Raises:
        IndexNotReady: ``wait=False`` and the index is being built (see :func:`index_for`).
    """
    stored = AssetEmbedding.objects.filter(asset=asset).first()
    if stored is None:
        return []
    index = index_for(stored.model_version_id, wait=wait)
    found = index.search(embedding.from_bytes(bytes(stored.vector)), count + 1 + MARGIN)
    return _results(found, asset.pk, count, stored.model_version_id)


def similar_to_vector(
    vector: np.ndarray, model_name: str, model_version: str, count: int = TOP
) -> list[Similar]:
    """The ``count`` assets nearest an embedding made by ``model_name:model_version``, best first."""
    version = ModelVersion.objects.filter(name=model_name, version=model_version).first()
    if version is None:
        return []
    return _results(index_for(version.pk).search(vector, count + MARGIN), None, count, version.pk)


def save_index(model_name: str, model_version: str) -> Path | None:
    """Bring the index of this model version up to date and save it (None: no embeddings from it)."""
    version = ModelVersion.objects.filter(name=model_name, version=model_version).first()
    if version is None:
        return None
    index = index_for(version.pk)
    with index.refreshing, index.lock:
        return index.save()
