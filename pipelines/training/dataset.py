"""The labelled dataset's schema, in one place: what ingest writes and every later stage reads.

A dataset is a folder (DVC tracks it as one unit)::

    <dataset>/
      images/<sha256[:2]>/<sha256><ext>   each distinct image once, named by content
      manifest.jsonl                      one JSON object per image (see :class:`Example`)
      dataset.json                        summary: tags, counts per split and tag, sources

The split of an image follows from its sha256 alone (:func:`split_for`), so the same image
lands in the same split in every run and on every machine, and an image that two sources
list (a duplicate) is one row that can never straddle two splits. Images a manifest puts in one
``group`` (a crop and its photo, the frames of one shoot) share the group's split instead
(:func:`split_key`), so near-copies cannot straddle splits either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import InvalidValue, UsageError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
MANIFEST_FILE = "manifest.jsonl"
SUMMARY_FILE = "dataset.json"
IMAGES_DIR = "images"
SOURCES = ("folder", "manifest", "catalog")


class DatasetError(UsageError, ValueError):
    """A dataset folder or manifest cannot be read; the message names the file and line."""


def normalize_tag(name: str) -> str:
    """Tags are compared lowercase with single spaces, as the catalog stores them."""
    return " ".join(str(name).split()).lower()


def split_for(sha256: str, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS, salt: str = "") -> str:
    """The split of an image, from its content hash only: stable across runs and machines.

    Args:
        sha256: hex digest of the image bytes.
        fractions: train, val and test shares; they must sum to 1.
        salt: changes the assignment as a whole (a new split for a new study); empty by default.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise InvalidValue(f"split fractions {fractions} must be three shares >= 0 that sum to 1")
    key = sha256 if not salt else hashlib.sha256(f"{salt}:{sha256}".encode()).hexdigest()
    point = int(key[:15], 16) / float(16**15)
    if point < fractions[0]:
        return "train"
    if point < fractions[0] + fractions[1]:
        return "val"
    return "test"


def split_key(sha256: str, group: str = "") -> str:
    """What an image's split is computed from: its own sha256, or its group's.

    A group that is itself a sha256 (the photo a crop was cut from) gives that photo's split;
    any other name is hashed first.
    """
    if not group:
        return sha256
    if len(group) == 64 and all(c in "0123456789abcdef" for c in group):
        return group
    return hashlib.sha256(group.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Example:
    """One labelled image of a dataset (one line of ``manifest.jsonl``).

    Attributes:
        sha256: hex digest of the image bytes; unique within a dataset.
        path: the image inside the dataset folder, ``images/ab/ab12...jpg`` (POSIX, relative).
        tags: normalized tag names, sorted; none for a negative (an image no tag is right on, a
            manifest row without tags).
        split: one of :data:`SPLITS`.
        sources: where the labels came from (``folder``, ``manifest``, ``catalog``), sorted.
        origins: the files or catalog URIs the image was read from.
        width, height: as displayed (after EXIF rotation); 0 when the header could not be read.
        format: image format from the header (``jpeg``, ``png`` ...), empty when unreadable.
        size: bytes.
        group: images of one group share a split (empty: the image alone decides).
    """

    sha256: str
    path: str
    tags: tuple[str, ...]
    split: str
    sources: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    width: int = 0
    height: int = 0
    format: str = ""
    size: int = 0
    group: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, row: dict) -> Example:
        return cls(
            sha256=row["sha256"],
            path=row["path"],
            tags=tuple(row["tags"]),
            split=row["split"],
            sources=tuple(row.get("sources", ())),
            origins=tuple(row.get("origins", ())),
            width=int(row.get("width", 0)),
            height=int(row.get("height", 0)),
            format=row.get("format", ""),
            size=int(row.get("size", 0)),
            group=str(row.get("group", "")),
        )


@dataclass
class Dataset:
    """A dataset folder and its examples."""

    root: Path
    examples: list[Example] = field(default_factory=list)

    @property
    def tags(self) -> list[str]:
        """Every tag that labels at least one example, sorted: the learned head's vocabulary."""
        return sorted({t for e in self.examples for t in e.tags})

    def split(self, name: str) -> list[Example]:
        return [e for e in self.examples if e.split == name]

    def image_path(self, example: Example) -> Path:
        return self.root / example.path

    def summary(self) -> dict:
        counts = {s: {} for s in SPLITS}
        for e in self.examples:
            for t in e.tags:
                counts[e.split][t] = counts[e.split].get(t, 0) + 1
        return {
            "images": len(self.examples),
            "tags": self.tags,
            "images_per_split": {s: len(self.split(s)) for s in SPLITS},
            "negatives": sum(1 for e in self.examples if not e.tags),
            "tag_counts": {s: dict(sorted(c.items())) for s, c in counts.items()},
            "sources": sorted({s for e in self.examples for s in e.sources}),
        }


def write(root: Path, examples: Iterable[Example]) -> Dataset:
    """Write ``manifest.jsonl`` (sorted by sha256, so equal data gives equal bytes) and
    ``dataset.json`` into ``root``; the images must already be in place."""
    root = Path(root)
    dataset = Dataset(root, sorted(examples, key=lambda e: e.sha256))
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_FILE).write_text("".join(e.to_json() + "\n" for e in dataset.examples), encoding="utf-8")
    (root / SUMMARY_FILE).write_text(
        json.dumps(dataset.summary(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return dataset


def jsonl_objects(
    path: Path, error: type[ValueError] = DatasetError, what: str = "a JSON object"
) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file.

    Raises:
        error: a line that is not a JSON object; the message names the file, the line and ``what``
            was expected there.
    """
    with Path(path).open(encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not data
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise error(f"{path}:{number}: not a JSON object ({exc}); expected {what}") from None
            if not isinstance(value, dict):
                raise error(f"{path}:{number}: expected {what}")
            yield number, value


def load(root: str | Path) -> Dataset:
    """Read a dataset folder (or its ``manifest.jsonl``).

    Raises:
        DatasetError: the folder has no manifest, or a line is not a valid example.
    """
    root = Path(root)
    if root.name == MANIFEST_FILE:
        root = root.parent
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: no manifest; run `imgtag ingest ... --out {root}` first")
    examples = []
    for number, row in jsonl_objects(manifest, what="a manifest row"):
        try:
            examples.append(Example.from_dict(row))
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{manifest}:{number}: not a manifest row ({exc})") from None
    return Dataset(root, examples)
