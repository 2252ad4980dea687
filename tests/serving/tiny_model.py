"""A tiny SavedModel with the export's contract, for tests of the serving clients and the worker.

``images`` (``tf.string [-1]``) -> ``scores`` (``float32 [-1, 3]``): the mean colour of each
image, so tests can tell which model version answered by the scale of the scores.
"""

from pathlib import Path

import numpy as np

from core.vocabulary import Vocabulary
from serving.export import INPUT_KEY, OUTPUT_KEY
from serving.predictors import SIGNATURE_NAME

NAME = "imgtag-tagger"
TAGS = ("red", "green", "blue")


def tiny_saved_model(out: Path, scale: float) -> Path:
    """A SavedModel with the export's signature: ``images`` (tf.string [-1]) -> ``scores`` (float32 [-1, 3]).

    Scores are the mean RGB of the image resized to 8x8, over 255, times ``scale``; the vocabulary
    (``assets/tags.csv``) and ``assets/model.json`` sit beside it as in an export.
    """
    from core.tf_runtime import import_tensorflow

    tf = import_tensorflow()

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(scale, dtype=tf.float32)

        def colour(self, encoded):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
            image = tf.image.resize(tf.cast(image, tf.float32), [8, 8])
            return tf.reduce_mean(image, axis=[0, 1]) / 255.0 * self.scale

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_KEY)])
        def serve(self, images):
            scores = tf.map_fn(self.colour, images, fn_output_signature=tf.TensorSpec([3], tf.float32))
            return {OUTPUT_KEY: scores}

    module = Tiny()
    tf.saved_model.save(module, str(out), signatures={SIGNATURE_NAME: module.serve})
    vocabulary = Vocabulary(TAGS, np.array([0.5, 0.5, 0.5], np.float32), ("learned",) * 3, {})
    vocabulary.write(out / "assets")
    (out / "assets" / "model.json").write_text(
        f'{{"name": "{NAME}", "input": "images", "output": "scores", "image_size": 64}}\n'
    )
    return out
