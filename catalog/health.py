"""Health endpoints for load balancers and Kubernetes probes, answered before any other middleware.

- ``GET /healthz``: the process serves requests (liveness). Never touches the database, so a
  database outage does not get every catalog pod restarted.
- ``GET /readyz``: the database answers a query (readiness); ``503`` with the error otherwise,
  so the pod leaves the Service until the database is back.

Probes reach the pod by its IP, which is not in ``ALLOWED_HOSTS``; answering here, first in
``MIDDLEWARE``, keeps the host check for every other URL instead of allowing any host.
"""

from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse

PATHS = ("/healthz", "/readyz")


def _readiness() -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return JsonResponse(
            {"status": "unavailable", "database": f"{type(exc).__name__}: {exc}".strip()}, status=503
        )
    return JsonResponse({"status": "ok", "database": "ok"})


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path in PATHS:
            if request.method not in ("GET", "HEAD"):
                return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
            if request.path == "/healthz":
                return JsonResponse({"status": "ok"})
            return _readiness()
        return self.get_response(request)
