"""MLflow in one place: the tracking URI, the experiment, run tags, artifacts of a stage.

Every training stage that writes to MLflow calls :func:`client` first; nothing is configured at
import time. On one machine MLflow is a SQLite file and a folder under ``IMGTAG_HOME``; in
production ``MLFLOW_TRACKING_URI`` names the MLflow server, which keeps artifacts in S3.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from core.settings import Settings

CHAMPION = "champion"

#: MLflow 3's UI opens an experiment without this tag in GenAI mode (traces, prompts, tokens);
#: ``custom_model_development`` opens it on runs, metrics and models.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
EXPERIMENT_NOTE = (
    "Training runs of the imgtag tagger, one per `training_pipeline` DAG run (the run name is the "
    "Airflow run id): parameters, per-epoch curves, test metrics and the gate's verdict. Registered "
    "versions are under Models; the `champion` alias is the served one (`imgtag models`)."
)


def client(settings: Settings):
    """The MLflow client for ``settings`` (tracking and registry URI set process-wide)."""
    import logging

    import mlflow

    # A stage's log is for people: no per-file download progress bars.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Alembic logs every migration of a new SQLite store at INFO on stderr, MLflow says it makes one.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
            parents=True, exist_ok=True
        )
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return mlflow.MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def experiment_id(settings: Settings) -> str:
    """The training experiment's id, created on first use.

    With a local tracking database its artifacts go to ``$IMGTAG_HOME/mlartifacts`` (MLflow's
    own default is a folder in the current directory, which moves with the caller).
    """
    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(settings.mlflow_experiment)
    if found is not None:
        if (found.tags or {}).get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING:  # made by an older imgtag
            mlflow_client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return found.experiment_id
    location = None
    if settings.mlflow_tracking_uri.startswith("sqlite:"):
        location = (settings.home / "mlartifacts").as_uri()
    return mlflow_client.create_experiment(
        settings.mlflow_experiment,
        artifact_location=location,
        tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING, "mlflow.note.content": EXPERIMENT_NOTE},
    )


def git_commit(settings: Settings) -> str:
    """The code's git commit: ``settings.git_commit`` (``IMGTAG_GIT_COMMIT``, set in container
    images), else ``git``."""
    if settings.git_commit:
        return settings.git_commit
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return found.stdout.strip() if found.returncode == 0 else "unknown"


def metric_key(*parts: str) -> str:
    """A metric name MLflow accepts: ``test/precision/red car`` stays readable."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /")
    return "/".join("".join(c if c in allowed else "_" for c in part) for part in parts)
