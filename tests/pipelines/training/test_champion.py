"""One champion: what TF Serving serves is the champion, the MLflow alias ``champion`` must agree.

The agreement rule on its own (no MLflow, no files), then with a real MLflow (SQLite) and model
repository in a home of this module's own: the session's trained shapes model registered twice
and version 1 promoted. An alias moved by hand, as the MLflow UI allows, stops the gate (exit
status 4) and makes ``imgtag models`` say so; ``imgtag promote`` of the served version puts it back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import ExitCode
from core.settings import Settings
from pipelines.training import registry
from pipelines.training.champion import ChampionDivergence, champion_agreement, describe_served

NAME = "imgtag-tagger"
#: Settings of the developer's shell that would point this module's home elsewhere.
UNSET = ("IMGTAG_MODEL_BASE", "IMGTAG_MODEL_NAME", "IMGTAG_SERVING_URL", "IMGTAG_SERVING_STATUS_URL")


# --- the rule ---------------------------------------------------------------------------------


def agreement(serving_version, mlflow_version, alias_version, metadata=None):
    if metadata is None:
        metadata = {"mlflow_version": mlflow_version} if mlflow_version else {}
    served = describe_served(serving_version, metadata)
    return champion_agreement(serving_version, mlflow_version, alias_version, served=served)


def test_the_alias_on_the_served_version_agrees():
    agree, reason = agreement(4, "3", "3")
    assert agree
    assert reason == (
        "TF Serving serves MLflow version 3 (serving version 4), where the MLflow alias `champion` points"
    )


def test_an_alias_moved_to_another_version_disagrees_and_says_how_to_move_it_back():
    agree, reason = agreement(4, "3", "5")
    assert not agree
    assert (
        "the MLflow alias `champion` points at version 5 but TF Serving serves MLflow version 3 (serving version 4)"
        in reason
    )
    assert "`imgtag promote 3`" in reason and "`imgtag rollback`" in reason
    assert "only moved by `imgtag promote` and `imgtag rollback`" in reason
    assert "imgtag promote 5" not in reason  # serving the alias's version would skip the gate


def test_a_missing_alias_while_a_promoted_version_is_served_disagrees():
    agree, reason = agreement(2, "7", None)
    assert not agree
    assert "serves MLflow version 7 (serving version 2) but no MLflow version has the alias" in reason
    assert "`imgtag promote 7`" in reason


def test_the_starter_served_with_no_alias_agrees():
    agree, reason = agreement(1, None, None, metadata={"starter": "starter-0123abcd"})
    assert agree and "the starter model (serving version 1)" in reason
    agree, reason = agreement(None, None, None)
    assert agree and "nothing promoted: the shipped starter model tags in process" in reason


def test_an_alias_while_nothing_registered_is_served_disagrees():
    agree, reason = agreement(1, None, "2", metadata={"starter": "starter-0123abcd"})
    assert not agree
    assert "points at version 2 but TF Serving serves the starter model (serving version 1)" in reason
    assert "deleting the alias" in reason
    agree, reason = agreement(None, None, "2")
    assert not agree and "nothing promoted" in reason


# --- with MLflow and the model repository -----------------------------------------------------


@pytest.fixture(scope="module")
def promoted(trained, shapes_dataset, tmp_path_factory):
    """A home of its own: the trained model registered as versions 1 and 2, version 1 promoted."""
    import mlflow

    from pipelines.training import tracking

    result, evaluation = trained
    home = tmp_path_factory.mktemp("champion-home")
    env = {
        "IMGTAG_HOME": str(home),
        "IMGTAG_RUNS_DIR": str(home / "runs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in UNSET:
            patch.delenv(key, raising=False)
        settings = Settings.from_env()  # this module's home
        client = tracking.client(settings)
        experiment = tracking.experiment_id(settings)
        versions = []
        for name in ("a", "b"):
            model_dir = home / "runs" / name / "model"  # register exports beside the model folder
            shutil.copytree(result.model, model_dir)
            run_id = client.create_run(experiment).info.run_id
            versions.append(
                registry.register(model_dir, run_id=run_id, thresholds=evaluation.thresholds, settings=settings)[
                    "model_version"
                ]
            )
        assert versions == ["1", "2"]
        registry.promote("1", settings=settings)
        yield {"home": home, "client": client, "dataset": shapes_dataset.root, "settings": settings}
    tracking.client(Settings.from_env())  # MLflow's process-wide URI back to the session's store
    assert mlflow.get_tracking_uri() != env["MLFLOW_TRACKING_URI"]


def imgtag(*args: str):
    from pipelines.cli import app

    return CliRunner().invoke(app, list(args))


def models_json(expected_exit: int) -> dict:
    done = imgtag("models", "--json")
    assert done.exit_code == expected_exit, done.output
    return json.loads(done.stdout)


def test_models_shows_what_is_served_and_where_the_alias_points(promoted):
    version = promoted["client"].get_model_version(NAME, "1")
    status = models_json(0)
    assert (status["serving_version"], status["mlflow_version"], status["alias_version"]) == (1, "1", "1")
    assert status["agree"] is True and status["served"] == "MLflow version 1 (serving version 1)"
    assert status["run_id"] == version.run_id and status["dataset_hash"] == "0123abcd"
    history = [(e["action"], e["version"], e["mlflow_version"]) for e in status["history"]]
    assert history == [("promote", 1, "1")]

    done = imgtag("models")
    assert done.exit_code == 0, done.output
    assert "served by TF Serving" in done.stdout and "MLflow version 1 (serving version 1)" in done.stdout
    assert "where the MLflow alias `champion` points" in done.stdout
    assert version.run_id in done.stdout and "0123abcd" in done.stdout


def test_the_gate_scores_the_served_saved_model(promoted, tmp_path):
    """The champion the gate compares with is TF Serving's copy: the alias's MLflow artifacts
    can be gone and the gate still scores it."""
    source = Path(promoted["client"].get_model_version(NAME, "1").source.removeprefix("file://"))
    hidden = tmp_path / "hidden"
    shutil.move(source, hidden)
    try:
        result = registry.gate(
            "2", promoted["dataset"], floor=0.0, report_dir=tmp_path / "gate", settings=promoted["settings"]
        )
    finally:
        shutil.move(hidden, source)
    assert result.champion["version"] == "1"
    assert result.details["champion_is"] == "MLflow version 1 (serving version 1)"
    assert not result.passed and "does not beat champion v1" in result.reason  # the same model twice
    report = (tmp_path / "gate" / "report.md").read_text()
    assert "the champion is MLflow version 1 (serving version 1)" in report


def test_an_alias_moved_by_hand_stops_the_gate_until_promote_puts_it_back(promoted, tmp_path):
    client = promoted["client"]
    client.set_registered_model_alias(NAME, "champion", "2")  # what the MLflow UI lets anyone do
    tags_before = client.get_model_version(NAME, "2").tags
    try:
        with pytest.raises(ChampionDivergence) as refused:
            registry.gate(
                "2", promoted["dataset"], floor=0.0, report_dir=tmp_path / "gate", settings=promoted["settings"]
            )
        message = str(refused.value)
        assert "the MLflow alias `champion` points at version 2" in message
        assert "TF Serving serves MLflow version 1 (serving version 1)" in message
        assert "`imgtag promote 1`" in message and "`imgtag rollback`" in message
        assert not (tmp_path / "gate").exists()  # nothing was scored
        assert client.get_model_version(NAME, "2").tags == tags_before  # nor recorded

        done = imgtag("gate", "2", str(promoted["dataset"]), "--floor", "0")
        assert done.exit_code == ExitCode.CHAMPION_DIVERGED == 4, done.output
        assert "champion divergence" in done.stderr and "points at version 2" in done.stderr

        status = models_json(4)
        assert (status["serving_version"], status["mlflow_version"], status["alias_version"]) == (1, "1", "2")
        assert status["agree"] is False
        done = imgtag("models")
        assert done.exit_code == 4
        assert "champion divergence" in done.stderr and "`imgtag promote 1`" in done.stderr

        fixed = imgtag("promote", "1", "--json")  # the served version: nothing copied, the alias moves back
        assert fixed.exit_code == 0, fixed.output
        assert json.loads(fixed.stdout)["changed"] is False
        status = models_json(0)
        assert (status["serving_version"], status["alias_version"], status["agree"]) == (1, "1", True)
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")


def test_a_deleted_alias_is_a_divergence_too(promoted):
    client = promoted["client"]
    client.delete_registered_model_alias(NAME, "champion")
    try:
        status = models_json(4)
        assert status["alias_version"] is None and status["mlflow_version"] == "1"
        assert "no MLflow version has the alias `champion`" in status["reason"]
        assert "`imgtag promote 1`" in status["reason"]
    finally:
        client.set_registered_model_alias(NAME, "champion", "1")


def test_promote_then_rollback_keep_them_agreeing_and_show_in_the_history(promoted):
    assert imgtag("promote", "2").exit_code == 0
    assert models_json(0)["served"] == "MLflow version 2 (serving version 2)"
    assert imgtag("rollback").exit_code == 0
    status = models_json(0)
    assert (status["serving_version"], status["alias_version"]) == (1, "1")
    assert [(e["action"], e["version"], e["mlflow_version"]) for e in status["history"]] == [
        ("rollback", 1, "1"),
        ("promote", 2, "2"),
        ("promote", 1, "1"),
    ]
    assert status["history"][0]["rolled_back"] == 2
    done = imgtag("models", "--history", "1")
    assert done.exit_code == 0 and "rollback" in done.stdout and "last 1 promotions" in done.stdout


def test_models_on_a_fresh_install(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("IMGTAG_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("IMGTAG_MODEL_BASE", raising=False)
    status = models_json(0)
    assert status["serving_version"] is None and status["alias_version"] is None
    assert status["served"] == "nothing promoted: the shipped starter model tags in process"
    assert status["history"] == []
    assert not (home / "mlflow.db").exists()  # looking creates no MLflow store
