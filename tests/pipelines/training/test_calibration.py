"""Thresholds chosen on held-out labels (pipelines.training.calibration), on generated scores: the
target is reached where the scores allow it, a tag the images show cannot reach it is off, and
a tag too few images can judge keeps its prior threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.training import calibration
from pipelines.training.calibration import BELOW_TARGET, NO_EXAMPLE, REACHED, TOO_FEW

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


def separable(n_right: int, n_wrong: int, rng):
    """Right images score above 0.6, wrong ones below 0.4."""
    y = np.r_[np.ones(n_right), np.zeros(n_wrong)].astype(np.float32)
    scores = np.r_[rng.uniform(0.6, 1.0, n_right), rng.uniform(0.0, 0.4, n_wrong)]
    return y, scores


def test_the_lowest_threshold_reaching_the_target_is_chosen():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.25).astype(np.float32)  # rarer than MAX_PREVALENCE: unweighted
    scores = np.clip(y * 0.5 + rng.random(400) * 0.6, 0, 1)  # informative but noisy
    choice = calibration.choose_threshold(y, scores, 0.9)
    assert choice.reason == REACHED
    kept = scores >= choice.threshold
    assert y[kept].mean() >= 0.9 and kept.sum() >= calibration.MIN_POSITIVES
    lower = scores[scores < choice.threshold].max()  # the next score down misses the target
    assert y[scores >= lower].mean() < 0.9
    assert choice.positives == int(y.sum()) and choice.precision == pytest.approx(y[kept].mean(), abs=1e-4)


def test_a_tag_the_images_show_below_target_is_off():
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.4).astype(np.float32)
    choice = calibration.choose_threshold(y, rng.random(400), 0.9)  # noise: about 40% precise
    assert choice.threshold == math.inf and choice.reason == BELOW_TARGET
    assert choice.precision < 0.9


def test_too_few_images_keep_the_prior():
    rng = np.random.default_rng(2)
    y, scores = separable(3, 100, rng)  # perfect, but three right images say little
    assert calibration.choose_threshold(y, scores, 0.9, prior=0.35) == calibration.Choice(0.35, TOO_FEW, positives=3)
    # Eight right of ten emitted is short of 0.9, but ten images cannot rule 0.9 out.
    y = np.r_[np.ones(8), np.zeros(2), np.zeros(100)].astype(np.float32)
    scores = np.r_[np.full(10, 0.9), rng.uniform(0, 0.2, 100)]
    choice = calibration.choose_threshold(y, scores, 0.9, prior=0.35)
    assert (choice.threshold, choice.reason, choice.precision) == (0.35, TOO_FEW, 0.8)


def test_an_upper_bound_never_lowers_the_prior():
    rng = np.random.default_rng(3)
    y, scores = separable(40, 200, rng)
    scores = scores * 0.5  # right images from 0.3: the labels alone would choose about 0.3
    assert calibration.choose_threshold(y, scores, 0.9).threshold < 0.35
    choice = calibration.choose_threshold(y, scores, 0.9, prior=0.35, upper_bound=True)
    assert (choice.threshold, choice.reason) == (0.35, REACHED)


def test_precision_upper_bound():
    assert calibration.precision_upper_bound(0, 0) == 1.0
    assert calibration.precision_upper_bound(9, 10) > 0.95
    assert calibration.precision_upper_bound(50, 100) < 0.6
    assert calibration.precision_upper_bound(8, 10) > 0.9 > calibration.precision_upper_bound(80, 100)


def test_choose_thresholds_records_priors_and_untested_tags():
    rng = np.random.default_rng(4)
    y_a, s_a = separable(40, 160, rng)
    y = np.stack([y_a, np.zeros(200), rng.random(200) < 0.4], axis=1).astype(np.float32)
    scores = np.stack([s_a, rng.random(200), rng.random(200)], axis=1)
    chosen = calibration.choose_thresholds(
        y, scores, ["a", "b", "c"], checkable=["a", "c"], priors={"a": 0.25, "b": 0.5, "c": 0.35}
    )
    a = chosen["a"]
    assert a.reason == REACHED and a.threshold <= 0.6 and a.prior == 0.25
    assert y_a[s_a >= a.threshold].mean() >= 0.9
    assert chosen["b"] == calibration.Choice(0.5, NO_EXAMPLE, prior=0.5)  # a learned tag no image has
    assert chosen["c"].reason == BELOW_TARGET
    assert chosen["c"].to_dict()["threshold"] == "off" and chosen["c"].to_dict()["prior"] == 0.35


def test_quality_counts_what_users_see():
    tags = ["person", "cup", "animal"]
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.0, 0.3], [0.6, 0.7, 0.0]], np.float32)
    thresholds = np.array([0.5, 0.5, np.inf], np.float32)  # animal is off
    q = calibration.quality(y, scores, tags, thresholds, checkable=tags, min_support=1)
    assert q["images_with_correct_tag"] == 0.5  # images 0 and 1 have a right tag
    assert q["no_tag"] == 0.25  # image 2: animal is off
    assert q["precision"] == pytest.approx(2 / 4)  # person x3 (2 right), cup x1 (wrong)
    assert q["person_ap"] == 1.0 and q["common_tags"] == 3


def test_a_tag_on_most_validation_images_is_calibrated_for_a_library_where_it_is_rarer():
    """90% of the validation images are right for the tag: almost any threshold looks precise.
    Weighting the wrong images up to MAX_PREVALENCE makes the threshold leave them out."""
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(900), np.zeros(100)].astype(np.float32)
    scores = np.r_[rng.uniform(0.2, 1.0, 900), rng.uniform(0.0, 0.6, 100)]
    weight = calibration.negative_weight(900, 100)
    assert weight == pytest.approx(900 * 0.7 / (100 * 0.3))
    choice = calibration.choose_threshold(y, scores, 0.9)
    kept = scores >= choice.threshold
    assert choice.reason == REACHED and choice.threshold > 0.5  # most wrong images score below 0.6
    right, wrong = y[kept].sum(), (1 - y[kept]).sum()
    assert right / (right + weight * wrong) >= 0.9
    assert calibration.negative_weight(100, 900) == 1.0  # a rare tag is left as it is
