"""Content-addressed originals: ``<root>/<aa>/<bb>/<sha256>``, through fsspec.

The root is ``IMGTAG_STORAGE_URL`` (a local folder by default, ``s3://bucket/prefix`` in
production). A file's name is the sha256 of its bytes, so the same bytes are stored once and
a stored file never changes. Writes are all-or-nothing: on a local disk the bytes go to a
temporary name in the target folder and are renamed into place; an object store's PUT is
already atomic. A reader therefore never sees half a file.

Assets keep the full URI (``file:///...`` or ``s3://...``) that :meth:`Storage.put` returns;
that is what the tagging message carries and what :meth:`Storage.open` takes.
"""

from __future__ import annotations

import functools
import hashlib
from typing import BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

from catalog.conf import imgtag_settings
from core import atomic


class Storage:
    """The originals under one fsspec URL.

    Args:
        url: a local path or an fsspec URL such as ``s3://bucket/prefix``.
    """

    def __init__(self, url: str):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def path_for(self, sha256: str) -> str:
        """Path (within the filesystem) of the original with this hash."""
        return f"{self.root}/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def uri_for(self, sha256: str) -> str:
        """Full URI of the original with this hash, e.g. ``file:///.../ab/cd/abcd...``."""
        return self.fs.unstrip_protocol(self.path_for(sha256))

    def put(self, data: bytes, sha256: str | None = None) -> tuple[str, str]:
        """Store ``data`` unless the same bytes are already stored.

        Args:
            data: the original's bytes.
            sha256: their hex digest, when the caller computed it already.

        Returns:
            ``(sha256, uri)`` of the stored original.
        """
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        path = self.path_for(sha256)
        if not self.fs.exists(path):
            if self.is_local:
                atomic.write(path, data)
            else:
                self.fs.pipe_file(path, data)
        return sha256, self.uri_for(sha256)

    def open(self, uri: str) -> BinaryIO:
        """Open a stored original for reading (the caller closes it).

        Raises:
            FileNotFoundError: nothing is stored at ``uri``.
        """
        fs, path = fsspec.core.url_to_fs(uri)
        return fs.open(path, "rb")

    def remove(self, uri: str) -> None:
        """Delete a stored original (the Duplicates page's delete).

        Raises:
            FileNotFoundError: nothing is stored at ``uri``.
        """
        fs, path = fsspec.core.url_to_fs(uri)
        if not fs.exists(path):
            raise FileNotFoundError(uri)
        fs.rm_file(path)

    def read(self, uri: str) -> bytes:
        """The bytes of a stored original.

        Raises:
            FileNotFoundError: nothing is stored at ``uri``.
        """
        fs, path = fsspec.core.url_to_fs(uri)
        return fs.cat_file(path)


@functools.lru_cache(maxsize=8)
def _storage(url: str) -> Storage:
    return Storage(url)


def get_storage() -> Storage:
    """The storage at ``IMGTAG_STORAGE_URL`` (``imgtag_settings().storage_url``), one instance per URL."""
    return _storage(imgtag_settings().storage_url)
