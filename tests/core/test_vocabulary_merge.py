"""One tag, one score (core.vocabulary.merge): a tag both heads know is one column scored
by the larger of the two; a learned tag lifts the broader tags above it; thresholds that are
off and their reasons survive the vocabulary file."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.tagmap import TagMap
from core.vocabulary import BOTH, GENERAL, LEARNED, Vocabulary, merge

LEARNED_TAGS = ["cat", "person", "giraffe"]


@pytest.fixture(scope="module")
def tagmap():
    return TagMap.load(calibrated=False)  # the hand-set thresholds, whatever a calibration chose


@pytest.fixture(scope="module")
def merged(tagmap):
    return merge(LEARNED_TAGS, {"cat": 0.5, "person": 0.3, "giraffe": math.inf}, tagmap, reasons={"giraffe": "below_target_precision"})


def probabilities(tagmap, **classes):
    """ImageNet probabilities with the given class tags (``tabby_cat=0.9``) and the rest spread."""
    p = np.zeros((1, tagmap.output_width), np.float32)
    for tag, value in classes.items():
        p[0, tagmap.class_tags.index(tag.replace("_", " "))] = value
    return p


def test_a_tag_both_heads_know_is_one_column(merged, tagmap):
    tags = merged.vocabulary.tags
    assert tags.count("cat") == 1 and tags[: len(tagmap.tags)] == tagmap.tags
    assert tags[len(tagmap.tags) :] == ("person", "giraffe")  # learned tags the tag map lacks, after
    heads = dict(zip(tags, merged.vocabulary.heads, strict=True))
    assert (heads["cat"], heads["person"], heads["tabby cat"]) == (BOTH, LEARNED, GENERAL)
    assert merged.vocabulary.parent["giraffe"] == "animal" and merged.vocabulary.parent["tabby cat"] == "cat"


def test_chelseas_general_cat_is_not_hidden_by_a_weak_learned_cat(merged, tagmap):
    scores = merged.scores(probabilities(tagmap, tabby_cat=0.6, tiger_cat=0.36), np.array([[0.2, 0.1, 0.0]]))
    named = dict(zip(merged.vocabulary.tags, scores[0], strict=True))
    assert named["cat"] == pytest.approx(0.96)  # the general score, the larger
    emitted = [t.name for t in merged.vocabulary.select(scores)[0]]
    assert emitted.count("cat") == 1 and {"cat", "animal", "tabby cat"} <= set(emitted)


def test_a_learned_score_lifts_its_own_column_and_the_broader_ones(merged, tagmap):
    scores = merged.scores(probabilities(tagmap, tabby_cat=0.01), np.array([[0.9, 0.8, 0.7]]))
    named = dict(zip(merged.vocabulary.tags, scores[0], strict=True))
    assert named["cat"] == pytest.approx(0.9) and named["person"] == pytest.approx(0.8)
    assert named["animal"] == pytest.approx(0.9)  # at least its best learned tag below it
    assert named["giraffe"] == pytest.approx(0.7)
    emitted = [t.name for t in merged.vocabulary.select(scores)[0]]
    assert "giraffe" not in emitted and {"cat", "person", "animal"} <= set(emitted)  # giraffe is off


def test_without_the_general_tags_only_the_learned_ones_and_their_lift(tagmap):
    learned_only = merge(LEARNED_TAGS, {"cat": 0.5, "person": 0.5, "giraffe": 0.5}, None, parent=tagmap.parent)
    assert learned_only.vocabulary.tags == tuple(LEARNED_TAGS)
    scores = learned_only.scores(None, np.array([[0.9, 0.2, 0.6]]))
    np.testing.assert_allclose(scores, [[0.9, 0.2, 0.6]])


def test_a_learned_tag_without_a_threshold_is_refused(tagmap):
    with pytest.raises(ValueError, match="imgtag evaluate"):
        merge(LEARNED_TAGS, {"cat": 0.5}, tagmap)


def test_off_thresholds_and_reasons_survive_the_vocabulary_file(merged, tmp_path):
    merged.vocabulary.write(tmp_path)
    back = Vocabulary.read(tmp_path)
    assert back.tags == merged.vocabulary.tags and back.heads == merged.vocabulary.heads
    index = back.tags.index("giraffe")
    assert math.isinf(back.thresholds[index]) and back.reasons["giraffe"] == "below_target_precision"
    np.testing.assert_array_equal(back.thresholds, merged.vocabulary.thresholds)
    assert "giraffe,off,learned,animal,below_target_precision" in (tmp_path / "tags.csv").read_text()
