"""Page-number pagination of the API's lists (its own module: DRF imports it with its settings)."""

from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """``?page=`` and ``?page_size=`` (at most 500); answers ``count, next, previous, results``."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
