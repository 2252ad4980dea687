"""Thresholds chosen on held-out labels, and the quality figures people look at.

Labels name a few tags per image (``person``, ``cup``); a model's vocabulary has many more
(``coffee mug``, ``kitchenware``, ``tabby cat``). The tag hierarchy says which labels make a
vocabulary tag right (:func:`evidence`):

- a tag that is itself a label is right when the image has it, or a label below it;
- a broader tag is right when the image has a label below it (``animal``: ``cat``, ``dog`` ...);
- a narrower tag is right when the image has the label above it (``flamingo``: ``bird``). That
  cannot tell a flamingo from a heron, so its precision is an upper bound.

A tag is **calibrated only on labels that can confirm and refute it** (:func:`refutable`): the
labels themselves, narrower tags (an image without a bird refutes ``flamingo``), and broader
tags whose ImageNet classes mostly lie under a label (``vehicle``: cars, buses, boats ...).
``food`` or ``nature`` cannot be refuted by labels that name pizza and potted plants but not
soup or valleys: such a tag keeps its prior rule (the classifier's own probability), and so does
every tag no label reaches.

**Calibration** (:func:`calibrate`) turns each refutable tag's score into the probability that
the tag is right (Platt scaling: a logistic fit on the score's logit), fitted on the validation
images weighted to look like a library (:func:`library_weights`: no label on more than
:data:`MAX_PREVALENCE` of the pictures; 92% of the COCO photos show people, a library's do not).
A tag with few right images borrows from the fit of its family (labels, narrower tags, broader
tags): each tag's own fit is pulled towards the family's, the fewer its images the more, so
two hundred dog breeds are calibrated through ``dog`` together rather than each on the three
dogs of its own breed. Then **one level** decides for every tag: a tag is emitted where its
probability of being right reaches the level (with its broader tags, as
:func:`core.tagmap.emitted` emits them); one level for all tags keeps the most right tags for a
precision, and a tag whose probability never reaches it is ``off``. A picture that gets none of
the labels' tags gets its likeliest one if that reaches a lower **fallback level** (a photo of
a horse whose scores are all modest is better tagged ``horse`` than not at all). The pair of
levels is the one that gives the most validation pictures a right tag while the emitted tags
the labels can refute stay right on ``target_precision`` of them.

:func:`quality` then measures the thresholds on the test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from core import training_limits
from core.tagmap import ancestors, emitted, implied_columns, logit

TARGET_PRECISION = training_limits.default("target_precision")
#: Right validation images before a tag's own fit counts fully (fewer: its family's). Also the
#: default of ``imgtag evaluate --min-positives``, which was 3 until the two became one fact.
MIN_POSITIVES = training_limits.default("min_positives")
# The most pictures of a library one label is assumed to be on. Labelled sets are often far
# denser (92% of the COCO photos show people): the validation images of a label more common
# than this are weighted down to this share, so its thresholds hold where it is rarer.
MAX_PREVALENCE = 0.5
COVERAGE = 0.5  # a broader tag is refutable when this share of its ImageNet classes reach a label
SHRINKAGE = 20.0  # how strongly a tag's own fit is pulled towards its family's (in images)
LEVELS = tuple(round(x, 3) for x in np.arange(0.30, 0.99, 0.01))
FALLBACK_LEVELS = tuple(round(x, 3) for x in np.arange(0.20, 0.80, 0.05))
MIN_SUPPORT = 5  # test images a tag needs to count in the common-tags figures
PERSON = "person"

# Why a tag's threshold is what it is (``thresholds.json``, ``tags.csv``, ``per_tag.csv``).
REACHED = "calibrated"  # its own fit reaches the level at this score
FAMILY = "calibrated_with_family"  # too few right images of its own: its family's fit decides
BELOW_TARGET = "below_target_precision"  # its probability never reaches the level: off
NO_EXAMPLE = "no_validation_example"  # no validation image is right for it: the prior stays
NOT_REFUTABLE = "not_refutable"  # the labels can confirm it but never refute it: the prior stays

#: A class the pretrained classifier gives this probability keeps its narrow tag (``flamingo``,
#: ``golden retriever``) whatever the calibration says: labels that name only ``bird`` or ``dog``
#: bound such a tag's precision from above, they cannot show the classifier wrong about which
#: bird. The issue's retention: nothing the classifier is sure of is lost.
RETAIN = 0.5

#: Tags held to a share of false positives rather than to the level: at most 5% of the pictures
#: without a person may be tagged ``person`` (a person on a photo without people is the mistake
#: people notice most; the lowest threshold keeping to it keeps the most people).
FALSE_POSITIVE_CAPS = {"person": 0.05}
CAPPED = "false_positive_cap"  # the reason of such a tag's threshold

#: Never a fallback: a person on a photo without people is the mistake people notice most, so
#: ``person`` is emitted on its own calibration only, never as a picture's likeliest tag.
NO_FALLBACK = ("person", "people")

#: A tag's family: whose fit it borrows when it has few right images of its own.
LABEL, NARROWER, BROADER = "label", "narrower", "broader"


def upper_bound_tags(
    tags: Iterable[str], right: Mapping[str, frozenset[str]], parent: Mapping[str, str]
) -> set[str]:
    """The checkable tags whose evidence is only an upper bound: tags below every label that
    makes them right (``tabby cat`` under ``cat``)."""
    return {t for t in tags if t in right and all(label in ancestors(parent, t) for label in right[t])}


def evidence(
    tags: Sequence[str], labels: Iterable[str], parent: Mapping[str, str]
) -> dict[str, frozenset[str]]:
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


def refutable(
    tags: Sequence[str],
    labels: Iterable[str],
    parent: Mapping[str, str],
    class_members: Mapping[str, Sequence[str]] | None = None,
    coverage: float = COVERAGE,
) -> dict[str, str]:
    """The tags the labels can both confirm and refute, each with its family.

    Args:
        class_members: for each general tag, the own tags of the ImageNet classes under it
            (:meth:`core.tagmap.TagMap.members`); a broader tag is refutable when at least
            ``coverage`` of them reach a label (are a label or lie under one).

    Returns:
        ``{tag: family}``: :data:`LABEL` for the labels, :data:`NARROWER` for tags below a
        label, :data:`BROADER` for broader tags whose classes the labels mostly cover.
    """
    labels = set(labels)
    right = evidence(tags, labels, parent)
    narrower = upper_bound_tags(tags, right, parent)
    members = class_members or {}

    def reaches(tag: str) -> bool:
        return tag in labels or any(a in labels for a in ancestors(parent, tag))

    out = {}
    for tag in tags:
        if tag not in right:
            continue
        if tag in labels:
            out[tag] = LABEL
        elif tag in narrower:
            out[tag] = NARROWER
        elif tag in members and members[tag]:
            share = float(np.mean([reaches(m) for m in members[tag]]))
            if share >= coverage:
                out[tag] = BROADER
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


def library_weights(
    examples_labels: Sequence[Iterable[str]], max_prevalence: float = MAX_PREVALENCE
) -> np.ndarray:
    """Image weights under which no label is on more than ``max_prevalence`` of the images
    (iterative proportional fitting: each too common label's images are weighted down in turn).
    Mean weight 1; all ones when every label is already rare enough."""
    n = len(examples_labels)
    weights = np.ones(n)
    if not n:
        return weights
    label_sets = [set(labels) for labels in examples_labels]
    names = sorted(set().union(*label_sets))
    has = {name: np.array([name in s for s in label_sets]) for name in names}
    for _ in range(20):
        changed = False
        for name in names:
            share = weights[has[name]].sum() / weights.sum()
            if share > max_prevalence + 1e-6 and not has[name].all():  # on every image: nothing to weigh
                # scale the label's images so their share becomes max_prevalence
                rest = weights.sum() - weights[has[name]].sum()
                factor = max_prevalence * rest / ((1 - max_prevalence) * weights[has[name]].sum())
                weights[has[name]] *= factor
                changed = True
        if not changed:
            break
    return weights * n / weights.sum()


@dataclass(frozen=True)
class Platt:
    """``P(right | score) = sigmoid(a * logit(score) + b)``."""

    a: float
    b: float

    def probability(self, scores: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(scores) + self.b)))

    def threshold(self, level: float) -> float:
        """The lowest score whose probability reaches ``level`` (inf: never)."""
        if self.a <= 1e-3:
            return float("inf")
        z = (np.log(level / (1 - level)) - self.b) / self.a
        return float(1.0 / (1.0 + np.exp(-z))) if z < 30 else float("inf")


_EPS = 1e-4


def _logit(scores: np.ndarray) -> np.ndarray:
    s = np.clip(np.asarray(scores, np.float64), _EPS, 1 - _EPS)
    return np.log(s / (1 - s))


def fit_platt(scores, y, weights, prior: Platt = Platt(1.0, 0.0), strength: float = 0.0) -> Platt:
    """The weighted logistic fit of ``y`` on ``logit(scores)``, pulled towards ``prior`` with an
    L2 penalty of ``strength`` (0: none)."""
    from scipy.optimize import minimize

    z, y, w = _logit(scores), np.asarray(y, np.float64), np.asarray(weights, np.float64)

    def loss(p):
        t = p[0] * z + p[1]
        value = np.sum(w * (np.logaddexp(0.0, t) - y * t)) + strength * (
            (p[0] - prior.a) ** 2 + (p[1] - prior.b) ** 2
        )
        g = w * (1.0 / (1.0 + np.exp(-t)) - y)
        grad = np.array(
            [np.sum(g * z) + 2 * strength * (p[0] - prior.a), np.sum(g) + 2 * strength * (p[1] - prior.b)]
        )
        return value, grad

    result = minimize(loss, np.array([prior.a, prior.b]), jac=True, method="L-BFGS-B")
    return Platt(float(result.x[0]), float(result.x[1]))


@dataclass(frozen=True)
class Choice:
    """A tag's threshold and why: see the module's reasons."""

    threshold: float  # inf: off
    reason: str
    precision: float | None = None  # weighted validation precision at the threshold
    recall: float | None = None
    positives: int = 0  # validation images the tag is right on
    prior: float | None = None  # the threshold before calibration
    fallback: float | None = None  # the score of the fallback level (None: never a fallback)
    slope: float | None = None  # how fast its probability of being right rises (its fit's a)

    def to_dict(self) -> dict:
        out = {
            "threshold": float(self.threshold) if np.isfinite(self.threshold) else "off",
            "reason": self.reason,
            "val_precision": self.precision,
            "val_recall": self.recall,
            "val_positives": self.positives,
            "prior": self.prior,
        }
        if self.fallback is not None:
            out.update(fallback=self.fallback, slope=self.slope)
        return out


@dataclass
class Calibration:
    """What :func:`calibrate` chose: a threshold per tag and the level behind them."""

    choices: dict[str, Choice]
    level: float
    val_precision: float  # weighted, over the emitted refutable tags, at the chosen level
    fits: dict[str, Platt]  # each calibrated tag's map from score to probability of being right
    fallback_level: float | None = None  # the probability a fallback tag needs (None: no fallback)


def _emit(scores, thresholds, implied, fallback=None, slope=None) -> np.ndarray:
    """Each picture's tags as :func:`core.tagmap.emitted` gives them, ``(n, tags)`` bool."""
    if not len(scores):
        return np.zeros(scores.shape, bool)
    return np.stack([emitted(row, thresholds, implied, fallback, slope) for row in scores])


def weighted_precision(y, scores, thresholds, columns, weights, implied) -> tuple[float, np.ndarray]:
    """Weighted precision of the emitted tags among ``columns``, and the emitted matrix."""
    shown = _emit(scores, thresholds, implied)
    judged = shown[:, columns]
    right = judged & (y[:, columns] > 0)
    denominator = float((judged.sum(axis=1) * weights).sum())
    return (float((right.sum(axis=1) * weights).sum()) / denominator if denominator else 1.0), shown


def calibrate(
    y: np.ndarray,
    scores: np.ndarray,
    tags: Sequence[str],
    families: Mapping[str, str],
    priors: Mapping[str, float],
    parent: Mapping[str, str],
    weights: np.ndarray | None = None,
    target: float = TARGET_PRECISION,
    min_positives: int = MIN_POSITIVES,
    fixed: Mapping[str, Choice] | None = None,
    fallback_levels: Sequence[float] | None = None,
    fallback_exclude: Iterable[str] = NO_FALLBACK,
    false_positive_caps: Mapping[str, float] = FALSE_POSITIVE_CAPS,
) -> Calibration:
    """Thresholds for the refutable tags (``families``, from :func:`refutable`) and every tag in
    ``priors``, from validation truth ``y`` and scores ``scores`` (both ``(n, len(tags))``).

    Long because it takes thirteen settings, each documented here; its body reads as its steps
    (capped tags, family fits, the level and the fallback level, then each tag's choice).

    Args:
        priors: each tag's threshold before calibration (the tag map's for a general tag, 0.5
            for a learned one): what a tag the labels cannot judge keeps.
        weights: per-image weights (:func:`library_weights`); None: all ones.
        target: the weighted precision the emitted refutable tags must reach on validation.
        min_positives: right images a tag's own fit needs to count fully.
        fixed: tags whose choice is given (a base model's tags this dataset does not label):
            they keep it, and are left out of the precision.
        fallback_levels: the fallback levels tried (default :data:`FALLBACK_LEVELS`; empty: none).
        fallback_exclude: tags never given as a fallback (:data:`NO_FALLBACK`).
        false_positive_caps: tags whose threshold is the lowest that gives at most this share of
            the (weighted) pictures without the tag's label the tag (:data:`FALSE_POSITIVE_CAPS`);
            they count in the precision like any other.
    """
    n = len(y)
    weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    fixed = dict(fixed or {})
    index = {t: j for j, t in enumerate(tags)}
    capped = {}
    for tag, share in false_positive_caps.items():
        if tag in index and tag in families and tag not in fixed and 0 < y[:, index[tag]].sum() < n:
            capped[tag] = _capped_choice(
                y[:, index[tag]], scores[:, index[tag]], weights, share, priors.get(tag)
            )
    calibrated = {
        t: f
        for t, f in families.items()
        if t in index and t not in fixed and t not in capped and y[:, index[t]].any()
    }
    fits, own = _fit_families(y, scores, weights, index, calibrated, min_positives)

    given = {**fixed, **capped}
    base = np.array([given[t].threshold if t in given else priors.get(t, np.inf) for t in tags], np.float32)
    excluded = set(fallback_exclude)
    candidates = [t for t in fits if calibrated[t] == LABEL and t not in excluded]  # what a fallback may give
    ladder = _Ladder(list(tags), index, base, fits, calibrated, candidates)
    implied = implied_columns(tuple(tags), parent)
    columns = [index[t] for t in families if t in index and t not in fixed]  # capped tags count too
    tried = FALLBACK_LEVELS if fallback_levels is None else fallback_levels
    chosen_level, chosen_fallback, chosen_precision = _choose_levels(
        ladder, y, scores, weights, implied, columns, target, tried
    )
    limits = ladder.thresholds_at(chosen_level)
    fallback = ladder.fallback_at(chosen_fallback)
    shown = _add_fallback(_emit(scores, limits, implied), scores, limits, implied, fallback, ladder.slope)

    choices: dict[str, Choice] = {}
    for tag in sorted(set(priors) | set(calibrated) | set(fixed) | set(capped)):
        if tag in fixed:
            choices[tag] = fixed[tag]
        elif tag in capped:
            choices[tag] = replace(capped[tag], **_shown_precision_recall(y, shown, weights, index[tag]))
        elif tag not in calibrated:
            prior = priors.get(tag, 0.5)
            j = index[tag]
            reason = NOT_REFUTABLE if tag not in families and tag in priors and y[:, j].any() else NO_EXAMPLE
            choices[tag] = Choice(prior, reason, prior=prior)
        else:
            choices[tag] = _calibrated_choice(
                index[tag], y, shown, weights, limits, fallback, fits[tag], tag in own, priors.get(tag, 0.5)
            )
    return Calibration(choices, chosen_level, round(chosen_precision, 4), fits, chosen_fallback)


def _fit_families(
    y: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
    index: Mapping[str, int],
    calibrated: Mapping[str, str],
    min_positives: int,
) -> tuple[dict[str, Platt], set[str]]:
    """Each calibrated tag's Platt fit: pooled over its family, then its own (shrunk towards the
    pooled one) where it has ``min_positives`` right images.

    Returns:
        ``(fits, own)``: the fits, and the tags fitted on their own images.
    """
    fits: dict[str, Platt] = {}
    own: set[str] = set()
    for family in sorted(set(calibrated.values())):
        members = [t for t, f in calibrated.items() if f == family]
        columns = [index[t] for t in members]
        pooled = fit_platt(
            scores[:, columns].ravel(), y[:, columns].ravel(), np.repeat(weights, len(columns))
        )
        for tag in members:
            j = index[tag]
            positives = int(y[:, j].sum())
            if positives >= min_positives:
                fits[tag] = fit_platt(scores[:, j], y[:, j], weights, prior=pooled, strength=SHRINKAGE)
                own.add(tag)
            else:
                fits[tag] = pooled
    return fits, own


@dataclass
class _Ladder:
    """Every tag's threshold at a probability level: the calibrated tags' from their fits, the
    others' as given (``base``); and the fallback thresholds of the tags that may be a fallback."""

    tags: list[str]
    index: Mapping[str, int]
    base: np.ndarray
    fits: Mapping[str, Platt]
    calibrated: Mapping[str, str]
    candidates: list[str]  # the tags a fallback may give

    def __post_init__(self) -> None:
        self.slope = np.ones(len(self.tags), np.float32)
        for tag in self.candidates:
            self.slope[self.index[tag]] = self.fits[tag].a

    def thresholds_at(self, level: float) -> np.ndarray:
        limits = self.base.copy()
        for tag, fit in self.fits.items():
            limit = fit.threshold(level)
            limits[self.index[tag]] = min(limit, RETAIN) if self.calibrated[tag] == NARROWER else limit
        return limits

    def fallback_at(self, level: float | None) -> np.ndarray | None:
        if level is None or not self.candidates:
            return None
        out = np.full(len(self.tags), np.inf, np.float32)
        for tag in self.candidates:
            out[self.index[tag]] = self.fits[tag].threshold(level)
        return out


def _choose_levels(
    ladder: _Ladder,
    y: np.ndarray,
    scores: np.ndarray,
    weights: np.ndarray,
    implied,
    columns: list[int],
    target: float,
    tried: Sequence[float],
) -> tuple[float, float | None, float]:
    """One level for every tag, and a lower one for the fallback (none, or one of ``tried``):
    the pair whose emitted refutable tags reach the target precision on the weighted validation
    images and give the most of them a right tag.

    Returns:
        ``(level, fallback level, weighted validation precision)``.
    """
    best = None
    for level in LEVELS:
        limits = ladder.thresholds_at(level)
        shown = _emit(scores, limits, implied)
        for level2 in (None, *(f for f in tried if f < level)):
            with_fallback = _add_fallback(
                shown, scores, limits, implied, ladder.fallback_at(level2), ladder.slope
            )
            precision, right_share = _judge(with_fallback, y, columns, weights)
            key = (precision >= target, right_share if precision >= target else precision)
            if best is None or key > best[0]:
                best = (key, level, level2, precision)
        if best[0][0] and best[1] < level - 0.1:
            break  # levels this far above the best only lose right tags
    _, chosen_level, chosen_fallback, chosen_precision = best
    return chosen_level, chosen_fallback, chosen_precision


def _shown_precision_recall(y: np.ndarray, shown: np.ndarray, weights: np.ndarray, j: int) -> dict:
    """Column ``j``'s weighted precision and recall as emitted (``shown``), rounded (None: nothing shown)."""
    right = y[shown[:, j], j] > 0
    w_shown = weights[shown[:, j]]
    return {
        "precision": round(float(w_shown[right].sum() / w_shown.sum()), 4) if w_shown.sum() else None,
        "recall": round(float(shown[y[:, j] > 0, j].mean()), 4),
    }


def _calibrated_choice(
    j: int,
    y: np.ndarray,
    shown: np.ndarray,
    weights: np.ndarray,
    limits: np.ndarray,
    fallback: np.ndarray | None,
    fit: Platt,
    own: bool,
    prior: float,
) -> Choice:
    """A calibrated tag's choice at the chosen level, with its validation figures and its reason."""
    threshold = float(limits[j])
    w_shown = weights[shown[:, j]]
    right = y[shown[:, j], j] > 0
    precision = round(float(w_shown[right].sum() / w_shown.sum()), 4) if w_shown.sum() else None
    positives = int(y[:, j].sum())
    recall = round(float(shown[y[:, j] > 0, j].mean()), 4) if positives else None
    reason = BELOW_TARGET if not np.isfinite(threshold) else (REACHED if own else FAMILY)
    tag_fallback = float(fallback[j]) if fallback is not None and np.isfinite(fallback[j]) else None
    return Choice(
        threshold, reason, precision, recall, positives, prior, tag_fallback, fit.a if tag_fallback else None
    )


def _capped_choice(y, scores, weights, share: float, prior: float | None) -> Choice:
    """The lowest threshold at which at most ``share`` of the (weighted) pictures without the
    label get the tag."""
    negatives = y <= 0
    order = np.argsort(-scores[negatives])
    ranked, ranked_weights = scores[negatives][order], weights[negatives][order]
    allowed = share * ranked_weights.sum()
    within = np.cumsum(ranked_weights) <= allowed + 1e-9  # the highest-scored negatives it may take
    taken = int(within.sum())
    threshold = float(ranked[taken]) + 1e-6 if taken < len(ranked) else float(scores.min())
    threshold = min(max(threshold, 1e-6), 1.0)
    return Choice(threshold, CAPPED, positives=int(y.sum()), prior=prior)


def _add_fallback(shown, scores, limits, implied, fallback, slope) -> np.ndarray:
    """``shown`` with the fallback tag of each picture that has no candidate tag
    (:func:`core.tagmap.emitted`, vectorised)."""
    if fallback is None:
        return shown
    candidates = np.flatnonzero(np.isfinite(fallback))
    shown = shown.copy()
    empty = np.flatnonzero(~shown[:, candidates].any(axis=1))
    if not empty.size:
        return shown
    part = scores[np.ix_(empty, candidates)]
    reached = part >= fallback[candidates]
    margin = np.where(reached, slope[candidates] * (logit(part) - logit(fallback[candidates])), -np.inf)
    for row, column, ok in zip(empty, margin.argmax(axis=1), reached.any(axis=1), strict=True):
        if ok:
            j = candidates[column]
            shown[row, j] = True
            broader = implied[j]
            if broader.size:
                shown[row, broader] |= np.isfinite(limits[broader])
    return shown


def _judge(shown, y, columns, weights) -> tuple[float, float]:
    """Weighted precision of the emitted refutable tags, and the weighted share of pictures with a
    right one."""
    judged = shown[:, columns]
    right = judged & (y[:, columns] > 0)
    denominator = float((judged.sum(axis=1) * weights).sum())
    precision = float((right.sum(axis=1) * weights).sum()) / denominator if denominator else 1.0
    return precision, float((right.any(axis=1) * weights).sum() / weights.sum())


def quality(
    y: np.ndarray,
    scores: np.ndarray,
    tags: Sequence[str],
    thresholds: np.ndarray,
    checkable: Iterable[str],
    min_support: int = MIN_SUPPORT,
    parent: Mapping[str, str] | None = None,
    labels: Iterable[str] = (),
    fallback: np.ndarray | None = None,
    slope: np.ndarray | None = None,
) -> dict:
    """What users of the tags notice, on test truth ``y`` and merged ``scores`` (``(n, tags)``),
    with the vocabulary's ``thresholds`` (inf: off); an emitted tag brings its broader tags
    (``parent``) and a picture without a tag its fallback (``fallback``, ``slope``), as the
    tagger emits them (:func:`core.tagmap.emitted`).

    Args:
        checkable: the tags the labels can refute (:func:`refutable`): they count in
            ``precision``; any tag the labels confirm counts as a right tag.
        labels: the dataset's labels: ``mean_recall`` averages over those on ``min_support``
            test images or more.

    Returns:
        ``map_common``: mean AP over checkable tags right on at least ``min_support`` images;
        ``images_with_correct_tag``: share of images with at least one emitted tag that is right;
        ``no_tag``: share of images with no tag emitted at all; ``precision``: share of emitted
        checkable tags that are right; ``person_ap`` (None without a ``person`` tag),
        ``person_recall`` and ``person_on_person_free`` (the share of images without a person
        that get the tag); ``mean_recall``: the recall at the thresholds averaged over the
        common labels; ``common_tags``: how many tags ``map_common`` averages.
    """
    from sklearn.metrics import average_precision_score

    checkable = set(checkable)
    columns = [j for j, t in enumerate(tags) if t in checkable]
    implied = implied_columns(tuple(tags), parent or {})
    shown = _emit(scores, thresholds, implied, fallback, slope)
    n = len(y)
    aps = [average_precision_score(y[:, j], scores[:, j]) for j in columns if y[:, j].sum() >= min_support]
    judged = shown[:, columns]
    right_judged = judged & (y[:, columns] > 0)
    confirmed = shown & (y > 0)
    index = {t: j for j, t in enumerate(tags)}
    recalls = [
        float(shown[y[:, index[label]] > 0, index[label]].mean())
        for label in labels
        if label in index and y[:, index[label]].sum() >= min_support
    ]
    return {
        "map_common": float(np.mean(aps)) if aps else 0.0,
        "common_tags": len(aps),
        "images_with_correct_tag": float(confirmed.any(axis=1).mean()) if n else 0.0,
        "no_tag": float((~shown.any(axis=1)).mean()) if n else 0.0,
        "precision": float(right_judged.sum() / judged.sum()) if judged.sum() else 0.0,
        **_person_figures(y, scores, shown, tags),
        "mean_recall": float(np.mean(recalls)) if recalls else None,
    }


def _person_figures(y: np.ndarray, scores: np.ndarray, shown: np.ndarray, tags: Sequence[str]) -> dict:
    """``person_ap``, ``person_recall`` and ``person_on_person_free`` (all None without a ``person``
    tag, or when every test image, or none, shows a person)."""
    from sklearn.metrics import average_precision_score  # heavy: only when measuring, as in quality

    person = list(tags).index(PERSON) if PERSON in tags else None
    with_person = y[:, person] > 0 if person is not None else None
    person_ap = (
        float(average_precision_score(with_person, scores[:, person]))
        if person is not None and 0 < with_person.sum() < len(y)
        else None
    )
    return {
        "person_ap": person_ap,
        "person_recall": float(shown[with_person, person].mean()) if person_ap is not None else None,
        "person_on_person_free": float(shown[~with_person, person].mean()) if person_ap is not None else None,
    }
