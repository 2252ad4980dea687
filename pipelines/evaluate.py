"""The ``evaluate`` stage: metrics on the test split, per-tag thresholds chosen on validation.

For each learned tag the threshold is the lowest score at which the validation precision
reaches the target (``--target-precision``), so the tags a model suggests are right at least
that often; a tag that never reaches it gets the threshold of its best F1 and is listed in
``thresholds.json`` with that reason. Test metrics then use those thresholds:

- ``test/map``: mean average precision over the tags with a positive test example;
- ``test/micro_f1`` and ``test/macro_f1``;
- per tag: precision, recall, AP, support and threshold (``per_tag.csv``, ``test/precision/<tag>``).

Plots logged to MLflow: PR curves per tag and per-tag bars. ``predictions.jsonl`` keeps every
test image's scores, so the evaluation notebook can show the worst-tagged images. The same
metric code scores the champion and the challenger in the gate (:func:`score_metrics`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import dataset as ds
from pipelines import model as tagger_model
from pipelines.settings import Settings

THRESHOLDS_FILE = "thresholds.json"
METRICS = ("map", "micro_f1", "macro_f1")


def choose_thresholds(y: np.ndarray, scores: np.ndarray, tags: list[str], target_precision: float) -> dict:
    """Per-tag thresholds from validation labels ``y`` and ``scores`` (both ``(n, tags)``).

    Returns:
        ``{tag: {"threshold", "reason", "val_precision", "val_recall"}}``; ``reason`` is
        ``target_precision``, ``best_f1`` (the target is out of reach) or ``no_validation_example``
        (the tag gets 0.5).
    """
    from sklearn.metrics import precision_recall_curve

    chosen = {}
    for j, tag in enumerate(tags):
        if y.shape[0] == 0 or y[:, j].sum() == 0:
            chosen[tag] = {
                "threshold": 0.5,
                "reason": "no_validation_example",
                "val_precision": None,
                "val_recall": None,
            }
            continue
        precision, recall, thresholds = precision_recall_curve(y[:, j], scores[:, j])
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        reach = np.flatnonzero((precision >= target_precision) & (recall > 0))
        if reach.size:
            i, reason = reach[0], "target_precision"  # thresholds ascend: the first is the lowest
        else:
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            i, reason = int(np.argmax(f1)), "best_f1"
        chosen[tag] = {
            "threshold": float(thresholds[i]),
            "reason": reason,
            "val_precision": round(float(precision[i]), 4),
            "val_recall": round(float(recall[i]), 4),
        }
    return chosen


def score_metrics(y: np.ndarray, scores: np.ndarray, tags: list[str], thresholds: dict[str, float]) -> dict:
    """Test metrics of ``scores`` against multi-hot ``y`` with per-tag ``thresholds``.

    Returns:
        ``{"map", "micro_f1", "macro_f1", "per_tag": {tag: {precision, recall, f1, ap, support,
        threshold}}}``; a tag without a positive example is left out of ``map``.
    """
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    limits = np.array([thresholds.get(t, 0.5) for t in tags], np.float32)
    predicted = (scores >= limits).astype(np.int32)
    truth = y.astype(np.int32)
    per_tag, aps = {}, []
    for j, tag in enumerate(tags):
        support = int(truth[:, j].sum())
        ap = float(average_precision_score(truth[:, j], scores[:, j])) if support else None
        if ap is not None:
            aps.append(ap)
        per_tag[tag] = {
            "precision": float(precision_score(truth[:, j], predicted[:, j], zero_division=0)),
            "recall": float(recall_score(truth[:, j], predicted[:, j], zero_division=0)),
            "f1": float(f1_score(truth[:, j], predicted[:, j], zero_division=0)),
            "ap": ap,
            "support": support,
            "threshold": float(limits[j]),
        }
    return {
        "map": float(np.mean(aps)) if aps else 0.0,
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "images": int(len(y)),
        "per_tag": per_tag,
    }


def predict(
    trained: tagger_model.TrainedModel, files: list[Path], batch_size: int = 32
) -> dict[str, np.ndarray]:
    """The two heads' outputs for image files, decoded as the exported model decodes them."""
    from pipelines.train import input_pipeline

    learned, imagenet = [], []
    for batch in input_pipeline(files, None, trained.image_size, batch_size):
        out = trained.model(batch, training=False)
        learned.append(np.asarray(out[tagger_model.LEARNED]))
        imagenet.append(np.asarray(out[tagger_model.IMAGENET]))
    width = trained.num_tags
    return {
        "learned": np.concatenate(learned) if learned else np.zeros((0, width), np.float32),
        "imagenet": np.concatenate(imagenet) if imagenet else np.zeros((0, 1000), np.float32),
    }


def _general_agreement(
    trained: tagger_model.TrainedModel, files: list[Path], logits: np.ndarray
) -> float | None:
    """Share of images whose top ImageNet class is the pretrained model's: how far fine-tuning
    moved the general head (1.0 without fine-tuning)."""
    if not trained.info.get("fine_tuned_layers") or not len(files):
        return 1.0 if len(files) else None
    from pipelines import backbone
    from pipelines.train import input_pipeline

    reference = backbone.load_pretrained(include_top=True, image_size=trained.image_size)
    pretrained = np.concatenate(
        [
            np.asarray(reference(b, training=False))
            for b in input_pipeline(files, None, trained.image_size, 32)
        ]
    )
    return float(np.mean(pretrained.argmax(1) == logits.argmax(1)))


@dataclass
class EvaluationResult:
    metrics: dict
    thresholds: Path
    report_dir: Path

    def to_dict(self) -> dict:
        return {
            "thresholds": str(self.thresholds),
            "report": str(self.report_dir),
            **{k: round(self.metrics[k], 4) for k in METRICS},
            "general_top1_agreement": self.metrics.get("general_top1_agreement"),
            "test_images": self.metrics["images"],
        }


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    *,
    run_id: str | None = None,
    target_precision: float = 0.9,
    out_dir: str | Path | None = None,
    settings: Settings | None = None,
) -> EvaluationResult:
    """Choose thresholds on val, measure on test, write the report and log it to the MLflow run.

    Args:
        model_dir: a folder written by ``imgtag train``.
        dataset_dir: the dataset it was trained on.
        run_id: the training run to log to; none: nothing is logged.
        target_precision: the validation precision each tag's threshold must reach.
        out_dir: where the report goes; default ``<model_dir>/../evaluation``.
    """
    if not 0 < target_precision <= 1:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    from pipelines.tf_runtime import import_tensorflow

    import_tensorflow()
    from pipelines.train import labels_matrix

    data = ds.load(dataset_dir)
    trained = tagger_model.load(model_dir)
    tags = trained.tags
    out_dir = Path(out_dir) if out_dir else Path(model_dir).parent / "evaluation"
    out_dir.mkdir(parents=True, exist_ok=True)
    val_rows, test_rows = data.split("val"), data.split("test")
    val = predict(trained, [data.image_path(e) for e in val_rows])
    test_files = [data.image_path(e) for e in test_rows]
    test = predict(trained, test_files)
    y_val, y_test = labels_matrix(val_rows, tags), labels_matrix(test_rows, tags)

    chosen = choose_thresholds(y_val, val["learned"], tags, target_precision)
    thresholds = {t: c["threshold"] for t, c in chosen.items()}
    metrics = score_metrics(y_test, test["learned"], tags, thresholds)
    metrics["general_top1_agreement"] = _general_agreement(trained, test_files, test["imagenet"])
    metrics["target_precision"] = target_precision

    thresholds_path = Path(model_dir) / THRESHOLDS_FILE
    thresholds_path.write_text(
        json.dumps({"target_precision": target_precision, "tags": chosen}, indent=2, sort_keys=True) + "\n"
    )
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    _write_per_tag(out_dir / "per_tag.csv", metrics["per_tag"], chosen)
    _write_predictions(out_dir / "predictions.jsonl", test_rows, tags, y_test, test["learned"], thresholds)
    _plot_pr_curves(out_dir / "pr_curves.png", y_test, test["learned"], tags)
    _plot_per_tag(out_dir / "per_tag.png", metrics["per_tag"])

    if run_id:
        _log_to_mlflow(run_id, metrics, out_dir, thresholds_path, settings)
    return EvaluationResult(metrics, thresholds_path, out_dir)


def _write_per_tag(path: Path, per_tag: dict, chosen: dict) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["tag", "support", "precision", "recall", "f1", "ap", "threshold", "threshold_reason"]
        )
        for tag, m in sorted(per_tag.items()):
            writer.writerow(
                [
                    tag,
                    m["support"],
                    f"{m['precision']:.4f}",
                    f"{m['recall']:.4f}",
                    f"{m['f1']:.4f}",
                    "" if m["ap"] is None else f"{m['ap']:.4f}",
                    f"{m['threshold']:.4f}",
                    chosen[tag]["reason"],
                ]
            )


def _write_predictions(path, rows, tags, y, scores, thresholds) -> None:
    """One line per test image: its labels, scores, predicted tags and how wrong it was."""
    limits = np.array([thresholds[t] for t in tags])
    with path.open("w") as f:
        for example, truth, score in zip(rows, y, scores):
            predicted = [t for t, s, limit in zip(tags, score, limits) if s >= limit]
            f.write(
                json.dumps(
                    {
                        "sha256": example.sha256,
                        "path": example.path,
                        "origins": list(example.origins),
                        "tags": list(example.tags),
                        "predicted": predicted,
                        "scores": {t: round(float(s), 4) for t, s in zip(tags, score)},
                        "error": round(float(np.abs(truth - score).sum()), 4),
                    }
                )
                + "\n"
            )


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_pr_curves(path: Path, y: np.ndarray, scores: np.ndarray, tags: list[str]) -> None:
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6, 5))
    for j, tag in enumerate(tags):
        if y[:, j].sum() == 0:
            continue
        precision, recall, _ = precision_recall_curve(y[:, j], scores[:, j])
        axis.plot(recall, precision, label=tag)
    axis.set(
        xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="PR curves (test split)"
    )
    axis.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_per_tag(path: Path, per_tag: dict) -> None:
    plt = _pyplot()
    tags = sorted(per_tag)
    x = np.arange(len(tags))
    fig, axis = plt.subplots(figsize=(max(6, len(tags) * 0.6), 4))
    for k, key in enumerate(("precision", "recall", "ap")):
        axis.bar(x + (k - 1) * 0.27, [per_tag[t][key] or 0 for t in tags], 0.27, label=key)
    axis.set_xticks(x, tags, rotation=45, ha="right")
    axis.set(ylim=(0, 1.05), title="per-tag precision, recall and AP (test split)")
    axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _log_to_mlflow(run_id: str, metrics: dict, out_dir: Path, thresholds_path: Path, settings) -> None:
    import mlflow

    from pipelines import tracking

    tracking.client(settings)
    with mlflow.start_run(run_id=run_id):
        values = {f"test/{k}": metrics[k] for k in METRICS}
        if metrics.get("general_top1_agreement") is not None:
            values["general/top1_agreement"] = metrics["general_top1_agreement"]
        for tag, m in metrics["per_tag"].items():
            for key in ("precision", "recall", "threshold"):
                values[tracking.metric_key("test", key, tag)] = m[key]
        mlflow.log_metrics(values)
        mlflow.log_param("target_precision", metrics["target_precision"])
        mlflow.log_artifacts(str(out_dir), "evaluation")
        mlflow.log_artifact(str(thresholds_path), "evaluation")
