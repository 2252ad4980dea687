"""Thumbnails of the originals: JPEGs that fit in 256 px, made once and kept on disk.

A thumbnail is made with OpenCV (reduced JPEG decode where the size allows, then an area
resize; :func:`pipelines.imageio.load_to_fit`) and encoded at quality 85. It is kept in
``IMGTAG_CACHE_DIR/thumbnails/<sha256>-<size>.jpg``, written under a temporary name and
renamed, so a reader never sees half a file and two processes making the same one at once
are harmless. Its name follows from the original's content, so a cached thumbnail is never
stale; a missing one (a cleaned cache, another pod's disk) is simply made again.
"""

from __future__ import annotations

from pathlib import Path

import cv2
from django.conf import settings

from catalog.models import Asset
from catalog.storage import get_storage, write_local_atomically
from pipelines.imageio import ImageError, load_to_fit

SIZE = 256  # the gallery's
PREVIEW_SIZE = 1024  # the asset page's, for originals a browser cannot show (TIFF)
SIZES = (SIZE, PREVIEW_SIZE)
QUALITY = 85


class ThumbnailUnavailable(LookupError):
    """No thumbnail can be made: the original is missing or cannot be decoded (the message says)."""


def thumbnail_path(sha256: str, size: int = SIZE) -> Path:
    """Where the thumbnail of the original with this hash is cached."""
    return Path(settings.IMGTAG_CACHE_DIR) / "thumbnails" / f"{sha256}-{size}.jpg"


def make_thumbnail(data: bytes, name: str = "<bytes>", size: int = SIZE, quality: int = QUALITY) -> bytes:
    """JPEG bytes of the image shrunk to fit in ``size`` x ``size`` (never enlarged).

    Raises:
        pipelines.imageio.ImageError: the bytes are not an image OpenCV can decode.
    """
    rgb, _ = load_to_fit(
        data, size, name, max_pixels=settings.IMGTAG_MAX_PIXELS, max_decode_bytes=settings.IMGTAG_MAX_DECODE_BYTES
    )
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR array
        raise ImageError(name, "OpenCV could not encode the thumbnail")
    return encoded.tobytes()


def get_thumbnail(asset: Asset, size: int = SIZE) -> Path:
    """The cached thumbnail of ``asset``, made first if it is not there.

    Args:
        asset: the asset (its ``sha256``, ``uri`` and ``filename`` are used).
        size: one of :data:`SIZES`.

    Returns:
        The path of the JPEG file.

    Raises:
        ValueError: a size not in :data:`SIZES`.
        ThumbnailUnavailable: the original is missing from storage or cannot be decoded.
    """
    if size not in SIZES:
        raise ValueError(f"thumbnail size {size} is not one of {', '.join(map(str, SIZES))}")
    path = thumbnail_path(asset.sha256, size)
    if path.is_file() and path.stat().st_size > 0:
        return path
    try:
        data = get_storage().read(asset.uri)
    except FileNotFoundError:
        raise ThumbnailUnavailable(
            f"{asset.filename}: the original is missing from storage at {asset.uri}"
        ) from None
    try:
        jpeg = make_thumbnail(data, asset.filename, size)
    except ImageError as exc:
        raise ThumbnailUnavailable(str(exc)) from None
    write_local_atomically(str(path), jpeg)
    return path
