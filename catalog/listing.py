"""A page of search results as plain data, for callers that print them (``imgtag search``)."""

from __future__ import annotations

from catalog import facets, services


def search_page(
    query: str,
    *,
    limit: int,
    min_score: float = 0.0,
    source: str | None = None,
    review: str | None = None,
) -> tuple[facets.Size, list[dict]]:
    """How many assets match ``query`` (see :func:`catalog.services.search`; exact up to
    :data:`catalog.facets.EXACT_UP_TO`, an estimate above), and the first ``limit`` of them as
    :func:`catalog.services.asset_summary` dicts.

    Raises:
        catalog.query.QueryError: the query or an option cannot run; the message says why.
    """
    bounds = facets.kept_bounds(query, min_score=min_score, source=source, review=review)
    options = {"min_score": min_score, "source": source, "review": review}
    assets = services.search(query, tag_ids=bounds.ids, **options)
    size = facets.search_size(assets, bounds, facets.walked_rows(query, bounds, **options))
    return size, [services.asset_summary(asset) for asset in assets[:limit]]
