"""From 1000 ImageNet class probabilities to the tags people search for in a DAM.

The map is two CSV files in ``core/data/`` that a user can edit (or replace, with
``IMGTAG_TAGMAP_DIR``: ``settings.tagmap_dir``, which callers pass to :meth:`TagMap.load`):

- ``imagenet_tags.csv`` — ``index,wnid,label,tag,broader``: each class's readable tag and its
  broader tags from specific to general, ``;``-separated (``egyptian cat`` → ``cat;animal``).
  The tag right after another in a chain is its parent, and must be the same in every row.
- ``tag_thresholds.csv`` — ``tag,threshold`` (and, where a calibration wrote them, the
  ``reason``, ``val_precision``, ``val_recall`` and ``val_positives`` behind each value and the
  ``prior`` threshold it replaced): ``*`` is the default for class tags, ``**`` for broader
  tags; other rows override one tag. ``off`` means the tag is never emitted (its calibration
  showed it cannot reach the target precision). ``TagMap.load(calibrated=False)`` reads the
  priors instead: what the next calibration starts from.
- ``tag_hierarchy.csv`` (optional) — ``tag,broader``: where tags that no ImageNet class carries
  sit in the same hierarchy (``giraffe`` → ``animal``, ``people`` → ``person``), so a learned
  tag of a trained model has a parent like the general ones.

A tag's score is the sum of the probabilities of every class under it (the classes tagged
with it directly or through ``broader``), so broader tags collect the evidence of all their
members: a photo split between "tabby" and "tiger cat" is still confidently a ``cat``.
"""

from __future__ import annotations

import copy
import csv
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from core.errors import UsageError
from core.results import TagScore

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
CLASS_FILE = "imagenet_tags.csv"
THRESHOLD_FILE = "tag_thresholds.csv"
HIERARCHY_FILE = "tag_hierarchy.csv"
OFF = "off"  # a threshold that is never reached: the tag is not emitted
DEFAULT_CLASS_KEY = "*"
DEFAULT_BROADER_KEY = "**"


class TagMapError(UsageError, ValueError):
    """The tag map files are inconsistent; the message names the file, row and problem."""


@dataclass(frozen=True, eq=False)
class TagMap:
    """The class-to-tag matrix, thresholds and tag hierarchy."""

    tags: tuple[str, ...]
    matrix: np.ndarray  # (num_classes, num_tags) of 0/1, float32
    thresholds: np.ndarray  # (num_tags,)
    parent: dict[str, str]  # tag -> its parent tag
    class_tags: tuple[str, ...]  # index -> the class's own tag

    @functools.cached_property
    def _sparse(self):
        from scipy import sparse

        return sparse.csr_array(self.matrix)

    @functools.cached_property
    def _tie_order(self) -> tuple[np.ndarray, np.ndarray]:
        """Ties in score list the narrower tag (fewer classes), then the deeper one, first."""

        def depth(tag: str) -> int:
            return 1 + depth(self.parent[tag]) if tag in self.parent else 0

        return self.matrix.sum(axis=0), np.array([depth(t) for t in self.tags])

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {tag: i for i, tag in enumerate(self.tags)}

    @property
    def output_width(self) -> int:
        """How many class probabilities the model outputs."""
        return self.matrix.shape[0]

    def with_thresholds(self, overrides: Mapping[str, float]) -> TagMap:
        """A copy whose thresholds have ``overrides`` (tag -> threshold), sharing the class-to-tag
        matrix; unknown tags are ignored (see :func:`with_thresholds`)."""
        return with_thresholds(self, overrides)

    def parents(self, tag: str) -> list[str]:
        """Immediate parent tags of ``tag`` (empty for a top-level tag)."""
        return [self.parent[tag]] if tag in self.parent else []

    def class_members(self) -> dict[str, list[str]]:
        """For each tag, the own tags of the ImageNet classes it scores (``cat``: ``tabby cat``,
        ``tiger cat`` ...; a class's own tag: itself)."""
        return {
            tag: sorted({self.class_tags[k] for k in np.flatnonzero(self.matrix[:, j])})
            for j, tag in enumerate(self.tags)
        }

    def ancestors(self, tag: str) -> list[str]:
        """The broader tags of ``tag``, nearest first (``tabby cat`` → ``cat``, ``animal``)."""
        return ancestors(self.parent, tag)

    def scores(self, probabilities: np.ndarray) -> np.ndarray:
        """``(n, num_classes)`` probabilities to ``(n, num_tags)`` tag scores in [0, 1]."""
        # A sparse product: each class has a handful of tags. A dense BLAS call here would
        # start OpenBLAS threads that fight the decoder threads and the model for two cores.
        return np.minimum(np.asarray(probabilities, np.float32) @ self._sparse, 1.0)

    @functools.cached_property
    def _implied(self) -> list[np.ndarray]:
        return implied_columns(self.tags, self.parent)

    def select(self, probabilities: np.ndarray) -> list[list[TagScore]]:
        """Tags at or above their threshold for each image, best first; a tag emitted brings its
        broader tags (:func:`emitted`).

        Scores equal to two decimals list the more specific tag first (``espresso`` before
        ``coffee`` before ``drink``).
        """
        scores = self.scores(probabilities)
        breadth, depth = self._tie_order
        out = []
        for row in scores:
            keep = np.flatnonzero(emitted(row, self.thresholds, self._implied))
            keep = keep[np.lexsort((-depth[keep], breadth[keep], -np.round(row[keep], 2)))]
            out.append([TagScore(self.tags[i], round(float(row[i]), 4)) for i in keep])
        return out

    @classmethod
    def load(cls, directory: str | Path | None = None, *, calibrated: bool = True) -> TagMap:
        """Read and check the CSV files (default: the packaged ones).

        Args:
            directory: the folder of the CSV files (``settings.tagmap_dir``); None: ``core/data``.
            calibrated: False: each threshold a calibration chose is replaced by its ``prior``.
        """
        directory = Path(directory or DATA_DIR)
        class_file, threshold_file = directory / CLASS_FILE, directory / THRESHOLD_FILE
        thresholds = _read_thresholds(threshold_file, calibrated)

        class_tags, members, parent, broader_tags = _read_classes(class_file)
        _read_hierarchy(directory / HIERARCHY_FILE, parent)
        tags = tuple(sorted(members))
        matrix = np.zeros((len(class_tags), len(tags)), dtype=np.float32)
        for j, tag in enumerate(tags):
            matrix[sorted(members[tag]), j] = 1.0
        own_tags = set(class_tags)
        default_class = thresholds.get(DEFAULT_CLASS_KEY, 0.25)
        default_broader = thresholds.get(DEFAULT_BROADER_KEY, 0.35)
        limits = np.array(
            [
                thresholds.get(
                    t, default_class if t in own_tags and t not in broader_tags else default_broader
                )
                for t in tags
            ],
            dtype=np.float32,
        )
        unknown = set(thresholds) - set(tags) - {DEFAULT_CLASS_KEY, DEFAULT_BROADER_KEY}
        if unknown:
            raise TagMapError(f"{threshold_file}: thresholds for unknown tags {sorted(unknown)[:5]}")
        return cls(tags, matrix, limits, parent, tuple(class_tags))


def implied_columns(tags: tuple[str, ...], parent: Mapping[str, str]) -> list[np.ndarray]:
    """For each tag, the columns of its broader tags among ``tags`` (nearest first)."""
    index = {tag: i for i, tag in enumerate(tags)}
    return [np.array([index[a] for a in ancestors(parent, t) if a in index], dtype=np.intp) for t in tags]


def emitted(
    row: np.ndarray,
    thresholds: np.ndarray,
    implied: list[np.ndarray],
    fallback: np.ndarray | None = None,
    slope: np.ndarray | None = None,
) -> np.ndarray:
    """Which tags one image gets: each tag at or above its threshold, and every broader tag of
    those (a ``flamingo`` is a ``bird`` and an ``animal``, whatever the broader tags' own
    thresholds say). A broader tag that is off (an infinite threshold, e.g. a person turned it
    off) stays off. A narrower tag is decided on its own score alone, so a confident
    ``flamingo`` is emitted whether or not ``bird`` reached its threshold.

    ``fallback`` (per tag, inf: never) gives a picture that got none of those tags (directly or
    as a broader tag) its likeliest one instead: of the tags at or above their fallback
    threshold, the one most probably right (``slope``: how fast its probability rises with the
    score's logit), so that a photo of a horse whose every score is modest is still tagged
    ``horse`` rather than nothing.
    """
    keep = row >= thresholds
    _imply(keep, thresholds, implied)
    if fallback is not None and not (keep & np.isfinite(fallback)).any():
        reached = np.isfinite(fallback) & (row >= fallback)
        if reached.any():
            margin = np.full(row.shape, -np.inf)
            margin[reached] = (slope[reached] if slope is not None else 1.0) * (
                logit(row[reached]) - logit(fallback[reached])
            )
            likeliest = np.zeros_like(keep)
            likeliest[int(np.argmax(margin))] = True
            _imply(likeliest, thresholds, implied)
            keep |= likeliest
    return keep


def _imply(keep: np.ndarray, thresholds: np.ndarray, implied: list[np.ndarray]) -> None:
    """Add the broader tags (that are not off) of every tag in ``keep``, in place."""
    for j in np.flatnonzero(keep):
        broader = implied[j]
        if broader.size:
            keep[broader] |= np.isfinite(thresholds[broader])


def logit(values: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` of scores in [0, 1] (clipped 1e-6 from either end)."""
    values = np.clip(np.asarray(values, np.float64), 1e-6, 1 - 1e-6)
    return np.log(values / (1 - values))


def ancestors(parent: Mapping[str, str], tag: str) -> list[str]:
    """The chain of parents of ``tag`` in a ``{tag: parent}`` map, nearest first."""
    chain: list[str] = []
    while tag in parent and parent[tag] not in chain:
        tag = parent[tag]
        chain.append(tag)
    return chain


def parse_threshold(text: str) -> float:
    """A threshold as the CSV files write it: a number in (0, 1], or ``off`` (never emitted).

    Raises:
        ValueError: anything else.
    """
    text = str(text).strip().lower()
    if text in (OFF, "inf"):
        return float("inf")
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"threshold {value} is not in (0, 1]")
    return value


def format_threshold(value: float) -> str:
    """The CSV form of a threshold: six decimals, or ``off``."""
    return f"{float(value):.6f}" if np.isfinite(value) else OFF


def _read_classes(class_file: Path) -> tuple[list[str], dict[str, set[int]], dict[str, str], set[str]]:
    """Read and check ``imagenet_tags.csv``.

    Returns:
        ``(class tags, members, parent, broader tags)``: each ImageNet class's own tag in index
        order; the classes each tag covers (its own and the broader ones in its chain); each
        tag's parent; the tags that appear as a broader tag.
    """
    class_tags: list[str] = []
    members: dict[str, set[int]] = {}
    parent: dict[str, str] = {}
    broader_tags: set[str] = set()
    with open(class_file, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            where = f"{class_file}:{line}"
            try:
                index = int(row["index"])
                own = row["tag"].strip()
                chain = [t.strip() for t in (row.get("broader") or "").split(";") if t.strip()]
            except (KeyError, ValueError, AttributeError) as exc:
                raise TagMapError(f"{where}: expected columns index,wnid,label,tag,broader ({exc})") from None
            if index != len(class_tags):
                raise TagMapError(f"{where}: index {index} out of order, expected {len(class_tags)}")
            if not own:
                raise TagMapError(f"{where}: empty tag")
            class_tags.append(own)
            path = [own, *chain]
            for tag in path:
                members.setdefault(tag, set()).add(index)
            for child, par in pairwise(path):
                if parent.setdefault(child, par) != par:
                    raise TagMapError(
                        f"{where}: tag {child!r} has parent {par!r} here but {parent[child]!r} elsewhere"
                    )
            broader_tags.update(chain)
    return class_tags, members, parent, broader_tags


def _read_thresholds(path: Path, calibrated: bool = True) -> dict[str, float]:
    thresholds: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                tag = row["tag"].strip()
                prior = (row.get("prior") or "").strip()
                value = parse_threshold(row["threshold"] if calibrated or not prior else prior)
            except (KeyError, TypeError, AttributeError):
                raise TagMapError(f"{path}:{line}: expected 'tag,threshold' with a number or 'off'") from None
            except ValueError as exc:
                raise TagMapError(
                    f"{path}:{line}: {exc} for {tag!r} (a number in (0, 1], or 'off')"
                ) from None
            thresholds[tag] = value
    return thresholds


def _read_hierarchy(path: Path, parent: dict[str, str]) -> None:
    """Add the chains of ``tag_hierarchy.csv`` (when present) to ``parent``, checking that every
    tag keeps one parent across both files."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                own = row["tag"].strip()
                chain = [t.strip() for t in (row.get("broader") or "").split(";") if t.strip()]
            except (KeyError, AttributeError):
                raise TagMapError(f"{path}:{line}: expected columns tag,broader") from None
            if not own:
                raise TagMapError(f"{path}:{line}: empty tag")
            path_tags = [own, *chain]
            for child, par in pairwise(path_tags):
                if parent.setdefault(child, par) != par:
                    raise TagMapError(
                        f"{path}:{line}: tag {child!r} has parent {par!r} here but {parent[child]!r} elsewhere"
                    )


def with_thresholds(labels, overrides: Mapping[str, float]):
    """A shallow copy of ``labels`` (a :class:`Vocabulary` or a :class:`~core.tagmap.TagMap`)
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
    fallback = getattr(labels, "fallback", None)
    if fallback is not None:  # a threshold a person set holds for the fallback too
        fallback = np.array(fallback, copy=True)
        for tag, value in overrides.items():
            if tag in index:
                fallback[index[tag]] = max(fallback[index[tag]], float(value))
        object.__setattr__(changed, "fallback", fallback)
    return changed
