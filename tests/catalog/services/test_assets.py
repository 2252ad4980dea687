"""Ingest: originals stored once by content, refused before anything is stored when bad."""

import dataclasses
import hashlib
import uuid

import pytest

from catalog import services
from catalog.models import Asset
from catalog.storage import Storage, get_storage
from core.imageio import ImageError

pytestmark = pytest.mark.django_db


def test_ingest_stores_the_original_under_its_sha256_and_reads_the_header(image, stored_files, imgtag_home):
    data = image("red", fmt="jpg")
    asset, created = services.ingest(data, "photos/holiday/beach.jpg")
    sha = hashlib.sha256(data).hexdigest()
    assert created
    assert (
        asset.sha256,
        asset.filename,
        asset.format,
        asset.width,
        asset.height,
        asset.size,
        asset.status,
    ) == (sha, "beach.jpg", "JPEG", 64, 48, len(data), "pending")
    assert stored_files() == [imgtag_home / "storage" / sha[:2] / sha[2:4] / sha]
    assert asset.uri == (imgtag_home / "storage" / sha[:2] / sha[2:4] / sha).as_uri()
    assert get_storage().read(asset.uri) == data


def test_the_same_bytes_twice_are_one_asset_stored_once(image, stored_files):
    data = image("blue", seed=3)
    first, created_first = services.ingest(data, "a.png")
    again, created_again = services.ingest(data, "copy of a.png")
    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk and again.filename == "a.png"
    assert Asset.objects.count() == 1
    assert len(stored_files()) == 1


def test_different_bytes_are_different_assets(image, stored_files):
    services.ingest(image("red", seed=1), "a.png")
    services.ingest(image("red", seed=2), "a.png")
    assert Asset.objects.count() == 2
    assert len(stored_files()) == 2


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, this is text and not a picture at all", "not_an_image"),
        (b"%PDF-1.7 a document", "unsupported_format"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated"),
    ],
)
def test_a_bad_file_is_refused_with_its_reason_and_nothing_is_stored(data, reason, stored_files):
    with pytest.raises(ImageError) as refused:
        services.ingest(data, "upload.bin")
    assert refused.value.reason == reason
    assert "upload.bin" in str(refused.value)
    assert Asset.objects.count() == 0 and stored_files() == []


def test_a_file_over_the_size_limit_is_refused_before_anything_is_stored(image, settings, stored_files):
    data = image("red")
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, max_upload_bytes=len(data) - 1)
    with pytest.raises(services.UploadTooLarge) as refused:
        services.ingest(data, "big.png")
    assert "big.png" in str(refused.value) and "IMGTAG_MAX_UPLOAD_MB" in str(refused.value)
    assert Asset.objects.count() == 0 and stored_files() == []


def test_a_decompression_bomb_is_refused_by_the_pixel_limit(image, settings, stored_files):
    settings.IMGTAG = dataclasses.replace(
        settings.IMGTAG, max_pixels=1000
    )  # the image is 64x48 = 3072 pixels
    with pytest.raises(ImageError) as refused:
        services.ingest(image("red"), "bomb.png")
    assert refused.value.reason == "too_many_pixels"
    assert stored_files() == []


def test_existing_sha256_answers_in_bulk(image):
    stored = [services.ingest(image("green", seed=i), f"{i}.png")[0].sha256 for i in range(3)]
    unknown = ["0" * 64, "f" * 64]
    assert services.existing_sha256(iter([*stored, *unknown, stored[0]])) == set(stored)
    assert services.existing_sha256([]) == set()
    assert services.existing_sha256(f"{i:064x}" for i in range(1200)) == set()  # more than one chunk


def test_long_and_odd_filenames_are_kept_readable():
    assert services.clean_filename("C:\\Users\\me\\cat.png") == "cat.png"
    assert services.clean_filename("") == "unnamed"
    long = services.clean_filename("x" * 400 + ".jpeg")
    assert len(long) == 255 and long.endswith(".jpeg")


def test_storage_writes_atomically_and_leaves_no_temporary_file(tmp_path):
    storage = Storage(str(tmp_path / "store"))
    sha, uri = storage.put(b"some bytes")
    assert storage.put(b"some bytes") == (sha, uri)
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == [sha]
    with storage.open(uri) as f:
        assert f.read() == b"some bytes"


def test_storage_works_on_a_non_local_fsspec_filesystem(settings, image):
    settings.IMGTAG = dataclasses.replace(
        settings.IMGTAG, storage_url=f"memory://imgtag-test-{uuid.uuid4().hex}/originals"
    )
    data = image("red", seed=9)
    asset, _ = services.ingest(data, "cloud.png")
    assert asset.uri.startswith("memory://") and asset.uri.endswith(
        f"/{asset.sha256[:2]}/{asset.sha256[2:4]}/{asset.sha256}"
    )
    assert get_storage().read(asset.uri) == data


def test_uploading_again_restores_an_original_that_went_missing(image, stored_files):
    data = image("red", seed=4)
    asset, _ = services.ingest(data, "a.png")
    stored_files()[0].unlink()
    again, created = services.ingest(data, "a.png")
    assert (again.pk, created) == (asset.pk, False)
    assert get_storage().read(asset.uri) == data
