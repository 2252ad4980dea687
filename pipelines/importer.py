"""Bulk import: files and folders into the catalog, deduplicated by sha256, tagged in process.

Work goes in chunks. For each chunk the files are read and hashed in a thread pool, the
catalog is asked once which hashes it already holds, the new originals are stored and their
rows created in one transaction, and then the tagger decodes and tags them in batches, with
the tags of the whole chunk committed in one transaction. Memory stays bounded by the chunk,
whatever the size of the folder.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from pipelines.imageio import IMAGE_EXTENSIONS, ImageError


@dataclass
class ImportSummary:
    imported: int = 0
    duplicates: int = 0
    failed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"imported": self.imported, "duplicates": self.duplicates, "failed": self.failed}


def collect_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files to import: explicit files as given, folders walked for image extensions.

    Raises:
        FileNotFoundError: a path that does not exist (nothing is imported then).
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{raw}: no such file or folder")
    return list(dict.fromkeys(files))


def _read(path: Path) -> tuple[Path, bytes | None, str | None, str | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return path, None, None, f"cannot read: {exc.strerror or exc}"
    return path, data, hashlib.sha256(data).hexdigest(), None


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def import_files(
    files: list[Path],
    tagger,
    *,
    chunk_size: int = 128,
    on_progress: Callable[[int], None] = lambda n: None,
) -> ImportSummary:
    """Import ``files`` into the catalog and tag the new ones with ``tagger``.

    Args:
        files: from :func:`collect_files`.
        tagger: a :class:`pipelines.tagger.Tagger`.
        on_progress: called with the number of files finished after each step.
    """
    from django.db import transaction

    from catalog import services

    summary = ImportSummary()
    seen: set[str] = set()
    with ThreadPoolExecutor(tagger.decode_threads, thread_name_prefix="read") as pool:
        for chunk in _chunks(files, chunk_size):
            loaded = list(pool.map(_read, chunk))
            known = services.existing_sha256(sha for _, _, sha, _ in loaded if sha)
            to_tag = []
            with transaction.atomic():
                for path, data, sha, error in loaded:
                    if error:
                        summary.failed.append({"path": str(path), "error": f"{path}: {error}"})
                    elif sha in known or sha in seen:
                        summary.duplicates += 1
                    else:
                        try:
                            asset, _ = services.ingest(data, path.name)
                        except (ImageError, services.UploadTooLarge) as exc:
                            summary.failed.append({"path": str(path), "error": _message(exc, path)})
                        else:
                            seen.add(sha)
                            to_tag.append((asset, path, str(path)))
            on_progress(len(chunk) - len(to_tag))
            with transaction.atomic():
                tagged = []
                for result in tagger.tag_images(to_tag):
                    if result.ok:
                        tagged.append((result.key, result.tags))
                    else:
                        services.mark_failed(result.key, str(result.error))
                        summary.failed.append({"path": result.name, "error": _message(result.error, result.name)})
                    on_progress(1)
                services.record_tags_batch(
                    tagged, tagger.model_name, tagger.model_version, parents=tagger.tagmap.parents
                )
                summary.imported += len(tagged)
    return summary


def _message(exc: Exception, path) -> str:
    text = str(exc)
    return text if str(path) in text or Path(str(path)).name in text else f"{path}: {text}"
