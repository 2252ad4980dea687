"""Image embeddings: kept per asset with the model version that made them.

The tagger's exported model computes an embedding (:mod:`core.embedding`, 256 bytes) in the
pass that scores the tags; :func:`record_embeddings` stores it, replacing the asset's previous
one whatever model made that. :func:`record_results` (``tagging``) calls it for every batch it
records, so imports, uploads, the worker and the nightly retag all fill it; ``imgtag
embeddings backfill`` (:func:`assets_without_embedding`) fills the assets tagged before.
Searches read only the embeddings of one model version (:func:`embeddings_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from catalog import duplicates
from catalog.models import Asset, AssetEmbedding, ModelVersion
from catalog.services._sql import SQL_IN_CHUNK
from catalog.storage import get_storage
from core import embedding
from core.errors import UsageError


def record_embeddings(items: Iterable[tuple[Asset, np.ndarray]], model_name: str, model_version: str) -> int:
    """Store ``(asset, int8 embedding)`` pairs made by the model ``model_name:model_version``
    (one upsert for the batch); returns how many were written.

    Raises:
        ValueError: an embedding that is not a 1-d ``int8`` vector; nothing is written.
    """
    rows = {asset.pk: embedding.to_bytes(vector) for asset, vector in items}
    if not rows:
        return 0
    with transaction.atomic(savepoint=False):
        version, _ = ModelVersion.objects.get_or_create(name=model_name, version=model_version)
        now = timezone.now()
        AssetEmbedding.objects.bulk_create(
            [
                AssetEmbedding(asset_id=pk, model_version=version, vector=data, updated_at=now)
                for pk, data in rows.items()
            ],
            batch_size=SQL_IN_CHUNK,
            update_conflicts=True,
            unique_fields=["asset"],
            update_fields=["model_version", "vector", "updated_at"],
        )
    return len(rows)


def record_result_embeddings(results, tagger, asset_of) -> int:
    """The embeddings of a tagger's successful results (those that have one), stored; the
    assets among them that are near-duplicates of older ones are flagged (:mod:`catalog.duplicates`)."""
    items = [(asset_of(r.key), r.embedding) for r in results if r.ok and r.embedding is not None]
    written = record_embeddings(items, tagger.model_name, tagger.model_version)
    if written:
        version = ModelVersion.objects.get(name=tagger.model_name, version=tagger.model_version)
        duplicates.flag([asset.pk for asset, _ in items], version.pk)
    return written


def assets_without_embedding(model_name: str, model_version: str):
    """Stored assets (tagged or not, not failed) with no embedding from this model version,
    by id: what ``imgtag embeddings backfill`` embeds."""
    current = Q(embedding__model_version__name=model_name, embedding__model_version__version=model_version)
    return Asset.objects.exclude(status=Asset.Status.FAILED).exclude(current).order_by("id")


def embeddings_of(
    model_name: str, model_version: str, *, batch: int = 10_000
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(asset ids, int8 embeddings (n, 256))`` of every asset embedded by this model version, in batches by id."""
    version = ModelVersion.objects.filter(name=model_name, version=model_version).first()
    if version is None:
        return
    last = 0
    while True:
        rows = list(
            AssetEmbedding.objects.filter(model_version=version, asset_id__gt=last)
            .order_by("asset_id")
            .values_list("asset_id", "vector")[:batch]
        )
        if not rows:
            return
        ids = np.fromiter((pk for pk, _ in rows), np.int64, len(rows))
        vectors = np.frombuffer(b"".join(bytes(v) for _, v in rows), np.int8).reshape(len(rows), -1)
        yield ids, vectors
        last = int(ids[-1])


@dataclass
class BackfillSummary:
    """What ``imgtag embeddings backfill`` did."""

    embedded: int = 0
    failed: list[dict] = field(default_factory=list)  # {"asset", "filename", "error"}

    def as_dict(self) -> dict:
        return {"embedded": self.embedded, "failed": self.failed}


def backfill(
    tagger, *, batch: int = 256, on_progress: Callable[[int], None] = lambda n: None
) -> BackfillSummary:
    """Embed every asset that has no embedding from ``tagger``'s model (tags are left as they
    are), ``batch`` originals at a time, each batch committed on its own: an interrupted
    backfill goes on where it stopped.

    Args:
        tagger: a :class:`core.tagger.Tagger` whose model makes embeddings (the current one).
        on_progress: called with the number of assets done after each batch.

    Raises:
        UsageError: the model makes no embeddings (the pretrained classifier alone, or TF Serving).
    """
    storage = get_storage()
    summary = BackfillSummary()
    last = 0
    while True:
        assets = list(
            assets_without_embedding(tagger.model_name, tagger.model_version).filter(id__gt=last)[:batch]
        )
        if not assets:
            return summary
        last = assets[-1].pk
        items = []
        for asset in assets:
            try:
                items.append((asset, storage.read(asset.uri), asset.filename))
            except FileNotFoundError:
                summary.failed.append(_failure(asset, f"the original is missing from storage at {asset.uri}"))
        results = list(tagger.tag_images(items))
        if any(r.ok for r in results) and all(r.embedding is None for r in results if r.ok):
            raise UsageError(
                f"the model that tags now ({tagger.model_name}:{tagger.model_version}) makes no embeddings; "
                "tag in process with the starter or a model exported by this version (IMGTAG_PREDICTOR=inprocess)"
            )
        with transaction.atomic():
            summary.embedded += record_result_embeddings(results, tagger, lambda asset: asset)
        summary.failed += [_failure(r.key, str(r.error)) for r in results if not r.ok]
        on_progress(len(assets))


def _failure(asset: Asset, error: str) -> dict:
    return {"asset": asset.pk, "filename": asset.filename, "error": error}
