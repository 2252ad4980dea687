"""Export a trained tagger as one self-contained SavedModel, the artifact TF Serving loads.

Signatures:

- ``serving_default``: ``images`` — a batch of encoded image bytes (``tf.string [None]``; JPEG,
  PNG, GIF, BMP) — to ``scores`` (``float32 [None, tags]``) and ``embedding`` (``int8 [None, 256]``,
  :mod:`core.embedding`: the same pass's feature map, pooled, for similar images). Decoding and resizing happen
  inside, so a client sends the file's bytes (``{"b64": ...}`` over REST) and nothing else.
- ``predict_pixels``: ``pixels`` (``uint8 [None, size, size, 3]``, RGB) to ``scores`` and ``embedding``; the
  in-process tagger decodes with OpenCV and feeds this one.

One backbone pass feeds two heads: the general tags (the ImageNet classifier through the tag
map) and the learned tags; their union is the output, in the order of ``assets/labels.txt``,
one score per tag (:func:`core.vocabulary.merge`: a tag both heads know scores the larger
of the two, a broader tag at least as much as a learned tag below it). ``assets/tags.csv``
holds each tag's threshold (``off``: never emitted), head, parent tag and the reason for its
threshold, ``assets/learned_head.npz`` the learned layer (the next model trains on it:
:mod:`pipelines.training.train`), and ``assets.extra/tf_serving_warmup_requests`` warms TF
Serving up.
``saved_model_cli show --dir <version> --all`` lists both signatures.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

import numpy as np

from core import model as tagger_model
from core.embedding import EMBEDDING_KEY, FEATURE_MAP, features_model, tf_embed
from core.errors import InvalidValue
from core.tagmap import TagMap, parse_threshold
from core.tf_runtime import import_tensorflow
from core.vocabulary import Merge, Vocabulary, merge
from serving.starter_files import learned_tags
from serving.warmup import write_warmup

INPUT_KEY = "images"
HEAD_ASSET = "learned_head.npz"  # the learned layer's kernel and bias, in assets/
PIXELS_KEY = "pixels"
OUTPUT_KEY = "scores"
PIXELS_SIGNATURE = "predict_pixels"
EXPORT_FORMAT = 2  # what the signatures return; 2: ``embedding`` beside ``scores``


def read_thresholds(path: str | Path) -> tuple[dict[str, float], dict[str, str]]:
    """``(thresholds, reasons)`` from a ``thresholds.json`` written by ``imgtag evaluate``."""
    chosen = json.loads(Path(path).read_text())["tags"]
    return (
        {tag: parse_threshold(c["threshold"]) for tag, c in chosen.items()},
        {tag: c.get("reason", "") for tag, c in chosen.items()},
    )


def read_fallback(path: str | Path) -> tuple[dict[str, float], dict[str, float]]:
    """``(fallback, slope)`` of the tags that have a fallback in a ``thresholds.json``
    (:func:`core.tagmap.emitted`); empty when the calibration chose none."""
    chosen = json.loads(Path(path).read_text())["tags"]
    with_fallback = {tag: c for tag, c in chosen.items() if c.get("fallback") is not None}
    return (
        {tag: float(c["fallback"]) for tag, c in with_fallback.items()},
        {tag: float(c.get("slope") or 1.0) for tag, c in with_fallback.items()},
    )


def tag_merge(
    trained: tagger_model.TrainedModel,
    thresholds: dict[str, float],
    *,
    learned_only: bool = False,
    reasons: dict[str, str] | None = None,
    tagmap_dir: Path | None = None,
    fallback: dict[str, float] | None = None,
    slope: dict[str, float] | None = None,
    photo_tags: Collection[str] | None = None,
) -> Merge:
    """How the trained model's two heads become the exported vocabulary's scores.

    ``tagmap_dir``: the tag map of the general tags (``settings.tagmap_dir``; None: the packaged
    one); ``fallback``, ``slope``: from the calibration (:func:`read_fallback`); ``photo_tags``:
    the learned tags a non-photo fades out (default: the starter model's, which it learned from
    photos; the tags a library trains on its own pictures are left as they score)."""
    tagmap = TagMap.load(tagmap_dir)
    if photo_tags is None:
        photo_tags = learned_tags()
    return merge(
        trained.tags,
        thresholds,
        None if learned_only else tagmap,
        parent=tagmap.parent,
        reasons=reasons,
        fallback=fallback,
        slope=slope,
        photo_tags=photo_tags,
    )


def tagger_module(trained: tagger_model.TrainedModel, merged: Merge, assets: list[Path] = ()):
    """The ``tf.Module`` that is exported: both signatures around one ``scores`` function.

    Also converted to LiteRT as it is, for the in-process tagger (:mod:`serving.starter`)."""
    tf = import_tensorflow()

    size = trained.image_size

    class Tagger(tf.Module):
        def __init__(self):
            super().__init__(name="imgtag_tagger")
            self.model = features_model(trained.model)  # the tags' outputs and the feature map
            self.general = None if merged.general_matrix is None else tf.constant(merged.general_matrix)
            self.lift = tf.constant(merged.lift)
            self.non_photo = tf.constant(merged.non_photo) if merged.has_gate else None
            self.gated = tf.constant(merged.gated) if merged.has_gate else None
            self.assets = [tf.saved_model.Asset(str(p)) for p in assets]

        def outputs(self, pixels):
            out = self.model(pixels, training=False)
            if FEATURE_MAP not in out:  # a model without the backbone (tests' stand-ins)
                return {OUTPUT_KEY: self.scores(out)}
            return {OUTPUT_KEY: self.scores(out), EMBEDDING_KEY: tf_embed(out[FEATURE_MAP])}

        def scores(self, out):
            learned = out[tagger_model.LEARNED]
            # one tag, one score: each learned score reaches its own column and its ancestors'
            scores = tf.reduce_max(learned[:, :, None] * self.lift[None], axis=1)
            if self.general is not None:
                probabilities = tf.nn.softmax(out[tagger_model.IMAGENET], axis=-1)
                scores = tf.maximum(tf.minimum(tf.matmul(probabilities, self.general), 1.0), scores)
            if self.non_photo is None:
                return scores
            # not a photo of things (a document, a screenshot ...): the other tags fade out
            not_a_photo = tf.reduce_max(learned * self.non_photo[None], axis=1, keepdims=True)
            return scores * (1.0 - not_a_photo * self.gated[None])

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_KEY)])
        def serve(self, images):
            pixels = tf.map_fn(
                lambda encoded: tagger_model.decode_and_resize(encoded, size),
                images,
                fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
            )
            return self.outputs(pixels)

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8, name=PIXELS_KEY)])
        def predict_pixels(self, pixels):
            return self.outputs(tf.cast(pixels, tf.float32))

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
    tagmap_dir: Path | None = None,
) -> Path:
    """Write the SavedModel of a trained model into ``out_dir`` (replaced if present).

    Args:
        model_dir: a folder written by ``imgtag train``.
        thresholds_file: ``thresholds.json`` written by ``imgtag evaluate``.
        learned_only: leave the general (ImageNet-derived) tags out.
        warmup_images: encoded images for TF Serving's warm-up requests (none: no warm-up file).
        info: facts stored in ``assets/model.json`` (run id, dataset hash ...).
        tagmap_dir: the tag map of the general tags (``settings.tagmap_dir``; None: the packaged one).
    """

    import_tensorflow()
    thresholds, reasons = read_thresholds(thresholds_file)
    fallback, slope = read_fallback(thresholds_file)
    trained = tagger_model.load(model_dir)
    try:
        merged = tag_merge(
            trained,
            thresholds,
            learned_only=learned_only,
            reasons=reasons,
            tagmap_dir=tagmap_dir,
            fallback=fallback,
            slope=slope,
        )
    except ValueError as exc:
        raise InvalidValue(f"{thresholds_file}: {exc}") from None
    return export_model(
        trained, merged, out_dir, model_name=model_name, warmup_images=warmup_images, info=info
    )


def export_model(
    trained: tagger_model.TrainedModel,
    merged: Merge,
    out_dir: str | Path,
    *,
    model_name: str = "imgtag-tagger",
    warmup_images: list[bytes] | None = None,
    info: dict | None = None,
) -> Path:
    """Write the SavedModel of a model in memory and its merged vocabulary (see :func:`export`)."""

    tf = import_tensorflow()
    vocab = merged.vocabulary
    out_dir = Path(out_dir)
    staging = Path(
        tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent if out_dir.parent.exists() else None)
    )
    try:
        asset_dir = staging / "source-assets"
        files = vocab.write(asset_dir)
        meta = _write_model_json(asset_dir / "model.json", trained, vocab, model_name, info)
        head = _write_learned_head(asset_dir / HEAD_ASSET, trained)
        module = tagger_module(trained, merged, [*files, meta, head])
        saved = staging / "saved_model"
        tf.saved_model.save(
            module,
            str(saved),
            signatures={"serving_default": module.serve, PIXELS_SIGNATURE: module.predict_pixels},
        )
        if warmup_images:
            write_warmup(saved, model_name, warmup_images, input_key=INPUT_KEY)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        saved.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _write_model_json(
    path: Path, trained: tagger_model.TrainedModel, vocab: Vocabulary, model_name: str, info: dict | None
) -> Path:
    """Write the export's ``model.json``: its name, image size, tags, signature keys and ``info``."""
    path.write_text(
        json.dumps(
            {
                "name": model_name,
                "image_size": trained.image_size,
                "learned_tags": list(trained.tags),
                "general_tags": sum(h != "learned" for h in vocab.heads),
                "input": INPUT_KEY,
                "output": OUTPUT_KEY,
                **(info or {}),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return path


def _write_learned_head(path: Path, trained: tagger_model.TrainedModel) -> Path:
    """Write the learned layer (tags, kernel, bias), so that the next model can be trained on this one."""
    kernel, bias = trained.model.get_layer(tagger_model.LEARNED).get_weights()
    np.savez_compressed(
        path,
        tags=np.array(list(trained.tags), dtype=str),
        kernel=np.asarray(kernel, np.float32),
        bias=np.asarray(bias, np.float32),
    )
    return path


def read_learned_head(saved_model_dir: str | Path) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """``(learned tags, kernel, bias)`` of an exported model's learned layer (``assets/learned_head.npz``),
    without loading the SavedModel; None when the export does not carry it (made by an older imgtag)."""
    assets = Path(saved_model_dir) / "assets"
    if not (assets / HEAD_ASSET).is_file():
        return None
    with np.load(assets / HEAD_ASSET) as arrays:
        tags, kernel, bias = [str(t) for t in arrays["tags"]], arrays["kernel"], arrays["bias"]
    if kernel.shape[1] != len(tags) or bias.shape != (len(tags),):
        raise InvalidValue(f"{assets / HEAD_ASSET}: {kernel.shape[1]} outputs for {len(tags)} learned tags")
    return list(tags), kernel, bias


class LoadedModel:
    """An exported SavedModel loaded in process: scores for encoded images, and its vocabulary."""

    def __init__(self, saved_model_dir: str | Path):
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

    def pixel_scores(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, tags)`` scores for decoded ``(n, size, size, 3)`` uint8 RGB pixels (the
        ``predict_pixels`` signature, which the in-process tagger's decoder feeds)."""
        signature = self._loaded.signatures[PIXELS_SIGNATURE]
        return signature(**{PIXELS_KEY: self._tf.constant(np.asarray(pixels, np.uint8))})[OUTPUT_KEY].numpy()
