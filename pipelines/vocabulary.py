"""A model's output tags with their thresholds: which scores become tags on an image.

The pretrained tagger's vocabulary is its :class:`~pipelines.tagmap.TagMap` (class
probabilities to tags); an exported model (:mod:`serving.export`) outputs tag scores directly
and carries its vocabulary in ``assets/tags.csv`` (tag, threshold, head, parent).
"""

from __future__ import annotations

import copy
import csv
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.results import TagScore

TAGS_FILE = "tags.csv"
LABELS_FILE = "labels.txt"

log = logging.getLogger(__name__)


def with_thresholds(labels, overrides: Mapping[str, float]):
    """A shallow copy of ``labels`` (a :class:`Vocabulary` or a :class:`~pipelines.tagmap.TagMap`)
    whose ``thresholds`` array has the ``overrides`` (tag name -> threshold); ``labels`` is
    left as it is. Tag names the labels do not know are ignored (logged at debug level).

    Raises:
        ValueError: a threshold outside (0, 1].
    """
    thresholds = np.array(labels.thresholds, copy=True)
    index = labels._index
    for tag, value in overrides.items():
        value = float(value)
        if not 0.0 < value <= 1.0:
            raise ValueError(f"threshold {value} for {tag!r} is not in (0, 1]")
        if tag not in index:
            log.debug("threshold override for %r ignored: not a tag of this model", tag)
            continue
        thresholds[index[tag]] = value
    changed = copy.copy(labels)  # keeps the cached properties (the tag map's sparse matrix)
    object.__setattr__(changed, "thresholds", thresholds)
    return changed


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Tag names in output order, each with a threshold, the head that scores it and its parent."""

    tags: tuple[str, ...]
    thresholds: np.ndarray
    heads: tuple[str, ...]
    parent: dict[str, str]

    @property
    def output_width(self) -> int:
        return len(self.tags)

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {tag: i for i, tag in enumerate(self.tags)}

    def with_thresholds(self, overrides: Mapping[str, float]) -> Vocabulary:
        """A copy whose thresholds have ``overrides`` (tag -> threshold); see :func:`with_thresholds`."""
        return with_thresholds(self, overrides)

    def parents(self, tag: str) -> list[str]:
        """Immediate parent tags of ``tag`` (empty for a top-level or learned tag)."""
        return [self.parent[tag]] if tag in self.parent else []

    def select(self, scores: np.ndarray) -> list[list[TagScore]]:
        """Tags at or above their threshold for each row of ``(n, tags)`` scores, best first
        (equal scores to two decimals: by name)."""
        out = []
        names = np.array(self.tags, dtype=object)
        for row in np.asarray(scores, np.float32):
            keep = np.flatnonzero(row >= self.thresholds)
            keep = keep[np.lexsort((names[keep], -np.round(row[keep], 2)))]
            out.append([TagScore(self.tags[i], round(float(row[i]), 4)) for i in keep])
        return out

    def write(self, directory: Path) -> list[Path]:
        """Write ``tags.csv`` and ``labels.txt`` (one tag per line, for TF Serving clients)."""
        directory.mkdir(parents=True, exist_ok=True)
        tags_file, labels_file = directory / TAGS_FILE, directory / LABELS_FILE
        with tags_file.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["tag", "threshold", "head", "parent"])
            for tag, limit, head in zip(self.tags, self.thresholds, self.heads):
                writer.writerow([tag, f"{float(limit):.6f}", head, self.parent.get(tag, "")])
        labels_file.write_text("".join(t + "\n" for t in self.tags), encoding="utf-8")
        return [tags_file, labels_file]

    @classmethod
    def read(cls, directory: str | Path) -> "Vocabulary":
        """Read ``tags.csv`` from ``directory`` (a SavedModel's ``assets/``)."""
        path = Path(directory) / TAGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tag vocabulary; is this a SavedModel exported by imgtag?")
        tags, limits, heads, parent = [], [], [], {}
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                tags.append(row["tag"])
                limits.append(float(row["threshold"]))
                heads.append(row["head"])
                if row.get("parent"):
                    parent[row["tag"]] = row["parent"]
        return cls(tuple(tags), np.array(limits, np.float32), tuple(heads), parent)
