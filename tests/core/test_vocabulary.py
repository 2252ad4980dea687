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
    return merge(
        LEARNED_TAGS,
        {"cat": 0.5, "person": 0.3, "giraffe": math.inf},
        tagmap,
        reasons={"giraffe": "below_target_precision"},
    )


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
    learned_only = merge(
        LEARNED_TAGS, {"cat": 0.5, "person": 0.5, "giraffe": 0.5}, None, parent=tagmap.parent
    )
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


def test_a_picture_that_is_not_a_photo_fades_the_object_tags(tagmap):
    """With the non-photo tags learned, every other tag is scaled by 1 - the surest of them: a
    page of text is a document, not a person; tags that name pictures (website) are kept."""
    learned = ["person", "document", "texture"]
    gated = merge(learned, {"person": 0.5, "document": 0.5, "texture": 0.5}, tagmap)
    website = probabilities(tagmap, website=0.7, tabby_cat=0.2)
    page = gated.scores(website, np.array([[0.92, 0.95, 0.1]]))
    named = dict(zip(gated.vocabulary.tags, page[0], strict=True))
    assert named["person"] == pytest.approx(0.92 * 0.05) and named["tabby cat"] == pytest.approx(0.2 * 0.05)
    assert named["document"] == pytest.approx(0.95) and named["website"] == pytest.approx(0.7)
    emitted = [t.name for t in gated.vocabulary.select(page)[0]]
    assert "document" in emitted and "website" in emitted and "person" not in emitted
    photo = gated.scores(website, np.array([[0.92, 0.0, 0.0]]))  # no doubt it is a photo: unchanged
    assert dict(zip(gated.vocabulary.tags, photo[0], strict=True))["person"] == pytest.approx(0.92)
    plain = merge(["person"], {"person": 0.5}, tagmap)  # a model without non-photo tags: no gate
    assert not plain.has_gate and plain.scores(website, np.array([[0.92]]))[0].max() == pytest.approx(0.92)


def test_tags_a_library_trains_on_its_own_pictures_are_not_faded(tagmap):
    """Only the tags learned from photos (the general ones and, here, the starter's ``person``)
    fade on a graphic: a ``circle`` taught on drawings stays as it scores."""
    learned = ["person", "graphic", "circle"]
    gated = merge(learned, {t: 0.5 for t in learned}, tagmap, photo_tags=["person", "graphic"])
    drawing = gated.scores(probabilities(tagmap, tabby_cat=0.6), np.array([[0.8, 0.9, 0.85]]))
    named = dict(zip(gated.vocabulary.tags, drawing[0], strict=True))
    assert named["circle"] == pytest.approx(0.85) and named["graphic"] == pytest.approx(0.9)
    assert named["person"] == pytest.approx(0.8 * 0.1) and named["tabby cat"] == pytest.approx(0.6 * 0.1)
    assert {t.name for t in gated.vocabulary.select(drawing)[0]} >= {"circle", "graphic"}


def test_the_exported_graph_computes_the_same_gate(tagmap):
    """serving.export's TensorFlow scores equal the NumPy reference, gate included."""
    import keras

    from core import model as tagger_model
    from serving.export import tagger_module

    learned_tags = ["person", "cat", "document", "graphic"]
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = {
        tagger_model.LEARNED: keras.layers.Dense(4, activation="sigmoid", name="l")(pooled),
        tagger_model.IMAGENET: keras.layers.Dense(1000, name="i")(pooled),
    }
    tiny = keras.Model(inputs, outputs)
    trained = tagger_model.TrainedModel(tiny, learned_tags, 32, {})
    merged = merge(learned_tags, {t: 0.5 for t in learned_tags}, tagmap)
    pixels = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3)).astype(np.uint8)
    module = tagger_module(trained, merged)  # kept: its tf.function holds only a weak reference
    served = module.predict_pixels(pixels)["scores"].numpy()
    heads = tiny(pixels.astype(np.float32))
    logits = np.asarray(heads[tagger_model.IMAGENET])
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    expected = merged.scores(softmax, np.asarray(heads[tagger_model.LEARNED]))
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert merged.has_gate and expected[:, merged.vocabulary.tags.index("person")].max() < 1
