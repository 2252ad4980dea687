"""notebooks/evaluation.ipynb runs top to bottom on a real MLflow run and shows what it promises."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "evaluation.ipynb"


def test_evaluation_notebook_shows_metrics_curves_and_worst_examples(trained, monkeypatch, tmp_path):
    result, evaluation = trained
    monkeypatch.setenv("IMGTAG_RUN_ID", result.run_id)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(NOTEBOOK.parents[1]), os.environ.get("PYTHONPATH", "")])
    )
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(
        str(o.get("text", ""))
        + str(o.get("data", {}).get("text/plain", ""))
        + str(o.get("data", {}).get("text/markdown", ""))
        for o in outputs
    )
    assert result.run_id in text and "test/map" in text
    assert f"{evaluation.metrics['map']:.4f}"[:5] in text  # the run's own mAP is shown
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # curves, PR curves, per-tag bars, worst examples
    worst = max(
        (line for line in (evaluation.report_dir / "predictions.jsonl").read_text().splitlines()),
        key=lambda line: json.loads(line)["error"],
    )
    assert Path(json.loads(worst)["origins"][0]).name in text  # the worst image is listed
