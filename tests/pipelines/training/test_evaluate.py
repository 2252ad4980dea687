"""evaluate on a model trained on drawn shapes: metrics, thresholds that meet their target on
validation, plots and predictions logged to MLflow; the metrics themselves on known scores."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pipelines.training.evaluate import score_metrics


def test_evaluation_reports_metrics_thresholds_and_plots(trained, shapes_dataset):
    import mlflow

    result, evaluation = trained
    metrics = evaluation.metrics
    assert metrics["images"] == len(shapes_dataset.split("test"))
    assert metrics["map"] > 0.7, metrics  # colours and shapes are easy on ImageNet features
    chosen = json.loads(evaluation.thresholds.read_text())["tags"]
    assert set(result.tags) <= set(chosen)  # and the general tags these labels can check
    for tag, choice in chosen.items():
        if choice["reason"] == "target_precision":
            assert choice["val_precision"] >= 0.8, (tag, choice)
    predictions = (evaluation.report_dir / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == metrics["images"]
    assert {"sha256", "tags", "predicted", "scores", "error"} <= set(json.loads(predictions[0]))
    run = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(result.run_id)
    assert run.data.metrics["test/map"] == pytest.approx(metrics["map"])
    assert "test/precision/red" in run.data.metrics
    logged = {
        a.path
        for a in mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).list_artifacts(
            result.run_id, "evaluation"
        )
    }
    assert {"evaluation/pr_curves.png", "evaluation/per_tag.png", "evaluation/predictions.jsonl"} <= logged


def test_metrics_of_perfect_and_inverted_scores():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    perfect = score_metrics(y, y * 0.9 + 0.05, ["a", "b"], {"a": 0.5, "b": 0.5})
    assert perfect["map"] == 1.0 and perfect["micro_f1"] == 1.0 and perfect["macro_f1"] == 1.0
    inverted = score_metrics(y, 1 - y, ["a", "b"], {"a": 0.5, "b": 0.5})
    assert inverted["micro_f1"] == 0.0 and inverted["map"] < 0.6
    assert inverted["per_tag"]["a"]["support"] == 2
