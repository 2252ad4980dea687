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
code (:func:`decode_and_resize`), so the numbers measured in evaluation are the served ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import backbone
from core.errors import InvalidValue, MissingFile

LEARNED = "learned"
IMAGENET = "imagenet"
MODEL_FILE = "model.keras"
INFO_FILE = "model.json"
NUM_BLOCKS = backbone.DEFAULT.blocks  # MBConv blocks of the default backbone (Lite0: 16, Lite2: 21)


# JPEG segments scanned for the EXIF block, and IFD0 entries searched for the orientation: both
# bounded, so a crafted file costs a few hundred small ops at most.
_MAX_JPEG_SEGMENTS = 64
_MAX_IFD_ENTRIES = 100
_EXIF_ORIENTATION_TAG = 0x0112
_EXIF_HEADER = (0x45, 0x78, 0x69, 0x66, 0x00, 0x00)  # b"Exif\0\0"


def exif_orientation(encoded):
    """The EXIF orientation (1..8) of encoded JPEG bytes, an int32 scalar tensor (TensorFlow ops only).

    Walks the JPEG's marker segments (at most 64, up to the start of scan) to the APP1 segment
    that starts with ``Exif\\0\\0``, reads its TIFF header (``II`` little endian, ``MM`` big
    endian) and looks for tag 0x0112 (type SHORT) among the first 100 entries of IFD0.
    Anything else gives 1: not a JPEG, no EXIF block, no orientation tag, a value outside
    1..8, and any malformed or truncated data. It never raises, so a bad EXIF block cannot
    stop the image from decoding. Being graph ops only (no Python at run time), it runs in a
    ``tf.function`` and in the exported SavedModel under TF Serving.
    """
    import tensorflow as tf

    size = tf.cast(tf.strings.length(encoded), tf.int64)

    def read(offset, count: int):
        """``count`` bytes from ``offset`` as int64 (zeros past either end), never failing."""
        start = tf.clip_by_value(offset, 0, size)
        raw = tf.io.decode_raw(tf.strings.substr(encoded, start, tf.constant(count, tf.int64)), tf.uint8)
        return tf.reshape(tf.pad(tf.cast(raw, tf.int64), [[0, count - tf.shape(raw)[0]]]), [count])

    def int64(value):
        return tf.constant(value, tf.int64)

    # 1. The JPEG segments, from just after the start-of-image marker (FF D8).
    soi = read(int64(0), 2)
    not_jpeg = tf.logical_not((soi[0] == 0xFF) & (soi[1] == 0xD8))

    def scan(step, offset, done, tiff, end):
        head = read(offset, 10)  # FF, marker, length (big endian, counts itself), then Exif\0\0?
        marker, length = head[1], head[2] * 256 + head[3]
        fill = marker == 0xFF  # a fill byte before a marker
        standalone = ((marker >= 0xD0) & (marker <= 0xD7)) | (marker == 0x01)  # no length field
        exif = (
            (marker == 0xE1)
            & (length >= 6 + 2 + 8)  # the header, the length field, a TIFF header
            & (offset + 2 + length <= size)
            & tf.reduce_all(tf.equal(head[4:10], tf.constant(_EXIF_HEADER, tf.int64)))
        )
        malformed = (head[0] != 0xFF) | (~fill & ~standalone & (length < 2))
        stop = malformed | exif | (marker == 0xDA) | (marker == 0xD9)  # start of scan, end of image
        advance = tf.where(fill, int64(1), tf.where(standalone, int64(2), 2 + length))
        return (
            step + 1,
            offset + advance,
            stop,
            tf.where(exif, offset + 10, tiff),
            tf.where(exif, offset + 2 + length, end),
        )

    _, _, _, tiff, end = tf.while_loop(
        lambda step, offset, done, tiff, end: (step < _MAX_JPEG_SEGMENTS) & tf.logical_not(done),
        scan,
        (tf.constant(0), int64(2), not_jpeg, int64(-1), int64(-1)),
        maximum_iterations=_MAX_JPEG_SEGMENTS,
    )

    # 2. The TIFF header: byte order, the magic number 42, the offset of IFD0 (from the header).
    header = read(tiff, 8)
    little = (header[0] == 0x49) & (header[1] == 0x49)  # "II"
    big = (header[0] == 0x4D) & (header[1] == 0x4D)  # "MM"

    def u16(data, at: int):
        first, second = data[..., at], data[..., at + 1]
        return tf.where(little, first + second * 256, first * 256 + second)

    def u32(data, at: int):
        low, high = u16(data, at), u16(data, at + 2)
        return tf.where(little, low + high * 65536, low * 65536 + high)

    ifd = tiff + u32(header, 4)
    count = u16(read(ifd, 2), 0)
    valid = (
        (tiff >= 0)
        & (little | big)
        & (u16(header, 2) == 42)
        & (ifd >= tiff + 8)
        & (ifd + 2 + 12 * count <= end)  # the whole IFD inside the segment
    )

    # 3. IFD0: a count, then 12-byte entries (tag, type, count, value); searched all at once.
    entries = tf.reshape(read(ifd + 2, 12 * _MAX_IFD_ENTRIES), [_MAX_IFD_ENTRIES, 12])
    present = tf.range(_MAX_IFD_ENTRIES, dtype=tf.int64) < count
    match = present & (u16(entries, 0) == _EXIF_ORIENTATION_TAG) & (u16(entries, 2) == 3)  # 3: SHORT
    value = tf.gather(u16(entries, 8), tf.argmax(tf.cast(match, tf.int32), output_type=tf.int64))
    known = valid & tf.reduce_any(match) & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(known, value, int64(1)), tf.int32)


def _apply_orientation(image, orientation):
    """Turn a decoded ``(H, W, C)`` image upright by its EXIF orientation (as OpenCV's IMREAD_COLOR)."""
    import tensorflow as tf

    def transposed():
        return tf.transpose(image, [1, 0, 2])

    return tf.switch_case(
        tf.clip_by_value(orientation, 1, 8) - 1,
        [
            lambda: image,  # 1: upright
            lambda: tf.reverse(image, [1]),  # 2: mirrored horizontally
            lambda: tf.reverse(image, [0, 1]),  # 3: rotated 180
            lambda: tf.reverse(image, [0]),  # 4: mirrored vertically
            transposed,  # 5: transpose
            lambda: tf.reverse(transposed(), [1]),  # 6: rotate 90 clockwise
            lambda: tf.reverse(transposed(), [0, 1]),  # 7: transverse
            lambda: tf.reverse(transposed(), [0]),  # 8: rotate 90 counter-clockwise
        ],
    )


def decode_and_resize(encoded, image_size: int):
    """Encoded image bytes (JPEG, PNG, GIF, BMP) to ``(size, size, 3)`` float32 RGB in [0, 255].

    A JPEG at least twice the target size is decoded at 1/2, 1/4 or 1/8 scale in the DCT
    (as :mod:`core.imageio` does with OpenCV), several times faster than a full decode.
    A JPEG's EXIF orientation (:func:`exif_orientation`) is then applied, as OpenCV does, so a
    portrait camera photo comes out upright; other formats are taken as stored. The whole
    picture is then squeezed to a square (no crop) with an anti-aliased bilinear resize.
    """
    import tensorflow as tf

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
        return _apply_orientation(decoded, exif_orientation(encoded))

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
    total = 1 + max(int(layer.name.split(".")[1]) for layer in model.layers if layer.name.startswith("blocks."))
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
