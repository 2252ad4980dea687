"""The trainable tagger: one backbone pass, two heads.

- the **general head** is the pretrained ImageNet classifier; the tag map turns its classes
  into the general tags (``cat``, ``animal``, ``coffee`` ...);
- the **learned head** is a multi-label sigmoid layer trained on the dataset's tags.

Training fits the learned head on the frozen backbone first, then optionally fine-tunes the
top blocks (BatchNorm layers stay frozen, in inference mode, as Keras' transfer learning guide
advises for small data). The saved model keeps both heads, so the export runs the backbone
once per image. Fine-tuning moves the features the ImageNet head reads: evaluation reports how
far the general head drifted (``general/top1_agreement``).

Image decoding for training, evaluation and the exported SavedModel is the same TensorFlow
code (:func:`decode_and_resize`), so the numbers measured in evaluation are the served ones; it
reads a JPEG's EXIF orientation with :func:`core.imageio.exif_orientation`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import backbone, imageio
from core.errors import InvalidValue, MissingFile
from core.tf_runtime import import_tensorflow

LEARNED = "learned"
IMAGENET = "imagenet"
MODEL_FILE = "model.keras"
INFO_FILE = "model.json"
NUM_BLOCKS = backbone.DEFAULT.blocks  # MBConv blocks of the default backbone (Lite0: 16, Lite2: 21)


def decode_and_resize(encoded, image_size: int):
    """Encoded image bytes (JPEG, PNG, GIF, BMP) to ``(size, size, 3)`` float32 RGB in [0, 255].

    A JPEG at least twice the target size is decoded at 1/2, 1/4 or 1/8 scale in the DCT
    (as :mod:`core.imageio` does with OpenCV), several times faster than a full decode.
    A JPEG's EXIF orientation (:func:`core.imageio.exif_orientation`) is then applied, as OpenCV
    does, so a portrait camera photo comes out upright; other formats are taken as stored. The whole
    picture is then squeezed to a square (no crop) with an anti-aliased bilinear resize.
    """
    tf = import_tensorflow()

    def any_format():
        return tf.io.decode_image(encoded, channels=3, expand_animations=False, dtype=tf.uint8)

    def jpeg():
        shape = tf.image.extract_jpeg_shape(encoded)
        ratio = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) / float(image_size)
        halvings = tf.clip_by_value(
            tf.cast(tf.math.floor(tf.math.log(tf.maximum(ratio, 1.0)) / tf.math.log(2.0)), tf.int32), 0, 3
        )
        decoded = tf.switch_case(
            halvings, [lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r) for r in (1, 2, 4, 8)]
        )
        return imageio.apply_exif_orientation(decoded, imageio.exif_orientation(encoded))

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg, any_format)
    image.set_shape([None, None, 3])
    resized = tf.image.resize(tf.cast(image, tf.float32), [image_size, image_size], antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def build(num_tags: int, image_size: int, dropout: float = 0.2, which: str | None = None):
    """The two-headed model and the single-output model that training fits, on the backbone
    ``which`` (default :data:`core.backbone.DEFAULT`).

    Returns:
        ``(full, trainer)``: ``full`` maps images to ``{"learned": sigmoid scores,
        "imagenet": logits}``; ``trainer`` shares its layers and outputs the learned scores only.
        The backbone and ImageNet head start frozen.
    """
    import keras
    from keras import layers

    base = backbone.load_pretrained(include_top=True, image_size=image_size, which=which)
    for layer in base.layers:
        layer.trainable = False
    features = base.get_layer("features").output
    x = layers.Dropout(dropout, name="learned_dropout")(features)
    learned = layers.Dense(num_tags, activation="sigmoid", name=LEARNED)(x)
    full = keras.Model(base.input, {LEARNED: learned, IMAGENET: base.output}, name="imgtag_tagger")
    trainer = keras.Model(base.input, learned, name="imgtag_trainer")
    return full, trainer


def unfreeze_top_blocks(model, blocks: int) -> list[str]:
    """Make the top ``blocks`` MBConv blocks and the head convolution trainable.

    BatchNorm layers and the ImageNet classifier stay frozen. Returns the names of the layers
    made trainable.
    """
    total = 1 + max(
        int(layer.name.split(".")[1]) for layer in model.layers if layer.name.startswith("blocks.")
    )
    if not 0 <= blocks <= total:
        raise InvalidValue(f"fine-tune blocks must be between 0 and {total}, got {blocks}")
    if blocks == 0:
        return []
    first = total - blocks
    names = []
    for layer in model.layers:
        name = layer.name
        in_block = name.startswith("blocks.") and int(name.split(".")[1]) >= first
        if (
            (in_block or name == "conv_head")
            and type(layer).__name__ != "BatchNormalization"
            and layer.weights
        ):
            layer.trainable = True
            names.append(name)
    return names


@dataclass
class TrainedModel:
    """A trained model folder: the two-headed Keras model and what it was trained on."""

    model: Any
    tags: list[str]
    image_size: int
    info: dict

    @property
    def num_tags(self) -> int:
        return len(self.tags)


def save(directory: Path, full, tags: list[str], image_size: int, info: dict | None = None) -> Path:
    """Write ``model.keras`` and ``model.json`` (tags, image size, training facts)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full.save(directory / MODEL_FILE)
    meta = {"tags": list(tags), "image_size": int(image_size), **(info or {})}
    (directory / INFO_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return directory


def load(directory: str | Path) -> TrainedModel:
    """Read a folder written by :func:`save`.

    Raises:
        FileNotFoundError: the folder holds no trained model (with what to run first).
    """
    directory = Path(directory)
    if not (directory / MODEL_FILE).is_file() or not (directory / INFO_FILE).is_file():
        raise MissingFile(f"{directory}: no {MODEL_FILE} and {INFO_FILE}; run `imgtag train` first")
    import keras

    info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
    model = keras.models.load_model(directory / MODEL_FILE, compile=False)
    return TrainedModel(model, list(info["tags"]), int(info["image_size"]), info)
