"""The MLflow experiment the training stages write to, as MLOps find it in the MLflow UI."""

from __future__ import annotations

import os

import pytest

from core.settings import Settings
from pipelines.training import tracking


@pytest.fixture(autouse=True)
def restore_mlflow_uris():
    """tracking.client sets MLflow's URIs process-wide, and MLflow 3's set_tracking_uri writes
    MLFLOW_TRACKING_URI into the environment too: give the next tests the session's store back."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    tracking.client(Settings.from_env())


def settings_for(tmp_path) -> Settings:
    return Settings.from_env(
        {"IMGTAG_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    )


def test_the_training_experiment_opens_as_model_training_not_genai(tmp_path):
    settings = settings_for(tmp_path)
    experiment = tracking.client(settings).get_experiment(tracking.experiment_id(settings))
    assert experiment.name == "imgtag-training"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "training_pipeline" in experiment.tags["mlflow.note.content"]
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()


def test_an_experiment_made_before_gets_the_kind_on_its_next_run(tmp_path):
    settings = settings_for(tmp_path)
    client = tracking.client(settings)
    made = client.create_experiment("imgtag-training")  # as an older imgtag made it: no kind
    assert "mlflow.experimentKind" not in client.get_experiment(made).tags
    assert tracking.experiment_id(settings) == made
    assert client.get_experiment(made).tags["mlflow.experimentKind"] == "custom_model_development"
