"""Export a trained tagger as one self-contained SavedModel, the artifact TF Serving loads.

Signatures:

- ``serving_default``: ``images`` — a batch of encoded image bytes (``tf.string [None]``; JPEG,
  PNG, GIF, BMP) — to ``scores`` (``float32 [None, tags]``). Decoding and resizing happen
  inside, so a client sends the file's bytes (``{"b64": ...}`` over REST) and nothing else.
- ``predict_pixels``: ``pixels`` (``uint8 [None, size, size, 3]``, RGB) to ``scores``; the
  in-process tagger decodes with OpenCV and feeds this one.

One backbone pass feeds two heads: the general tags (the ImageNet classifier through the tag
map) and the learned tags; their union is the output, in the order of ``assets/labels.txt``.
A learned tag with the name of a general tag replaces it. ``assets/tags.csv`` holds each tag's
threshold, head and parent tag, and ``assets.extra/tf_serving_warmup_requests`` warms TF
Serving up. ``saved_model_cli show --dir <version> --all`` lists both signatures.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from pipelines import model as tagger_model
from pipelines.tagmap import TagMap
from pipelines.vocabulary import Vocabulary

INPUT_KEY = "images"
PIXELS_KEY = "pixels"
OUTPUT_KEY = "scores"
PIXELS_SIGNATURE = "predict_pixels"
GENERAL, LEARNED = "general", "learned"


def vocabulary(
    learned_tags: list[str], thresholds: dict[str, float], tagmap: TagMap | None
) -> tuple[Vocabulary, list[int]]:
    """The exported vocabulary, and the general tag columns it keeps (learned tags win a clash)."""
    learned = set(learned_tags)
    general_columns = [] if tagmap is None else [j for j, t in enumerate(tagmap.tags) if t not in learned]
    tags = [tagmap.tags[j] for j in general_columns] + list(learned_tags)
    limits = [float(tagmap.thresholds[j]) for j in general_columns] + [
        float(thresholds[t]) for t in learned_tags
    ]
    heads = [GENERAL] * len(general_columns) + [LEARNED] * len(learned_tags)
    parent = {
        t: p
        for t, p in (tagmap.parent.items() if tagmap else ())
        if t in tags and p in tags and t not in learned
    }
    return Vocabulary(tuple(tags), np.array(limits, np.float32), tuple(heads), parent), general_columns


def _module(trained: tagger_model.TrainedModel, general_matrix: np.ndarray | None, assets: list[Path]):
    import tensorflow as tf

    size = trained.image_size

    class Tagger(tf.Module):
        def __init__(self):
            super().__init__(name="imgtag_tagger")
            self.model = trained.model
            self.general = None if general_matrix is None else tf.constant(general_matrix, tf.float32)
            self.assets = [tf.saved_model.Asset(str(p)) for p in assets]

        def scores(self, pixels):
            out = self.model(pixels, training=False)
            learned = out[tagger_model.LEARNED]
            if self.general is None:
                return learned
            probabilities = tf.nn.softmax(out[tagger_model.IMAGENET], axis=-1)
            return tf.concat([tf.minimum(tf.matmul(probabilities, self.general), 1.0), learned], axis=1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_KEY)])
        def serve(self, images):
            pixels = tf.map_fn(
                lambda encoded: tagger_model.decode_and_resize(encoded, size),
                images,
                fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            )
            return {OUTPUT_KEY: self.scores(pixels)}

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name=PIXELS_KEY)])
        def predict_pixels(self, pixels):
            return {OUTPUT_KEY: self.scores(tf.cast(pixels, tf.float32))}

    return Tagger()


def export(
    model_dir: str | Path,
    thresholds_file: str | Path,
    out_dir: str | Path,
    *,
    learned_only: bool = False,
    model_name: str = "imgtag-tagger",
    warmup_images: list[bytes] | None = None,
    info: dict | None = None,
) -> Path:
    """Write the SavedModel of a trained model into ``out_dir`` (replaced if present).

    Args:
        model_dir: a folder written by ``imgtag train``.
        thresholds_file: ``thresholds.json`` written by ``imgtag evaluate``.
        learned_only: leave the general (ImageNet-derived) tags out.
        warmup_images: encoded images for TF Serving's warm-up requests (none: no warm-up file).
        info: facts stored in ``assets/model.json`` (run id, dataset hash ...).
    """
    from pipelines.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    trained = tagger_model.load(model_dir)
    chosen = json.loads(Path(thresholds_file).read_text())["tags"]
    missing = [t for t in trained.tags if t not in chosen]
    if missing:
        raise ValueError(
            f"{thresholds_file}: no threshold for tags {missing}; run `imgtag evaluate` on this model"
        )
    tagmap = None if learned_only else TagMap.load()
    vocab, columns = vocabulary(trained.tags, {t: chosen[t]["threshold"] for t in trained.tags}, tagmap)
    general_matrix = None if tagmap is None else tagmap.matrix[:, columns]

    out_dir = Path(out_dir)
    staging = Path(
        tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent if out_dir.parent.exists() else None)
    )
    try:
        asset_dir = staging / "source-assets"
        files = vocab.write(asset_dir)
        meta = asset_dir / "model.json"
        meta.write_text(
            json.dumps(
                {
                    "name": model_name,
                    "image_size": trained.image_size,
                    "learned_tags": trained.tags,
                    "general_tags": 0 if tagmap is None else len(columns),
                    "input": INPUT_KEY,
                    "output": OUTPUT_KEY,
                    **(info or {}),
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
        module = _module(trained, general_matrix, [*files, meta])
        saved = staging / "saved_model"
        tf.saved_model.save(
            module,
            str(saved),
            signatures={"serving_default": module.serve, PIXELS_SIGNATURE: module.predict_pixels},
        )
        if warmup_images:
            from serving.warmup import write_warmup

            write_warmup(saved, model_name, warmup_images, input_key=INPUT_KEY)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        saved.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


class LoadedModel:
    """An exported SavedModel loaded in process: scores for encoded images, and its vocabulary."""

    def __init__(self, saved_model_dir: str | Path):
        from pipelines.tf_runtime import import_tensorflow

        tf = import_tensorflow()
        self.path = Path(saved_model_dir)
        self._tf = tf
        self._loaded = tf.saved_model.load(str(self.path))
        self._serve = self._loaded.signatures["serving_default"]
        self.vocabulary = Vocabulary.read(self.path / "assets")
        self.info = json.loads((self.path / "assets" / "model.json").read_text())

    def scores(self, images: list[bytes], batch_size: int = 32) -> np.ndarray:
        """``(n, tags)`` scores for encoded images, in :attr:`vocabulary` order."""
        out = [
            self._serve(**{INPUT_KEY: self._tf.constant(images[i : i + batch_size])})[OUTPUT_KEY].numpy()
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.vocabulary.output_width), np.float32)
