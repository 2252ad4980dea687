"""Near-duplicates: copies of one picture a library collects (re-encoded, resized, cropped,
watermarked, slightly rotated), flagged when they are embedded and grouped for the Duplicates page.

An asset whose embedding is within :data:`DISTANCE` (cosine) of an older asset's, from the same
model version, is flagged a near-duplicate of it (:class:`catalog.models.NearDuplicate`), never
refused; a copy of a copy is linked to the first one, so a group is one original and its copies.
The distance was calibrated in ``tests/bench/bench_near_duplicates.py`` on 300 photos of
``dam-photos`` and their edits (largest distance at 0.99 precision), and measured on 300 others:
precision 0.999, recall 0.997 against the different photos of the same tags.

:func:`delete_assets` removes assets with their stored originals and thumbnails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from catalog import similar
from catalog.models import Asset, AssetEmbedding, NearDuplicate
from catalog.storage import get_storage
from catalog.thumbnails import thumbnail_path
from core import embedding

DISTANCE = 0.2985  # cosine distance (similarity 0.70): tests/bench/bench_near_duplicates.py
NEIGHBOURS = 8  # looked at for each new asset: the nearest older one is among them


def flag(asset_ids: Iterable[int], model_version_id: int) -> list[NearDuplicate]:
    """Flag those of ``asset_ids`` (just embedded by this model version) that are near-duplicates
    of an older asset and not flagged yet; returns the new flags."""
    wanted = set(asset_ids) - set(
        NearDuplicate.objects.filter(asset_id__in=asset_ids).values_list("asset_id", flat=True)
    )
    if not wanted:
        return []
    index = similar.index_for(model_version_id)
    vectors = AssetEmbedding.objects.filter(asset_id__in=wanted, model_version_id=model_version_id)
    near = {
        pk: [
            (o, d)
            for o, d in index.search(embedding.from_bytes(bytes(vector)), NEIGHBOURS)
            if o < pk and d <= DISTANCE
        ]
        for pk, vector in vectors.values_list("asset_id", "vector")
    }  # older assets only: the older one is the original
    candidates = {o for pairs in near.values() for o, _ in pairs}
    # the index may still hold assets deleted or embedded by another model since
    current = set(
        AssetEmbedding.objects.filter(asset_id__in=candidates, model_version_id=model_version_id).values_list(
            "asset_id", flat=True
        )
    )
    found = {
        pk: next(p for p in pairs if p[0] in current)
        for pk, pairs in near.items()
        if any(o in current for o, _ in pairs)
    }
    if not found:
        return []
    roots = dict(
        NearDuplicate.objects.filter(asset_id__in=[o for o, _ in found.values()]).values_list(
            "asset_id", "of_id"
        )
    )
    existing = set(
        Asset.objects.filter(pk__in={roots.get(o, o) for o, _ in found.values()}).values_list("pk", flat=True)
    )
    flags = [
        NearDuplicate(asset_id=pk, of_id=roots.get(other, other), distance=round(distance, 4))
        for pk, (other, distance) in sorted(found.items())
        if roots.get(other, other) in existing
    ]
    NearDuplicate.objects.bulk_create(flags, ignore_conflicts=True)
    return flags


@dataclass
class Group:
    """An original and its near-duplicates, oldest first."""

    original: Asset
    copies: list[tuple[Asset, float]]  # (asset, cosine distance to the original)

    @property
    def assets(self) -> list[Asset]:
        return [self.original, *(a for a, _ in self.copies)]


def groups(limit: int = 50) -> list[Group]:
    """The groups of near-duplicates, the most recently flagged first (at most ``limit``)."""
    roots = list(
        NearDuplicate.objects.order_by("-created_at", "-asset_id")
        .values_list("of_id", flat=True)
        .distinct()[: limit * 8]
    )
    roots = list(dict.fromkeys(roots))[:limit]
    originals = Asset.objects.in_bulk(roots)
    copies: dict[int, list[tuple[Asset, float]]] = {pk: [] for pk in roots}
    for flag in NearDuplicate.objects.filter(of_id__in=roots).select_related("asset").order_by("asset_id"):
        copies[flag.of_id].append((flag.asset, flag.distance))
    return [Group(originals[pk], copies[pk]) for pk in roots if pk in originals and copies[pk]]


def group_of(asset_id: int) -> Group | None:
    """The group an asset is in (as the original or a copy), or None."""
    flag = NearDuplicate.objects.filter(asset_id=asset_id).first()
    root = flag.of_id if flag else asset_id
    original = Asset.objects.filter(pk=root).first()
    copies = [
        (f.asset, f.distance)
        for f in NearDuplicate.objects.filter(of_id=root).select_related("asset").order_by("asset_id")
    ]
    return Group(original, copies) if original is not None and copies else None


def delete_assets(assets: Iterable[Asset]) -> int:
    """Delete assets with their tags, embeddings and flags, then their stored originals and
    cached thumbnails (a copy kept of a deleted original becomes an original); returns how many."""
    assets = list(assets)
    with transaction.atomic():
        # a kept copy of a deleted original: its own copies now hang on it
        for asset in assets:
            survivors = NearDuplicate.objects.filter(of=asset).exclude(asset__in=assets).order_by("asset_id")
            first = survivors.first()
            if first is not None:
                NearDuplicate.objects.filter(of=asset).exclude(asset__in=assets).exclude(pk=first.pk).update(
                    of=first.asset_id
                )
                first.delete()
        Asset.objects.filter(pk__in=[a.pk for a in assets]).delete()
    storage = get_storage()
    thumbnails = thumbnail_path("x").parent
    for asset in assets:
        with contextlib.suppress(FileNotFoundError):
            storage.remove(asset.uri)
        for cached in thumbnails.glob(f"{asset.sha256}-*.jpg") if thumbnails.is_dir() else ():
            cached.unlink(missing_ok=True)
    return len(assets)
