"""An upload's limits, enforced while Django reads the request body, and its error answers.

- :class:`RefuseLargeRequests` stops a request whose body passes ``IMGTAG_MAX_REQUEST_MB`` (all
  files together), at once from its Content-Length or as the files arrive;
- :class:`KeepUpToLimit` keeps at most one byte more than ``IMGTAG_MAX_UPLOAD_MB`` of each file,
  so the view can refuse an oversized file without holding it whole;
- :func:`exception_handler` answers those, and Django's own request limits (too many files or
  form fields, form fields too large), with the upload's JSON errors instead of a 400 page.

The upload view (:class:`catalog.api.AssetListView`) installs both handlers before anything reads
the body; :func:`catalog.api_errors.exception_handler` calls this module's handler first.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import FileUploadHandler
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from catalog.conf import imgtag_settings


def upload_error(file: str | None, reason: str, message: str) -> dict:
    """One entry of an upload's ``errors``: the file (or None for the whole request), a reason code, the message."""
    return {"file": file, "reason": reason, "error": message}


def upload_errors(code: int, errors: list[dict]) -> Response:
    """The answer to a refused upload: ``{"errors": [...]}`` with status ``code``."""
    return Response({"errors": errors}, status=code)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus JSON answers for Django's request-size limits (instead of a 400 page).

    Args:
        exc: the exception a view raised (reading the request body raises Django's own).
        context: DRF's context (view, request).

    Returns:
        The error response, or ``None`` for exceptions that should become a 500.
    """
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        message = f"more than {limit} files in one request; send them in several requests"
        return upload_errors(413, [upload_error(None, "too_many_files", message)])
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = (
            f"the form fields (files not counted) exceed {limit:,} bytes; "
            "send images as files in the 'files' field"
        )
        return upload_errors(413, [upload_error(None, "request_too_large", message)])
    if isinstance(exc, RequestTooLarge):
        limit = imgtag_settings().max_request_bytes
        message = (
            f"the request is larger than {limit / 2**20:,.0f} MiB (IMGTAG_MAX_REQUEST_MB, all files "
            "together); nothing was stored: send the files in several requests"
        )
        return upload_errors(413, [upload_error(None, "request_too_large", message)])
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return Response({"detail": f"more than {limit} form fields"}, status=400)
    return drf_exception_handler(exc, context)


class RequestTooLarge(Exception):
    """The upload request's body is over ``IMGTAG_MAX_REQUEST_BYTES`` (all files together)."""


class RefuseLargeRequests(FileUploadHandler):
    """Stops reading an upload once the request's body passes ``limit`` bytes: at once when its
    Content-Length says so, else when the files received so far add up to more. Nothing is
    stored: the view has not run yet, and the error becomes a 413 (:func:`exception_handler`)."""

    def __init__(self, request, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > self.limit:
            raise RequestTooLarge(content_length)
        return None

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            raise RequestTooLarge(self.received)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


class KeepUpToLimit(FileUploadHandler):
    """Passes on at most ``limit + 1`` bytes of each uploaded file to the next handlers.

    An oversized file is then refused as too large without being held whole in memory or on
    disk; the view sees a size above the limit and answers 413.
    """

    def __init__(self, request, limit: int):
        super().__init__(request)
        self.limit = limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        room = self.limit + 1 - start
        return raw_data[:room] if room > 0 else None

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler (memory or temporary file) builds the file object
