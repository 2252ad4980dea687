"""The tagger: a batched engine that turns image bytes into tags with scores.

Decoding runs in a thread pool (OpenCV releases the GIL) a few batches ahead of the model;
inference runs in fixed-shape batches through one traced ``tf.function`` (the last, short
batch is padded), so the model never retraces and the CPU stays busy with both at once.
Results come back in input order; a file that cannot be decoded yields its error and the
rest of the batch is tagged.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from core import imageio
from core.backbone import IMAGE_SIZE
from core.results import TagResult
from core.tagmap import TagMap
from core.vocabulary import Vocabulary

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
        labels: turns the outputs into tags: a :class:`~core.tagmap.TagMap` for the
            pretrained classifier's class probabilities, a
            :class:`~core.vocabulary.Vocabulary` for an exported model's tag scores.
        model_name, model_version: recorded on every tag this tagger produces.
        predict_encoded: instead of ``predict``, a function from the encoded files
            (``list[bytes]``) to outputs, or to ``(outputs, embeddings or None)``: a model
            server that decodes itself (:meth:`serving.predictors.Predictor.scores`,
            ``scores_and_embeddings``). Images are still decoded here
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
        return self.predict_with_embeddings(pixels)[0]

    def predict_with_embeddings(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(outputs, embeddings)`` for ``(n, size, size, 3)`` uint8 pixels; embeddings
        (``int8``, :mod:`core.embedding`) are None when the model makes none."""
        out, embedded = [], []
        for start in range(0, len(pixels), self.batch_size):
            chunk = pixels[start : start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size:
                pad = np.zeros((self.batch_size - n, *chunk.shape[1:]), dtype=np.uint8)
                chunk = np.concatenate([chunk, pad])
            outputs = self._predict(chunk)
            if isinstance(outputs, tuple):  # (scores, embeddings)
                outputs, embeddings = outputs
                embedded.append(np.asarray(embeddings)[:n])
            out.append(np.asarray(outputs)[:n])
        if not out:
            return np.zeros((0, self.labels.output_width), np.float32), None
        return np.concatenate(out), (np.concatenate(embedded) if embedded else None)

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
                    embeddings = None
                    if self._predict_encoded is not None:
                        outputs = self._predict_encoded(files)
                        if isinstance(outputs, tuple):  # (scores, embeddings or None)
                            outputs, embeddings = outputs
                        outputs = np.asarray(outputs)
                    else:
                        outputs, embeddings = self.predict_with_embeddings(np.stack(pixels))
                    tags = self.labels.select(outputs)
                    for k, (slot, image_tags) in enumerate(zip(slots, tags, strict=True)):
                        results[slot].tags = image_tags
                        if embeddings is not None:
                            results[slot].embedding = embeddings[k]
                yield from results
