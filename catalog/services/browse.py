"""Reading the catalog: assets matching a tag query, with their tags, and a JSON view of one."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from catalog.models import Asset, AssetTag, ModelVersion, Tag
from catalog.query import compile_query


def with_tags(assets: QuerySet[Asset]) -> QuerySet[Asset]:
    """``assets`` with their tag rows (tag and model version joined) fetched in one query."""
    rows = AssetTag.objects.select_related("tag", "model_version", "reviewed_by").order_by(
        "-score", "tag__name"
    )
    return assets.prefetch_related(Prefetch("asset_tags", queryset=rows))


def tag_rows(asset_ids: Sequence[int]) -> list[tuple]:
    """The tag rows of these assets (at most a page: each id is a parameter of its own), as
    plain tuples ``(asset_id, tag name, score, source, model name, model version, review,
    reviewer's username, updated_at)``, best score first, then by name; rejected rows included.

    ``AssetTag.objects.filter(asset_id__in=...).values_list(...)`` in SQL of its own: a search
    page reads this on every request, and the ORM built it in about 0.6 ms of CPU, three times
    the time of the query itself at a million assets (``tests/bench/bench_scale.py``). Time
    stamps come back aware, as the ORM gives them.
    """
    if not asset_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_tag_rows_sql().format(ids=", ".join(["%s"] * len(asset_ids))), list(asset_ids))
        rows = cursor.fetchall()
    if rows and timezone.is_naive(rows[0][-1]):  # SQLite keeps UTC, without a zone: as the ORM does
        zone = connection.timezone
        rows = [(*row[:-1], timezone.make_aware(row[-1], zone)) for row in rows]
    return rows


@functools.cache
def _tag_rows_sql() -> str:
    user = get_user_model()._meta
    column = AssetTag._meta.get_field
    return f"""
SELECT tagged.asset_id, tag.name, tagged.score, tagged.source, model.name, model.version,
       tagged.review, reviewer.{user.get_field(user.model.USERNAME_FIELD).column}, tagged.updated_at
FROM {AssetTag._meta.db_table} AS tagged
JOIN {Tag._meta.db_table} AS tag ON tag.id = tagged.{column("tag").column}
LEFT JOIN {ModelVersion._meta.db_table} AS model ON model.id = tagged.{column("model_version").column}
LEFT JOIN {user.db_table} AS reviewer ON reviewer.{user.pk.column} = tagged.{column("reviewed_by").column}
WHERE tagged.asset_id IN ({{ids}})
ORDER BY tagged.score DESC, tag.name
"""


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
