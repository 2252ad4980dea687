"""Replace a file all at once: a reader sees the old file or the new one, never half of either.

The new content goes to a temporary file beside the target (same folder, so the rename stays on
one filesystem), is flushed to disk (``fsync``), given the target's mode and renamed over it with
``os.replace``; if anything fails on the way, the temporary file is removed and the target is as
it was. Everything imgtag writes that another process may read meanwhile goes through here: the
originals and thumbnails, a SavedModel's warm-up records, the LiteRT cache, a dataset's manifest.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Files imgtag writes are readable by the other processes of the deployment (TF Serving, a worker).
DEFAULT_MODE = 0o644


def _fsync(path: str | Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def replacing(path: str | Path, *, mode: int = DEFAULT_MODE, sync_folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; when the block ends without an
    exception, the temporary file replaces ``path`` (flushed to disk first, then given ``mode``).

    For writers that want a path rather than bytes (``tf.io.TFRecordWriter``); the folder is made
    when missing. On an exception the temporary file is removed and the exception goes on.

    Args:
        path: the file to replace (or create).
        mode: its permission bits.
        sync_folder: also flush the folder, so the rename itself survives a power cut (for a file
            another service polls, such as TF Serving's ``models.config``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        _fsync(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    if sync_folder:
        _fsync(path.parent)


def write(
    path: str | Path, data: bytes | str, *, mode: int = DEFAULT_MODE, sync_folder: bool = False
) -> Path:
    """Replace ``path`` with ``data`` all at once (text is written as UTF-8); returns ``path``.

    See :func:`replacing` for ``mode`` and ``sync_folder``.
    """
    with replacing(path, mode=mode, sync_folder=sync_folder) as temporary:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)
