"""Reading the catalog: assets matching a tag query, with their tags, and a JSON view of one."""

from __future__ import annotations

from collections.abc import Mapping

from django.db.models import Prefetch, QuerySet

from catalog.models import Asset, AssetTag
from catalog.query import compile_query


def with_tags(assets: QuerySet[Asset]) -> QuerySet[Asset]:
    """``assets`` with their tag rows (tag and model version joined) fetched in one query."""
    rows = AssetTag.objects.select_related("tag", "model_version", "reviewed_by").order_by(
        "-score", "tag__name"
    )
    return assets.prefetch_related(Prefetch("asset_tags", queryset=rows))


def search(
    query: str,
    *,
    min_score: float = 0.0,
    source: str | None = None,
    review: str | None = None,
    tag_ids: Mapping[str, int] | None = None,
) -> QuerySet[Asset]:
    """Assets matching a tag query, newest first, with their tags prefetched.

    Args:
        query: see :mod:`catalog.query`, e.g. ``'cat AND NOT "coffee mug"'``; blank lists
            every asset (the options below then do not apply).
        min_score, source, review: see :func:`catalog.query.compile_query`.
        tag_ids: the query's tags' ids when already read (:attr:`catalog.facets.Bounds.ids`).

    Raises:
        catalog.query.QuerySyntaxError: the query does not parse (the message says where).
        catalog.query.QueryError: an option is out of range.
    """
    assets = Asset.objects.all()
    if query.strip():
        assets = assets.filter(
            compile_query(query, min_score=min_score, source=source, review=review, ids=tag_ids)
        )
    return with_tags(assets)


def asset_summary(asset: Asset) -> dict:
    """A JSON-ready view of an asset and its tags that count (rejected ones left out)."""
    tags = sorted(
        (row for row in asset.asset_tags.all() if row.review != AssetTag.Review.REJECTED),
        key=lambda row: (-row.score, row.tag.name),
    )
    return {
        "id": asset.pk,
        "sha256": asset.sha256,
        "filename": asset.filename,
        "format": asset.format,
        "width": asset.width,
        "height": asset.height,
        "size": asset.size,
        "status": asset.status,
        "error": asset.error,
        "created_at": asset.created_at.isoformat(),
        "tags": [
            {
                "name": row.tag.name,
                "score": row.score,
                "source": row.source,
                "model_version": str(row.model_version) if row.model_version else None,
                "review": row.review,
            }
            for row in tags
        ],
    }
