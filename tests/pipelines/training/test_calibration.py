"""Thresholds chosen on held-out labels (pipelines.training.calibration), on generated scores: a tag
is calibrated only where the labels can refute it, scores become probabilities of being right,
one level reaches the target precision, and a tag with few images borrows from its family."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.training import calibration
from pipelines.training.calibration import BELOW_TARGET, BROADER, FAMILY, LABEL, NARROWER, NO_EXAMPLE, REACHED

PARENT = {"tabby cat": "cat", "cat": "animal", "dog": "animal", "coffee mug": "cup", "cup": "kitchenware"}


def test_evidence_follows_the_hierarchy():
    tags = ["tabby cat", "cat", "animal", "dog", "coffee mug", "kitchenware", "volcano"]
    right = calibration.evidence(tags, ["cat", "dog", "cup"], PARENT)
    assert right["cat"] == {"cat"}
    assert right["animal"] == {"cat", "dog"}  # broader: any label below it
    assert right["tabby cat"] == {"cat"}  # narrower: the label above it, an upper bound
    assert right["kitchenware"] == {"cup"} and right["coffee mug"] == {"cup"}
    assert "volcano" not in right  # no label reaches it: it cannot be checked
    assert calibration.upper_bound_tags(tags, right, PARENT) == {"tabby cat", "coffee mug"}

    y = calibration.truth([["cat"], ["dog", "cup"], []], tags, right)
    assert y[:, tags.index("animal")].tolist() == [1, 1, 0]
    assert y[:, tags.index("tabby cat")].tolist() == [1, 0, 0]
    assert y[:, tags.index("volcano")].tolist() == [0, 0, 0]


def test_only_tags_the_labels_can_refute_are_calibrated():
    parent = {
        **PARENT,
        "valley": "nature",
        "flowerpot": "potted plant",
        "potted plant": "nature",
        "espresso": "kitchenware",
    }
    tags = [
        "tabby cat",
        "cat",
        "animal",
        "dog",
        "kitchenware",
        "nature",
        "valley",
        "flowerpot",
        "potted plant",
    ]
    members = {
        "animal": ["tabby cat", "dog"],  # every class under it lies under a label
        "kitchenware": ["coffee mug", "espresso", "wok", "ladle"],  # one class in four: a cup
        "nature": ["valley", "flowerpot", "volcano"],  # one in three: a potted plant
    }
    families = calibration.refutable(tags, ["cat", "dog", "cup", "potted plant"], parent, members)
    assert families == {
        "tabby cat": NARROWER,  # an image without a cat shows it wrong
        "flowerpot": NARROWER,
        "cat": LABEL,
        "dog": LABEL,
        "potted plant": LABEL,
        "animal": BROADER,
    }
    # a kitchen photo without a cup may well show a wok: kitchenware can be confirmed, never refuted
    assert "kitchenware" not in families and "nature" not in families and "valley" not in families


def test_library_weights_bring_a_common_label_down_to_the_cap():
    labels = [["person"]] * 90 + [["person", "dog"]] * 5 + [["dog"]] * 5
    weights = calibration.library_weights(labels, max_prevalence=0.5)
    person = np.array(["person" in row for row in labels])
    assert weights[person].sum() / weights.sum() == pytest.approx(0.5, abs=1e-3)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[~person].min() > weights[person].max()  # the rare images count more
    rare = [["cat"], ["dog"], ["cup"], []]
    assert calibration.library_weights(rare).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert calibration.library_weights([["cat"], ["cat", "dog"]]).tolist() == [1.0, 1.0]  # cat everywhere


def test_platt_scaling_recovers_how_often_a_score_is_right():
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.01, 0.99, 20000)
    truth = calibration.Platt(2.0, -1.0)
    y = (rng.random(20000) < truth.probability(scores)).astype(np.float32)
    fit = calibration.fit_platt(scores, y, np.ones_like(scores))
    assert fit.a == pytest.approx(2.0, abs=0.1) and fit.b == pytest.approx(-1.0, abs=0.1)
    assert fit.probability(np.array([fit.threshold(0.8)]))[0] == pytest.approx(0.8, abs=1e-6)
    assert calibration.Platt(-1.0, 0.0).threshold(0.8) == math.inf  # a score that says nothing


def graded(n: int, rng, *, slope: float = 3.0, offset: float = 0.0):
    """Scores whose probability of being right rises with the score."""
    scores = rng.uniform(0.01, 0.99, n)
    probability = calibration.Platt(slope, offset).probability(scores)
    return (rng.random(n) < probability).astype(np.float32), scores


def test_one_level_reaches_the_target_with_the_most_right_tags():
    rng = np.random.default_rng(1)
    tags = ["a", "b", "noise", "rare", "unjudged"]
    n = 3000
    y_a, s_a = graded(n, rng)
    y_b, s_b = graded(n, rng, slope=2.0, offset=-0.5)
    y_noise = (rng.random(n) < 0.2).astype(np.float32)
    s_noise = rng.random(n)
    y_rare = np.zeros(n, np.float32)
    y_rare[:3] = 1
    s_rare = np.where(y_rare > 0, 0.97, rng.uniform(0, 0.6, n))
    y = np.stack([y_a, y_b, y_noise, y_rare, np.zeros(n)], axis=1)
    scores = np.stack([s_a, s_b, s_noise, s_rare, rng.random(n)], axis=1)
    families = {"a": LABEL, "b": LABEL, "noise": LABEL, "rare": LABEL}
    priors = {t: 0.5 for t in tags}
    result = calibration.calibrate(y, scores, tags, families, priors, {}, target=0.9)
    chosen = result.choices

    shown = emitted_as_served(result, scores, tags)
    judged = shown[:, :4]
    precision = (judged & (y[:, :4] > 0)).sum() / judged.sum()
    assert precision >= 0.9 and result.val_precision == pytest.approx(precision, abs=1e-4)
    assert chosen["a"].reason == REACHED and chosen["b"].reason == REACHED
    assert chosen["a"].threshold < chosen["b"].threshold  # b needs a higher score for the same odds
    assert chosen["noise"].reason == BELOW_TARGET and chosen["noise"].threshold == math.inf
    assert chosen["rare"].reason == FAMILY  # three right images: the family's fit decides
    assert chosen["unjudged"].reason == NO_EXAMPLE and chosen["unjudged"].threshold == 0.5

    # The fallback gives more pictures a right tag than the lowest level reaching the target alone.
    assert result.fallback_level is not None and result.fallback_level < result.level
    assert all(chosen[t].fallback < chosen[t].threshold for t in ("a", "b"))
    alone = calibration.calibrate(y, scores, tags, families, priors, {}, target=0.9, fallback_levels=())
    assert alone.fallback_level is None and alone.level <= result.level
    plain = emitted_as_served(alone, scores, tags)
    right_share = (shown[:, :4] & (y[:, :4] > 0)).any(axis=1).mean()
    assert right_share > (plain[:, :4] & (y[:, :4] > 0)).any(axis=1).mean()
    lower = alone.level - 0.01  # without a fallback, the level is the lowest reaching the target
    assert _precision_at(y, scores, tags, families, priors, lower) < 0.9


def emitted_as_served(result, scores, tags):
    """Each picture's tags as core.vocabulary.Vocabulary.select emits them from these choices."""
    from core.tagmap import emitted

    choices = [result.choices[t] for t in tags]
    limits = np.array([c.threshold for c in choices], np.float32)
    fallback = np.array([c.fallback if c.fallback is not None else np.inf for c in choices], np.float32)
    slope = np.array([c.slope or 1.0 for c in choices], np.float32)
    implied = [np.array([], int)] * len(tags)
    return np.stack([emitted(row, limits, implied, fallback, slope) for row in scores])


def _precision_at(y, scores, tags, families, priors, level):
    """The validation precision if the level were ``level`` and there were no fallback."""
    original = calibration.LEVELS
    try:
        calibration.LEVELS = (level,)
        return calibration.calibrate(
            y, scores, tags, families, priors, {}, target=0.9, fallback_levels=()
        ).val_precision
    finally:
        calibration.LEVELS = original


def test_a_library_weighting_and_a_base_models_tags():
    """A tag right on 90% of the validation images looks precise at any threshold; weighted as a
    library holds it (half the images), its threshold has to leave the wrong images out. A tag
    kept from a base model keeps its choice and does not count in the precision."""
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(900), np.zeros(100)][:, None].astype(np.float32)
    scores = np.r_[rng.uniform(0.3, 1.0, 900), rng.uniform(0.0, 0.7, 100)][:, None]
    kept = calibration.Choice(0.42, "kept")
    y = np.hstack([y, np.ones((1000, 1), np.float32)])
    scores = np.hstack([scores, np.zeros((1000, 1))])  # the base tag never fires here: ignored
    families = {"cat": LABEL, "base": LABEL}
    plain = calibration.calibrate(
        y, scores, ["cat", "base"], families, {"cat": 0.5}, {}, fixed={"base": kept}
    )
    weights = calibration.library_weights([["cat"]] * 900 + [[]] * 100)
    weighted = calibration.calibrate(
        y, scores, ["cat", "base"], families, {"cat": 0.5}, {}, weights, fixed={"base": kept}
    )
    assert weighted.choices["cat"].threshold > plain.choices["cat"].threshold
    kept_mask = scores[:, 0] >= weighted.choices["cat"].threshold
    right, wrong = (
        (weights[kept_mask] * y[kept_mask, 0]).sum(),
        (weights[kept_mask] * (1 - y[kept_mask, 0])).sum(),
    )
    assert right / (right + wrong) >= 0.9
    assert weighted.choices["base"] == kept


def test_quality_counts_what_users_see():
    tags = ["person", "cup", "animal", "tabby cat", "cat"]
    parent = {"tabby cat": "cat", "cat": "animal"}
    y = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], np.float32)
    scores = np.array(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0],
            [0.8, 0.2, 0.0, 0.0, 0.0],
            [0.1, 0.0, 0.3, 0.6, 0.3],
            [0.6, 0.7, 0.0, 0.0, 0.0],
        ],
        np.float32,
    )
    thresholds = np.array([0.5, 0.5, 0.95, 0.5, 0.9], np.float32)  # animal and cat need a lot alone
    q = calibration.quality(
        y,
        scores,
        tags,
        thresholds,
        checkable=tags,
        min_support=1,
        parent=parent,
        labels=["person", "cup", "cat"],
    )
    assert q["images_with_correct_tag"] == 0.75  # images 0, 1 (person) and 2 (a tabby is a cat and an animal)
    assert q["no_tag"] == 0.0
    assert q["precision"] == pytest.approx(
        5 / 7
    )  # person x3 (2 right), cup x1 (wrong), tabby+cat+animal right
    assert q["person_recall"] == 1.0 and q["person_on_person_free"] == 0.5
    assert q["mean_recall"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)  # person, cup, cat
    assert q["person_ap"] == 1.0


def test_person_is_held_to_five_percent_of_the_pictures_without_people():
    """``person`` takes the lowest threshold that tags at most 5% of the (weighted) pictures
    without a person, whatever the level the other tags share."""
    rng = np.random.default_rng(6)
    n = 2000
    has_person = rng.random(n) < 0.8
    scores = np.where(has_person, rng.beta(5, 2, n), rng.beta(2, 5, n))
    y = has_person[:, None].astype(np.float32)
    weights = calibration.library_weights([["person"] if p else [] for p in has_person])
    result = calibration.calibrate(
        y, scores[:, None], ["person"], {"person": LABEL}, {"person": 0.5}, {}, weights
    )
    choice = result.choices["person"]
    assert choice.reason == calibration.CAPPED
    free = ~has_person
    share = weights[free & (scores >= choice.threshold)].sum() / weights[free].sum()
    assert share <= 0.05
    lower = scores[free & (scores < choice.threshold)].max()  # one more picture without people
    assert weights[free & (scores >= lower)].sum() / weights[free].sum() > 0.05
    assert choice.recall == pytest.approx((scores[has_person] >= choice.threshold).mean(), abs=1e-4)
