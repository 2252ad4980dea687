"""Odd requests get a 4xx with a JSON reason on the API (plain text on the web pages), a full disk
a 507 with nothing half written, a database that went away a 503 with ``Retry-After``: never a
500. Runs on SQLite and on PostgreSQL (whose text cannot hold a NUL character)."""

from __future__ import annotations

import errno
import json
import os

import pytest
from django.db import OperationalError

from catalog import services
from catalog.models import Asset

pytestmark = pytest.mark.django_db


def assert_json_error(response, status: int, reason: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    if reason:
        assert body["reason"] == reason, body
    return body


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", "/api/tags/a%00b/threshold/"),
        ("put", "/api/tags/a%00b/threshold/"),
        ("delete", "/api/tags/a%00b/threshold/"),
        ("get", "/api/assets/?q=a%00b"),
        ("get", "/api/tags/?prefix=a%00"),
        ("get", "/api/assets/?source=%00"),
    ],
)
def test_a_nul_character_in_the_path_or_query_is_a_400_naming_it(client_with_token, method, url, tag_map):
    body = assert_json_error(getattr(client_with_token, method)(url), 400)
    assert "NUL" in json.dumps(body) or "Null" in json.dumps(body)


def test_a_nul_character_on_the_web_pages_is_a_400_or_their_own_answer(viewer):
    path = viewer.get("/assets/1%00/")
    assert path.status_code == 400 and "NUL" in path.content.decode()
    for url in ("/thresholds/?tag=a%00b", "/search/?q=cat%00", "/thresholds/count/?tag=a%00b&threshold=0.5"):
        assert 400 <= viewer.get(url).status_code < 500, url


def test_a_nul_character_inside_a_json_body_is_a_400(client_with_token, uploaded_asset, tag_map):
    review = client_with_token.post(
        f"/api/assets/{uploaded_asset.pk}/review/", {"tag": "a\x00b", "action": "add"}, format="json"
    )
    assert review.status_code == 400, review.content
    threshold = client_with_token.put(
        "/api/tags/animal/threshold/", {"threshold": 0.5, "model_name": "a\x00b"}, format="json"
    )
    assert threshold.status_code in (400, 409), threshold.content  # never stored, never a 500


@pytest.fixture
def uploaded_asset(image):
    asset, _ = services.ingest(image("red"), "red.png")
    return asset


@pytest.mark.parametrize("depth", [33, 5_000, 200_000])
def test_deeply_nested_json_is_a_400(client_with_token, uploaded_asset, depth):
    body = '{"tag": ' + "[" * depth + "]" * depth + ', "action": "add"}'
    response = client_with_token.post(
        f"/api/assets/{uploaded_asset.pk}/review/", body, content_type="application/json"
    )
    assert "nested deeper than 32" in assert_json_error(response, 400)["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/assets/?min_score=1e999",
        "/api/assets/?min_score=NaN",
        "/api/assets/?min_score=-0.1",
        "/api/assets/?page_size=-1",
        "/api/assets/?page_size=abc",
        "/api/assets/?page_size=0",
        "/api/tags/?page_size=%C2%B2",
    ],
)
def test_bad_numbers_in_the_query_are_a_400(reader, url):
    assert_json_error(reader.get(url), 400)


def test_an_id_past_any_integer_is_a_4xx_not_a_crash(reader, client_with_token):
    huge = 10**30
    for response in (
        reader.get(f"/api/assets/{huge}/"),
        reader.get(f"/api/assets/{huge}/original"),
        client_with_token.post(f"/api/assets/{huge}/review/", {"tag": "cat", "action": "add"}, format="json"),
        reader.get("/api/assets/-1/"),
        reader.get("/api/assets/0/"),
    ):
        assert 400 <= response.status_code < 500 and response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(
    "value", ["1e999", "NaN", "Infinity", "-0.0", "0.0", "1" + "0" * 5000, '"0.5x"', "[0.5]"]
)
def test_bad_thresholds_are_a_400(client_with_token, tag_map, value):
    response = client_with_token.put(
        "/api/tags/animal/threshold/", '{"threshold": ' + value + "}", content_type="application/json"
    )
    assert_json_error(response, 400)


def test_the_schema_says_what_the_api_answers(reader):
    schema = reader.get("/api/schema/", {"format": "json"}).json()
    threshold = schema["components"]["schemas"]["ThresholdUpdateRequest"]["properties"]["threshold"]
    assert (threshold["minimum"], threshold["exclusiveMinimum"], threshold["maximum"]) == (0, True, 1)
    detail = schema["paths"]["/api/assets/{id}/"]["get"]
    assert {"404", "401", "403", "503"} <= set(detail["responses"])
    assert [p["schema"]["minimum"] for p in detail["parameters"] if p["name"] == "id"] == [1]
    upload = schema["paths"]["/api/assets/"]["post"]["responses"]
    assert {"413", "415", "507"} <= set(upload) and "Retry-After" in upload["503"]["headers"]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_is_a_507_with_nothing_half_written(
    client_with_token, image, stored_files, monkeypatch, fake_tagger
):
    """The originals' disk fills while the second of three files is written: the first is
    complete on disk (the next upload of those bytes reuses it), no file is half written, no
    asset row exists, and the client learns why."""
    written = []
    real_fsync = os.fsync

    def fsync(fd):
        if len(written) == 1:
            _disk_full()
        written.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    files = [image("red", seed=1), image("blue", seed=2), image("green", seed=3)]
    response = client_with_token.post(
        "/api/assets/", {"files": [_named(f, i) for i, f in enumerate(files)]}, format="multipart"
    )
    body = assert_json_error(response, 507, "insufficient_storage")
    assert "disk is full" in body["detail"]
    assert Asset.objects.count() == 0
    kept = stored_files()
    assert not [p for p in kept if p.name.endswith(".tmp")]  # no temporary left behind
    assert len(kept) == 1 and kept[0].read_bytes() == files[0]  # complete, named by its content

    monkeypatch.setattr(os, "fsync", real_fsync)  # room again: the same upload works
    again = client_with_token.post(
        "/api/assets/", {"files": [_named(f, i) for i, f in enumerate(files)]}, format="multipart"
    )
    assert again.status_code == 201 and Asset.objects.count() == 3


def _named(data: bytes, i: int):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(f"photo{i}.png", data, content_type="image/png")


def test_a_full_disk_under_the_thumbnail_cache_is_a_507_page(viewer, uploaded_asset, monkeypatch):
    monkeypatch.setattr(os, "fsync", _disk_full)
    response = viewer.get(f"/assets/{uploaded_asset.pk}/thumbnail")
    assert response.status_code == 507 and "disk is full" in response.content.decode()


def test_a_database_that_went_away_is_a_503_with_retry_after(reader, viewer, monkeypatch):
    def gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    from catalog import facets

    monkeypatch.setattr(services, "search", gone)
    monkeypatch.setattr(facets, "filter_assets", gone)
    api = reader.get("/api/assets/?q=cat")
    assert assert_json_error(api, 503, "database_unavailable") and api["Retry-After"] == "5"
    page = viewer.get("/search/?q=cat")
    assert page.status_code == 503 and page["Retry-After"] == "5"


def test_a_json_body_over_the_form_limit_is_a_413(client_with_token, uploaded_asset, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"tag": "x" * 5000, "action": "add"})
    response = client_with_token.post(
        f"/api/assets/{uploaded_asset.pk}/review/", body, content_type="application/json"
    )
    assert 400 <= response.status_code < 500 and response["Content-Type"].startswith("application/json")
