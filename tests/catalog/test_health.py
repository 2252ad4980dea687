"""/healthz and /readyz: what Kubernetes probes and load balancers see."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection
from django.test import Client


@pytest.fixture
def probe():
    """A client that comes like a kubelet probe: by the pod's IP, which ALLOWED_HOSTS lacks."""
    return Client(HTTP_HOST="10.42.0.17:8000")


def test_liveness_answers_from_any_host_without_the_database(probe):
    response = probe.get("/healthz")  # no django_db mark: a query here would raise
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_checks_the_database(probe):
    response = probe.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_readiness_is_503_with_the_reason_when_the_database_fails(probe, monkeypatch):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused by db.internal:5432")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = probe.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "connection refused by db.internal:5432" in response.json()["database"]


def test_other_urls_still_check_the_host(probe):
    assert probe.get("/api/assets/").status_code == 400  # DisallowedHost


def test_probes_only_read(probe):
    assert probe.post("/healthz").status_code == 405
