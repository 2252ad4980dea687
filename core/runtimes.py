"""In-process inference runtimes: a Keras model as a fixed-shape ``tf.function``, or converted
to LiteRT and run with XNNPACK (about 2x TensorFlow on CPU); the pretrained ImageNet model's
LiteRT flatbuffer, converted once and cached. TensorFlow is imported only when one is built.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np

from core import atomic, backbone, cgroup
from core.backbone import IMAGE_SIZE
from core.tf_runtime import import_tensorflow, quiet_stderr

PRETRAINED_MODEL_NAME = "efficientnet-lite0-imagenet"
PRETRAINED_MODEL_VERSION = "pretrained"


def _softmax_function(model, batch_size: int, image_size: int):
    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([batch_size, image_size, image_size, 3], tf.uint8)])
    def predict(pixels):
        return tf.nn.softmax(model(tf.cast(pixels, tf.float32), training=False), axis=-1)

    return predict


def keras_predictor(model, batch_size: int, image_size: int = IMAGE_SIZE):
    """A fixed-shape ``tf.function`` returning softmax probabilities of a logits model."""
    tf = import_tensorflow()

    predict = _softmax_function(model, batch_size, image_size)
    return lambda pixels: predict(tf.constant(pixels)).numpy()


def litert_flatbuffer(model, batch_size: int, image_size: int = IMAGE_SIZE) -> bytes:
    """Convert the softmax function of a Keras logits model to a LiteRT flatbuffer (about 2 s)."""
    tf = import_tensorflow()

    function = _softmax_function(model, batch_size, image_size)
    with quiet_stderr():  # the converter logs every pass from C++
        # No trackable object: given the Keras model, the converter resolves its variables by
        # name and computes NaN since the layer names lost their leading underscore. The
        # concrete function's captured variables are all it needs.
        return tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()]).convert()


def litert_interpreter(flatbuffer: bytes, threads: int | None = None):
    """Run a flatbuffer with XNNPACK; returns ``predict(pixels) -> probabilities``, or
    ``(scores, embeddings)`` for a model with an ``int8`` embedding output too. No TensorFlow."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_stderr():  # the interpreter logs its delegate
        interpreter = Interpreter(model_content=flatbuffer, num_threads=threads or cgroup.available_cpus())
        interpreter.allocate_tensors()
    (source,) = interpreter.get_input_details()
    # the scores, then the embedding (the only int8 output) when the model has one
    targets = sorted(interpreter.get_output_details(), key=lambda t: t["dtype"] == np.int8)
    lock = threading.Lock()  # one interpreter, one invocation at a time

    def predict(pixels: np.ndarray):
        with lock:
            interpreter.set_tensor(source["index"], pixels)
            interpreter.invoke()
            outputs = tuple(interpreter.get_tensor(t["index"]).copy() for t in targets)
        return outputs[0] if len(outputs) == 1 else outputs

    return predict


def litert_predictor(model, batch_size: int, image_size: int = IMAGE_SIZE, threads: int | None = None):
    """The model converted to LiteRT and run with XNNPACK: about 2x TensorFlow's throughput for
    this depthwise-heavy model on CPU, with the same outputs (to 1e-4)."""
    return litert_interpreter(litert_flatbuffer(model, batch_size, image_size), threads)


def pretrained_flatbuffer(cache_dir: Path, batch_size: int) -> bytes:
    """The pretrained model as LiteRT, converted once and kept in ``cache_dir``.

    A cache hit needs neither TensorFlow nor Keras: start-up drops from seconds to a fraction
    of one, and a worker's memory by the size of TensorFlow. The key holds everything the
    flatbuffer depends on (weights, batch size, converter version, this code's format).
    """
    import hashlib
    from importlib.metadata import version

    weights = backbone.weights_path()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    key = f"{PRETRAINED_MODEL_NAME}-b{batch_size}-{digest}-tf{version('tensorflow')}-v1"
    path = cache_dir / f"{key}.tflite"
    if path.is_file():
        return path.read_bytes()

    import_tensorflow()
    flatbuffer = litert_flatbuffer(backbone.load_pretrained(include_top=True), batch_size)
    write_cache(path, flatbuffer)
    return flatbuffer


def saved_model_predictor(path: Path):
    """``pixels -> scores`` through an exported SavedModel's ``predict_pixels`` signature, or
    ``(scores, embeddings)`` when it has an ``embedding`` output (:mod:`core.embedding`)."""

    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["predict_pixels"]
    embeds = "embedding" in signature.structured_outputs

    def predict(pixels):
        out = signature(pixels=pixels)
        return (out["scores"], out["embedding"]) if embeds else out["scores"]

    predict.loaded = loaded  # keeps the variables alive; the converter needs them too
    return predict


def signature_flatbuffer(predict, batch_size: int, image_size: int) -> bytes:
    """A :func:`saved_model_predictor` (or a function of one that keeps its ``loaded``) converted
    to a LiteRT flatbuffer for batches of ``batch_size`` uint8 pictures; outputs the function
    does not return are pruned."""
    tf = import_tensorflow()
    function = tf.function(
        predict, input_signature=[tf.TensorSpec([batch_size, image_size, image_size, 3], tf.uint8)]
    )
    with quiet_stderr():  # the converter logs every pass from C++
        return tf.lite.TFLiteConverter.from_concrete_functions(
            [function.get_concrete_function()], predict.loaded
        ).convert()


def write_cache(path: Path, flatbuffer: bytes) -> None:
    """Keep ``flatbuffer`` at ``path``, written all at once (a cache that cannot be written costs
    the conversion next time, nothing else: write errors are ignored)."""
    with contextlib.suppress(OSError):
        atomic.write(path, flatbuffer)
