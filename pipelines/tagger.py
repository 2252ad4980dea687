"""The tagger: a batched engine that turns image bytes into tags with scores.

Decoding runs in a thread pool (OpenCV releases the GIL) a few batches ahead of the model;
inference runs in fixed-shape batches through one traced ``tf.function`` (the last, short
batch is padded), so the model never retraces and the CPU stays busy with both at once.
Results come back in input order; a file that cannot be decoded yields its error and the
rest of the batch is tagged.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipelines import imageio
from pipelines.backbone import IMAGE_SIZE
from pipelines.results import TagResult
from pipelines.settings import Settings
from pipelines.tagmap import TagMap
from pipelines.vocabulary import Vocabulary

PRETRAINED_MODEL_NAME = "efficientnet-lite0-imagenet"
PRETRAINED_MODEL_VERSION = "pretrained"

# (key, encoded bytes, a file path or a function returning the bytes, display name)
Item = tuple[Any, "bytes | Path | Callable[[], bytes]", str]


def lower_thread_priority(niceness: int = 10) -> None:
    """Run the calling thread at a lower CPU priority (Linux threads have their own nice).

    The model's runtime splits every layer across all cores and waits for the slowest
    thread, so one busy core slows it far more than the work on that core is worth
    (measured: one spinning Python thread took LiteRT from 230 to 118 images/s on 2 cores).
    Decoders at a lower priority yield to it; on 640x480 JPEGs ``tag_images`` went from 176
    to 204 images/s.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed: stay at normal priority
        pass


class Tagger:
    """Tags images with a model and the vocabulary that turns its outputs into tags.

    Args:
        predict: ``(batch, size, size, 3) uint8 -> (batch, outputs)``; called with exactly
            ``batch_size`` images every time.
        labels: turns the outputs into tags: a :class:`~pipelines.tagmap.TagMap` for the
            pretrained classifier's class probabilities, a
            :class:`~pipelines.vocabulary.Vocabulary` for an exported model's tag scores.
        model_name, model_version: recorded on every tag this tagger produces.
        predict_encoded: instead of ``predict``, a function from the encoded files
            (``list[bytes]``) to outputs: a model server that decodes itself
            (:meth:`serving.predictors.Predictor.scores`). Images are still decoded here
            first, so a file that cannot be read gets its reason and never reaches the server.
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        labels: TagMap | Vocabulary,
        model_name: str,
        model_version: str,
        *,
        image_size: int = IMAGE_SIZE,
        batch_size: int = 32,
        decode_threads: int = 2,
        max_pixels: int = imageio.DEFAULT_MAX_PIXELS,
        max_decode_bytes: int = imageio.DEFAULT_MAX_DECODE_BYTES,
        predict_encoded: Callable[[list[bytes]], np.ndarray] | None = None,
    ):
        self._predict = predict
        self._predict_encoded = predict_encoded
        self.labels = labels
        self.model_name = model_name
        self.model_version = model_version
        self.image_size = image_size
        self.batch_size = batch_size
        self.decode_threads = decode_threads
        self.max_pixels = max_pixels
        self.max_decode_bytes = max_decode_bytes

    def with_thresholds(self, overrides: Mapping[str, float]) -> Tagger:
        """This tagger with some tags' thresholds replaced (tag name -> threshold): a shallow
        copy sharing the model (nothing is reloaded), or ``self`` when ``overrides`` is empty.
        Tags the labels do not know are ignored; ``self`` is left as it is.

        The catalog keeps the thresholds people set (``catalog.services.threshold_overrides``);
        whoever tags for the catalog applies them before each batch.
        """
        if not overrides:
            return self
        tagger = copy.copy(self)
        tagger.labels = self.labels.with_thresholds(overrides)
        return tagger

    def _prepare(self, data: bytes | Path | Callable[[], bytes], name: str):
        if isinstance(data, Path):
            data = data.read_bytes()
        elif callable(data):
            data = data()
        image, info = imageio.load_for_model(
            data, self.image_size, name, max_pixels=self.max_pixels, max_decode_bytes=self.max_decode_bytes
        )
        return image, info, (data if self._predict_encoded else None)

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Model outputs for ``(n, size, size, 3)`` uint8 pixels, in fixed-shape batches."""
        out = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                pad = np.zeros((self.batch_size - n, *chunk.shape[1:]), dtype=np.uint8)
                chunk = np.concatenate([chunk, pad])
            out.append(np.asarray(self._predict(chunk))[:n])
        return np.concatenate(out) if out else np.zeros((0, self.labels.output_width), np.float32)

    def tag_images(self, items: Iterable[Item]) -> Iterator[TagResult]:
        """Tag many images; yields one :class:`TagResult` per item, in input order.

        Items are ``(key, data, name)`` where ``data`` is the encoded bytes, a
        :class:`~pathlib.Path`, or a function returning the bytes (paths and functions are
        read in the decode threads; an ``OSError`` there becomes the item's error).
        """
        lookahead = self.batch_size * 2
        source = iter(items)
        pending: deque[tuple[Any, str, Future]] = deque()
        with ThreadPoolExecutor(
            self.decode_threads, thread_name_prefix="decode", initializer=lower_thread_priority
        ) as pool:

            def refill():
                while len(pending) < lookahead:
                    try:
                        key, data, name = next(source)
                    except StopIteration:
                        return
                    pending.append((key, name, pool.submit(self._prepare, data, name)))

            refill()
            while pending:
                window = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
                refill()  # keep the pool decoding the next batch while the model runs
                results, pixels, files, slots = [], [], [], []
                for key, name, future in window:
                    try:
                        image, info, data = future.result()
                    except imageio.ImageError as exc:
                        results.append(TagResult(key, name, error=exc))
                    except OSError as exc:
                        results.append(
                            TagResult(key, name, error=imageio.ImageError(name, f"cannot read: {exc}"))
                        )
                    else:
                        slots.append(len(results))
                        results.append(TagResult(key, name, info=info))
                        pixels.append(image)
                        files.append(data)
                if pixels:
                    if self._predict_encoded is not None:
                        outputs = np.asarray(self._predict_encoded(files))
                    else:
                        outputs = self.predict_pixels(np.stack(pixels))
                    tags = self.labels.select(outputs)
                    for slot, image_tags in zip(slots, tags):
                        results[slot].tags = image_tags
                yield from results


def _softmax_function(model, batch_size: int, image_size: int):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([batch_size, image_size, image_size, 3], tf.uint8)])
    def predict(pixels):
        return tf.nn.softmax(model(tf.cast(pixels, tf.float32), training=False), axis=-1)

    return predict


def keras_predictor(model, batch_size: int, image_size: int = IMAGE_SIZE):
    """A fixed-shape ``tf.function`` returning softmax probabilities of a logits model."""
    import tensorflow as tf

    predict = _softmax_function(model, batch_size, image_size)
    return lambda pixels: predict(tf.constant(pixels)).numpy()


def litert_flatbuffer(model, batch_size: int, image_size: int = IMAGE_SIZE) -> bytes:
    """Convert the softmax function of a Keras logits model to a LiteRT flatbuffer (about 2 s)."""
    import tensorflow as tf

    from pipelines.tf_runtime import quiet_stderr

    function = _softmax_function(model, batch_size, image_size)
    with quiet_stderr():  # the converter logs every pass from C++
        # No trackable object: given the Keras model, the converter resolves its variables by
        # name and computes NaN since the layer names lost their leading underscore. The
        # concrete function's captured variables are all it needs.
        return tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()]).convert()


def litert_interpreter(flatbuffer: bytes, threads: int | None = None):
    """Run a flatbuffer with XNNPACK; returns ``predict(pixels) -> probabilities``. No TensorFlow."""
    from ai_edge_litert.interpreter import Interpreter

    from pipelines.tf_runtime import quiet_stderr

    with quiet_stderr():  # the interpreter logs its delegate
        interpreter = Interpreter(model_content=flatbuffer, num_threads=threads or os.cpu_count() or 2)
        interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    lock = threading.Lock()  # one interpreter, one invocation at a time

    def predict(pixels: np.ndarray) -> np.ndarray:
        with lock:
            interpreter.set_tensor(source["index"], pixels)
            interpreter.invoke()
            return interpreter.get_tensor(target["index"]).copy()

    return predict


def litert_predictor(model, batch_size: int, image_size: int = IMAGE_SIZE, threads: int | None = None):
    """The model converted to LiteRT and run with XNNPACK: about 2x TensorFlow's throughput for
    this depthwise-heavy model on CPU, with the same outputs (to 1e-4)."""
    return litert_interpreter(litert_flatbuffer(model, batch_size, image_size), threads)


_lock = threading.Lock()


def _pretrained_flatbuffer(cache_dir: Path, batch_size: int) -> bytes:
    """The pretrained model as LiteRT, converted once and kept in ``cache_dir``.

    A cache hit needs neither TensorFlow nor Keras: start-up drops from seconds to a fraction
    of one, and a worker's memory by the size of TensorFlow. The key holds everything the
    flatbuffer depends on (weights, batch size, converter version, this code's format).
    """
    import hashlib
    from importlib.metadata import version

    from pipelines import backbone

    weights = backbone.weights_path()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    key = f"{PRETRAINED_MODEL_NAME}-b{batch_size}-{digest}-tf{version('tensorflow')}-v1"
    path = cache_dir / f"{key}.tflite"
    if path.is_file():
        return path.read_bytes()
    from pipelines.tf_runtime import import_tensorflow

    import_tensorflow()
    flatbuffer = litert_flatbuffer(backbone.load_pretrained(include_top=True), batch_size)
    _write_cache(path, flatbuffer)
    return flatbuffer


def _champion_flatbuffer(cache_dir: Path, model: CurrentModel, batch_size: int) -> bytes:
    """The champion's ``predict_pixels`` signature as LiteRT, converted once per version."""
    import hashlib
    from importlib.metadata import version

    digest = hashlib.sha256((model.path / "saved_model.pb").read_bytes()).hexdigest()[:16]
    path = (
        cache_dir
        / f"{model.name}-v{model.version}-b{batch_size}-{digest}-tf{version('tensorflow')}-v1.tflite"
    )
    if path.is_file():
        return path.read_bytes()
    from pipelines.tf_runtime import import_tensorflow, quiet_stderr

    tf = import_tensorflow()
    predict = _saved_model_predictor(model.path)
    size = model.image_size
    function = tf.function(predict, input_signature=[tf.TensorSpec([batch_size, size, size, 3], tf.uint8)])
    with quiet_stderr():
        flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
            [function.get_concrete_function()], predict.loaded
        ).convert()
    _write_cache(path, flatbuffer)
    return flatbuffer


def _saved_model_predictor(path: Path):
    """``pixels -> scores`` through an exported SavedModel's ``predict_pixels`` signature."""
    from pipelines.tf_runtime import import_tensorflow

    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["predict_pixels"]

    def predict(pixels):
        return signature(pixels=pixels)["scores"]

    predict.loaded = loaded  # keeps the variables alive; the converter needs them too
    return predict


def _write_cache(path: Path, flatbuffer: bytes) -> None:
    try:  # a cache that cannot be written costs the conversion next time, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(flatbuffer)
        os.replace(partial, path)
    except OSError:
        pass


@dataclass(frozen=True)
class CurrentModel:
    """The model the tagger serves: the champion in the model repository, else the starter model
    (else, when none is shipped, the pretrained ImageNet classifier alone)."""

    name: str
    version: str
    path: Path | None = None  # its SavedModel; None for the pretrained classifier
    image_size: int = IMAGE_SIZE
    served: bool = False  # in the model repository (so TF Serving has it too)


def current_model(settings: Settings | None = None) -> CurrentModel:
    """Which model tags now: the version labelled ``champion`` in ``IMGTAG_MODEL_BASE``'s
    ``models.config``; until a model has been promoted, the starter model
    (:mod:`serving.starter`, exported into ``IMGTAG_CACHE_DIR`` on first use), or the
    pretrained ImageNet tagger with ``IMGTAG_STARTER=off``.
    Cheap once that export exists (reads one small file and stats a few), so long-running
    workers ask before every batch."""
    settings = settings or Settings.from_env()
    from serving import starter
    from serving.repository import ModelRepository

    promotion = ModelRepository(settings.model_base, settings.model_name).current()
    if promotion is None:
        head = starter.load_head() if settings.starter else None
        if head is None:
            return CurrentModel(PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION)
        return CurrentModel(
            starter.MODEL_NAME, head.version, starter.saved_model(settings.cache_dir, head), starter.IMAGE_SIZE
        )
    import json

    info = json.loads((Path(promotion.path) / "assets" / "model.json").read_text())
    return CurrentModel(
        settings.model_name, str(promotion.version), Path(promotion.path), int(info["image_size"]), served=True
    )


@functools.cache
def _cached_tagger(
    model: CurrentModel,
    batch_size: int,
    decode_threads: int,
    max_pixels: int,
    max_decode_bytes: int,
    runtime: str,
    cache_dir: Path,
) -> Tagger:
    import cv2

    cv2.setNumThreads(1)  # the engine decodes in its own threads; OpenCV's pool would oversubscribe
    if model.path is not None:
        labels = Vocabulary.read(model.path / "assets")
        if runtime == "litert":
            predict = litert_interpreter(_champion_flatbuffer(cache_dir / "models", model, batch_size))
        else:
            signature = _saved_model_predictor(model.path)
            predict = lambda pixels: signature(pixels).numpy()
    elif runtime == "litert":
        labels = TagMap.load()
        predict = litert_interpreter(_pretrained_flatbuffer(cache_dir / "models", batch_size))
    else:
        from pipelines.tf_runtime import import_tensorflow

        import_tensorflow()
        from pipelines import backbone

        labels = TagMap.load()
        predict = keras_predictor(backbone.load_pretrained(include_top=True), batch_size)
    return Tagger(
        predict,
        labels,
        model.name,
        model.version,
        image_size=model.image_size,
        batch_size=batch_size,
        decode_threads=decode_threads,
        max_pixels=max_pixels,
        max_decode_bytes=max_decode_bytes,
    )


@functools.cache
def _remote_tagger(serving, model: CurrentModel, settings: Settings) -> Tagger:
    from serving.predictors import predictor_from_settings

    # Ask for the version number the label points at now, not for the label: the scores then
    # come from the version whose vocabulary names them, even while TF Serving is still
    # moving the label (it rereads models.config every poll interval).
    pinned = dataclasses.replace(serving, label=None, version=int(model.version))
    predictor = predictor_from_settings(settings, pinned)
    return Tagger(
        None,
        predictor.vocabulary,
        model.name,
        model.version,
        image_size=model.image_size,
        batch_size=settings.batch_size,
        decode_threads=settings.decode_threads,
        max_pixels=settings.max_pixels,
        max_decode_bytes=settings.max_decode_bytes,
        predict_encoded=predictor.scores,
    )


def get_tagger(settings: Settings | None = None) -> Tagger:
    """The tagger of the current model (:func:`current_model`), loaded on first use and kept.

    A new champion is picked up on the next call. Loading takes well under a second once the
    LiteRT model is in ``IMGTAG_CACHE_DIR``, a few seconds the first time.

    With ``IMGTAG_PREDICTOR=rest`` or ``grpc`` (:class:`serving.predictors.ServingSettings`)
    the champion's scores come from TF Serving; until the repository has a champion (``imgtag
    starter install`` or a promotion) there is nothing for the server to serve, and the starter
    model tags in process.
    """
    settings = settings or Settings.from_env()
    model = current_model(settings)
    from serving.predictors import ServingSettings

    serving = ServingSettings.from_env()
    if serving.predictor != "inprocess" and model.served:
        with _lock:
            return _remote_tagger(serving, model, settings)
    with _lock:
        return _cached_tagger(
            model,
            settings.batch_size,
            settings.decode_threads,
            settings.max_pixels,
            settings.max_decode_bytes,
            settings.runtime,
            settings.cache_dir,
        )
