"""One champion: what TF Serving serves is the champion, the MLflow alias ``champion`` must agree.

The agreement rule on its own (no MLflow, no files), then with a real MLflow (SQLite) and model
repository in a home of this module's own: the session's trained shapes model registered twice
(the first registration makes the starter model version 1 first) and version 2 promoted. An alias moved by hand, as the MLflow UI allows, stops the gate (exit
status 4) and makes ``imgtag models`` say so; ``imgtag promote`` of the served version puts it back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.errors import ExitCode, InvalidValue
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


def test_one_number_names_the_served_version():
    agree, reason = agreement(3, "3", "3")
    assert agree and reason == "TF Serving serves version 3, where the MLflow alias `champion` points"
    agree, reason = agreement(1, "1", "1", metadata={"mlflow_version": "1", "starter": "starter-0123abcd"})
    assert agree and reason.startswith("TF Serving serves version 1 (the starter model), where")


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
    """A home of its own: the starter as version 1, the trained model registered as versions 2 and
    3, version 2 promoted."""
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
                registry.register(
                    model_dir, run_id=run_id, thresholds=evaluation.thresholds, settings=settings
                )["model_version"]
            )
        assert versions == ["2", "3"]  # the first registration made the starter version 1
        assert registry.champion_status(settings).served == "version 1 (the starter model)"
        registry.promote("2", settings=settings)
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
    version = promoted["client"].get_model_version(NAME, "2")
    status = models_json(0)
    assert (status["serving_version"], status["mlflow_version"], status["alias_version"]) == (2, "2", "2")
    assert status["agree"] is True and status["served"] == "version 2"
    assert status["run_id"] == version.run_id and status["dataset_hash"] == "0123abcd"
    history = [(e["action"], e["version"], e["mlflow_version"]) for e in status["history"]]
    assert history == [("promote", 2, "2"), ("promote", 1, "1")]
    # aliases as MLflow returns them (get_model_version; search_model_versions has none)
    versions = {v["version"]: v for v in status["versions"]}
    assert list(versions) == [3, 2, 1]
    assert versions[2]["aliases"] == ["champion"] and versions[3]["aliases"] == []
    assert versions[1]["starter"] and versions[1]["gate"] is None

    done = imgtag("models")
    assert done.exit_code == 0, done.output
    assert "served by TF Serving" in done.stdout and "version 2" in done.stdout
    assert "serving version" not in done.stdout and "MLflow version 2" not in done.stdout  # one number, once
    assert "where the MLflow alias `champion` points" in done.stdout
    assert version.run_id in done.stdout and "0123abcd" in done.stdout
    assert "last 3 registered versions" in done.stdout


def test_the_gate_scores_the_served_saved_model_and_records_its_verdict(promoted, tmp_path):
    """The champion the gate compares with is TF Serving's copy: the alias's MLflow artifacts
    can be gone and the gate still scores it. The verdict, with both figures, is on the version
    and `imgtag models` lists it."""
    source = Path(promoted["client"].get_model_version(NAME, "2").source.removeprefix("file://"))
    hidden = tmp_path / "hidden"
    shutil.move(source, hidden)
    try:
        result = registry.gate(
            "3", promoted["dataset"], report_dir=tmp_path / "gate", settings=promoted["settings"]
        )
    finally:
        shutil.move(hidden, source)
    assert result.champion["version"] == "2"
    assert result.details["champion_is"] == "version 2"
    assert not result.passed and "does not beat champion v2" in result.reason  # the same model twice
    assert result.details["gains"] == result.details["losses"] == []  # the same scores, tag by tag
    report = (tmp_path / "gate" / "report.md").read_text()
    assert "the champion is version 2" in report and "| tag | test images |" in report
    tags = promoted["client"].get_model_version(NAME, "3").tags
    assert tags["gate"] == "rejected" and tags["gate_champion_version"] == "2"
    assert tags["gate_challenger"] == tags["gate_champion"] == f"{result.challenger['map']:.4f}"
    [listed] = [v for v in models_json(0)["versions"] if v["version"] == 3]
    assert listed["gate"] == "rejected" and "does not beat champion v2" in listed["gate_reason"]

    with pytest.raises(InvalidValue, match="version 2 is the champion"):
        registry.gate("2", promoted["dataset"], settings=promoted["settings"])
    with pytest.raises(InvalidValue, match="has no version '9'"):
        registry.gate("9", promoted["dataset"], settings=promoted["settings"])


def test_an_alias_moved_by_hand_stops_the_gate_until_promote_puts_it_back(promoted, tmp_path):
    client = promoted["client"]
    client.set_registered_model_alias(NAME, "champion", "3")  # what the MLflow UI lets anyone do
    tags_before = client.get_model_version(NAME, "3").tags
    try:
        with pytest.raises(ChampionDivergence) as refused:
            registry.gate(
                "3", promoted["dataset"], report_dir=tmp_path / "gate", settings=promoted["settings"]
            )
        message = str(refused.value)
        assert "the MLflow alias `champion` points at version 3" in message
        assert "TF Serving serves version 2" in message
        assert "`imgtag promote 2`" in message and "`imgtag rollback`" in message
        assert not (tmp_path / "gate").exists()  # nothing was scored
        assert client.get_model_version(NAME, "3").tags == tags_before  # nor recorded

        done = imgtag("gate", "3", str(promoted["dataset"]))
        assert done.exit_code == ExitCode.CHAMPION_DIVERGED == 4, done.output
        assert "champion divergence" in done.stderr and "points at version 3" in done.stderr

        status = models_json(4)
        assert (status["serving_version"], status["mlflow_version"], status["alias_version"]) == (2, "2", "3")
        assert status["agree"] is False
        done = imgtag("models")
        assert done.exit_code == 4
        assert "champion divergence" in done.stderr and "`imgtag promote 2`" in done.stderr

        fixed = imgtag("promote", "2", "--json")  # the served version: nothing copied, the alias moves back
        assert fixed.exit_code == 0, fixed.output
        assert json.loads(fixed.stdout)["changed"] is False
        status = models_json(0)
        assert (status["serving_version"], status["alias_version"], status["agree"]) == (2, "2", True)
    finally:
        client.set_registered_model_alias(NAME, "champion", "2")


def test_a_deleted_alias_is_a_divergence_too(promoted):
    client = promoted["client"]
    client.delete_registered_model_alias(NAME, "champion")
    try:
        status = models_json(4)
        assert status["alias_version"] is None and status["mlflow_version"] == "2"
        assert "no MLflow version has the alias `champion`" in status["reason"]
        assert "`imgtag promote 2`" in status["reason"]
    finally:
        client.set_registered_model_alias(NAME, "champion", "2")


def test_promote_then_rollback_keep_them_agreeing_and_show_in_the_history(promoted):
    assert imgtag("promote", "3").exit_code == 0
    assert models_json(0)["served"] == "version 3"
    assert imgtag("rollback").exit_code == 0
    status = models_json(0)
    assert (status["serving_version"], status["alias_version"]) == (2, "2")
    assert imgtag("rollback").exit_code == 0  # back to the starter: it is a version like any other
    status = models_json(0)
    assert (status["serving_version"], status["alias_version"], status["served"]) == (
        1,
        "1",
        "version 1 (the starter model)",
    )
    assert [(e["action"], e["version"], e["mlflow_version"]) for e in status["history"]] == [
        ("rollback", 1, "1"),
        ("rollback", 2, "2"),
        ("promote", 3, "3"),
        ("promote", 2, "2"),
        ("promote", 1, "1"),
    ]
    assert status["history"][1]["rolled_back"] == 3
    done = imgtag("models", "--history", "1")
    assert done.exit_code == 0 and "rollback" in done.stdout and "last 1 promotions" in done.stdout
    assert imgtag("promote", "2").exit_code == 0  # and forward again, from its directory
    assert models_json(0)["served"] == "version 2"


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
