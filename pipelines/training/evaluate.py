"""The ``evaluate`` stage: per-tag thresholds chosen on validation, quality measured on test.

Both heads are evaluated as they will be served: their outputs are merged into one score per
tag (:func:`core.vocabulary.merge`), and every tag the labels can confirm and refute through the
tag hierarchy is calibrated, the general ones included (:mod:`pipelines.training.calibration`):
its score becomes a probability of being right, and one level for all tags is chosen so that
the emitted tags reach ``--target-precision`` on the validation images, weighted to look like a
library; a tag whose probability never reaches the level is turned off, and ``thresholds.json``
gives every tag's threshold with its reason. Test metrics then use those thresholds:

- ``test/map``, ``test/micro_f1``, ``test/macro_f1``: over the checkable tags with a positive
  test image (``test/map`` is what the gate compares);
- ``test/map_common``: mean AP over the tags right on at least 5 test images;
- ``test/images_with_correct_tag``, ``test/no_tag``, ``test/precision``, ``test/person_ap``,
  ``test/person_recall``, ``test/person_on_person_free``, ``test/mean_recall``: what users
  notice (:func:`pipelines.training.calibration.quality`);
- per tag: precision, recall, AP, support, threshold and its reason (``per_tag.csv``,
  ``test/precision/<tag>``).

Plots logged to MLflow: PR curves of the most frequent tags and per-tag bars.
``predictions.jsonl`` keeps every test image's scores, so the evaluation notebook can show the
worst-tagged images. The same metric code scores the champion and the challenger in the gate
(:func:`score_metrics`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import backbone, training_limits
from core import model as tagger_model
from core.errors import InvalidValue
from core.settings import Settings
from core.tagmap import TagMap, format_threshold, parse_threshold
from core.tf_runtime import import_tensorflow
from core.vocabulary import Merge, Vocabulary
from pipelines.training import calibration, tracking
from pipelines.training import dataset as ds
from pipelines.training.layout import THRESHOLDS_FILE, RunLayout
from pipelines.training.train import input_pipeline
from serving.export import tag_merge

METRICS = training_limits.GATE_METRICS  # what evaluate measures on test, and the gate may compare
QUALITY = (
    "map_common",
    "images_with_correct_tag",
    "no_tag",
    "precision",
    "person_ap",
    "person_recall",
    "person_on_person_free",
    "mean_recall",
)
PLOTTED_TAGS = 12  # PR curves and bars of the tags with the most test images


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

    reference = backbone.load_pretrained(
        include_top=True, image_size=trained.image_size, which=trained.info.get("backbone")
    )
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
            **{k: _rounded(self.metrics[k]) for k in (*METRICS, *QUALITY)},
            "tags_off": self.metrics["tags_off"],
            "general_top1_agreement": self.metrics.get("general_top1_agreement"),
            "test_images": self.metrics["images"],
        }


def _rounded(value):
    return None if value is None else round(value, 4)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def evaluate(
    model_dir: str | Path,
    dataset_dir: str | Path,
    *,
    run_id: str | None = None,
    target_precision: float = calibration.TARGET_PRECISION,
    min_positives: int = calibration.MIN_POSITIVES,
    out_dir: str | Path | None = None,
    settings: Settings,
) -> EvaluationResult:
    """Choose thresholds on val, measure on test, write the report and log it to the MLflow run.

    Args:
        model_dir: a folder written by ``imgtag train``.
        dataset_dir: the dataset it was trained on.
        run_id: the training run to log to; none: nothing is logged.
        target_precision: the validation precision each tag's threshold must reach.
        min_positives: validation images a tag needs before its threshold is chosen from them.
        out_dir: where the report goes; default ``<model_dir>/../evaluation``.
        settings: the tag map (``tagmap_dir``) and MLflow.
    """
    if problem := training_limits.TARGET_PRECISION.problem(target_precision):
        raise InvalidValue(problem)
    if min_positives < 1:
        raise InvalidValue(f"min positives must be at least 1, got {min_positives}")

    import_tensorflow()

    data = ds.load(dataset_dir)
    trained = tagger_model.load(model_dir)
    out_dir = Path(out_dir) if out_dir else RunLayout.of(model_dir).evaluation
    out_dir.mkdir(parents=True, exist_ok=True)
    scored = _score(trained, data, settings)
    calibrated, families = _calibrate(trained, data, scored, settings, target_precision, min_positives)
    chosen = calibrated.choices
    merged = tag_merge(
        trained,
        {t: c.threshold for t, c in chosen.items()},
        reasons={t: c.reason for t, c in chosen.items()},
        tagmap_dir=settings.tagmap_dir,
        fallback={t: c.fallback for t, c in chosen.items() if c.fallback is not None},
        slope={t: c.slope for t, c in chosen.items() if c.fallback is not None},
    )
    metrics = _test_metrics(trained, data, scored, calibrated, families, merged.vocabulary, target_precision)
    thresholds_path = _write_thresholds(
        Path(model_dir) / THRESHOLDS_FILE, chosen, target_precision, min_positives
    )
    _write_report(out_dir, metrics, chosen, data.split("test"), scored, families, merged.vocabulary)
    if run_id:
        _log_to_mlflow(run_id, metrics, out_dir, thresholds_path, settings)
    return EvaluationResult(metrics, thresholds_path, out_dir)


@dataclass
class _Scored:
    """The validation and test images' scores as the exported model will serve them, and their truth."""

    scorer: Merge  # the trained model's heads merged (serving.export.tag_merge), thresholds at 0.5
    tags: list[str]  # every tag of the merged vocabulary, in score column order
    right: dict[str, frozenset[str]]  # calibration.evidence: the labels that confirm each tag
    val_scores: np.ndarray
    test_scores: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    test_files: list[Path]
    test_imagenet: np.ndarray  # the test images' ImageNet logits

    def checkable(self, families: dict[str, str]) -> tuple[list[str], list[int]]:
        """The tags the labels can confirm and refute, and their score columns."""
        tags = [t for t in self.tags if t in families]
        return tags, [self.tags.index(t) for t in tags]


def _score(trained: tagger_model.TrainedModel, data: ds.Dataset, settings: Settings) -> _Scored:
    """Run the model on the val and test splits and merge both heads into one score per tag."""
    val_rows, test_rows = data.split("val"), data.split("test")
    val = predict(trained, [data.image_path(e) for e in val_rows])
    test_files = [data.image_path(e) for e in test_rows]
    test = predict(trained, test_files)

    # Scores as the exported model will serve them: both heads merged, one score per tag.
    scorer = tag_merge(trained, {t: 0.5 for t in trained.tags}, tagmap_dir=settings.tagmap_dir)
    tags = list(scorer.vocabulary.tags)
    right = calibration.evidence(tags, data.tags, scorer.vocabulary.parent)
    return _Scored(
        scorer,
        tags,
        right,
        val_scores=scorer.scores(_softmax(val["imagenet"]), val["learned"]),
        test_scores=scorer.scores(_softmax(test["imagenet"]), test["learned"]),
        y_val=calibration.truth([e.tags for e in val_rows], tags, right),
        y_test=calibration.truth([e.tags for e in test_rows], tags, right),
        test_files=test_files,
        test_imagenet=test["imagenet"],
    )


def _calibrate(
    trained: tagger_model.TrainedModel,
    data: ds.Dataset,
    scored: _Scored,
    settings: Settings,
    target_precision: float,
    min_positives: int,
) -> tuple[calibration.Calibration, dict[str, str]]:
    """Every tag's threshold (:func:`calibration.calibrate`): chosen on validation where the
    labels can judge it, kept from the base model or the tag map where they cannot.

    Returns:
        ``(calibration result, families)``: families are the tags the labels can refute
        (:func:`calibration.refutable`), the ones the test metrics check.
    """
    tags, parent = scored.tags, scored.scorer.vocabulary.parent
    # Tags kept from the base model (the champion's learned tags this dataset does not label) keep
    # the thresholds they were calibrated with: these labels cannot judge them. The others start
    # from their prior: the tag map's threshold before any calibration, 0.5 for learned tags.
    kept = trained.info.get("base", {}).get("kept", {})
    uncalibrated = TagMap.load(settings.tagmap_dir, calibrated=False)
    priors = dict(zip(uncalibrated.tags, map(float, uncalibrated.thresholds), strict=True))
    priors.update({t: 0.5 for t in trained.tags})
    families = calibration.refutable(tags, data.tags, parent, uncalibrated.class_members())
    fixed = {
        tag: calibration.Choice(
            parse_threshold(choice["threshold"]),
            choice.get("reason") or "kept",
            fallback=float(choice["fallback"]) if choice.get("fallback") else None,
            slope=float(choice["slope"]) if choice.get("slope") else None,
        )
        for tag, choice in kept.items()
    }
    calibrated = calibration.calibrate(
        scored.y_val,
        scored.val_scores,
        tags,
        families,
        {t: p for t, p in priors.items() if (t in scored.right or t in trained.tags) and t not in kept},
        parent,
        calibration.library_weights([e.tags for e in data.split("val")]),
        target_precision,
        min_positives,
        fixed,
    )
    _keep_base_general_thresholds(trained, scored, calibrated.choices)
    return calibrated, families


def _keep_base_general_thresholds(trained: tagger_model.TrainedModel, scored: _Scored, chosen: dict) -> None:
    """The base model's general tags that these labels cannot judge keep the base's thresholds
    (an earlier round may have calibrated them), where they differ from the tag map's."""
    default = dict(zip(scored.tags, map(float, scored.scorer.vocabulary.thresholds), strict=True))
    for tag, choice in trained.info.get("base", {}).get("general", {}).items():
        limit = parse_threshold(choice["threshold"])
        if (
            tag in default
            and tag not in scored.right
            and tag not in chosen
            and not np.isclose(limit, default[tag], atol=1e-5)
        ):
            chosen[tag] = calibration.Choice(limit, choice.get("reason") or "kept")


def _test_metrics(
    trained: tagger_model.TrainedModel,
    data: ds.Dataset,
    scored: _Scored,
    calibrated: calibration.Calibration,
    families: dict[str, str],
    vocabulary: Vocabulary,
    target_precision: float,
) -> dict:
    """The test split's metrics at the chosen thresholds (``vocabulary``: the merged, calibrated one)."""
    tags, chosen = scored.tags, calibrated.choices
    limits = vocabulary.thresholds
    checkable, columns = scored.checkable(families)
    metrics = score_metrics(
        scored.y_test[:, columns],
        scored.test_scores[:, columns],
        checkable,
        dict(zip(tags, map(float, limits), strict=True)),
    )
    metrics["per_tag"] = {t: m for t, m in metrics["per_tag"].items() if m["support"] or t in chosen}
    metrics.update(
        calibration.quality(
            scored.y_test,
            scored.test_scores,
            tags,
            limits,
            families,
            parent=scored.scorer.vocabulary.parent,
            labels=data.tags,
            fallback=vocabulary.fallback,
            slope=vocabulary.slope,
        )
    )
    metrics["calibration_level"] = calibrated.level
    metrics["fallback_level"] = calibrated.fallback_level
    metrics["val_precision"] = calibrated.val_precision
    metrics["tags_off"] = sorted(t for t, c in chosen.items() if not np.isfinite(c.threshold))
    metrics["general_top1_agreement"] = _general_agreement(trained, scored.test_files, scored.test_imagenet)
    metrics["target_precision"] = target_precision
    return metrics


def _write_thresholds(path: Path, chosen: dict, target_precision: float, min_positives: int) -> Path:
    """Write ``thresholds.json``: every chosen threshold with its reason, and what chose them."""
    path.write_text(
        json.dumps(
            {
                "target_precision": target_precision,
                "min_positives": min_positives,
                "tags": {t: c.to_dict() for t, c in chosen.items()},
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    return path


def _write_report(
    out_dir: Path,
    metrics: dict,
    chosen: dict,
    test_rows: list[ds.Example],
    scored: _Scored,
    families: dict[str, str],
    vocabulary: Vocabulary,
) -> None:
    """Write the evaluation folder: metrics, per-tag table, test predictions and the plots."""
    tags, y_test, test_scores = scored.tags, scored.y_test, scored.test_scores
    (out_dir / "metrics.json").write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True) + "\n")
    _write_per_tag(out_dir / "per_tag.csv", metrics["per_tag"], chosen)
    _, columns = scored.checkable(families)
    _write_predictions(
        out_dir / "predictions.jsonl", test_rows, tags, columns, y_test, test_scores, vocabulary
    )
    plotted = sorted(metrics["per_tag"], key=lambda t: -metrics["per_tag"][t]["support"])[:PLOTTED_TAGS]
    plotted_columns = [tags.index(t) for t in plotted]
    _plot_pr_curves(
        out_dir / "pr_curves.png", y_test[:, plotted_columns], test_scores[:, plotted_columns], plotted
    )
    _plot_per_tag(out_dir / "per_tag.png", {t: metrics["per_tag"][t] for t in plotted})


def _finite(value):
    """``value`` with infinite floats (thresholds that are off) as ``"off"``: JSON has no infinity."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return "off"
    return value


def _write_per_tag(path: Path, per_tag: dict, chosen: dict) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
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
                    format_threshold(m["threshold"]),
                    chosen[tag].reason if tag in chosen else "unchanged",
                ]
            )


def _write_predictions(path, rows, tags, columns, y, scores, vocabulary) -> None:
    """One line per test image: its labels, the tags emitted, the scores of the tags the labels
    can check, and how wrong it was (summed over those tags)."""
    with path.open("w") as f:
        for example, truth, score in zip(rows, y, scores, strict=True):
            (emitted,) = vocabulary.select(score[None])
            f.write(
                json.dumps(
                    {
                        "sha256": example.sha256,
                        "path": example.path,
                        "origins": list(example.origins),
                        "tags": list(example.tags),
                        "predicted": [t.name for t in emitted],
                        "scores": {tags[j]: round(float(score[j]), 4) for j in columns},
                        "error": round(float(np.abs(truth[columns] - score[columns]).sum()), 4),
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

    tracking.client(settings)
    with mlflow.start_run(run_id=run_id):
        values = {f"test/{k}": metrics[k] for k in (*METRICS, *QUALITY) if metrics.get(k) is not None}
        values["test/tags_off"] = len(metrics["tags_off"])
        if metrics.get("general_top1_agreement") is not None:
            values["general/top1_agreement"] = metrics["general_top1_agreement"]
        for tag, m in metrics["per_tag"].items():
            for key in ("precision", "recall", "threshold", "ap"):
                if m[key] is not None and np.isfinite(m[key]):
                    values[tracking.metric_key("test", key, tag)] = m[key]
        mlflow.log_metrics(values)
        mlflow.log_param("target_precision", metrics["target_precision"])
        mlflow.log_artifacts(str(out_dir), "evaluation")
        mlflow.log_artifact(str(thresholds_path), "evaluation")
