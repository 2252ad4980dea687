"""The pretrained backbones: weights read without PyTorch, the input scaling they expect,
and agreement with an independent NumPy forward pass (Lite0, and Lite2 that tags by default)."""

import sys

import cv2
import numpy as np
import pytest
import skimage.data

from core import backbone
from core.torch_legacy import TorchFileError, load_state_dict

pytestmark = pytest.mark.slow  # loads the pretrained backbones, runs them in Keras, LiteRT and NumPy

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field")


@pytest.fixture(scope="module")
def state():
    return load_state_dict(backbone.weights_path(backbone.LITE0))


def photo(name: str) -> np.ndarray:
    return cv2.resize(getattr(skimage.data, name)(), (224, 224), interpolation=cv2.INTER_AREA)


def test_weights_load_without_pytorch_and_look_ported_from_tensorflow(state):
    assert "torch" not in sys.modules
    assert state["_fc.weight"].shape == (1000, 1280)
    counters = [v for k, v in state.items() if k.endswith("num_batches_tracked")]
    assert len(counters) == 49 and not any(int(c) for c in counters)  # never trained in PyTorch


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.pth"
    bad.write_bytes(b"\x80\x02K\x01.")  # a pickle, but not a PyTorch file
    with pytest.raises(TorchFileError, match="magic number"):
        load_state_dict(bad)


def stem_log_variance_ratio(state, scaled: np.ndarray) -> float:
    """log(observed / stored) variance of the first conv's outputs, median over channels.

    The first BatchNorm stores the running variance of the stem's outputs on the training
    inputs; only the input scaling used in training reproduces it on real photos.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(scaled, ((0, 0), (0, 1), (0, 1), (0, 0)))  # TF "same", stride 2
    windows = sliding_window_view(padded, (3, 3), axis=(1, 2))[:, ::2, ::2]
    out = np.einsum("nhwcij,ocij->nhwo", windows, state["_conv_stem.weight"]).reshape(-1, 32)
    stored = state["_bn0.running_var"]
    alive = stored > 1e-6  # a few channels are dead (zero variance) in training
    return float(np.median(np.log(out.var(0)[alive] / stored[alive])))


def test_input_scaling_evidence(state):
    """The weights expect TF EfficientNet-Lite's (x - 127) / 128, not ImageNet mean/std."""
    x = np.stack([photo(n) for n in PHOTOS]).astype(np.float32)
    candidates = {
        "lite": (x - backbone.INPUT_MEAN) / backbone.INPUT_STD,
        "imagenet_mean_std": (x / 255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225],
        "unit": x / 255,
    }
    misfit = {k: abs(stem_log_variance_ratio(state, v)) for k, v in candidates.items()}
    assert min(misfit, key=misfit.get) == "lite", misfit
    assert misfit["lite"] < np.log(2) < misfit["imagenet_mean_std"], misfit


@pytest.fixture(scope="module")
def keras_model():
    return backbone.load_pretrained(which=backbone.LITE0, image_size=224)


def test_keras_graph_matches_independent_numpy_forward_pass(state, keras_model):
    """The Keras graph and a NumPy-only forward pass give the same classes and logits."""
    import json

    from tests.reference import numpy_efficientnet_lite0 as ref

    images = np.stack([photo("chelsea"), photo("coffee")])
    expected = ref.forward(state, ref.preprocess(images, ref.TFLITE_MEAN, ref.TFLITE_STD))
    got = keras_model.predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3)

    stored = json.loads(ref.JSON_PATH.read_text())
    for name, logits in zip(("chelsea", "coffee"), got, strict=True):
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        top5 = [int(i) for i in np.argsort(-probabilities)[:5]]
        record = stored["images"][name]
        assert top5 == record["top5_indices"]
        np.testing.assert_allclose(probabilities[top5], record["top5_probs"], atol=2e-3)


def test_litert_runtime_gives_the_same_probabilities_as_tensorflow(keras_model):
    """The default in-process runtime (LiteRT, XNNPACK) is a faster copy, not another model."""
    from core.runtimes import keras_predictor, litert_predictor

    images = np.stack([photo(n) for n in PHOTOS[:4]])
    expected = keras_predictor(keras_model, 4, image_size=224)(images)
    got = litert_predictor(keras_model, 4, image_size=224)(images)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_the_default_backbone_is_lite2_and_matches_the_numpy_forward_pass():
    """EfficientNet-Lite2, as the Keras graph builds it from core.backbone.LITE2, gives the logits
    of the NumPy pass built from the reference's own table (checked against the weights' shapes)."""
    from tests.reference import numpy_efficientnet_lite0 as ref

    assert backbone.DEFAULT is backbone.LITE2 and backbone.IMAGE_SIZE % 32 == 0
    lite2 = load_state_dict(backbone.weights_path())
    size = backbone.IMAGE_SIZE
    images = np.stack([cv2.resize(skimage.data.chelsea(), (size, size), interpolation=cv2.INTER_AREA)])
    expected = ref.forward(
        lite2, ref.preprocess(images, ref.TFLITE_MEAN, ref.TFLITE_STD), stages=ref.LITE2_STAGES
    )
    got = backbone.load_pretrained(image_size=size).predict(images.astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=1e-3)
    from core.tagmap import TagMap

    top = TagMap.load().class_tags[int(got[0].argmax())]
    assert top in ("tabby cat", "tiger cat", "egyptian cat"), top  # Chelsea is a tabby
