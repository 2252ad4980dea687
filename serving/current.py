"""Which model tags now, and its tagger.

The champion in the model repository (``models.config``'s ``champion`` label); until a model has
been promoted, the shipped starter model; with ``IMGTAG_STARTER=off`` the pretrained ImageNet
classifier alone. :func:`get_tagger` builds the :class:`core.tagger.Tagger` for it, in process
(LiteRT or TensorFlow) or through TF Serving, and keeps it until the champion changes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from core import backbone
from core.backbone import IMAGE_SIZE
from core.runtimes import (
    PRETRAINED_MODEL_NAME,
    PRETRAINED_MODEL_VERSION,
    keras_predictor,
    litert_interpreter,
    pretrained_flatbuffer,
    saved_model_predictor,
    signature_flatbuffer,
    write_cache,
)
from core.settings import Settings
from core.tagger import Tagger
from core.tagmap import TagMap
from core.tf_runtime import import_tensorflow
from core.vocabulary import Vocabulary
from serving import starter
from serving.predictors import predictor_from_settings
from serving.repository import ModelRepository

_lock = threading.Lock()


def _champion_flatbuffer(cache_dir: Path, model: CurrentModel, batch_size: int) -> bytes:
    """The champion's ``predict_pixels`` signature as LiteRT, converted once per version."""
    import hashlib
    from importlib.metadata import version

    digest = hashlib.sha256((model.path / "saved_model.pb").read_bytes()).hexdigest()[:16]
    path = (
        cache_dir
        / f"{model.name}-v{model.version}-b{batch_size}-{digest}-tf{version('tensorflow')}-v2.tflite"
    )
    if path.is_file():
        return path.read_bytes()

    flatbuffer = signature_flatbuffer(saved_model_predictor(model.path), batch_size, model.image_size)
    write_cache(path, flatbuffer)
    return flatbuffer


@dataclass(frozen=True)
class CurrentModel:
    """The model the tagger serves: the champion in the model repository, else the starter model
    (else, when none is shipped, the pretrained ImageNet classifier alone)."""

    name: str
    version: str
    path: Path | None = None  # its SavedModel; None for the pretrained classifier
    image_size: int = IMAGE_SIZE
    served: bool = False  # in the model repository (so TF Serving has it too)


def current_model(settings: Settings) -> CurrentModel:
    """Which model tags now: the version labelled ``champion`` in ``IMGTAG_MODEL_BASE``'s
    ``models.config``; until a model has been promoted, the starter model
    (:mod:`serving.starter`, exported into ``IMGTAG_CACHE_DIR`` on first use), or the
    pretrained ImageNet tagger with ``IMGTAG_STARTER=off``.
    Cheap once that export exists (reads one small file and stats a few), so long-running
    workers ask before every batch."""
    promotion = ModelRepository(settings.model_base, settings.model_name).current()
    if promotion is None:
        head = starter.load_head(tagmap_dir=settings.tagmap_dir) if settings.starter else None
        if head is None:
            return CurrentModel(PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION)
        return CurrentModel(
            starter.MODEL_NAME,
            head.version,
            starter.saved_model(settings.cache_dir, head),
            starter.IMAGE_SIZE,
        )
    return _served(settings, promotion)


def _served(settings: Settings, promotion) -> CurrentModel:
    """The champion a ``models.config`` promotion names."""
    info = json.loads((Path(promotion.path) / "assets" / "model.json").read_text())
    return CurrentModel(
        settings.model_name,
        str(promotion.version),
        Path(promotion.path),
        int(info["image_size"]),
        served=True,
    )


def current_vocabulary(settings: Settings) -> tuple[CurrentModel, Vocabulary | None, Path | None]:
    """The model that tags now and the vocabulary its thresholds come from, without loading or
    exporting a model (no TensorFlow: the catalog's web process asks this).

    Returns:
        ``(model, vocabulary, source)``: the champion with its exported vocabulary and its
        ``tags.csv``; the starter (``model.path`` None: not exported here) with its head merged
        with the tag map and the head's tag file; the pretrained ImageNet tagger with None, None
        (its thresholds are the tag map's).
    """
    promotion = ModelRepository(settings.model_base, settings.model_name).current()
    if promotion is not None:
        model = _served(settings, promotion)
        return model, _read_vocabulary(str(model.path / "assets")), model.path / "assets" / "tags.csv"
    head = starter.load_head(tagmap_dir=settings.tagmap_dir) if settings.starter else None
    if head is None:
        return CurrentModel(PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION), None, None
    return (
        CurrentModel(starter.MODEL_NAME, head.version, None, starter.IMAGE_SIZE),
        _starter_vocabulary(head.version, head),
        starter.STARTER_DIR / starter.TAGS_FILE,
    )


@functools.lru_cache(maxsize=4)
def _read_vocabulary(assets: str) -> Vocabulary:
    return Vocabulary.read(assets)  # a numbered version's folder never changes


_starter_vocabularies: dict[str, Vocabulary] = {}


def _starter_vocabulary(version: str, head: starter.StarterHead) -> Vocabulary:
    if version not in _starter_vocabularies:  # the version is a digest of the head and the tag map
        _starter_vocabularies[version] = starter.vocabulary(head)
    return _starter_vocabularies[version]


@functools.cache
def _cached_tagger(
    model: CurrentModel,
    batch_size: int,
    decode_threads: int,
    max_pixels: int,
    max_decode_bytes: int,
    runtime: str,
    cache_dir: Path,
    tagmap_dir: Path | None,
) -> Tagger:
    import cv2

    cv2.setNumThreads(1)  # the engine decodes in its own threads; OpenCV's pool would oversubscribe
    if model.path is not None:
        labels = Vocabulary.read(model.path / "assets")
        if runtime == "litert":
            predict = litert_interpreter(_champion_flatbuffer(cache_dir / "models", model, batch_size))
        else:
            signature = saved_model_predictor(model.path)

            def predict(pixels):
                out = signature(pixels)  # scores, or (scores, embeddings)
                return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()
    elif runtime == "litert":
        labels = TagMap.load(tagmap_dir)
        predict = litert_interpreter(pretrained_flatbuffer(cache_dir / "models", batch_size))
    else:
        import_tensorflow()

        labels = TagMap.load(tagmap_dir)
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
        predict_encoded=predictor.scores_and_embeddings,  # the embeddings too, for similar images
    )


def get_tagger(settings: Settings) -> Tagger:
    """The tagger of the current model (:func:`current_model`), loaded on first use and kept.

    A new champion is picked up on the next call. Loading takes well under a second once the
    LiteRT model is in ``IMGTAG_CACHE_DIR``, a few seconds the first time.

    With ``IMGTAG_PREDICTOR=rest`` or ``grpc`` (``settings.serving``)
    the champion's scores come from TF Serving; until the repository has a champion (``imgtag
    starter install`` or a promotion) there is nothing for the server to serve, and the starter
    model tags in process.
    """
    model = current_model(settings)
    serving = settings.serving
    if serving.predictor != "inprocess" and model.served:
        with _lock:
            return _remote_tagger(serving, model, settings)
    return _in_process_tagger(model, settings)


def pretrained_tagger(settings: Settings) -> Tagger:
    """The pretrained ImageNet tagger alone (what ``IMGTAG_STARTER=off`` tags with), in process:
    the baseline the benchmarks compare the default with."""
    return _in_process_tagger(CurrentModel(PRETRAINED_MODEL_NAME, PRETRAINED_MODEL_VERSION), settings)


def _in_process_tagger(model: CurrentModel, settings: Settings) -> Tagger:
    with _lock:
        return _cached_tagger(
            model,
            settings.batch_size,
            settings.decode_threads,
            settings.max_pixels,
            settings.max_decode_bytes,
            settings.runtime,
            settings.cache_dir,
            settings.tagmap_dir,
        )
