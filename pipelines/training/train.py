"""The ``train`` stage: transfer learning of the learned head (then, optionally, the top blocks).

Input is a dataset folder (:mod:`pipelines.training.dataset`); output is a model folder
(:mod:`core.model`) and an MLflow run holding the parameters, per-epoch metrics
(``train/loss``, ``val/loss``, ``train/pr_auc``, ``val/pr_auc``), the training curves and the
dataset's DVC hash.

The learned head trains on the frozen backbone first, and the backbone's pooled features do not
change while it does: they are computed once per image (and once more mirrored, the
augmentation), and the head's epochs run on them, in seconds rather than minutes. Fine-tuning
the top blocks then goes through the ``tf.data`` pipeline: files are read and decoded in
parallel, decoded images are cached in memory after the first epoch, light augmentation (flip,
brightness, contrast) runs on the cached images, and batches are prefetched.

By default a model is built **on the champion**, what the model repository serves (the starter
model, :mod:`serving.starter`, until a first promotion): the learned head starts from the
champion's (its exported ``learned_head.npz``), the dataset's tags are trained (a tag the
champion knows starts from its weights), and every other tag of the champion (``person``, the
everyday objects, the tags an earlier round taught) is kept exactly — its column gets no
gradient and keeps its threshold, and the general tags keep theirs where these labels cannot
judge them — so training adds and improves tags and never silently loses one. ``--base starter``
builds on the shipped starter instead, ``--base none`` learns only the dataset's tags; the gate
refuses either when it drops tags the champion emits, unless told to replace the vocabulary.
Fine-tuning the backbone moves the features every kept column reads: the gate's per-tag losses
show what that cost.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core import backbone, training_limits
from core import model as tagger_model
from core.errors import InvalidValue
from core.settings import Settings
from core.tagmap import format_threshold
from core.tf_runtime import import_tensorflow
from core.vocabulary import Vocabulary
from pipelines.training import calibration, tracking
from pipelines.training import dataset as ds
from pipelines.training.layout import RunLayout
from serving import starter
from serving.export import read_learned_head
from serving.repository import ModelRepository

log = logging.getLogger(__name__)


BASES = training_limits.BASES
HEAD_PATIENCE = 6  # epochs without a better val/pr_auc before the head stops training


@dataclass(frozen=True)
class TrainParams:
    """What a data scientist chooses for a run: the fields the DAG's trigger form and ``imgtag train``
    take have their defaults and limits from their one declaration (:mod:`core.training_limits`);
    the rest are this object's alone."""

    epochs: int = training_limits.default("epochs")
    learning_rate: float = training_limits.default("learning_rate")
    batch_size: int = training_limits.default("batch_size")
    image_size: int = training_limits.default("image_size")
    fine_tune_blocks: int = training_limits.default("fine_tune_blocks")
    fine_tune_epochs: int = training_limits.default("fine_tune_epochs")
    fine_tune_learning_rate: float | None = None  # default: learning_rate / 10
    distill_weight: float = training_limits.default("distill_weight")  # 0: the ImageNet head may forget
    dropout: float = 0.2
    augment: bool = True
    seed: int = training_limits.default("seed")
    base: str = training_limits.default("base")  # "champion", "starter" or "none"

    def check(self) -> None:
        """Raise :class:`core.errors.InvalidValue` (a ``ValueError``) naming each parameter out of range."""
        problems = [p for t in training_limits.of("train") if (p := t.problem(getattr(self, t.name)))]
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if problems:
            raise InvalidValue("; ".join(problems))


@dataclass
class TrainResult:
    run_id: str
    model: Path
    tags: list[str]
    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images: int = 0

    def to_dict(self) -> dict:
        final = {k: round(v[-1], 4) for k, v in self.history.items() if v}
        return {
            "run_id": self.run_id,
            "model": str(self.model),
            "tags": self.tags,
            "train_images": self.images,
            "epochs": len(next(iter(self.history.values()), [])),
            "final": final,
            "seconds": round(self.seconds, 1),
        }


def labels_matrix(examples: list[ds.Example], tags: list[str]) -> np.ndarray:
    """``(n, len(tags))`` multi-hot float32 labels in ``tags`` order."""
    index = {t: i for i, t in enumerate(tags)}
    y = np.zeros((len(examples), len(tags)), np.float32)
    for row, example in enumerate(examples):
        for tag in example.tags:
            if tag in index:
                y[row, index[tag]] = 1.0
    return y


def _augment(image):
    tf = import_tensorflow()

    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_brightness(image, 20.0)
    image = tf.image.random_contrast(image, 0.85, 1.15)
    return tf.clip_by_value(image, 0.0, 255.0)


def input_pipeline(
    files: list[str],
    labels: np.ndarray | dict[str, np.ndarray] | None,
    image_size: int,
    batch_size: int,
    *,
    training: bool = False,
    augment: bool = True,
    cache: bool = True,
    seed: int = 0,
):
    """A ``tf.data`` pipeline of ``(images, labels)`` batches (images only when ``labels`` is None).

    Args:
        files: image paths.
        labels: multi-hot labels, one row per file.
        training: shuffle every epoch and augment.
        cache: keep decoded images in memory after the first pass (augmentation comes after).
    """
    tf = import_tensorflow()

    autotune = tf.data.AUTOTUNE
    paths = tf.data.Dataset.from_tensor_slices(list(map(str, files)))
    images = paths.map(
        lambda path: tagger_model.decode_and_resize(tf.io.read_file(path), image_size),
        num_parallel_calls=autotune,
        deterministic=True,
    )
    data = (
        images
        if labels is None
        else tf.data.Dataset.zip((images, tf.data.Dataset.from_tensor_slices(labels)))
    )
    if cache:
        data = data.cache()
    if training:
        data = data.shuffle(max(len(files), 1), seed=seed, reshuffle_each_iteration=True)
        if augment:
            if labels is None:
                data = data.map(_augment, num_parallel_calls=autotune)
            else:
                data = data.map(lambda x, y: (_augment(x), y), num_parallel_calls=autotune)
    return data.batch(batch_size).prefetch(autotune)


def _epoch_logger(history: dict[str, list[float]], offset: int = 0):
    import keras
    import mlflow

    names = {
        "loss": "train/loss",
        "val_loss": "val/loss",
        "pr_auc": "train/pr_auc",
        "val_pr_auc": "val/pr_auc",
        # fine-tuning with distillation: two outputs, the learned one is comparable to the above
        "learned_loss": "train/loss",
        "val_learned_loss": "val/loss",
        "learned_pr_auc": "train/pr_auc",
        "val_learned_pr_auc": "val/pr_auc",
        "imagenet_loss": "train/distill_loss",
        "val_imagenet_loss": "val/distill_loss",
    }

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if "learned_loss" in logs:  # with distillation "loss" is the sum of both outputs' losses
                logs.pop("loss", None)
                logs.pop("val_loss", None)
            values = {names[k]: float(v) for k, v in logs.items() if k in names}
            for key, value in values.items():
                history.setdefault(key, []).append(value)
            mlflow.log_metrics(values, step=epoch)
            # one line per epoch in the stage's log (the Airflow task log, the terminal)
            shown = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            print(f"epoch {epoch + 1}/{self.params['epochs']}: {shown}", file=sys.stderr, flush=True)

    return EpochLogger()


def _masked_bce(mask: np.ndarray):
    """Binary cross-entropy over the tags whose ``mask`` is 1: the starter's tags a dataset does
    not label are kept as they are (their columns get no gradient)."""
    import keras

    weights = np.asarray(mask, np.float32)

    def masked_binary_crossentropy(y_true, y_pred):
        loss = keras.ops.binary_crossentropy(y_true, y_pred)
        return keras.ops.sum(loss * weights, axis=-1) / float(weights.sum())

    return masked_binary_crossentropy


def _compile(model, learning_rate: float, mask: np.ndarray, distill_weight: float | None = None) -> None:
    """Adam, binary cross-entropy and PR AUC on the learned tags that ``mask`` trains; with
    ``distill_weight``, the model has a second output (ImageNet probabilities) held to the
    pretrained ones by KL divergence."""
    import keras

    num_tags = len(mask)
    pr_auc = keras.metrics.AUC(
        multi_label=True, curve="PR", num_labels=num_tags, label_weights=list(map(float, mask)), name="pr_auc"
    )
    bce = keras.losses.BinaryCrossentropy() if all(mask) else _masked_bce(mask)
    if distill_weight is None:
        model.compile(keras.optimizers.Adam(learning_rate), bce, metrics=[pr_auc])
        return
    model.compile(
        keras.optimizers.Adam(learning_rate),
        loss={tagger_model.LEARNED: bce, tagger_model.IMAGENET: keras.losses.KLDivergence()},
        loss_weights={tagger_model.LEARNED: 1.0, tagger_model.IMAGENET: distill_weight},
        metrics={tagger_model.LEARNED: [pr_auc]},
    )


@dataclass(frozen=True)
class _Base:
    """The model a challenger is built on: its learned head, and the thresholds of every tag it emits."""

    version: str  # "imgtag-tagger:3", or the starter's version
    tags: tuple[str, ...]  # its learned head's tags, in output order
    kernel: np.ndarray
    bias: np.ndarray
    thresholds: dict[str, float]  # every tag of its vocabulary, general ones included (inf: off)
    reasons: dict[str, str]
    image_size: int
    fallback: dict[str, float] = field(default_factory=dict)  # the tags that have a fallback
    slope: dict[str, float] = field(default_factory=dict)


def _base(params: TrainParams, settings: Settings) -> _Base | None:
    """What ``params.base`` names: the champion (what the model repository serves; the starter
    until a first promotion), the starter, or nothing.

    Raises:
        InvalidValue: the base was trained at another image size than ``params.image_size``, or
            the champion's export does not carry its learned head.
    """
    if params.base == "none":
        return None
    base = None
    if params.base == "champion":
        served = ModelRepository(settings.model_base, settings.model_name).current()
        if served is not None and not served.metadata.get("starter"):
            base = _served_base(served, settings)
    if base is None:
        head = (
            starter.load_head(tagmap_dir=settings.tagmap_dir)
            if settings.starter or params.base == "starter"
            else None
        )
        if head is None:
            log.warning(
                "no starter model (%s, IMGTAG_STARTER): only this dataset's tags", starter.STARTER_DIR
            )
            return None
        vocabulary = starter.vocabulary(head)
        base = _Base(
            head.version,
            head.tags,
            head.kernel,
            head.bias,
            dict(zip(vocabulary.tags, map(float, vocabulary.thresholds), strict=True)),
            dict(vocabulary.reasons),
            starter.IMAGE_SIZE,
            *_fallbacks(vocabulary),
        )
    if params.image_size != base.image_size:
        raise InvalidValue(
            f"the {params.base} ({base.version}) was trained at {base.image_size} px and this run asks for "
            f"{params.image_size} px: train at {base.image_size} px to build on it and keep its tags, or with "
            "--base none to learn only this dataset's tags (the gate then refuses the model unless "
            "--replace-vocabulary)"
        )
    return base


def _served_base(served, settings: Settings) -> _Base:
    """The served champion's learned head and thresholds, from its exported SavedModel."""
    head = read_learned_head(served.path)
    name = f"{settings.model_name}:{served.version}"
    if head is None:
        raise InvalidValue(
            f"the champion ({name}, {served.path}) was exported without its learned head (by an older "
            "imgtag): train with --base starter, or promote a model exported since"
        )
    tags, kernel, bias = head
    vocabulary = Vocabulary.read(served.path / "assets")
    info = json.loads((served.path / "assets" / "model.json").read_text())
    return _Base(
        name,
        tuple(tags),
        kernel,
        bias,
        dict(zip(vocabulary.tags, map(float, vocabulary.thresholds), strict=True)),
        dict(vocabulary.reasons),
        int(info["image_size"]),
        *_fallbacks(vocabulary),
    )


def _fallbacks(vocabulary: Vocabulary) -> tuple[dict[str, float], dict[str, float]]:
    """``(fallback, slope)`` of the vocabulary's tags that have a fallback (core.tagmap.emitted)."""
    if vocabulary.fallback is None:
        return {}, {}
    has = [j for j, limit in enumerate(vocabulary.fallback) if np.isfinite(limit)]
    return (
        {vocabulary.tags[j]: float(vocabulary.fallback[j]) for j in has},
        {vocabulary.tags[j]: float(vocabulary.slope[j]) for j in has},
    )


def _learned_tags(tags: list[str], base: _Base | None) -> tuple[list[str], np.ndarray]:
    """The learned head's tags (the dataset's, then the base's others) and the training mask."""
    kept = [t for t in base.tags if t not in set(tags)] if base else []
    return list(tags) + kept, np.array([1.0] * len(tags) + [0.0] * len(kept), np.float32)


def _start_from(full, learned_tags: list[str], base: _Base | None) -> None:
    """Copy the base's weights into the columns of the tags it knows."""
    if base is None:
        return
    layer = full.get_layer(tagger_model.LEARNED)
    kernel, bias = (np.array(w) for w in layer.get_weights())
    column = {t: j for j, t in enumerate(base.tags)}
    for j, tag in enumerate(learned_tags):
        if tag in column:
            kernel[:, j], bias[j] = base.kernel[:, column[tag]], base.bias[column[tag]]
    layer.set_weights([kernel, bias])


def _features(
    full, files: list, image_size: int, batch_size: int, mirrored: bool = False, grayscale: bool = False
) -> np.ndarray:
    """The frozen backbone's pooled features of image files (``mirrored``: of their mirror
    images; ``grayscale``: of their black-and-white versions)."""
    tf = import_tensorflow()
    import keras  # function-level: Keras comes with TensorFlow, loaded only to train

    extractor = keras.Model(full.input, full.get_layer("features").output)
    if not files:
        return np.zeros((0, extractor.output.shape[-1]), np.float32)
    images = input_pipeline(files, None, image_size, batch_size, cache=False)
    if mirrored:
        images = images.map(tf.image.flip_left_right)
    if grayscale:
        images = images.map(lambda x: tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x)))
    return np.asarray(extractor.predict(images, verbose=0), np.float32)  # one traced graph, not eager


def _head_on_features(full):
    """A model from pooled features to the learned scores that shares ``full``'s head layers."""
    import keras

    features = keras.Input(full.get_layer("features").output.shape[1:], name="features")
    dropout = full.get_layer("learned_dropout")
    return keras.Model(features, full.get_layer(tagger_model.LEARNED)(dropout(features)), name="imgtag_head")


def _distillation(full, data: ds.Dataset, train_rows, val_rows, tags: list[str], params: TrainParams):
    """Fine-tuning that does not forget ImageNet ("learning without forgetting", Li & Hoiem 2016).

    The general tags come from the ImageNet head reading the same features the top blocks are
    being tuned for the new tags; left alone, a few epochs move the pretrained top-1 class of
    most images. So the pretrained model's class probabilities on each (unaugmented) image are
    recorded first and become a second target: the fine-tuning model outputs both heads, and a
    KL divergence, weighted by ``distill_weight``, holds the ImageNet output to them.

    Returns:
        ``(model, train data, validation data)`` for ``fit``.
    """
    import keras
    from keras import layers

    def with_teacher(rows, training: bool):
        files = [data.image_path(e) for e in rows]
        probabilities = []
        for batch in input_pipeline(files, None, params.image_size, params.batch_size, cache=False):
            logits = full(batch, training=False)[tagger_model.IMAGENET]
            probabilities.append(keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1)))
        targets = {
            tagger_model.LEARNED: labels_matrix(rows, tags),
            tagger_model.IMAGENET: np.concatenate(probabilities),
        }
        return input_pipeline(
            files,
            targets,
            params.image_size,
            params.batch_size,
            training=training,
            augment=params.augment,
            seed=params.seed,
        )

    outputs = full.output
    tuner = keras.Model(
        full.input,
        {
            tagger_model.LEARNED: outputs[tagger_model.LEARNED],
            tagger_model.IMAGENET: layers.Softmax(name="imagenet_probabilities")(
                outputs[tagger_model.IMAGENET]
            ),
        },
        name="imgtag_fine_tuner",
    )
    return tuner, with_teacher(train_rows, True), (with_teacher(val_rows, False) if val_rows else None)


def _plot_curves(history: dict[str, list[float]], fine_tune_from: int | None, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("loss", "pr_auc"), strict=True):
        for split in ("train", "val"):
            values = history.get(f"{split}/{metric}")
            if values:
                axis.plot(range(1, len(values) + 1), values, marker="o", label=split)
        if fine_tune_from:
            axis.axvline(fine_tune_from + 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        axis.set_xlabel("epoch")
        axis.set_title({"loss": "binary cross-entropy", "pr_auc": "PR AUC (multi-label)"}[metric])
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(
    dataset_dir: str | Path,
    out_dir: str | Path | None = None,
    params: TrainParams = TrainParams(),
    *,
    dataset_hash: str | None = None,
    run_name: str | None = None,
    dag_run_id: str | None = None,
    settings: Settings,
    verbose: int = 0,
) -> TrainResult:
    """Train on the dataset's train split, validate on its val split, log everything to MLflow.

    Args:
        dataset_dir: a dataset folder written by ``imgtag ingest``.
        out_dir: the model folder; default ``<dataset>/../model``.
        params: hyper-parameters.
        dataset_hash: the dataset's DVC hash (``imgtag version``), recorded on the run.
        run_name: the MLflow run's name (the DAG passes its run id).

    Raises:
        ValueError: bad parameters, or no training images.
    """
    params.check()
    data = _training_data(dataset_dir)
    train_rows = data.split("train")
    out_dir = Path(out_dir) if out_dir else RunLayout.of(data.root).model

    import_tensorflow()
    import keras
    import mlflow

    keras.utils.set_random_seed(params.seed)
    base = _base(params, settings)
    learned_tags, mask = _learned_tags(data.tags, base)
    full, trainer = tagger_model.build(len(learned_tags), params.image_size, params.dropout)
    _start_from(full, learned_tags, base)

    tracking.client(settings)
    experiment = tracking.experiment_id(settings)
    history: dict[str, list[float]] = {}
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        _record_run_inputs(data, params, base, settings, dataset_hash, run_name, dag_run_id)
        _train_head(full, data, learned_tags, mask, params, history, verbose)
        fine_tuned = _fine_tune(full, trainer, data, learned_tags, mask, params, history, verbose)
        seconds = time.perf_counter() - started
        info = _model_info(run.info.run_id, data, dataset_hash, params, fine_tuned, learned_tags, base)
        tagger_model.save(out_dir, full, learned_tags, params.image_size, info)
        epochs_run = params.epochs + (params.fine_tune_epochs if fine_tuned else 0)
        _log_model_outputs(out_dir, history, params.epochs if fine_tuned else None)
        mlflow.log_metric("train/images_per_second", len(train_rows) * epochs_run / seconds)
    return TrainResult(run.info.run_id, out_dir, learned_tags, history, seconds, len(train_rows))


def _training_data(dataset_dir: str | Path) -> ds.Dataset:
    """The dataset, refused (:class:`InvalidValue`) when its train split or its tags are empty."""
    data = ds.load(dataset_dir)
    if not data.split("train") or not data.tags:
        raise InvalidValue(f"{data.root}: the train split is empty; ingest more labelled images")
    return data


def _record_run_inputs(
    data: ds.Dataset,
    params: TrainParams,
    base: _Base | None,
    settings: Settings,
    dataset_hash: str | None,
    run_name: str | None,
    dag_run_id: str | None,
) -> None:
    """Tag the active MLflow run and log what it trains from: parameters, dataset, validation report."""
    import mlflow

    mlflow.set_tags(
        {
            "imgtag.stage": "train",
            "imgtag.dataset_hash": dataset_hash or "unversioned",
            "imgtag.git_commit": tracking.git_commit(settings),
            "imgtag.dag_run_id": dag_run_id or run_name or "",
            "imgtag.dataset": str(Path(data.root).resolve()),
            "imgtag.base": base.version if base else "none",
        }
    )
    mlflow.log_params(
        {**asdict(params), "dataset_hash": dataset_hash or "unversioned", "num_tags": len(data.tags)}
    )
    mlflow.log_dict(data.summary(), "dataset/dataset.json")
    _log_dataset_input(data, dataset_hash)
    report = RunLayout.of(data.root).validation_report
    if report.is_file():
        mlflow.log_artifact(str(report), "validation")


def _head_training_data(full, data: ds.Dataset, learned_tags: list[str], params: TrainParams):
    """``(features, labels, sample weights)`` of the train split for the head, augmented when asked,
    and the validation split's (None without one)."""
    size, batch = params.image_size, params.batch_size
    train_rows, val_rows = data.split("train"), data.split("val")
    train_files = [data.image_path(e) for e in train_rows]
    x_train = _features(full, train_files, size, batch)
    y_train = labels_matrix(train_rows, learned_tags)
    # The head learns a library's odds, not the dataset's: a tag on more than half the
    # training images (92% of the COCO photos show people) has them weighted down to half,
    # or it learns to say `person` about anything (calibration.library_weights).
    w_train = calibration.library_weights([e.tags for e in train_rows])
    if params.augment:
        # Mirror images, and black-and-white ones: without them the head learns shortcuts
        # (old black-and-white photos nearly all show people, so a grey texture became `person`).
        x_train = np.concatenate(
            [
                x_train,
                _features(full, train_files, size, batch, mirrored=True),
                _features(full, train_files, size, batch, grayscale=True),
            ]
        )
        y_train = np.concatenate([y_train, y_train, y_train])
        w_train = np.concatenate([w_train, w_train, w_train])
    validation = (
        (
            _features(full, [data.image_path(e) for e in val_rows], size, batch),
            labels_matrix(val_rows, learned_tags),
            calibration.library_weights([e.tags for e in val_rows]),
        )
        if val_rows
        else None
    )
    return (x_train, y_train, w_train), validation


def _train_head(
    full,
    data: ds.Dataset,
    learned_tags: list[str],
    mask: np.ndarray,
    params: TrainParams,
    history: dict[str, list[float]],
    verbose: int,
) -> None:
    """Train the learned head on the frozen backbone: features once (and mirrored), then fast epochs."""
    import keras
    import mlflow

    (x_train, y_train, w_train), validation = _head_training_data(full, data, learned_tags, params)
    head = _head_on_features(full)
    _compile(head, params.learning_rate, mask)
    # The head keeps its best epoch on validation (PR AUC), and stops when it has not
    # improved for a while: on a few thousand photos it overfits within ten epochs.
    best = keras.callbacks.EarlyStopping(
        "val_pr_auc", patience=HEAD_PATIENCE, mode="max", restore_best_weights=True
    )
    head.fit(
        x_train,
        y_train,
        sample_weight=w_train,
        batch_size=params.batch_size,
        validation_data=validation,
        epochs=params.epochs,
        callbacks=[_epoch_logger(history), *([best] if validation else [])],
        shuffle=True,
        verbose=verbose,
    )
    if validation and best.best_weights is not None:
        mlflow.log_metric("train/best_epoch", best.best_epoch + 1)
        history["train/best_epoch"] = [best.best_epoch + 1]
        print(
            f"kept the head of epoch {best.best_epoch + 1} (best val/pr_auc {best.best:.4f})",
            file=sys.stderr,
            flush=True,
        )


def _fine_tune(
    full,
    trainer,
    data: ds.Dataset,
    learned_tags: list[str],
    mask: np.ndarray,
    params: TrainParams,
    history: dict[str, list[float]],
    verbose: int,
) -> list[str]:
    """Fine-tune the top blocks when ``params`` ask for it (with distillation when weighted);
    returns the unfrozen layers' names (none when not fine-tuning)."""
    if not (params.fine_tune_blocks and params.fine_tune_epochs):
        return []
    train_rows, val_rows = data.split("train"), data.split("val")
    if params.distill_weight > 0:
        tuner, tune_data, tune_val = _distillation(full, data, train_rows, val_rows, learned_tags, params)
    else:
        tuner, tune_data, tune_val = trainer, *_image_data(data, train_rows, val_rows, learned_tags, params)
    fine_tuned = tagger_model.unfreeze_top_blocks(full, params.fine_tune_blocks)
    _compile(
        tuner,
        params.fine_tune_learning_rate or params.learning_rate / 10,
        mask,
        params.distill_weight if params.distill_weight > 0 else None,
    )
    tuner.fit(
        tune_data,
        validation_data=tune_val,
        initial_epoch=params.epochs,
        epochs=params.epochs + params.fine_tune_epochs,
        callbacks=[_epoch_logger(history)],
        shuffle=False,
        verbose=verbose,
    )
    return fine_tuned


def _model_info(
    run_id: str,
    data: ds.Dataset,
    dataset_hash: str | None,
    params: TrainParams,
    fine_tuned: list[str],
    learned_tags: list[str],
    base: _Base | None,
) -> dict:
    """The model folder's ``model.json`` record of how it was trained (and what it kept of its base)."""
    info = {
        "run_id": run_id,
        "dataset": str(data.root),
        "dataset_hash": dataset_hash,
        "params": asdict(params),
        "fine_tuned_layers": len(fine_tuned),
        "trained_tags": list(data.tags),
        "backbone": backbone.DEFAULT.name,
    }
    if base is not None:
        info["base"] = _kept_from_base(base, learned_tags[len(data.tags) :])
    return info


def _kept_from_base(base: _Base, kept: list[str]) -> dict:
    """What a model keeps of its base: the learned tags this dataset does not label, and the general tags."""
    learned = set(base.tags)
    return {
        "version": base.version,
        # its learned tags this dataset does not label: trained no further, same thresholds
        "kept": {
            t: {
                "threshold": format_threshold(base.thresholds[t]),
                "reason": base.reasons.get(t, ""),
                **(
                    {"fallback": base.fallback[t], "slope": base.slope.get(t, 1.0)}
                    if t in base.fallback
                    else {}
                ),
            }
            for t in kept
        },
        # its general tags' thresholds, which evaluate keeps where these labels cannot judge them
        "general": {
            t: {"threshold": format_threshold(limit), "reason": base.reasons.get(t, "")}
            for t, limit in base.thresholds.items()
            if t not in learned
        },
    }


def _log_model_outputs(out_dir: Path, history: dict[str, list[float]], fine_tune_from: int | None) -> None:
    """Plot the training curves into the model folder and log them and ``model.json`` to the run."""
    import mlflow

    curves = _plot_curves(history, fine_tune_from, out_dir / "training_curves.png")
    mlflow.log_artifact(str(curves))
    mlflow.log_artifact(str(out_dir / tagger_model.INFO_FILE), "model")


def _image_data(data: ds.Dataset, train_rows, val_rows, tags: list[str], params: TrainParams):
    """``(train, validation)`` ``tf.data`` pipelines of decoded images and labels (fine-tuning)."""
    train_data = input_pipeline(
        [data.image_path(e) for e in train_rows],
        labels_matrix(train_rows, tags),
        params.image_size,
        params.batch_size,
        training=True,
        augment=params.augment,
        seed=params.seed,
    )
    val_data = (
        input_pipeline(
            [data.image_path(e) for e in val_rows],
            labels_matrix(val_rows, tags),
            params.image_size,
            params.batch_size,
        )
        if val_rows
        else None
    )
    return train_data, val_data


def _log_dataset_input(data: ds.Dataset, dataset_hash: str | None) -> None:
    """Record the dataset as the run's input (MLflow's dataset tracking), by its DVC hash."""
    import mlflow
    import pandas as pd

    frame = pd.DataFrame(
        [{"sha256": e.sha256, "split": e.split, "tags": ";".join(e.tags)} for e in data.examples]
    )
    digest = (dataset_hash or "")[:36] or None
    source = str(data.root)
    with warnings.catch_warnings():  # MLflow registers the local source class twice and says so
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=source, name="imgtag-dataset", digest=digest)
    mlflow.log_input(dataset, context="training")
