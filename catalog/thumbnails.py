"""Thumbnails of the originals: JPEGs that fit in 256 px, made once and kept on disk.

A thumbnail is made with OpenCV (reduced JPEG decode where the size allows, then an area
resize; :func:`core.imageio.load_to_fit`) and encoded at quality 85. It is kept in
``IMGTAG_CACHE_DIR/thumbnails/<sha256>-<size>.jpg``, written under a temporary name and
renamed, so a reader never sees half a file and two processes making the same one at once
are harmless. Its name follows from the original's content, so a cached thumbnail is never
stale; a missing one (a cleaned cache, another pod's disk) is simply made again.

The cache is bounded (``IMGTAG_THUMBNAIL_CACHE_MB``): a thumbnail served is marked used (its
modification time), and after writing one a process sweeps the folder now and then (at most
every :data:`SWEEP_EVERY_SECONDS`), removing the least recently used until the cache is back
under 90% of the bound. Plain files rather than a cache library (diskcache would keep them in
SQLite), so that the web server streams them from disk and every process shares them.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2

from catalog.conf import imgtag_settings
from catalog.models import Asset
from catalog.storage import get_storage
from core import atomic, decode_budget
from core.errors import ImgtagError
from core.imageio import ImageError, load_to_fit

SIZE = 256  # the gallery's
PREVIEW_SIZE = 1024  # the asset page's, for originals a browser cannot show (TIFF)
SIZES = (SIZE, PREVIEW_SIZE)
QUALITY = 85


SWEEP_EVERY_SECONDS = 30.0
_last_sweep = 0.0
_sweep_lock = threading.Lock()


class ThumbnailUnavailable(ImgtagError, LookupError):
    """No thumbnail can be made: the original is missing or cannot be decoded (the message says)."""


def thumbnail_path(sha256: str, size: int = SIZE) -> Path:
    """Where the thumbnail of the original with this hash is cached."""
    return Path(imgtag_settings().cache_dir) / "thumbnails" / f"{sha256}-{size}.jpg"


def make_thumbnail(data: bytes, name: str = "<bytes>", size: int = SIZE, quality: int = QUALITY) -> bytes:
    """JPEG bytes of the image shrunk to fit in ``size`` x ``size`` (never enlarged).

    The decode takes its share of the process's decode budget (``IMGTAG_DECODE_MEMORY_MB``),
    waiting at most ``IMGTAG_DECODE_WAIT_SECONDS`` for it: a request must answer.

    Raises:
        core.imageio.ImageError: the bytes are not an image OpenCV can decode.
        core.decode_budget.DecodeBusy: other decodes held the budget for the whole wait.
    """
    settings = imgtag_settings()
    rgb, _ = load_to_fit(
        data,
        size,
        name,
        max_pixels=settings.max_pixels,
        max_decode_bytes=settings.max_decode_bytes,
        budget=decode_budget.configure(settings.decode_memory_bytes),
        wait=settings.decode_wait_seconds,
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
    try:
        if path.stat().st_size > 0:
            os.utime(path)  # used now: the last to be evicted
            return path
    except FileNotFoundError:
        pass
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
    atomic.write(path, jpeg)
    sweep(path.parent)
    return path


def sweep(folder: Path, *, force: bool = False) -> int:
    """Remove the least recently used thumbnails while ``folder`` holds more than the bound
    (``IMGTAG_THUMBNAIL_CACHE_BYTES``), down to 90% of it; at most every
    :data:`SWEEP_EVERY_SECONDS` unless ``force``. Returns how many files it removed."""
    global _last_sweep
    with _sweep_lock:
        if not force and time.monotonic() - _last_sweep < SWEEP_EVERY_SECONDS:
            return 0
        _last_sweep = time.monotonic()
    bound = imgtag_settings().thumbnail_cache_bytes
    files = []
    for entry in os.scandir(folder):
        try:
            if entry.is_file() and entry.name.endswith(".jpg"):
                stat = entry.stat()
                files.append((stat.st_mtime, stat.st_size, entry.path))
        except FileNotFoundError:  # removed meanwhile by another process
            continue
    total = sum(size for _, size, _ in files)
    if total <= bound:
        return 0
    removed = 0
    for _, size, name in sorted(files):  # oldest use first
        if total <= 0.9 * bound:
            break
        try:
            os.unlink(name)
        except FileNotFoundError:
            continue
        total -= size
        removed += 1
    return removed
