"""The ``register`` stage, and the entry points of the stages from a trained model to TF Serving.

- ``register`` (here) exports the SavedModel (:mod:`serving.export`) into the run's
  ``saved_model/`` folder, logs it to the training run and registers it in MLflow as a new
  version of ``imgtag-tagger``, tagged with the dataset hash, the git commit and the DAG run id.
- ``gate`` (:mod:`pipelines.training.gate`, its decision :mod:`pipelines.training.verdict`)
  scores the challenger and the champion on the same test split and passes only if the
  challenger is better by the margin on the chosen metric and drops none of the champion's tags
  (the floor applies only when there is no champion).
- the starter model is a model version like any other: :func:`install_starter` registers it
  (version 1 of a new install) and serves it under that number.
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
from core import training_limits
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
    repository_of,
)
from pipelines.training.gate import GateResult, Scored, compare_on, gate  # noqa: F401  (re-exported)
from pipelines.training.layout import SAVED_MODEL_DIR, THRESHOLDS_FILE, RunLayout
from pipelines.training.promotion import promote, rollback  # noqa: F401  (re-exported)
from pipelines.training.verdict import SECOND_METRIC, Verdict, verdict  # noqa: F401  (re-exported)
from serving import starter
from serving.export import export

SAVED_MODEL_ARTIFACT = SAVED_MODEL_DIR  # the MLflow artifact folder of the export
WARMUP_IMAGES = 4


def register(
    model_dir: str | Path,
    *,
    run_id: str,
    thresholds: str | Path | None = None,
    dag_run_id: str | None = None,
    learned_only: bool = training_limits.default("learned_only"),
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
    # The starter is the first version of a new install, so that a rollback can always return to it.
    starter_install = install_starter(settings) if _first_version(client, settings) else None
    with mlflow.start_run(run_id=run_id) as run:
        mlflow.log_artifacts(str(out), SAVED_MODEL_ARTIFACT)
        source = f"{run.info.artifact_uri}/{SAVED_MODEL_ARTIFACT}"
    _ensure_registered_model(client, settings)
    version = client.create_model_version(settings.model_name, source=source, run_id=run_id, tags=tags)
    return {
        "model_name": settings.model_name,
        "model_version": str(version.version),
        "saved_model": str(out),
        "source": source,
        "tags": tags,
        "starter_installed": starter_install,
    }


def _ensure_registered_model(client, settings: Settings) -> None:
    import mlflow

    try:
        client.get_registered_model(settings.model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            settings.model_name,
            description="imgtag's image tagger: SavedModel, encoded images in, tag scores out. "
            "Version 1 is the starter model that ships; the alias `champion` is the served version.",
        )


def _first_version(client, settings: Settings) -> bool:
    """Whether nothing is registered and nothing served yet, with a starter to install first."""
    if not settings.starter or repository_of(settings).current() is not None:
        return False
    if starter.load_head(tagmap_dir=settings.tagmap_dir) is None:
        return False
    return not client.search_model_versions(f"name='{settings.model_name}'", max_results=1)


def register_starter(saved_model: Path, head, *, settings: Settings) -> dict:
    """Register the starter's export (``serving.starter.saved_model``) as a model version.

    Its own MLflow run (named after the starter's version) holds the SavedModel, the build's
    parameters and test metrics from its provenance; the version is tagged ``starter``. A version
    of the same starter registered before (an install that stopped half-way) is reused.

    Returns:
        What the model repository records: ``mlflow_version``, ``run_id``, ``dataset_hash``, ``source``.
    """
    client = tracking.client(settings)
    _ensure_registered_model(client, settings)
    provenance = head.provenance or {}
    dataset_hash = str(provenance.get("dataset_hash") or "unversioned")
    found = [
        v
        for v in client.search_model_versions(f"name='{settings.model_name}'")
        if (v.tags or {}).get("starter") == head.version
    ]
    if found:
        version = min(found, key=lambda v: int(v.version))
    else:
        run_id, source = _log_starter_run(saved_model, head, provenance, dataset_hash, settings)
        version = client.create_model_version(
            settings.model_name,
            source=source,
            run_id=run_id,
            tags={
                "starter": head.version,
                "dataset_hash": dataset_hash,
                "git_commit": str(provenance.get("git_commit") or ""),
                "learned_tags": ",".join(head.tags),
            },
            description="The starter model that ships with imgtag.",
        )
    return {
        "mlflow_model": settings.model_name,
        "mlflow_version": str(version.version),
        "run_id": version.run_id,
        "dataset_hash": dataset_hash,
        "source": version.source,
    }


def _log_starter_run(
    saved_model: Path, head, provenance: dict, dataset_hash: str, settings: Settings
) -> tuple[str, str]:
    """The starter's own MLflow run: its tags, the build's parameters and test metrics, the
    SavedModel. Returns the run's id and the SavedModel's artifact URI."""
    import mlflow

    with mlflow.start_run(experiment_id=tracking.experiment_id(settings), run_name=head.version) as run:
        mlflow.set_tags(
            {
                "imgtag.stage": "starter",
                "imgtag.starter": head.version,
                "imgtag.dataset_hash": dataset_hash,
                "imgtag.git_commit": str(provenance.get("git_commit") or tracking.git_commit(settings)),
                "mlflow.note.content": (
                    "The starter model that ships with imgtag (serving/starter_model/), registered as "
                    "the first version so that a rollback can always return to it."
                ),
            }
        )
        params = provenance.get("params") or {}
        if isinstance(params, dict) and params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        metrics = {
            f"test/{k}": float(v)
            for k, v in (provenance.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(saved_model), SAVED_MODEL_ARTIFACT)
        source = f"{run.info.artifact_uri}/{SAVED_MODEL_ARTIFACT}"
    return run.info.run_id, source


def install_starter(settings: Settings) -> dict:
    """Make the starter a real model version when nothing is served yet: registered in MLflow
    (version 1 of a new install), served under that number, and the alias ``champion`` on it.

    ``imgtag starter install`` and the platform's first start run it, and so does the first
    ``register``; afterwards it changes nothing.

    Returns:
        :func:`serving.starter.install`'s summary.
    """
    summary = starter.install(
        settings, register=lambda path, head: register_starter(path, head, settings=settings)
    )
    if summary["installed"] and summary["model_version"]:
        client = tracking.client(settings)
        client.set_registered_model_alias(settings.model_name, tracking.CHAMPION, summary["model_version"])
        client.set_model_version_tag(
            settings.model_name, summary["model_version"], "serving_version", str(summary["serving_version"])
        )
    return summary


def _warmup_images(dataset_dir: str | None) -> list[bytes]:
    """A few real images for TF Serving's warm-up requests (the test split's first ones)."""
    if not dataset_dir or not Path(dataset_dir).is_dir():
        return []
    data = ds.load(dataset_dir)
    rows = (data.split("test") or data.examples)[:WARMUP_IMAGES]
    return [data.image_path(e).read_bytes() for e in rows]
