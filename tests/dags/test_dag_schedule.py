"""What a newcomer's Airflow does with the DAGs at start: none waits paused, no missed night runs at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest


@pytest.fixture
def dagbag(load_dags):
    return load_dags(IMGTAG_STAGE_EXECUTOR="local")


def scheduler_view(dag):
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))


def test_every_dag_is_active_when_airflow_first_sees_it(dagbag):
    """A paused nightly_retag ignores the champion asset: the first promotion would retag nothing."""
    assert dagbag.dag_ids
    for dag_id, dag in dagbag.dags.items():
        assert dag.is_paused_upon_creation is False, f"{dag_id} would start paused"


def first_runs(dag, last_run_end=None):
    """When the scheduler would start the DAG's next timed run, as it reads the DAG back."""
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = scheduler_view(dag).timetable
    last = DataInterval(last_run_end - timedelta(days=1), last_run_end) if last_run_end else None
    info = timetable.next_dagrun_info(
        last_automated_data_interval=last,
        restriction=TimeRestriction(earliest=dag.start_date, latest=None, catchup=dag.catchup),
    )
    return info.run_after


def test_nightly_retag_waits_for_the_next_night_instead_of_running_the_one_that_passed(dagbag):
    dag = dagbag.get_dag("nightly_retag")
    now = datetime.now(UTC)
    first = first_runs(dag)
    assert now < first <= now + timedelta(days=1)
    assert (first.hour, first.minute) == (2, 0)


def test_nightly_retag_runs_the_latest_missed_night_once_after_a_downtime(dagbag):
    dag = dagbag.get_dag("nightly_retag")
    now = datetime.now(UTC)
    week_ago = (now - timedelta(days=7)).replace(hour=2, minute=0, second=0, microsecond=0)
    missed = first_runs(dag, last_run_end=week_ago)
    assert now - timedelta(days=1) <= missed <= now  # the latest 02:00, not the six before it
    assert (missed.hour, missed.minute) == (2, 0)
