"""The compact image embedding: what the tagger's backbone sees, kept to find similar images.

The backbone's last feature map (8 × 8 × 1,280 for EfficientNet-Lite at 256 px) comes out
of the same pass that scores the tags. The embedding reduces it to :data:`DIMENSIONS` signed
bytes:

1. pool it as the tagger does (the mean over the picture: what is in it) and over a 2 × 2
   grid (the mean of each quarter: where it is), 5 × 1,280 numbers (:func:`describe`). The
   grid tells a copy from another photo of the same kind of thing: on the held-out half of
   tests/bench/bench_near_duplicates.py, at the distance calibrated on the other half, the
   whole-picture mean alone called 46 of 58,760 pairs of different photos that share a tag
   duplicates (recall 0.995), the two together 1 (recall 0.997);
2. multiply by a fixed matrix with orthonormal columns (:func:`projection`, drawn once from
   :data:`SEED`: the same for every model and every run, no data needed to make it; it
   keeps angles, Johnson–Lindenstrauss);
3. scale each vector so its largest component is 127 and round to ``int8``.

Only directions matter: two embeddings are compared by cosine distance
(:func:`cosine_distance`, 0 the same direction, 1 unrelated), which the per-vector scale of
step 3 leaves unchanged. :data:`BYTES` bytes per asset: a million assets take 256 MB.

The exported SavedModel computes this in TensorFlow (:func:`tf_embed`, its ``embedding``
output); :func:`embed` is the same in NumPy.
"""

from __future__ import annotations

import functools

import numpy as np

from core.tf_runtime import import_tensorflow

DIMENSIONS = 256
BYTES = DIMENSIONS  # int8: one byte a number
SEED = 28_2026
QUANT_MAX = 127
GRID = 2  # the feature map is also pooled over GRID x GRID cells
EMBEDDING_KEY = "embedding"
FEATURES = "features"  # the backbone's pooling layer (core.backbone.build)
FEATURE_MAP = "feature_map"  # what it pools: the features_model output embeddings come from


def features_model(model):
    """The two-headed tagger (:func:`core.model.build`) with the backbone's last feature map
    (the input of its ``features`` pooling) as a third output, sharing every layer:
    ``{"learned", "imagenet", "feature_map"}`` from one pass. A model without that layer
    (a stand-in in tests) comes back as it is."""
    import keras  # only the export builds models: the catalog reads embeddings without Keras

    names = {layer.name for layer in model.layers}
    if FEATURES not in names or not isinstance(model.output, dict):
        return model
    feature_map = model.get_layer(FEATURES).input
    return keras.Model(model.inputs, {**model.output, FEATURE_MAP: feature_map}, name=model.name)


def _halves(length: int) -> tuple[slice, slice]:
    """The two halves of a side (an odd side's middle row is in both)."""
    return slice(0, (length + 1) // 2), slice(length // 2, length)


@functools.cache
def projection(features: int, dimensions: int = DIMENSIONS) -> np.ndarray:
    """The fixed ``(features, dimensions)`` float32 matrix with orthonormal columns (from :data:`SEED`)."""
    if not 0 < dimensions <= features:
        raise ValueError(f"cannot project {features} features onto {dimensions} dimensions")
    gaussian = np.random.default_rng(SEED).standard_normal((features, dimensions))
    q, r = np.linalg.qr(gaussian)
    q *= np.sign(np.diag(r))  # a unique Q: the QR of a Gaussian is then Haar-distributed
    matrix = q.astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def quantise(vectors: np.ndarray) -> np.ndarray:
    """Float vectors ``(n, d)`` to ``int8``, each scaled so its largest component is 127
    (a zero vector stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    peak = np.abs(vectors).max(axis=-1, keepdims=True)
    scaled = vectors * (QUANT_MAX / np.maximum(peak, 1e-12))
    return np.clip(np.rint(scaled), -QUANT_MAX, QUANT_MAX).astype(np.int8)


def describe(feature_maps: np.ndarray) -> np.ndarray:
    """Feature maps ``(n, h, w, c)`` to ``(n, 5 c)``: the mean over the whole map, then over each
    cell of the 2 × 2 grid (row by row)."""
    maps = np.asarray(feature_maps, np.float32)
    rows, cols = _halves(maps.shape[1]), _halves(maps.shape[2])
    cells = [maps[:, r, c].mean(axis=(1, 2)) for r in rows for c in cols]
    return np.concatenate([maps.mean(axis=(1, 2)), *cells], axis=-1)


def project(vectors: np.ndarray, dimensions: int = DIMENSIONS) -> np.ndarray:
    """Float vectors ``(n, d)`` through :func:`projection` to ``int8`` ``(n, dimensions)``."""
    vectors = np.asarray(vectors, np.float32)
    return quantise(vectors @ projection(vectors.shape[-1], dimensions))


def embed(feature_maps: np.ndarray, dimensions: int = DIMENSIONS) -> np.ndarray:
    """Backbone feature maps ``(n, h, w, c)`` to embeddings ``(n, dimensions)`` ``int8``."""
    return project(describe(feature_maps), dimensions)


def tf_embed(feature_maps, dimensions: int = DIMENSIONS):
    """:func:`embed` as TensorFlow ops, for the exported model (``int8 [None, dimensions]``)."""
    tf = import_tensorflow()
    height, width, channels = (int(n) for n in feature_maps.shape[1:])
    rows, cols = _halves(height), _halves(width)
    cells = [tf.reduce_mean(feature_maps[:, r, c], axis=[1, 2]) for r in rows for c in cols]
    described = tf.concat([tf.reduce_mean(feature_maps, axis=[1, 2]), *cells], axis=-1)
    projected = tf.matmul(described, tf.constant(projection((1 + GRID * GRID) * channels, dimensions)))
    peak = tf.reduce_max(tf.abs(projected), axis=-1, keepdims=True)
    scaled = projected * (QUANT_MAX / tf.maximum(peak, 1e-12))
    return tf.cast(tf.clip_by_value(tf.round(scaled), -QUANT_MAX, QUANT_MAX), tf.int8)


def to_bytes(vector: np.ndarray) -> bytes:
    """One embedding as the bytes stored in the catalog."""
    vector = np.asarray(vector)
    if vector.dtype != np.int8 or vector.ndim != 1:
        raise ValueError(f"an embedding is a 1-d int8 vector, got {vector.dtype} {vector.shape}")
    return vector.tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    """Stored bytes back to an ``int8`` vector."""
    return np.frombuffer(data, np.int8)


def normalised(vectors: np.ndarray) -> np.ndarray:
    """``int8`` embeddings ``(n, d)`` as float32 unit vectors (a zero vector stays zero)."""
    floats = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(floats, axis=-1, keepdims=True)
    return floats / np.maximum(norms, 1e-12)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distances between the rows of ``a`` ``(n, d)`` and of ``b`` ``(m, d)``: ``(n, m)``."""
    return 1.0 - normalised(np.atleast_2d(a)) @ normalised(np.atleast_2d(b)).T
