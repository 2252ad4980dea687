"""Ingest: an uploaded or imported original in, a stored file and an asset row (``pending``) out.

:func:`ingest` does one file; the bulk importer calls :func:`prepare` from threads (no database)
and :func:`register` per chunk, in few queries. Content already in the catalog is never stored
twice: the sha256 names both the file and the row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from catalog.conf import imgtag_settings
from catalog.models import Asset
from catalog.services._sql import chunks
from catalog.storage import get_storage
from core.errors import UsageError
from core.imageio import ImageInfo, probe


class UploadTooLarge(UsageError, ValueError):
    """An original over ``IMGTAG_MAX_UPLOAD_MB``; the message names the file and the limit."""

    reason = "too_large"

    def __init__(self, name: str, limit: int, size: int | None = None):
        self.name, self.limit, self.size = name, limit, size
        actual = f" ({size / 2**20:.1f} MiB)" if size is not None else ""
        super().__init__(
            f"{name}: the file{actual} is larger than the upload limit of {limit / 2**20:g} MiB; "
            "downscale or recompress it, or raise IMGTAG_MAX_UPLOAD_MB on the server"
        )


def clean_filename(filename: str) -> str:
    """The base name of an uploaded file, at most 255 characters, never empty."""
    name = os.path.basename(filename.replace("\\", "/")).strip() or "unnamed"
    if len(name) > 255:
        stem, ext = os.path.splitext(name)
        name = stem[: 255 - len(ext[:16])] + ext[:16]
    return name


def validate(data: bytes, filename: str) -> ImageInfo:
    """Check an upload without storing it: size limit first, then the image header.

    Returns:
        The header information (format, width, height).

    Raises:
        UploadTooLarge: more than ``IMGTAG_MAX_UPLOAD_MB``.
        core.imageio.ImageError: not an image we can decode; ``.reason`` names the problem.
    """
    imgtag = imgtag_settings()
    limit = imgtag.max_upload_bytes
    if len(data) > limit:
        raise UploadTooLarge(filename, limit, len(data))
    return probe(data, filename, imgtag.max_pixels, imgtag.max_decode_bytes)


@dataclass(frozen=True)
class Prepared:
    """An original that passed validation and is stored, waiting for its catalog row."""

    sha256: str
    uri: str
    filename: str
    size: int
    info: ImageInfo


def prepare(data: bytes, filename: str, sha256: str | None = None) -> Prepared:
    """Validate and store an original; touches no database, so threads may call it.

    Args:
        data: the encoded image bytes.
        filename: the name it was uploaded or imported under (kept for display).
        sha256: the hex digest of ``data`` when the caller has it already.

    Raises:
        UploadTooLarge, core.imageio.ImageError: see :func:`validate`; nothing is stored.
    """
    info = validate(data, filename)
    # The file goes first: a crash before the row leaves an orphan file that the next upload
    # of the same bytes reuses, never a row without its file. ``put`` is a no-op when present.
    stored_sha, uri = get_storage().put(data, sha256)
    return Prepared(stored_sha, uri, clean_filename(filename), len(data), info)


def register(prepared: Sequence[Prepared]) -> list[tuple[Asset, bool]]:
    """Create the asset rows (status ``pending``) of stored originals, in few queries.

    Returns:
        ``(asset, created)`` per item, in order; content already in the catalog (or repeated
        within ``prepared``) returns the existing asset and ``False``.
    """
    shas = [p.sha256 for p in prepared]
    existing = {
        a.sha256: a for values in chunks(list(set(shas))) for a in Asset.objects.filter(sha256__in=values)
    }
    new = {p.sha256: p for p in prepared if p.sha256 not in existing}
    rows = [
        Asset(
            sha256=p.sha256,
            uri=p.uri,
            filename=p.filename,
            size=p.size,
            width=p.info.width,
            height=p.info.height,
            format=p.info.format,
        )
        for p in new.values()
    ]
    try:
        with transaction.atomic():
            created = {a.sha256: a for a in Asset.objects.bulk_create(rows)}
    except IntegrityError:  # the same bytes were registered concurrently: one at a time
        created = {}
        for row in rows:
            try:
                with transaction.atomic():
                    row.save()
                created[row.sha256] = row
            except IntegrityError:
                existing[row.sha256] = Asset.objects.get(sha256=row.sha256)
    out, first = [], set()
    for sha in shas:
        if sha in created and sha not in first:
            first.add(sha)
            out.append((created[sha], True))
        else:
            out.append((existing.get(sha) or created[sha], False))
    return out


def ingest(data: bytes, filename: str) -> tuple[Asset, bool]:
    """Store an original and create its asset row (status ``pending``), once per content.

    Returns:
        ``(asset, created)``; bytes already in the catalog return that asset and ``False``
        (and are stored again only if their file went missing).

    Raises:
        UploadTooLarge, core.imageio.ImageError: see :func:`validate`; nothing is stored.
    """
    return register([prepare(data, filename)])[0]


def existing_sha256(shas: Iterable[str]) -> set[str]:
    """The hashes among ``shas`` that the catalog already holds (queried in chunks)."""
    found: set[str] = set()
    for chunk in chunks(list(dict.fromkeys(shas))):
        found.update(Asset.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
    return found
