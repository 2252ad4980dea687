"""An upload's limits as a client meets them: a file over IMGTAG_MAX_UPLOAD_MB, a request over
IMGTAG_MAX_REQUEST_MB (refused while it streams), Django's limits on files and form fields; each
a 413 with the upload's JSON errors, and nothing stored."""

import dataclasses

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import Asset
from catalog.upload_limits import KeepUpToLimit

pytestmark = pytest.mark.django_db

ASSETS = "/api/assets/"


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def post_files(client, files, field="files"):
    return client.post(ASSETS, {field: files}, format="multipart")


def test_an_oversized_file_is_413_naming_it_and_nothing_is_stored(
    client_with_token, image, settings, fake_tagger, stored_files
):
    small, big = image("red", seed=1), image("blue", seed=2, size=(300, 300))
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, max_upload_bytes=len(small) + 100)
    assert len(big) > settings.IMGTAG.max_upload_bytes
    response = post_files(client_with_token, [upload("small.png", small), upload("big.png", big)])
    assert response.status_code == 413
    [error] = response.json()["errors"]
    assert (error["file"], error["reason"]) == ("big.png", "too_large")
    assert "big.png" in error["error"] and "upload limit" in error["error"]
    assert Asset.objects.count() == 0 and stored_files() == []


def test_a_request_over_the_total_limit_is_413_while_streaming_and_nothing_is_stored(
    client_with_token, image, settings, fake_tagger, stored_files
):
    files = [image("red", seed=i, size=(200, 200)) for i in range(4)]
    assert all(len(f) <= settings.IMGTAG.max_upload_bytes for f in files)  # each file is fine alone
    two_fit = sum(len(f) for f in files[:2]) + 1000  # four do not
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, max_request_bytes=two_fit)
    response = post_files(client_with_token, [upload(f"{i}.png", f) for i, f in enumerate(files)])
    assert response.status_code == 413
    [error] = response.json()["errors"]
    assert error["reason"] == "request_too_large" and "IMGTAG_MAX_REQUEST_MB" in error["error"]
    assert Asset.objects.count() == 0 and stored_files() == [] and fake_tagger.tagged == []
    # a Content-Length over the limit is refused before the body is read
    response = client_with_token.generic(
        "POST",
        ASSETS,
        b"x" * 10,
        content_type="multipart/form-data; boundary=zz",
        CONTENT_LENGTH=str(settings.IMGTAG.max_request_bytes + 1),
    )
    assert response.status_code == 413 and response.json()["errors"][0]["reason"] == "request_too_large"
    two = post_files(client_with_token, [upload(f"{i}.png", f) for i, f in enumerate(files[:2])])
    assert two.status_code == 201 and len(two.json()["assets"]) == 2


def test_too_many_files_in_one_request_is_a_413_json_error(client_with_token, image, settings, stored_files):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    response = post_files(client_with_token, [upload(f"{i}.png", image("red", seed=i)) for i in range(3)])
    assert response.status_code == 413
    assert response.json()["errors"][0]["reason"] == "too_many_files"
    assert stored_files() == []


def test_oversized_form_fields_are_a_413_json_error(client_with_token, image, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = client_with_token.post(
        ASSETS, {"files": [upload("a.png", image("red"))], "note": "x" * 500}, format="multipart"
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["reason"] == "request_too_large"


def test_an_oversized_upload_is_not_kept_whole(rf):
    request = rf.post(ASSETS, {"files": upload("big.bin", b"x" * 100_000)})
    request.upload_handlers.insert(0, KeepUpToLimit(request, 1000))
    assert request.FILES["files"].size == 1001  # enough to know it is too large, no more
