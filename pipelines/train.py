"""The ``train`` stage: transfer learning of the learned head (then, optionally, the top blocks).

Input is a dataset folder (:mod:`pipelines.dataset`); output is a model folder
(:mod:`pipelines.model`) and an MLflow run holding the parameters, per-epoch metrics
(``train/loss``, ``val/loss``, ``train/pr_auc``, ``val/pr_auc``), the training curves and the
dataset's DVC hash.

The input pipeline is ``tf.data``: files are read and decoded in parallel, decoded images are
cached in memory after the first epoch, light augmentation (flip, brightness, contrast) runs
on the cached images, and batches are prefetched while the model trains.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipelines import dataset as ds
from pipelines import model as tagger_model
from pipelines.settings import Settings


@dataclass(frozen=True)
class TrainParams:
    """What a data scientist chooses for a run (the DAG's trigger form has the same fields)."""

    epochs: int = 8
    learning_rate: float = 1e-3
    batch_size: int = 32
    image_size: int = 224
    fine_tune_blocks: int = 0
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float | None = None  # default: learning_rate / 10
    distill_weight: float = 1.0  # fine-tuning keeps the ImageNet head's outputs (0: it may forget)
    dropout: float = 0.2
    augment: bool = True
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first parameter out of range."""
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be at least 1 (got {self.epochs})")
        if not 0 < self.learning_rate <= 1:
            problems.append(f"learning rate must be in (0, 1] (got {self.learning_rate})")
        if self.batch_size < 1:
            problems.append(f"batch size must be at least 1 (got {self.batch_size})")
        if not 32 <= self.image_size <= 512:
            problems.append(f"image size must be between 32 and 512 (got {self.image_size})")
        if not 0 <= self.fine_tune_blocks <= tagger_model.NUM_BLOCKS:
            problems.append(
                f"fine-tune blocks must be 0..{tagger_model.NUM_BLOCKS} (got {self.fine_tune_blocks})"
            )
        if self.fine_tune_epochs < 0:
            problems.append(f"fine-tune epochs must be >= 0 (got {self.fine_tune_epochs})")
        if self.distill_weight < 0:
            problems.append(f"distillation weight must be >= 0 (got {self.distill_weight})")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if problems:
            raise ValueError("; ".join(problems))


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
    import tensorflow as tf

    image = tf.image.random_flip_left_right(image)
    image = tf.image.random_brightness(image, 20.0)
    image = tf.image.random_contrast(image, 0.85, 1.15)
    return tf.clip_by_value(image, 0.0, 255.0)


def input_pipeline(
    files: list[str],
    labels: "np.ndarray | dict[str, np.ndarray] | None",
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
    import tensorflow as tf

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

    return EpochLogger()


def _compile(model, learning_rate: float, num_tags: int, distill_weight: float | None = None) -> None:
    """Adam, binary cross-entropy and PR AUC on the learned tags; with ``distill_weight``, the
    model has a second output (ImageNet probabilities) held to the pretrained ones by KL divergence."""
    import keras

    pr_auc = keras.metrics.AUC(multi_label=True, curve="PR", num_labels=num_tags, name="pr_auc")
    if distill_weight is None:
        model.compile(
            keras.optimizers.Adam(learning_rate), keras.losses.BinaryCrossentropy(), metrics=[pr_auc]
        )
        return
    model.compile(
        keras.optimizers.Adam(learning_rate),
        loss={
            tagger_model.LEARNED: keras.losses.BinaryCrossentropy(),
            tagger_model.IMAGENET: keras.losses.KLDivergence(),
        },
        loss_weights={tagger_model.LEARNED: 1.0, tagger_model.IMAGENET: distill_weight},
        metrics={tagger_model.LEARNED: [pr_auc]},
    )


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
    for axis, metric in zip(axes, ("loss", "pr_auc")):
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
    settings: Settings | None = None,
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
    settings = settings or Settings.from_env()
    data = ds.load(dataset_dir)
    tags = data.tags
    train_rows, val_rows = data.split("train"), data.split("val")
    if not train_rows or not tags:
        raise ValueError(f"{data.root}: the train split is empty; ingest more labelled images")
    out_dir = Path(out_dir) if out_dir else data.root.parent / "model"

    from pipelines.tf_runtime import import_tensorflow

    import_tensorflow()
    import keras
    import mlflow

    from pipelines import tracking

    keras.utils.set_random_seed(params.seed)
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

    full, trainer = tagger_model.build(len(tags), params.image_size, params.dropout)

    tracking.client(settings)
    experiment = tracking.experiment_id(settings)
    history: dict[str, list[float]] = {}
    started = time.perf_counter()
    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        mlflow.set_tags(
            {
                "imgtag.stage": "train",
                "imgtag.dataset_hash": dataset_hash or "unversioned",
                "imgtag.git_commit": tracking.git_commit(),
                "imgtag.dag_run_id": dag_run_id or run_name or "",
                "imgtag.dataset": str(data.root),
            }
        )
        mlflow.log_params(
            {**asdict(params), "dataset_hash": dataset_hash or "unversioned", "num_tags": len(tags)}
        )
        mlflow.log_dict(data.summary(), "dataset/dataset.json")
        _log_dataset_input(data, dataset_hash)
        report = data.root.parent / "validation" / "report.md"
        if report.is_file():
            mlflow.log_artifact(str(report), "validation")

        _compile(trainer, params.learning_rate, len(tags))
        trainer.fit(
            train_data,
            validation_data=val_data,
            epochs=params.epochs,
            callbacks=[_epoch_logger(history)],
            shuffle=False,  # tf.data shuffles every epoch
            verbose=verbose,
        )
        fine_tuned: list[str] = []
        if params.fine_tune_blocks and params.fine_tune_epochs:
            tuner, tune_data, tune_val = trainer, train_data, val_data
            if params.distill_weight > 0:
                tuner, tune_data, tune_val = _distillation(full, data, train_rows, val_rows, tags, params)
            fine_tuned = tagger_model.unfreeze_top_blocks(full, params.fine_tune_blocks)
            _compile(
                tuner,
                params.fine_tune_learning_rate or params.learning_rate / 10,
                len(tags),
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
        seconds = time.perf_counter() - started
        epochs_run = params.epochs + (params.fine_tune_epochs if fine_tuned else 0)
        info = {
            "run_id": run.info.run_id,
            "dataset": str(data.root),
            "dataset_hash": dataset_hash,
            "params": asdict(params),
            "fine_tuned_layers": len(fine_tuned),
        }
        tagger_model.save(out_dir, full, tags, params.image_size, info)
        curves = _plot_curves(history, params.epochs if fine_tuned else None, out_dir / "training_curves.png")
        mlflow.log_artifact(str(curves))
        mlflow.log_artifact(str(out_dir / tagger_model.INFO_FILE), "model")
        mlflow.log_metric("train/images_per_second", len(train_rows) * epochs_run / seconds)
    return TrainResult(run.info.run_id, out_dir, tags, history, seconds, len(train_rows))


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
