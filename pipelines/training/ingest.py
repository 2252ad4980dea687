"""The ``ingest`` stage: labelled images from trees, manifests and the catalog into one dataset.

Three kinds of source, any number of each:

- **folder-per-tag trees** ``<root>/<tag>/<...>/<image>``: the first-level folder names the
  tag; images anywhere below it count (hidden files and folders, and files without an image
  extension, are skipped);
- **manifests**: CSV with a ``path,tags`` header (tags separated by ``;``) or JSON lines
  ``{"path": ..., "tags": [...] or "a;b"}``; relative paths are relative to the manifest's folder.
  A row without tags is a **negative**, an image no tag is right on (counted in the summary): a
  library exported as it is has many, and they teach each tag what it is not. An optional ``group`` column keeps related images in one split: a crop and the photo it was
  cut from, the frames of one shoot (see :func:`pipelines.training.dataset.split_key`);
- **the catalog**: every asset with at least one tag a person accepted or added
  (review state ``accepted``); its accepted tags are its labels.

An image is identified by the sha256 of its bytes and copied once into the dataset
(``images/<sha[:2]>/<sha><ext>``); the same bytes found several times, in one source or in
several, become one :class:`~pipelines.training.dataset.Example` with the union of tags, sources and
origins, so duplicates can never straddle splits. Only the image header is read
(:func:`core.imageio.probe`): an image whose header cannot be read is kept with width and
height 0, for the ``validate`` stage to report by its origin.

The dataset is written into a temporary folder next to the output and renamed into place, so
a failed run leaves the previous dataset (if any) untouched and a reader never sees half of
one. Files are never rewritten in place, which also keeps DVC's hard-linked cache intact.

**Allowed roots.** Ingest reads files only under its roots (``roots``): ``IMGTAG_INGEST_ROOTS``
where it is set (the platform and the pods: the labelled-data volume and the sample folder),
otherwise the folders and the manifests' folders given on the command line. Every path is
resolved first (``..`` and symlinks too); a folder or manifest outside the roots is not read at
all, and a file outside them (a manifest row naming ``/etc/passwd`` or ``../../x``, a symlink in
a tree pointing at ``/etc/shadow``) is not copied. Each refusal is kept in ``dataset.json``
(``refused``) and named by ``validate``'s ``allowed_paths`` rule, which then fails. A DAG run's
form names folders, never roots, so it cannot widen them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import groupby
from pathlib import Path

from catalog import runtime
from catalog.storage import get_storage
from core import cgroup
from core.errors import UsageError
from core.imageio import IMAGE_EXTENSIONS, ImageError, probe
from pipelines.training import dataset as ds

CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".json-lines")
TAG_SEPARATOR = ";"
_FORMAT_EXTENSIONS = {
    "jpeg": ".jpg",
    "png": ".png",
    "webp": ".webp",
    "bmp": ".bmp",
    "tiff": ".tif",
    "gif": ".gif",
}
_SAFE_SUFFIX = re.compile(r"^\.[a-z0-9]{1,10}$")
_CHUNK = 64  # images read, hashed and probed together (bounds memory)


class IngestError(UsageError, ValueError):
    """A source cannot be ingested; the message names the file (and line) and what to do."""


ROOTS_HINT = (
    "only files under the allowed roots are read (IMGTAG_INGEST_ROOTS, or without it the folders and "
    "manifests' folders given): move the files there, or add their folder to IMGTAG_INGEST_ROOTS"
)


@dataclass(frozen=True)
class Refusal:
    """A file or source that ingest did not read: it lies outside the allowed roots.

    Attributes:
        path: the path as the source named it.
        resolved: where it really is (symlinks and ``..`` resolved).
        source: what named it: ``--folder DIR``, ``<manifest>:<line>``, a tree's folder.
    """

    path: str
    resolved: str
    source: str

    def to_dict(self) -> dict:
        return {**asdict(self), "reason": f"outside the allowed roots; {ROOTS_HINT}"}


class Roots:
    """The folders ingest may read under, resolved; ``None`` reads anywhere (library callers)."""

    def __init__(self, roots: Iterable[str | Path] | None):
        self.folders = None if roots is None else tuple(Path(r).expanduser().resolve() for r in roots)

    def allow(self, path: Path) -> bool:
        """``path``, resolved (symlinks too), lies under a root."""
        if self.folders is None:
            return True
        real = Path(os.path.realpath(path))
        return any(real == root or root in real.parents for root in self.folders)


@dataclass(frozen=True)
class _Entry:
    """One labelled image as a source lists it, before its bytes are read."""

    source: str  # one of pipelines.training.dataset.SOURCES
    origin: str  # the file path or catalog URI, as recorded in Example.origins
    name: str  # a file name: for the image extension and messages
    tags: frozenset[str]
    read: Callable[[], bytes]
    group: str = ""  # images of one group share a split


@dataclass
class IngestSummary:
    """What ``ingest`` wrote; :meth:`to_dict` is the stage's JSON summary.

    Attributes:
        dataset: absolute path of the dataset folder.
        manifest: absolute path of its ``manifest.jsonl``.
        images: distinct images (examples) in the dataset.
        tags: every tag, sorted.
        images_per_split: examples per split (``train``, ``val``, ``test``).
        duplicates_merged: source entries that were the same bytes as an earlier one.
        unreadable: images kept although their header could not be read.
        negatives: images without a tag (manifest rows with an empty ``tags``): no tag is right
            on them, which teaches every tag what it is not.
        per_source: entries read per kind of source (tree files, manifest rows, catalog assets).
        refused: files and sources outside the allowed roots, not read (see :class:`Refusal`).
    """

    dataset: str
    manifest: str
    images: int
    tags: list[str]
    images_per_split: dict[str, int]
    duplicates_merged: int
    unreadable: int
    negatives: int = 0
    per_source: dict[str, int] = field(default_factory=dict)
    refused: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The summary as a JSON-ready dict."""
        return asdict(self)


def ingest(
    out: str | Path,
    *,
    folders: Iterable[str | Path] = (),
    manifests: Iterable[str | Path] = (),
    catalog: bool = False,
    fractions: Sequence[float] = ds.DEFAULT_FRACTIONS,
    salt: str = "",
    progress: bool = False,
    threads: int | None = None,
    roots: Iterable[str | Path] | None = None,
) -> IngestSummary:
    """Gather labelled images from every source into one dataset folder at ``out``.

    Args:
        out: the dataset folder; an existing dataset there is replaced as a whole.
        folders: roots of folder-per-tag trees.
        manifests: CSV (``.csv``) or JSON-lines (``.jsonl``, ``.json-lines``) manifests.
        catalog: also take every catalog asset with an accepted tag (sets up Django).
        fractions: train, val and test shares, summing to 1.
        salt: changes the split assignment as a whole (see :func:`pipelines.training.dataset.split_for`).
        progress: show a progress bar on stderr.
        threads: threads reading and hashing images (default: the cgroup's CPUs, at most 8).
        roots: the only folders files may be read under (see the module docstring); None: anywhere.

    Returns:
        The stage summary.

    Raises:
        IngestError: no source given or no labelled image in them, a source that cannot be
            read (a manifest row names its file and line), or ``out`` is something other than
            a dataset folder. Nothing is written then.
    """
    fractions = tuple(float(f) for f in fractions)
    folders = [Path(f) for f in folders]
    manifests = [Path(m) for m in manifests]
    _check_request(fractions, salt, bool(folders or manifests or catalog))
    out = Path(out).expanduser().resolve()
    _check_output(out)

    entries, refused = _entries(folders, manifests, catalog, Roots(roots))
    per_source = {source: sum(e.source == source for e in entries) for source in ds.SOURCES}
    dataset, unreadable = _write_dataset(out, entries, refused, fractions, salt, progress, threads)
    split_counts = dataset.summary()["images_per_split"]
    return IngestSummary(
        dataset=str(out),
        manifest=str(out / ds.MANIFEST_FILE),
        images=len(dataset.examples),
        tags=dataset.tags,
        images_per_split=split_counts,
        duplicates_merged=len(entries) - len(dataset.examples),
        unreadable=unreadable,
        negatives=sum(1 for e in dataset.examples if not e.tags),
        per_source=per_source,
        refused=[r.to_dict() for r in refused],
    )


def _check_request(fractions: tuple[float, ...], salt: str, any_source: bool) -> None:
    """Raise :class:`IngestError` for split fractions that do not work, or no source at all."""
    try:
        ds.split_for("0" * 64, fractions, salt)
    except ValueError as exc:
        raise IngestError(str(exc)) from None
    if not any_source:
        raise IngestError(
            "nothing to ingest: give at least one folder-per-tag tree (--folder DIR), "
            "manifest (--manifest FILE) or --catalog"
        )


def _entries(
    folders: list[Path], manifests: list[Path], catalog: bool, allowed: Roots
) -> tuple[list[_Entry], list[Refusal]]:
    """Every source's labelled images, and the files and sources refused as outside ``allowed``.

    Raises:
        IngestError: no labelled image in the sources (or every source was refused).
    """
    entries: list[_Entry] = []
    refused: list[Refusal] = []
    for root in folders:
        if allowed.allow(root):
            entries.extend(folder_entries(root, allowed, refused))
        else:
            refused.append(Refusal(str(root), os.path.realpath(root), f"--folder {root}"))
    for manifest in manifests:
        if allowed.allow(manifest):
            entries.extend(manifest_entries(manifest, allowed, refused))
        else:
            refused.append(Refusal(str(manifest), os.path.realpath(manifest), f"--manifest {manifest}"))
    if catalog:
        entries.extend(catalog_entries())
    if not entries and refused:
        named = "; ".join(f"{r.path} ({r.source})" for r in refused[:5])
        raise IngestError(
            f"nothing to ingest: every source lies outside the allowed roots ({named}); {ROOTS_HINT}"
        )
    if not entries:
        raise IngestError(
            "no labelled image in the sources: the manifests are empty and the catalog has no asset "
            "with an accepted tag; accept or add tags in the catalog, or give more sources"
        )
    return entries, refused


def _write_dataset(
    out: Path,
    entries: list[_Entry],
    refused: list[Refusal],
    fractions: tuple[float, ...],
    salt: str,
    progress: bool,
    threads: int | None,
) -> tuple[ds.Dataset, int]:
    """Write the dataset into a staging folder beside ``out``, then put it in ``out``'s place
    (nothing changes at ``out`` if anything fails). Returns it and its count of unreadable images."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.ingest-"))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the dataset is read by other stages and users
        examples, unreadable = _gather(entries, staging, fractions, salt, progress, threads)
        dataset = ds.write(staging, examples)
        if refused:  # named by validate's allowed_paths rule
            summary_file = staging / ds.SUMMARY_FILE
            written = json.loads(summary_file.read_text(encoding="utf-8"))
            written["refused"] = [r.to_dict() for r in refused]
            summary_file.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _replace(staging, out)
    except BaseException:
        _remove_tree(staging)
        raise
    return dataset, unreadable


# ---------------------------------------------------------------------------- sources


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def folder_entries(
    root: str | Path, allowed: Roots | None = None, refused: list | None = None
) -> list[_Entry]:
    """The images of a folder-per-tag tree, one entry per file, in a stable order.

    Args:
        root: a folder whose subfolders are tags (``root/cat/a.jpg``, ``root/cat/indoor/b.png``).
        allowed: the roots files may lie under (symlinks resolved); None: anywhere.
        refused: where the files outside them are recorded (:class:`Refusal`).

    Raises:
        IngestError: ``root`` is not a folder, or holds no image under any tag folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise IngestError(
            f"{root}: no such folder; --folder takes a folder-per-tag tree (<root>/<tag>/<image>)"
        )
    entries = []
    for tag_dir in sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name)):
        tag = ds.normalize_tag(tag_dir.name)
        if not tag:
            continue
        for folder, subfolders, files in os.walk(tag_dir):
            subfolders[:] = sorted(d for d in subfolders if not _is_hidden(d))
            for name in sorted(files):
                if _is_hidden(name) or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                path = Path(folder, name).absolute()
                if allowed is not None and not allowed.allow(path):  # a symlink pointing out
                    if refused is not None:
                        refused.append(Refusal(str(path), os.path.realpath(path), f"the tree {root}"))
                    continue
                entries.append(_Entry("folder", str(path), name, frozenset({tag}), partial(_read_file, path)))
    if not entries and not refused:
        raise IngestError(
            f"{root}: no images in a folder-per-tag tree; expected <root>/<tag>/<image> "
            f"with extensions {', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    return entries


def _split_tags(value) -> list[str]:
    if isinstance(value, str):
        return value.split(TAG_SEPARATOR)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return value
    raise TypeError


def _manifest_entry(
    manifest: Path, line: int, path_value, tags_value, group_value="", allowed: Roots | None = None
) -> _Entry | Refusal:
    where = f"{manifest}:{line}"
    if group_value is None:
        group_value = ""
    if not isinstance(group_value, str):
        raise IngestError(f"{where}: the group must be text")
    if not isinstance(path_value, str) or not path_value.strip():
        raise IngestError(f"{where}: the row has no path")
    try:
        tags = frozenset(t for t in (ds.normalize_tag(t) for t in _split_tags(tags_value)) if t)
    except TypeError:
        raise IngestError(
            f"{where}: tags must be a list of names or one string with {TAG_SEPARATOR!r} between names"
        ) from None
    path = Path(path_value.strip()).expanduser()
    path = (path if path.is_absolute() else manifest.parent / path).absolute()
    if allowed is not None and not allowed.allow(path):  # checked first: nothing is said of files out there
        return Refusal(path_value.strip(), os.path.realpath(path), where)
    if not path.is_file():
        raise IngestError(f"{where}: {path}: no such file (paths are relative to the manifest's folder)")
    return _Entry("manifest", str(path), path.name, tags, partial(_read_file, path), group_value.strip())


def _csv_rows(manifest: Path) -> Iterator[tuple[int, object, object, object]]:
    with manifest.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        header = [str(h).strip().lower() for h in reader.fieldnames or ()]
        if "path" not in header or "tags" not in header:
            raise IngestError(
                f"{manifest}:1: the CSV header must name the columns path and tags (got {header})"
            )
        reader.fieldnames = header
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue  # a blank line
            yield reader.line_num, row.get("path"), row.get("tags") or "", row.get("group") or ""


def _jsonl_rows(manifest: Path) -> Iterator[tuple[int, object, object, object]]:
    for line, row in ds.jsonl_objects(manifest, IngestError, 'an object {"path": ..., "tags": [...]}'):
        yield line, row.get("path"), row.get("tags", []), row.get("group", "")


def manifest_entries(
    manifest: str | Path, allowed: Roots | None = None, refused: list | None = None
) -> list[_Entry]:
    """The rows of a CSV or JSON-lines manifest, checked before any image is read.

    Args:
        manifest: ``.csv`` with a ``path,tags`` header (and optionally ``group``), or ``.jsonl``
            / ``.json-lines`` with one ``{"path": ..., "tags": [...] or "a;b", "group": ...}``
            per line.
        allowed: the roots its paths may lie under (symlinks resolved); None: anywhere.
        refused: where the rows naming files outside them are recorded (:class:`Refusal`).

    Raises:
        IngestError: an unknown extension, a missing manifest, or a row without a path, whose
            file is missing, or without tags (the message names the manifest and line).
    """
    manifest = Path(manifest).expanduser().absolute()
    suffix = manifest.suffix.lower()
    if suffix in CSV_SUFFIXES:
        rows = _csv_rows
    elif suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows
    else:
        raise IngestError(
            f"{manifest}: unknown manifest type {suffix or '(no extension)'}; "
            f"use {', '.join(CSV_SUFFIXES + JSONL_SUFFIXES)}"
        )
    if not manifest.is_file():
        raise IngestError(f"{manifest}: no such manifest")
    try:
        checked = [_manifest_entry(manifest, line, *row, allowed=allowed) for line, *row in rows(manifest)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IngestError(f"{manifest}: cannot read it as {suffix[1:].upper()} text: {exc}") from None
    if refused is not None:
        refused.extend(item for item in checked if isinstance(item, Refusal))
    return [item for item in checked if isinstance(item, _Entry)]


def _read_stored(storage, uri: str, where: str) -> bytes:
    try:
        return storage.read(uri)
    except (FileNotFoundError, OSError) as exc:
        raise IngestError(f"{where}: cannot read the original at {uri}: {exc}") from None


def catalog_entries() -> list[_Entry]:
    """Every catalog asset with at least one accepted tag (added by a person or reviewed).

    Sets up the catalog (Django, migrations) on first use. Suggested and rejected tags are
    left out; an asset's labels are its accepted tags.

    Raises:
        catalog.runtime.CatalogUnavailable: the catalog database cannot be reached.
    """

    runtime.setup()  # PostgreSQL: checked, not migrated (imgtag migrate)
    # Django models: importable only once catalog.runtime.setup() has run
    from catalog.models import AssetTag

    storage = get_storage()
    rows = (
        AssetTag.objects.filter(review=AssetTag.Review.ACCEPTED)
        .order_by("asset_id", "tag__name")
        .values_list("asset_id", "asset__uri", "asset__filename", "tag__name")
    )
    entries = []
    for (asset_id, uri, filename), group in groupby(rows.iterator(), key=lambda row: row[:3]):
        tags = frozenset(t for t in (ds.normalize_tag(row[3]) for row in group) if t)
        if tags:
            where = f"catalog asset {asset_id} ({filename})"
            entries.append(_Entry("catalog", uri, filename, tags, partial(_read_stored, storage, uri, where)))
    return entries


# ---------------------------------------------------------------------------- gathering


def _extension(name: str, fmt: str) -> str:
    """The file extension in the dataset: the source's (lowercase) or else the format's."""
    suffix = Path(name).suffix.lower()
    if _SAFE_SUFFIX.match(suffix):
        return suffix
    return _FORMAT_EXTENSIONS.get(fmt, "")


def _load(entry: _Entry) -> tuple[_Entry, bytes, str, dict]:
    """Read, hash and probe one entry (thread-safe): ``(entry, data, sha256, header fields)``."""
    data = entry.read()
    sha = hashlib.sha256(data).hexdigest()
    try:
        info = probe(data, entry.origin)
        header = {"width": info.width, "height": info.height, "format": info.format.lower()}
    except ImageError:
        header = {"width": 0, "height": 0, "format": ""}
    return entry, data, sha, header


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _gather(
    entries: list[_Entry],
    staging: Path,
    fractions: tuple[float, ...],
    salt: str,
    show_progress: bool,
    threads: int | None,
) -> tuple[list[ds.Example], int]:
    """Copy each distinct image into ``staging`` once; returns the merged examples and how
    many of them are unreadable."""
    merged: dict[str, dict] = {}
    bar = _progress_bar(show_progress)
    workers = threads or min(8, cgroup.available_cpus())
    with bar, ThreadPoolExecutor(workers, thread_name_prefix="ingest") as pool:
        task = bar.add_task("ingest", total=len(entries))
        for chunk in _chunks(entries, _CHUNK):
            for entry, data, sha, header in pool.map(_load, chunk):
                row = merged.get(sha)
                if row is None:
                    row = merged[sha] = _copy_image(staging, entry, data, sha, header)
                row["tags"] |= entry.tags
                if entry.group:
                    row["groups"].add(entry.group)
                row["sources"].add(entry.source)
                row["origins"].add(entry.origin)
            bar.advance(task, len(chunk))
    examples = [_example(sha, row, fractions, salt) for sha, row in merged.items()]
    return examples, sum(1 for e in examples if not e.format)


def _progress_bar(show: bool):
    """A rich progress bar on stderr (disabled unless ``show``)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("ingesting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not show,
    )


def _copy_image(staging: Path, entry: _Entry, data: bytes, sha: str, header: dict) -> dict:
    """Write a first-seen image into ``staging`` under its hash; its row, with empty label sets."""
    relative = f"{ds.IMAGES_DIR}/{sha[:2]}/{sha}{_extension(entry.name, header['format'])}"
    target = staging / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return {
        "path": relative,
        "size": len(data),
        **header,
        "tags": set(),
        "sources": set(),
        "origins": set(),
        "groups": set(),
    }


def _example(sha: str, row: dict, fractions: tuple[float, ...], salt: str) -> ds.Example:
    """A merged image's example: its labels from every listing, its split from its hash (or group)."""
    return ds.Example(
        sha256=sha,
        path=row["path"],
        tags=tuple(sorted(row["tags"])),
        # the same bytes listed in two groups: the first name decides (stable across runs)
        split=ds.split_for(ds.split_key(sha, min(row["groups"], default="")), fractions, salt),
        sources=tuple(sorted(row["sources"])),
        origins=tuple(sorted(row["origins"])),
        width=row["width"],
        height=row["height"],
        format=row["format"],
        size=row["size"],
        group=min(row["groups"], default=""),
    )


# ---------------------------------------------------------------------------- output


def _is_replaceable(out: Path) -> bool:
    """An output folder may be replaced when it is empty or holds a dataset."""
    return out.is_dir() and ((out / ds.MANIFEST_FILE).is_file() or not any(out.iterdir()))


def _check_output(out: Path) -> None:
    if out.exists() and not _is_replaceable(out):
        raise IngestError(
            f"{out}: exists and is not a dataset folder (no {ds.MANIFEST_FILE}); "
            "choose another --out, or remove it first"
        )


def _replace(staging: Path, out: Path) -> None:
    """Rename ``staging`` to ``out``; an existing dataset there is moved aside first, then deleted."""
    if not out.exists():
        os.replace(staging, out)
        return
    _check_output(out)
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    os.replace(out, old)  # replaces the empty folder mkdtemp made
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old, out)
        raise
    _remove_tree(old)


def _remove_tree(path: Path) -> None:
    """Delete a folder, including read-only files (DVC makes tracked files read-only)."""

    def make_writable_and_retry(function, name, _):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            os.chmod(name, stat.S_IRWXU)
            function(name)

    shutil.rmtree(path, onerror=make_writable_and_retry)
