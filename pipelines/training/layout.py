"""A training run's folders and files, in one place: every stage finds its input and output here.

A run is one folder, ``$IMGTAG_RUNS_DIR/<run name>/`` (``IMGTAG_RUNS_DIR`` defaults to
``$IMGTAG_HOME/runs``; the training DAG's run name is its Airflow run id), one sub-folder per
stage that writes files::

    <run>/
      dataset/              imgtag ingest: images/, manifest.jsonl, dataset.json (DVC versions it)
      validation/           imgtag validate: report.md, report.json, gx_result.json
      model/                imgtag train: the Keras model, model.json, training_curves.png
        thresholds.json     imgtag evaluate: each tag's threshold and why
      evaluation/           imgtag evaluate: metrics.json, per_tag.csv, predictions.jsonl, plots
      saved_model/          imgtag register: the exported SavedModel (also the MLflow artifact)
      gate/                 imgtag gate: report.json, report.md

Each stage is given the folder of an earlier one (the DAG passes the paths of the earlier
stages' summaries, never builds one) and writes beside it: the run is the parent of the dataset
or model folder it is given (:meth:`RunLayout.of`). A dataset ingested with ``--out`` anywhere
gets its run's other folders next to it. Reports stay outside ``dataset/`` so DVC never
versions them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.training.dataset import MANIFEST_FILE

DATASET_DIR = "dataset"
VALIDATION_DIR = "validation"
MODEL_DIR = "model"
EVALUATION_DIR = "evaluation"
SAVED_MODEL_DIR = "saved_model"  # also the name of the MLflow artifact folder
GATE_DIR = "gate"
THRESHOLDS_FILE = "thresholds.json"
REPORT_MD = "report.md"


def folder_name(run_name: str) -> str:
    """A run name as a folder name: characters other than ``A-Za-z0-9._-`` become ``_``
    (an Airflow run id such as ``manual__2026-11-29T10:00:00+00:00`` keeps its shape)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_name).strip(".")


@dataclass(frozen=True)
class RunLayout:
    """The folders and files of the run in ``root``."""

    root: Path

    @classmethod
    def named(cls, runs_dir: str | Path, run_name: str) -> RunLayout:
        """The run called ``run_name`` under ``runs_dir`` (``Settings.runs_dir``)."""
        return cls(Path(runs_dir) / folder_name(run_name))

    @classmethod
    def of(cls, stage_dir: str | Path) -> RunLayout:
        """The run a stage's folder (``dataset/``, ``model/`` ...) belongs to: its parent.

        A dataset's ``manifest.jsonl`` given in place of its folder names the same run.
        """
        stage_dir = Path(stage_dir)
        if stage_dir.name == MANIFEST_FILE:
            stage_dir = stage_dir.parent
        return cls(stage_dir.parent)

    @property
    def dataset(self) -> Path:
        return self.root / DATASET_DIR

    @property
    def manifest(self) -> Path:
        return self.dataset / MANIFEST_FILE

    @property
    def validation(self) -> Path:
        return self.root / VALIDATION_DIR

    @property
    def validation_report(self) -> Path:
        """The readable validation report, logged with the training run."""
        return self.validation / REPORT_MD

    @property
    def model(self) -> Path:
        return self.root / MODEL_DIR

    @property
    def thresholds(self) -> Path:
        """The thresholds ``imgtag evaluate`` chose, inside the model folder they belong to."""
        return self.model / THRESHOLDS_FILE

    @property
    def evaluation(self) -> Path:
        return self.root / EVALUATION_DIR

    @property
    def saved_model(self) -> Path:
        return self.root / SAVED_MODEL_DIR

    @property
    def gate(self) -> Path:
        return self.root / GATE_DIR
