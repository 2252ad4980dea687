"""The compact embedding: fixed, small, and faithful to the features' angles."""

import numpy as np
import pytest

from core import embedding


def feature_maps(n: int, seed: int = 0) -> np.ndarray:
    """Backbone-like feature maps: 8 x 8 x 1280, non-negative, like ReLU6 activations."""
    return np.random.default_rng(seed).gamma(1.0, 0.3, (n, 8, 8, 1280)).astype(np.float32)


def test_an_embedding_is_256_bytes_and_the_same_in_every_process():
    vectors = embedding.embed(feature_maps(3))
    assert vectors.dtype == np.int8 and vectors.shape == (3, embedding.DIMENSIONS) == (3, embedding.BYTES)
    assert np.abs(vectors).max(axis=1).tolist() == [127, 127, 127]
    embedding.projection.cache_clear()  # a new draw from the seed gives the same matrix
    np.testing.assert_array_equal(embedding.embed(feature_maps(3)), vectors)
    stored = embedding.to_bytes(vectors[0])
    assert len(stored) == 256 and np.array_equal(embedding.from_bytes(stored), vectors[0])


def test_the_description_is_the_whole_mean_then_the_quarters():
    maps = np.zeros((1, 8, 8, 2), np.float32)
    maps[0, :4, 4:, 0] = 1.0  # the top right quarter lights channel 0
    described = embedding.describe(maps)[0]
    assert described.tolist() == [0.25, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    odd = embedding.describe(np.ones((1, 9, 9, 1), np.float32))[0]  # 9 rows: the middle one in both halves
    assert odd.tolist() == [1, 1, 1, 1, 1]


def test_the_projection_keeps_angles():
    matrix = embedding.projection(1280)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(embedding.DIMENSIONS), atol=1e-5)
    a, b = np.random.default_rng(1).standard_normal((2, 1280))
    mixes = np.stack([w * a + (1 - w) * b for w in np.linspace(0, 1, 50)])  # distances from 0 to far
    unit = mixes / np.linalg.norm(mixes, axis=1, keepdims=True)
    full = 1 - unit @ unit.T
    reduced = embedding.cosine_distance(embedding.project(mixes), embedding.project(mixes))
    assert full.max() > 0.5
    assert np.abs(reduced - full).max() < 0.1 and np.corrcoef(full.ravel(), reduced.ravel())[0, 1] > 0.99


def test_a_picture_moved_within_the_frame_is_farther_than_a_slightly_changed_one():
    maps = feature_maps(1, seed=2) * 0.2
    maps[:, :, :4, :640] += feature_maps(1, seed=4)[
        :, :, :4, :640
    ]  # one thing on the left, another on the right
    maps[:, :, 4:, 640:] += feature_maps(1, seed=5)[:, :, 4:, 640:]
    noisy = maps + np.random.default_rng(3).normal(0, 0.02, maps.shape).astype(np.float32)
    moved = np.roll(maps, 4, axis=2)  # the same content, left and right swapped: the same whole mean
    vectors = embedding.embed(np.concatenate([maps, noisy, moved]))
    d = embedding.cosine_distance(vectors[:1], vectors)[0]
    assert d[0] == pytest.approx(0, abs=1e-6) and d[1] < 0.05 < d[2]


def test_only_int8_vectors_are_stored():
    with pytest.raises(ValueError, match="int8"):
        embedding.to_bytes(np.zeros(256, np.float32))


def test_the_exported_model_embeds_in_the_same_pass_and_keeps_its_scores():
    """serving.export's ``embedding`` output equals :func:`core.embedding.embed` of the feature
    map the backbone pools, and ``scores`` is what the model without the embedding computes."""
    import keras

    from core import model as tagger_model
    from core.tagmap import TagMap
    from core.vocabulary import merge
    from serving.export import tagger_module

    inputs = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(1280, 3, activation="relu", name="conv")(
        keras.layers.Rescaling(1 / 255)(inputs)
    )
    pooled = keras.layers.GlobalAveragePooling2D(name="features")(conv)  # as the backbone names it
    outputs = {
        tagger_model.LEARNED: keras.layers.Dense(2, activation="sigmoid", name="learned")(pooled),
        tagger_model.IMAGENET: keras.layers.Dense(1000, name="fc")(pooled),
    }
    tiny = keras.Model(inputs, outputs)
    tags = ["person", "cat"]
    trained = tagger_model.TrainedModel(tiny, tags, 32, {})
    merged = merge(tags, {t: 0.5 for t in tags}, TagMap.load())
    pixels = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3)).astype(np.uint8)
    module = tagger_module(trained, merged)
    served = module.predict_pixels(pixels)
    feature_map = keras.Model(inputs, conv)
    expected = embedding.embed(np.asarray(feature_map(pixels.astype(np.float32))))
    got = served["embedding"].numpy()
    assert got.dtype == np.int8 and got.shape == (5, 256)
    assert np.abs(got.astype(int) - expected).max() <= 1  # float rounding at .5 may differ by one
    heads = tiny(pixels.astype(np.float32))
    logits = np.asarray(heads[tagger_model.IMAGENET])
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    np.testing.assert_allclose(
        served["scores"].numpy(), merged.scores(softmax, np.asarray(heads[tagger_model.LEARNED])), atol=1e-5
    )
