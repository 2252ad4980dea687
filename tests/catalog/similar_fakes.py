"""A fake tagger that also embeds, for the tests of embeddings and similar images.

:class:`EmbeddingTagger` tags as :class:`conftest.FakeTagger` does (by dominant colour) and
gives each image the embedding of its mean colour: a fixed direction per colour, moved a
little by the image's own pixels, so pictures of one colour are near each other and a copy
of a picture (re-encoded, resized) is nearest of all.
"""

from __future__ import annotations

import numpy as np

from core import embedding, imageio
from tests.catalog.conftest import FakeTagger


def colour_embedding(rgb: np.ndarray) -> np.ndarray:
    """The int8 embedding of a picture: its mean colour and its coarse layout, spread over 256 numbers."""
    import cv2

    small = cv2.resize(rgb, (4, 4), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()  # 48 numbers
    features = np.concatenate([np.repeat(rgb.reshape(-1, 3).mean(axis=0), 400), small * 0.5, np.zeros(32)])
    return embedding.quantise((features[None] / 255.0 - 0.5) @ embedding.projection(1280))[0]


class EmbeddingTagger(FakeTagger):
    """FakeTagger whose results carry embeddings (``model_version`` may be changed per test)."""

    def tag_images(self, items):
        items = list(items)
        by_key = {}
        for key, data, name in items:
            raw = data.read_bytes() if hasattr(data, "read_bytes") else data() if callable(data) else data
            try:
                by_key[id(key)] = colour_embedding(imageio.decode(raw, name)[0])
            except imageio.ImageError:
                pass
        for result in super().tag_images(items):
            if result.ok:
                result.embedding = by_key[id(result.key)]
            yield result
