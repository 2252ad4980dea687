"""A model's output tags with their thresholds: which scores become tags on an image.

The pretrained tagger's vocabulary is its :class:`~core.tagmap.TagMap` (class
probabilities to tags); an exported model (:mod:`serving.export`) outputs tag scores directly
and carries its vocabulary in ``assets/tags.csv`` (tag, threshold, head, parent, and the
reason for each threshold).

A trained model has two heads, and :func:`merge` says how their outputs become one score per
tag: **one tag, one score**. A tag both heads know (``cat``: the ImageNet cat classes through
the tag map, and a learned ``cat``) scores the larger of the two, and a broader tag scores at
least as much as any learned tag below it (a learned ``giraffe`` lifts ``animal``). When the
learned head knows the kinds of picture that are not photos of things (:data:`NON_PHOTO`:
``document``, ``screenshot``, ``graphic``, ``texture``), the tags learned from photos (the
general tags and the starter model's) are scaled down by how sure it is of one: a page of text
is a ``document``, not a ``person``. Tags a library trains on its own pictures are not: it may
well teach ``logo`` or ``circle`` on graphics.
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.errors import InvalidValue, MissingFile
from core.results import TagScore
from core.tagmap import (
    ancestors,
    emitted,
    format_threshold,
    implied_columns,
    parse_threshold,
    with_thresholds,
)

if TYPE_CHECKING:
    from core.tagmap import TagMap

TAGS_FILE = "tags.csv"
LABELS_FILE = "labels.txt"
GENERAL, LEARNED, BOTH = "general", "learned", "general+learned"  # which head scores a tag
#: Learned tags that say a picture is not a photo of things; the starter model learns them from
#: drawn pictures (:mod:`pipelines.training.synthetic`).
NON_PHOTO = ("document", "screenshot", "graphic", "texture")
#: General tags that name pictures rather than things, kept on a non-photo (an ImageNet
#: "web site" is a screenshot, a "menu" a document).
PICTURE_TAGS = ("website", "menu", "crossword puzzle", "book cover", "comic book")

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Tag names in output order, each with a threshold, the head that scores it and its parent,
    and (from a calibration) the fallback that gives an otherwise untagged picture its likeliest
    tag (:func:`core.tagmap.emitted`)."""

    tags: tuple[str, ...]
    thresholds: np.ndarray  # inf: never emitted (see ``reasons``)
    heads: tuple[str, ...]
    parent: dict[str, str]
    reasons: dict[str, str] = field(default_factory=dict)  # tag -> why its threshold is what it is
    fallback: np.ndarray | None = None  # per tag, the score of the fallback level (inf: never)
    slope: np.ndarray | None = None  # per tag, how fast its probability of being right rises

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

    @functools.cached_property
    def _implied(self) -> list[np.ndarray]:
        return implied_columns(self.tags, self.parent)

    def select(self, scores: np.ndarray) -> list[list[TagScore]]:
        """Tags at or above their threshold for each row of ``(n, tags)`` scores, and the
        broader tags of those (:func:`core.tagmap.emitted`), best first (equal scores to two
        decimals: by name)."""
        out = []
        names = np.array(self.tags, dtype=object)
        for row in np.asarray(scores, np.float32):
            keep = np.flatnonzero(emitted(row, self.thresholds, self._implied, self.fallback, self.slope))
            keep = keep[np.lexsort((names[keep], -np.round(row[keep], 2)))]
            out.append([TagScore(self.tags[i], round(float(row[i]), 4)) for i in keep])
        return out

    def write(self, directory: Path) -> list[Path]:
        """Write ``tags.csv`` and ``labels.txt`` (one tag per line, for TF Serving clients)."""
        directory.mkdir(parents=True, exist_ok=True)
        tags_file, labels_file = directory / TAGS_FILE, directory / LABELS_FILE
        with tags_file.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["tag", "threshold", "head", "parent", "reason", "fallback", "slope"])
            for j, (tag, limit, head) in enumerate(zip(self.tags, self.thresholds, self.heads, strict=True)):
                fallback = self.fallback[j] if self.fallback is not None else np.inf
                writer.writerow(
                    [
                        tag,
                        format_threshold(limit),
                        head,
                        self.parent.get(tag, ""),
                        self.reasons.get(tag, ""),
                        format_threshold(fallback) if np.isfinite(fallback) else "",
                        f"{float(self.slope[j]):.6f}" if np.isfinite(fallback) else "",
                    ]
                )
        labels_file.write_text("".join(t + "\n" for t in self.tags), encoding="utf-8")
        return [tags_file, labels_file]

    @classmethod
    def read(cls, directory: str | Path) -> Vocabulary:
        """Read ``tags.csv`` from ``directory`` (a SavedModel's ``assets/``)."""
        path = Path(directory) / TAGS_FILE
        if not path.is_file():
            raise MissingFile(f"{path}: no tag vocabulary; is this a SavedModel exported by imgtag?")
        tags, limits, heads, parent, reasons, fallback, slope = [], [], [], {}, {}, [], []
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                tags.append(row["tag"])
                limits.append(parse_threshold(row["threshold"]))
                heads.append(row["head"])
                if row.get("parent"):
                    parent[row["tag"]] = row["parent"]
                if row.get("reason"):
                    reasons[row["tag"]] = row["reason"]
                fallback.append(parse_threshold(row["fallback"]) if row.get("fallback") else np.inf)
                slope.append(float(row["slope"]) if row.get("slope") else 1.0)
        has_fallback = any(np.isfinite(fallback))
        return cls(
            tuple(tags),
            np.array(limits, np.float32),
            tuple(heads),
            parent,
            reasons,
            np.array(fallback, np.float32) if has_fallback else None,
            np.array(slope, np.float32) if has_fallback else None,
        )


@dataclass(frozen=True, eq=False)
class Merge:
    """How a two-headed model's outputs become one score per tag of its :attr:`vocabulary`.

    ``score[:, v] = max(general[:, v], max(learned[:, l] for each learned tag l that is v or
    lies below v))`` with ``general = min(probabilities @ general_matrix, 1)``, the tag map's
    scores. :meth:`scores` is the NumPy reference; the exported SavedModel computes the same
    in TensorFlow (:mod:`serving.export`), and a test holds the two together.

    Attributes:
        vocabulary: the tags, in output order: the tag map's, then learned tags it lacks.
        learned_tags: the learned head's tags, in its output order.
        general_matrix: ``(classes, tags)`` 0/1 (zero columns for tags only the learned head
            knows), or None when the general tags are left out.
        lift: ``(learned tags, tags)`` 0/1: which vocabulary columns each learned score reaches
            (its own and its ancestors').
        non_photo: ``(learned tags,)`` 0/1: the learned tags of :data:`NON_PHOTO`.
        gated: ``(tags,)`` 0/1: the columns scaled by ``1 - max(non-photo scores)`` (the tags
            learned from photos, but not the non-photo ones and :data:`PICTURE_TAGS`); all zero
            without non-photo tags.
    """

    vocabulary: Vocabulary
    learned_tags: tuple[str, ...]
    general_matrix: np.ndarray | None
    lift: np.ndarray
    non_photo: np.ndarray | None = None
    gated: np.ndarray | None = None

    @property
    def has_gate(self) -> bool:
        return self.non_photo is not None and bool(self.non_photo.any())

    def scores(self, probabilities: np.ndarray | None, learned: np.ndarray) -> np.ndarray:
        """``(n, tags)`` scores from ImageNet ``probabilities`` ``(n, classes)`` and the learned
        head's sigmoid ``learned`` ``(n, learned tags)``."""
        learned = np.asarray(learned, np.float32)
        lifted = (learned[:, :, None] * self.lift[None]).max(axis=1) if len(self.learned_tags) else 0.0
        if self.general_matrix is None:
            scores = np.broadcast_to(lifted, (len(learned), self.vocabulary.output_width)).astype(np.float32)
        else:
            general = np.minimum(np.asarray(probabilities, np.float32) @ self.general_matrix, 1.0)
            scores = np.maximum(general, lifted).astype(np.float32)
        if not self.has_gate:
            return scores
        not_a_photo = (learned * self.non_photo[None]).max(axis=1, keepdims=True)
        return (scores * (1.0 - not_a_photo * self.gated[None])).astype(np.float32)


def merge(
    learned_tags: list[str] | tuple[str, ...],
    thresholds: Mapping[str, float],
    tagmap: TagMap | None,
    *,
    parent: Mapping[str, str] | None = None,
    reasons: Mapping[str, str] | None = None,
    fallback: Mapping[str, float] | None = None,
    slope: Mapping[str, float] | None = None,
    photo_tags: Collection[str] | None = None,
) -> Merge:
    """The merged vocabulary of the general tags (``tagmap``; None leaves them out) and the
    learned ones.

    Args:
        learned_tags: the learned head's tags, in output order.
        thresholds: a threshold for every learned tag, and for any general tag whose threshold
            a calibration chose (the tag map's own otherwise); ``inf`` turns a tag off.
        parent: the tag hierarchy (default: ``tagmap.parent``, which includes
            ``tag_hierarchy.csv``); a tag's parent is kept when both are in the vocabulary.
        reasons: why each threshold is what it is (written to ``tags.csv``).
        fallback, slope: the fallback threshold and slope of the tags that have one
            (:func:`core.tagmap.emitted`), from a calibration.
        photo_tags: the learned tags learned from photos alone, which a non-photo fades out
            with the general tags (the starter model's; None: every learned tag).

    Raises:
        ValueError: a learned tag has no threshold.
    """
    missing = [t for t in learned_tags if t not in thresholds]
    if missing:
        raise InvalidValue(
            f"no threshold for the learned tags {missing}; run `imgtag evaluate` on this model"
        )
    parent = dict(parent if parent is not None else (tagmap.parent if tagmap is not None else {}))
    general = list(tagmap.tags) if tagmap is not None else []
    known = set(general)
    tags = general + [t for t in learned_tags if t not in known]
    index = {t: i for i, t in enumerate(tags)}
    heads, limits = _heads_and_limits(tags, known, set(learned_tags), thresholds, tagmap)
    lift = _lift(learned_tags, parent, index, len(tags))
    vocab_parent = _nearest_parents(tags, parent, index)
    fallbacks = None
    if fallback:
        fallbacks = np.array([fallback.get(t, np.inf) for t in tags], np.float32)
        slopes = np.array([(slope or {}).get(t, 1.0) for t in tags], np.float32)
    vocabulary = Vocabulary(
        tuple(tags),
        limits,
        tuple(heads),
        vocab_parent,
        {t: r for t, r in (reasons or {}).items() if t in index},
        fallbacks,
        slopes if fallbacks is not None else None,
    )
    matrix = None
    if tagmap is not None:  # the tag map's columns first, zero columns for the learned-only tags
        matrix = np.zeros((tagmap.output_width, len(tags)), np.float32)
        matrix[:, : len(general)] = tagmap.matrix
    non_photo, gated = _non_photo_gate(tags, general, learned_tags, photo_tags)
    return Merge(vocabulary, tuple(learned_tags), matrix, lift, non_photo, gated)


def _heads_and_limits(
    tags: Sequence[str],
    known: set[str],
    learned: set[str],
    thresholds: Mapping[str, float],
    tagmap: TagMap | None,
) -> tuple[list[str], np.ndarray]:
    """Each vocabulary tag's head (general, learned or both) and threshold (the given one, else
    the tag map's)."""
    limits = np.empty(len(tags), np.float32)
    heads = []
    for i, tag in enumerate(tags):
        in_general, in_learned = tag in known, tag in learned
        heads.append(BOTH if in_general and in_learned else GENERAL if in_general else LEARNED)
        limits[i] = thresholds[tag] if tag in thresholds else tagmap.thresholds[i]
    return heads, limits


def _lift(
    learned_tags: Sequence[str], parent: Mapping[str, str], index: Mapping[str, int], width: int
) -> np.ndarray:
    """``(learned, width)``: 1 where a learned tag's score reaches a vocabulary tag (itself and
    each of its ancestors in the vocabulary)."""
    lift = np.zeros((len(learned_tags), width), np.float32)
    for row, tag in enumerate(learned_tags):
        for reached in (tag, *ancestors(parent, tag)):
            if reached in index:
                lift[row, index[reached]] = 1.0
    return lift


def _nearest_parents(
    tags: Sequence[str], parent: Mapping[str, str], index: Mapping[str, int]
) -> dict[str, str]:
    """Each tag's nearest ancestor that is in the vocabulary (tags without one are left out)."""
    vocab_parent = {}
    for tag in tags:
        nearest = next((a for a in ancestors(parent, tag) if a in index), None)
        if nearest is not None:
            vocab_parent[tag] = nearest
    return vocab_parent


def _non_photo_gate(
    tags: Sequence[str],
    general: Sequence[str],
    learned_tags: Sequence[str],
    photo_tags: Collection[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(non_photo, gated)``: which learned tags say "not a photo", and which vocabulary tags
    (learned from photos) a non-photo fades out (none when no learned tag says it)."""
    non_photo = np.array([t in NON_PHOTO for t in learned_tags], np.float32)
    from_photos = set(general) | set(learned_tags if photo_tags is None else photo_tags)
    from_photos -= {*NON_PHOTO, *PICTURE_TAGS}
    gated = np.array([t in from_photos for t in tags], np.float32) * float(non_photo.any())
    return non_photo, gated
