"""Thumbnails: made with OpenCV to fit 256 px, cached on disk by sha256, made again when missing."""

import dataclasses

import cv2
import numpy as np
import pytest

from catalog import services, thumbnails
from catalog.storage import Storage
from core import imageio
from tests.catalog.conftest import make_image

pytestmark = pytest.mark.django_db


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_a_thumbnail_fits_256_px_keeps_the_aspect_and_is_a_jpeg():
    jpeg = thumbnails.make_thumbnail(make_image("red", fmt="jpg", size=(400, 600)), "wide.jpg")
    assert jpeg[:2] == b"\xff\xd8"
    assert decoded(jpeg).shape == (171, 256, 3)
    tall = thumbnails.make_thumbnail(make_image("blue", size=(900, 300)), "tall.png")
    assert decoded(tall).shape == (256, 85, 3)


def test_a_small_image_is_not_enlarged():
    assert decoded(thumbnails.make_thumbnail(make_image("green", size=(48, 64)))).shape == (48, 64, 3)


def test_a_large_jpeg_is_decoded_at_reduced_size(monkeypatch):
    flags = []
    real = imageio.cv2.imdecode

    def spy(buffer, flag):
        flags.append(flag)
        return real(buffer, flag)

    monkeypatch.setattr(imageio.cv2, "imdecode", spy)
    # the largest factor that leaves at least 256 x 128: 2200 x 1100 / 8 = 275 x 137
    rgb, _ = imageio.load_to_fit(make_image("red", fmt="jpg", size=(1100, 2200)), 256)
    assert rgb.shape == (128, 256, 3) and flags == [cv2.IMREAD_REDUCED_COLOR_8]
    # 1400 x 700 / 8 = 175 x 87 would be too small; / 4 = 350 x 175 is not
    rgb, _ = imageio.load_to_fit(make_image("red", fmt="jpg", size=(700, 1400)), 256)
    assert rgb.shape == (128, 256, 3) and flags[1:] == [cv2.IMREAD_REDUCED_COLOR_4]
    imageio.load_to_fit(make_image("red", fmt="png", size=(700, 1400)), 256)
    assert flags[2:] == [cv2.IMREAD_COLOR]  # only libjpeg decodes at reduced size


def test_the_colour_survives(image):
    pixels = decoded(thumbnails.make_thumbnail(image("red", size=(300, 300))))
    b, g, r = pixels.reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80


def test_get_thumbnail_caches_by_sha256_and_remakes_a_missing_one(image, imgtag_home, monkeypatch):
    asset, _ = services.ingest(image("blue", size=(300, 500)), "mug.png")
    reads = []
    real_read = Storage.read
    monkeypatch.setattr(Storage, "read", lambda self, uri: reads.append(uri) or real_read(self, uri))

    path = thumbnails.get_thumbnail(asset)
    assert path == imgtag_home / "cache" / "thumbnails" / f"{asset.sha256}-256.jpg"
    assert decoded(path.read_bytes()).shape == (154, 256, 3)
    assert thumbnails.get_thumbnail(asset) == path and len(reads) == 1  # cached: the original is not read

    path.unlink()
    assert thumbnails.get_thumbnail(asset).is_file() and len(reads) == 2  # made again
    path.write_bytes(b"")  # an empty file (a full disk) is not a thumbnail
    assert thumbnails.get_thumbnail(asset).stat().st_size > 0 and len(reads) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


def test_the_preview_size_and_no_other(image):
    asset, _ = services.ingest(image("red", size=(1200, 1500)), "big.png")
    assert thumbnails.get_thumbnail(asset, 1024).name == f"{asset.sha256}-1024.jpg"
    with pytest.raises(ValueError, match="not one of 256, 1024"):
        thumbnails.get_thumbnail(asset, 100)


def test_an_undecodable_or_missing_original_has_no_thumbnail(image, stored_files):
    broken, _ = services.ingest(image("red")[:150], "cut.png")
    with pytest.raises(thumbnails.ThumbnailUnavailable, match="cut.png"):
        thumbnails.get_thumbnail(broken)
    gone, _ = services.ingest(image("green", seed=4), "gone.png")
    next(f for f in stored_files() if f.name == gone.sha256).unlink()
    with pytest.raises(thumbnails.ThumbnailUnavailable, match="missing from storage"):
        thumbnails.get_thumbnail(gone)


def test_an_original_over_the_decode_budget_has_no_thumbnail_and_costs_no_decode(image, settings):
    """An end user opening a pixel bomb's page must not make the web process decode it."""
    asset, _ = services.ingest(image("red", size=(300, 300)), "huge.png")  # stored under the old budget
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, max_decode_bytes=300 * 300 * 3 - 1)
    with pytest.raises(thumbnails.ThumbnailUnavailable, match="huge.png.*IMGTAG_MAX_DECODE_BYTES"):
        thumbnails.get_thumbnail(asset)


def test_the_thumbnail_cache_keeps_to_its_bound_by_evicting_the_least_recently_used(
    image, settings, imgtag_home
):
    import os

    assets = [services.ingest(image("red", seed=i, size=(300, 300)), f"{i}.png")[0] for i in range(6)]
    paths = [thumbnails.get_thumbnail(a) for a in assets]
    each = max(p.stat().st_size for p in paths)
    for age, path in enumerate(reversed(paths)):  # the first made is the most recently used
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    thumbnails.get_thumbnail(assets[5])  # served again: used now
    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, thumbnail_cache_bytes=4 * each)
    removed = thumbnails.sweep(paths[0].parent, force=True)
    kept = sorted(p.name for p in paths if p.exists())
    assert removed >= 2 and sum(p.stat().st_size for p in paths if p.exists()) <= 0.9 * 4 * each
    assert paths[5].name in kept and paths[0].name in kept  # served again just now; the newest of the rest
    assert not paths[4].exists() and not paths[3].exists()  # the least recently used went first
    assert thumbnails.get_thumbnail(assets[4]).is_file()  # an evicted one is simply made again
