"""The ``register`` stage, and the entry points of the stages from a trained model to TF Serving.

- ``register`` (here) exports the SavedModel (:mod:`serving.export`) into the run's
  ``saved_model/`` folder, logs it to the training run and registers it in MLflow as a new
  version of ``imgtag-tagger``, tagged with the dataset hash, the git commit and the DAG run id.
- ``gate`` (:mod:`pipelines.training.gate`, its decision :mod:`pipelines.training.verdict`)
  scores the challenger and the champion on the same test split and passes only if the
  challenger is better by the margin on the chosen metric (and above the floor).
- ``promote`` and ``rollback`` (:mod:`pipelines.training.promotion`) move what TF Serving
  serves and the MLflow alias ``champion`` with it.
- which model is the champion, and whether the alias agrees: :mod:`pipelines.training.champion`.

The names the ``imgtag`` command used from this module before the split (``gate``, ``promote``,
``rollback``, ``champion_status``, ``champion_history``, ``ChampionDivergence``, ``verdict`` ...)
are still importable from here.
"""

from __future__ import annotations

import json
from pathlib import Path

from core import model as tagger_model
from core.errors import MissingFile
from core.settings import Settings
from pipelines.training import dataset as ds
from pipelines.training import tracking
from pipelines.training.champion import (  # noqa: F401  (re-exported: the names of this module before the split)
    ChampionDivergence,
    ChampionStatus,
    champion_agreement,
    champion_history,
    champion_status,
    champion_version,
    describe_served,
)
from pipelines.training.gate import GateResult, Scored, compare_on, gate  # noqa: F401  (re-exported)
from pipelines.training.layout import SAVED_MODEL_DIR, THRESHOLDS_FILE, RunLayout
from pipelines.training.promotion import promote, rollback  # noqa: F401  (re-exported)
from pipelines.training.verdict import SECOND_METRIC, Verdict, verdict  # noqa: F401  (re-exported)
from serving.export import export

SAVED_MODEL_ARTIFACT = SAVED_MODEL_DIR  # the MLflow artifact folder of the export
WARMUP_IMAGES = 4


def register(
    model_dir: str | Path,
    *,
    run_id: str,
    thresholds: str | Path | None = None,
    dag_run_id: str | None = None,
    learned_only: bool = False,
    settings: Settings,
) -> dict:
    """Export the trained model and register it as a new MLflow model version.

    Returns:
        The stage summary: ``model_name``, ``model_version``, ``saved_model`` (the local export),
        ``source`` (its MLflow artifact URI), ``tags``.
    """
    import mlflow

    model_dir = Path(model_dir)
    info = json.loads((model_dir / tagger_model.INFO_FILE).read_text())
    thresholds = Path(thresholds) if thresholds else model_dir / THRESHOLDS_FILE
    if not thresholds.is_file():
        raise MissingFile(f"{thresholds}: no thresholds; run `imgtag evaluate {model_dir} DATASET` first")
    warmup = _warmup_images(info.get("dataset"))
    tags = {
        "dataset_hash": str(info.get("dataset_hash") or "unversioned"),
        "git_commit": tracking.git_commit(settings),
        "dag_run_id": dag_run_id or "",
        "learned_only": str(learned_only).lower(),
        "learned_tags": ",".join(info["tags"]),
    }
    out = RunLayout.of(model_dir).saved_model
    export(
        model_dir,
        thresholds,
        out,
        learned_only=learned_only,
        model_name=settings.model_name,
        warmup_images=warmup,
        info={"run_id": run_id, **tags},
        tagmap_dir=settings.tagmap_dir,
    )

    client = tracking.client(settings)
    with mlflow.start_run(run_id=run_id) as run:
        mlflow.log_artifacts(str(out), SAVED_MODEL_ARTIFACT)
        source = f"{run.info.artifact_uri}/{SAVED_MODEL_ARTIFACT}"
    try:
        client.get_registered_model(settings.model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            settings.model_name,
            description="imgtag's image tagger: SavedModel, encoded images in, tag scores out.",
        )
    version = client.create_model_version(settings.model_name, source=source, run_id=run_id, tags=tags)
    return {
        "model_name": settings.model_name,
        "model_version": str(version.version),
        "saved_model": str(out),
        "source": source,
        "tags": tags,
    }


def _warmup_images(dataset_dir: str | None) -> list[bytes]:
    """A few real images for TF Serving's warm-up requests (the test split's first ones)."""
    if not dataset_dir or not Path(dataset_dir).is_dir():
        return []
    data = ds.load(dataset_dir)
    rows = (data.split("test") or data.examples)[:WARMUP_IMAGES]
    return [data.image_path(e).read_bytes() for e in rows]
