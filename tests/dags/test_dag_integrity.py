"""DAG integrity: every file in dags/ parses; each DAG is documented, owned, tagged, scheduled as designed."""

from __future__ import annotations

import pytest

DAG_IDS = ("nightly_retag", "rollback_champion", "streaming_tagging", "training_pipeline")
#: Who answers for each DAG's tasks.
OWNERS = {
    "nightly_retag": "mlops",
    "rollback_champion": "mlops",
    "streaming_tagging": "mlops",
    "training_pipeline": "data-science",
}


@pytest.fixture
def dagbag(load_dags):
    return load_dags(IMGTAG_STAGE_EXECUTOR="local")


def scheduler_view(dag):
    """The DAG as the scheduler reads it back from the metadata database."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def test_every_dag_file_imports_without_errors(dagbag, dags_folder):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == list(DAG_IDS)
    dag_files = {path.name for path in dags_folder.glob("*.py")} - {"imgtag_stage.py"}
    assert {dag.relative_fileloc for dag in dagbag.dags.values()} == dag_files


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_has_tags_owner_and_docs(dagbag, dag_id):
    dag = dagbag.get_dag(dag_id)
    assert "imgtag" in dag.tags
    owners = {task.owner for task in dag.tasks}
    assert owners == {OWNERS[dag_id]}, f"{dag_id}: every task needs a real owner, got {owners}"
    assert dag.doc_md and len(dag.doc_md) > 200, "the module docstring is the DAG's documentation"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    restored = scheduler_view(dag)
    assert sorted(restored.task_ids) == sorted(dag.task_ids)
    assert restored.doc_md == dag.doc_md


def test_streaming_tagging_drains_every_five_minutes(dagbag, stage_module):
    dag = dagbag.get_dag("streaming_tagging")
    assert dag.timetable.expression == "*/5 * * * *"
    assert scheduler_view(dag).timetable.description == "Every 5 minutes"
    assert dag.params["max_seconds"] == 240
    (drain,) = dag.tasks
    assert drain.task_id == "drain"
    assert isinstance(drain, stage_module.LocalStageOperator)
    assert rendered(drain, dag) == ["drain", "--max-seconds", "240", "--json"]


def test_nightly_retag_is_scheduled_by_cron_or_champion_asset(dagbag, stage_module):
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    dag = dagbag.get_dag("nightly_retag")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert dag.timetable.timetable.expression == "0 2 * * *"
    timetable = scheduler_view(dag).timetable  # what the scheduler acts on
    assert timetable.description == "Triggered by assets or At 02:00"
    assert (
        timetable.asset_condition.uri
        == stage_module.CHAMPION_ASSET.uri
        == "imgtag://models/imgtag-tagger/champion"
    )


def test_nightly_retag_requeues_then_drains(dagbag):
    dag = dagbag.get_dag("nightly_retag")
    assert dag.get_task("requeue_stale_model").upstream_task_ids == {"requeue_pending"}
    assert dag.get_task("drain").upstream_task_ids == {"requeue_stale_model"}
    assert {t.task_id: rendered(t, dag) for t in dag.tasks} == {
        "requeue_pending": ["requeue", "--pending", "--json"],
        "requeue_stale_model": ["requeue", "--stale-model", "--batch-size", "500", "--json"],
        "drain": ["drain", "--max-seconds", "3600", "--json"],
    }


def test_a_bad_executor_setting_is_an_import_error_that_says_why(load_dags):
    dagbag = load_dags(IMGTAG_STAGE_EXECUTOR="celery")
    assert sorted(dagbag.import_errors) == [f"{dag_id}.py" for dag_id in DAG_IDS]
    for error in dagbag.import_errors.values():
        assert "IMGTAG_STAGE_EXECUTOR='celery': expected one of local, kubernetes" in error


def rendered(task, dag) -> list[str]:
    """The task's command line with the DAG's default params rendered."""
    return [str(arg) for arg in task.render_template(task.arguments, {"params": dag.params.dump()})]
