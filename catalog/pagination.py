"""Pagination of the API's lists (its own module: DRF imports it with its settings).

- :class:`Pagination`: ``?page=`` and ``?page_size=``, for short lists (tags).
- :class:`AssetCursorPagination`: the asset search, newest first, by cursor (keyset): every
  page, deep ones too, is one index range read at a million assets. Its ``count`` is exact up
  to :data:`catalog.facets.EXACT_UP_TO` (1,000) assets, as the gallery's, and an estimate from
  the catalog's sample above that (``count_exact`` says which), so a search never waits on
  counting a large result.
"""

from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

from catalog import facets


class StrictPageSize:
    """``?page_size=`` must be a whole number of at least 1 (more than ``max_page_size`` gives
    that many): anything else is a 400 saying so, where DRF would silently serve its default."""

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None or raw == "":  # absent, or an empty form field
            return self.page_size
        if not (raw.isascii() and raw.isdigit() and int(raw) >= 1):
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"a whole number from 1 to {self.max_page_size}, not {raw[:20]!r}"
                    ]
                }
            )
        return min(int(raw), self.max_page_size)


class Pagination(StrictPageSize, PageNumberPagination):
    """``?page=`` and ``?page_size=`` (at most 500); answers ``count, next, previous, results``."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class AssetCursorPagination(StrictPageSize, CursorPagination):
    """``?cursor=`` (from ``next``/``previous``) and ``?page_size=`` (at most 500); answers
    ``count, count_exact, next, previous, results``."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request):
        """DRF's cursor, refused (404, as DRF does for a cursor it cannot read) unless its position
        is an asset id: a crafted cursor must not reach the database as text or a huge number."""
        cursor = super().decode_cursor(request)
        position = cursor.position if cursor else None
        if position is not None and not (
            position.isascii() and position.isdigit() and 0 < int(position) < 2**63
        ):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        bounds = getattr(view, "kept_bounds", facets.Bounds())  # what the kept counts say of it
        self.size = facets.search_size(queryset, bounds, getattr(view, "rows", None))
        return super().paginate_queryset(facets.counted(queryset, self.size), request, view)

    def get_paginated_response(self, data):
        return Response(
            {
                "count": self.size.count,
                "count_exact": self.size.exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        answer = super().get_paginated_response_schema(schema)
        answer["properties"] = {
            "count": {
                "type": "integer",
                "example": 123,
                "description": "assets that match (see count_exact)",
            },
            "count_exact": {
                "type": "boolean",
                "description": f"false when count is an estimate (results over {facets.EXACT_UP_TO:,} assets)",
            },
            **answer["properties"],
        }
        answer["required"] = ["count", "count_exact", "results"]
        return answer
