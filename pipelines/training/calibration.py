"""Thresholds chosen on held-out labels, and the quality figures people look at.

Labels name a few tags per image (``person``, ``cup``); a model's vocabulary has many more
(``coffee mug``, ``kitchenware``, ``tabby cat``). The tag hierarchy says which labels make a
vocabulary tag right (:func:`evidence`):

- a tag that is itself a label is right when the image has it, or a label below it;
- a broader tag is right when the image has a label below it (``animal``: ``cat``, ``dog`` ...);
- a narrower tag is right when the image has the label above it (``tabby cat``: ``cat``). That
  cannot tell a tabby from a siamese, so its precision is an upper bound.

Tags no label reaches cannot be checked and keep their threshold. A checkable tag's threshold
is the lowest score at which the validation precision reaches the target; a tag the validation
images show cannot reach it is turned ``off`` (never emitted); a tag they cannot judge keeps
its prior threshold (:func:`choose_threshold`). Each choice records its reason.
:func:`quality` then measures the thresholds on the test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from core.tagmap import ancestors

TARGET_PRECISION = 0.9
MIN_POSITIVES = 5  # right validation images a threshold must keep before the labels judge it
CONFIDENCE_Z = 1.645  # one-sided 95%: how sure the images must be that a tag misses the target
# The most images of a library one tag is assumed to be right on. Labelled sets are often far
# denser (92% of the COCO photos show people): a tag more common on validation than this has
# its wrong images weighted up to this share, so that its precision holds in a library where
# it is rarer (without it `person` took 0.34 and tagged the moon).
MAX_PREVALENCE = 0.3
MIN_SUPPORT = 5  # test images a tag needs to count in the common-tags mAP
PERSON = "person"

# Why a tag's threshold is what it is (``thresholds.json``, ``tags.csv``, ``per_tag.csv``).
REACHED = "target_precision"  # the lowest score reaching the target precision on validation
BELOW_TARGET = "below_target_precision"  # the target is out of reach: the tag is off
TOO_FEW = "too_few_examples"  # the validation images cannot tell: the prior threshold stays
NO_EXAMPLE = "no_validation_example"  # no validation image is right for it: the prior stays


def upper_bound_tags(tags: Iterable[str], right: Mapping[str, frozenset[str]], parent: Mapping[str, str]) -> set[str]:
    """The checkable tags whose evidence is only an upper bound: tags below every label that
    makes them right (``tabby cat`` under ``cat``)."""
    return {t for t in tags if t in right and all(label in ancestors(parent, t) for label in right[t])}


def evidence(tags: Sequence[str], labels: Iterable[str], parent: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """For each tag, the labels whose presence makes it right (tags no label reaches are left out).

    Args:
        tags: the vocabulary.
        labels: every label the dataset uses.
        parent: the tag hierarchy, ``{tag: parent}``.
    """
    labels = set(labels)
    below: dict[str, set[str]] = {}  # tag -> labels at or below it
    for label in labels:
        for tag in (label, *ancestors(parent, label)):
            below.setdefault(tag, set()).add(label)
    out = {}
    for tag in tags:
        right = set(below.get(tag, ()))
        if tag not in labels:  # a narrower tag: the nearest label above it (upper bound)
            right.update(next(([a] for a in ancestors(parent, tag) if a in labels), []))
        if right:
            out[tag] = frozenset(right)
    return out


def truth(examples_labels: Sequence[Iterable[str]], tags: Sequence[str], right: Mapping[str, frozenset[str]]):
    """``(n, len(tags))`` 0/1: which tags are right on each image (0 for tags not in ``right``)."""
    y = np.zeros((len(examples_labels), len(tags)), np.float32)
    columns = [(j, right[t]) for j, t in enumerate(tags) if t in right]
    for i, labels in enumerate(examples_labels):
        present = set(labels)
        for j, reached in columns:
            if present & reached:
                y[i, j] = 1.0
    return y


@dataclass(frozen=True)
class Choice:
    """A tag's threshold and why: see the module's reasons."""

    threshold: float  # inf: off
    reason: str
    precision: float | None = None  # validation precision at the threshold (the best reached when off)
    recall: float | None = None
    positives: int = 0  # validation images the tag is right on
    prior: float | None = None  # the threshold before calibration

    def to_dict(self) -> dict:
        return {
            "threshold": float(self.threshold) if np.isfinite(self.threshold) else "off",
            "reason": self.reason,
            "val_precision": self.precision,
            "val_recall": self.recall,
            "val_positives": self.positives,
            "prior": self.prior,
        }


def precision_upper_bound(right: int, emitted: int, z: float = CONFIDENCE_Z) -> float:
    """The Wilson score upper bound of a precision measured as ``right`` of ``emitted``: the
    highest precision these few images do not rule out (one-sided, 95% with the default ``z``)."""
    if emitted <= 0:
        return 1.0
    p = right / emitted
    denominator = 1 + z * z / emitted
    centre = p + z * z / (2 * emitted)
    margin = z * np.sqrt(p * (1 - p) / emitted + z * z / (4 * emitted * emitted))
    return float(min(1.0, (centre + margin) / denominator))


def negative_weight(positives: int, negatives: int, max_prevalence: float = MAX_PREVALENCE) -> float:
    """How much each wrong validation image counts so that the tag's share of the images is at
    most ``max_prevalence`` (1 when it already is)."""
    if positives <= 0 or negatives <= 0:
        return 1.0
    return max(1.0, positives * (1 - max_prevalence) / (negatives * max_prevalence))


def choose_threshold(
    y: np.ndarray,
    scores: np.ndarray,
    target: float,
    min_positives: int = MIN_POSITIVES,
    *,
    prior: float = 0.5,
    upper_bound: bool = False,
) -> Choice:
    """The :class:`Choice` for one tag from its validation truth ``y`` and ``scores``.

    Only thresholds that keep at least ``min_positives`` right images count (three right
    images say little about a threshold); a tag right on more than :data:`MAX_PREVALENCE` of
    the images has its wrong images weighted up to that share (:func:`negative_weight`). Then:

    - the lowest of them whose precision reaches ``target`` is chosen (``upper_bound``: the
      labels can only show the tag wrong, so the threshold never drops below ``prior``);
    - when none reaches it and the images rule the target out (the best precision's upper
      bound, :func:`precision_upper_bound`, is below it) the tag is off;
    - otherwise the images cannot tell (too few right images, or a precision short of the
      target by less than its uncertainty): the tag keeps ``prior``.
    """
    from sklearn.metrics import precision_recall_curve

    positives = int(y.sum())
    undecided = Choice(prior, TOO_FEW, positives=positives)
    if positives < max(1, min_positives):
        return undecided
    weight = negative_weight(positives, len(y) - positives)
    precision, recall, thresholds = precision_recall_curve(y, scores, sample_weight=np.where(y > 0, 1.0, weight))
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    kept = np.rint(recall * positives)  # right images at or above each threshold
    judged = kept >= max(1, min_positives)
    if not judged.any():
        return undecided
    reach = np.flatnonzero(judged & (precision >= target))
    if reach.size:  # thresholds ascend: the first is the lowest
        i = reach[0]
        threshold = max(float(thresholds[i]), prior) if upper_bound else float(thresholds[i])
        return Choice(threshold, REACHED, round(float(precision[i]), 4), round(float(recall[i]), 4), positives)
    candidates = np.flatnonzero(judged)
    best = candidates[int(np.argmax(precision[candidates]))]
    measured = round(float(precision[best]), 4), round(float(recall[best]), 4)
    emitted = int(round(kept[best] / precision[best])) if precision[best] > 0 else int(len(y))  # weighted
    if precision_upper_bound(int(kept[best]), emitted) < target:
        return Choice(float("inf"), BELOW_TARGET, *measured, positives)
    return Choice(prior, TOO_FEW, *measured, positives)


def choose_thresholds(
    y: np.ndarray,
    scores: np.ndarray,
    tags: Sequence[str],
    checkable: Iterable[str],
    priors: Mapping[str, float],
    upper_bound: Iterable[str] = (),
    target: float = TARGET_PRECISION,
    min_positives: int = MIN_POSITIVES,
) -> dict[str, Choice]:
    """Thresholds for the ``checkable`` tags (and every tag in ``priors`` that is not) from
    validation truth ``y`` and merged ``scores``, both ``(n, len(tags))``.

    Args:
        priors: each tag's threshold before calibration (the tag map's default or hand-set one
            for a general tag, 0.5 for a learned one): what an undecided tag keeps.
        upper_bound: checkable tags whose evidence is only an upper bound (narrower than any
            label, see :func:`evidence`).

    A tag no validation label reaches keeps its prior: ``no_validation_example`` for a learned
    one; a general tag outside ``checkable`` is not in the result (nothing was decided).
    """
    checkable, upper_bound = set(checkable), set(upper_bound)
    index = {t: j for j, t in enumerate(tags)}
    chosen: dict[str, Choice] = {}
    for tag in sorted(checkable | set(priors)):
        j = index[tag]
        prior = priors.get(tag, 0.5)
        if tag not in checkable or not y.shape[0] or not y[:, j].any():
            chosen[tag] = Choice(prior, NO_EXAMPLE, prior=prior)
            continue
        choice = choose_threshold(
            y[:, j], scores[:, j], target, min_positives, prior=prior, upper_bound=tag in upper_bound
        )
        chosen[tag] = replace(choice, prior=prior)
    return chosen


def quality(
    y: np.ndarray,
    scores: np.ndarray,
    tags: Sequence[str],
    thresholds: np.ndarray,
    checkable: Iterable[str],
    min_support: int = MIN_SUPPORT,
) -> dict:
    """What users of the tags notice, on test truth ``y`` and merged ``scores`` (``(n, tags)``),
    with the vocabulary's ``thresholds`` (inf: off).

    Returns:
        ``map_common``: mean AP over checkable tags right on at least ``min_support`` images;
        ``images_with_correct_tag``: share of images with at least one emitted tag that is right;
        ``no_tag``: share of images with no tag emitted at all; ``precision``: share of emitted
        checkable tags that are right; ``person_ap`` (None without a ``person`` tag);
        ``common_tags``: how many tags ``map_common`` averages.
    """
    from sklearn.metrics import average_precision_score

    checkable = [j for j, t in enumerate(tags) if t in set(checkable)]
    emitted = scores >= thresholds[None, :]
    n = len(y)
    aps = []
    for j in checkable:
        if y[:, j].sum() >= min_support:
            aps.append(average_precision_score(y[:, j], scores[:, j]))
    judged = emitted[:, checkable]
    right = judged & (y[:, checkable] > 0)
    person = tags.index(PERSON) if PERSON in tags else None
    person_ap = (
        float(average_precision_score(y[:, person], scores[:, person]))
        if person is not None and 0 < y[:, person].sum() < n
        else None
    )
    return {
        "map_common": float(np.mean(aps)) if aps else 0.0,
        "common_tags": len(aps),
        "images_with_correct_tag": float(right.any(axis=1).mean()) if n else 0.0,
        "no_tag": float((~emitted.any(axis=1)).mean()) if n else 0.0,
        "precision": float(right.sum() / judged.sum()) if judged.sum() else 0.0,
        "person_ap": person_ap,
    }
