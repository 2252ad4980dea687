"""Every request error is a 4xx (or a 503/507 saying the service or its disk is the problem),
with a reason a client can read; never a bare 500 page.

- :func:`exception_handler` (DRF's ``EXCEPTION_HANDLER``): :func:`catalog.upload_limits.exception_handler`
  first (DRF's own errors and the upload limits), then what a view can meet beyond them: a full
  disk (507), a database that went away (503, ``Retry-After``), a value the database cannot
  store (400: a NUL character, a number out of range), work that ends on its own (503,
  ``Retry-After``: the decode budget held by others, the similar-images index being built).
- :class:`RequestErrorMiddleware`: the same for the web pages (plain text); NUL characters in the
  path, and in the API's query strings, refused (400) before any view: PostgreSQL's text cannot
  hold one (the web pages' forms report their own); Django's HTML error pages become JSON on ``/api/``.
- :class:`catalog.parsers.JSONParser`: JSON bodies nested too deeply are a 400, not a
  ``RecursionError``.
- :func:`document_errors` (a drf-spectacular post-processing hook): the OpenAPI schema documents
  the error answers every operation can give, with their shape, so a client (and schemathesis)
  can rely on the schema alone.

The JSON answers are ``{"detail": "<what went wrong and what to do>", "reason": "<code>"}``.
"""

from __future__ import annotations

import errno

from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import status
from rest_framework.response import Response

from core.errors import Busy

#: Seconds a client is asked to wait before trying again while the database is away.
DATABASE_RETRY_AFTER = 5
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_POSTGRES_DISK_FULL = "53100"  # SQLSTATE disk_full


def _disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return True
    if isinstance(exc, DatabaseError):
        cause = exc.__cause__
        if getattr(getattr(cause, "diag", None), "sqlstate", None) == _POSTGRES_DISK_FULL:
            return True
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL:
            return True
        text = str(exc).lower()
        return "database or disk is full" in text or "no space left on device" in text
    return False


def problem(exc: BaseException) -> tuple[int, str, str, dict[str, str]] | None:
    """``(status, reason, message, headers)`` for an exception a request may meet, or None (a bug)."""
    if _disk_full(exc):
        return (
            status.HTTP_507_INSUFFICIENT_STORAGE,
            "insufficient_storage",
            "the server's disk is full: nothing was stored; try again once an administrator has made room",
            {},
        )
    if isinstance(exc, Busy):  # decodes holding the memory, an index being built
        return (
            status.HTTP_503_SERVICE_UNAVAILABLE,
            exc.reason,
            str(exc),
            {"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, DataError):
        return (
            status.HTTP_400_BAD_REQUEST,
            "invalid_value",
            f"a value in the request cannot be stored or searched for (a NUL character, a number out of range): {exc}".strip(),
            {},
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        return (
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the catalog's database did not answer; nothing was changed: try again in a few seconds",
            {"Retry-After": str(DATABASE_RETRY_AFTER)},
        )
    if isinstance(exc, (RecursionError, OverflowError)):
        return (
            status.HTTP_400_BAD_REQUEST,
            "invalid_value",
            f"a value in the request is out of range ({exc})",
            {},
        )
    return None


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: :func:`catalog.upload_limits.exception_handler`, then :func:`problem`."""
    # lazy: catalog.upload_limits imports DRF's views, whose import reads the settings that name this module
    from catalog.upload_limits import exception_handler as upload_exception_handler

    response = upload_exception_handler(exc, context)
    if response is not None:
        return response
    found = problem(exc)
    if found is None:
        return None  # a bug: Django's 500, with its traceback in the log
    from rest_framework.views import set_rollback  # DRF's views read the settings that name this module

    code, reason, message, headers = found
    set_rollback()
    return Response({"detail": message, "reason": reason}, status=code, headers=headers)


def _answer(
    request: HttpRequest, code: int, reason: str, message: str, headers: dict[str, str]
) -> HttpResponse:
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": message, "reason": reason}, status=code)
    else:
        response = HttpResponse(message, status=code, content_type="text/plain; charset=utf-8")
    for key, value in headers.items():
        response[key] = value
    return response


class RequestErrorMiddleware:
    """Refuses NUL characters in the path and query string (400) and answers the errors of
    :func:`problem` that the web pages' views raise (the API's go through :func:`exception_handler`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return _answer(
                request,
                400,
                "nul_character",
                "the path holds a NUL character (%00), which no name here can contain; remove it",
                {},
            )
        if request.path.startswith("/api/"):  # the web pages show their own form errors
            bad = sorted({k for k, vs in request.GET.lists() for v in [k, *vs] if "\x00" in v})
            if bad:  # as DRF answers a field it refuses: {"name": ["message"]}
                return JsonResponse(
                    {k: ["Null characters are not allowed (%00): remove it."] for k in bad}, status=400
                )
        response = self.get_response(request)
        if (
            request.path.startswith("/api/")
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("text/html")
        ):  # Django's own error pages (no URL matched, a bad Host): JSON on the API too
            reason = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
            answer = JsonResponse(
                {
                    "detail": f"{response.reason_phrase}: {request.path}",
                    "reason": reason.get(response.status_code, "error"),
                },
                status=response.status_code,
            )
            if response.has_header("Allow"):
                answer["Allow"] = response["Allow"]
            return answer
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        found = problem(exc)
        return None if found is None else _answer(request, *found)


# ---------------------------------------------------------------------------- the schema

ERROR_COMPONENT = "Error"
_ERROR_SCHEMA = {
    "type": "object",
    "description": "What went wrong and what to do (`detail`), and often a code (`reason`).",
    "properties": {"detail": {"type": "string"}, "reason": {"type": "string"}},
    "additionalProperties": True,
}
_BAD_REQUEST_SCHEMA = {
    "type": "object",
    "description": "The fields or parameters that are wrong, each with its messages, or `detail`.",
    "additionalProperties": True,
}
_RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait before trying again"}
}
_ALWAYS = {
    "400": ("a parameter or the body is not valid: the answer says which", _BAD_REQUEST_SCHEMA, None),
    "401": ("no or bad token (or session)", None, None),
    "403": ("signed in without the permission this needs", None, None),
    "404": ("no such resource, or a page or cursor that is not one", None, None),
    "429": ("too many bad tokens from this address", None, _RETRY_AFTER),
    "503": (
        "the database did not answer, or other decodes hold the memory: try again later",
        None,
        _RETRY_AFTER,
    ),
    "507": ("the server's disk is full: nothing was stored", None, None),
}
_WITH_BODY = {
    "413": ("the body is too large", None, None),
    "415": ("the body's media type is not one the operation takes", None, None),
}


def document_errors(result: dict, generator, request, public) -> dict:
    """drf-spectacular ``POSTPROCESSING_HOOKS`` entry: add the error answers each operation can
    give (and their ``Error`` shape) where its view did not describe them."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault(ERROR_COMPONENT, _ERROR_SCHEMA)
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("schema", {}).get("type") == "integer":
                    parameter["schema"].setdefault("minimum", 1)  # ids start at 1: 0 is no asset
            answers = dict(_ALWAYS)
            if "requestBody" in operation:
                answers.update(_WITH_BODY)
            responses = operation.setdefault("responses", {})
            for code, (description, schema, headers) in answers.items():
                documented = responses.setdefault(code, {"description": description})
                documented.setdefault("content", {"application/json": {"schema": schema or reference}})
                if headers:
                    documented.setdefault("headers", {}).update(headers)
    return result
