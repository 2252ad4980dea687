"""The ``rollback_champion`` DAG: a hand-triggered rollback that moves the champion asset too,
so the asset-scheduled ``nightly_retag`` retags what the rolled-back model tagged.

A whole run uses the real ``imgtag rollback`` on a model repository the test fills with two
promotions (placeholder SavedModels: no model server reads them, so nothing has to load).
"""

from __future__ import annotations

import pytest

from tests.dags.test_training_pipeline import champion_events  # noqa: F401  (a fixture)

CHAMPION_URI = "imgtag://models/imgtag-tagger/champion"


@pytest.fixture
def rollback_dag(load_dags):
    dagbag = load_dags(IMGTAG_STAGE_EXECUTOR="local")
    assert dagbag.import_errors == {}
    return dagbag.get_dag("rollback_champion")


def test_rollback_is_triggered_by_hand_and_updates_the_champion_asset(rollback_dag, load_dags, stage_module):
    from airflow.serialization.serialized_objects import DagSerialization

    assert rollback_dag.schedule is None
    assert rollback_dag.is_paused_upon_creation is False  # a trigger must not wait for an unpause
    assert set(rollback_dag.tags) == {"imgtag", "mlops"}
    assert "nightly_retag" in rollback_dag.doc_md and "imgtag rollback" in rollback_dag.doc_md
    (rollback,) = rollback_dag.tasks
    assert rollback.task_id == "rollback" and rollback.arguments == ["rollback", "--json"]
    assert rollback.retries == 0
    assert rollback.outlets == [stage_module.CHAMPION_ASSET]
    # what the scheduler acts on: the task's outlet is the asset nightly_retag is scheduled by
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(rollback_dag))
    assert [asset.uri for asset in restored.get_task("rollback").outlets] == [CHAMPION_URI]

    pods = load_dags(IMGTAG_STAGE_EXECUTOR="kubernetes", IMGTAG_IMAGE="registry.example.com/imgtag:0.1.0")
    pod = pods.get_dag("rollback_champion").get_task("rollback")
    assert pod.arguments == ["rollback", "--json"] and pod.outlets == [stage_module.CHAMPION_ASSET]


@pytest.fixture
def two_promotions(tmp_path, monkeypatch):
    """An IMGTAG_HOME whose model repository served the starter (version 1), then version 2."""
    from serving.repository import ModelRepository

    home = tmp_path / "home"
    monkeypatch.setenv("IMGTAG_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    for name in ("IMGTAG_MODEL_BASE", "IMGTAG_MODEL_NAME", "IMGTAG_SERVING_URL", "IMGTAG_SERVING_STATUS_URL"):
        monkeypatch.delenv(name, raising=False)
    repository = ModelRepository(home / "models", "imgtag-tagger")
    for n, metadata in enumerate(({"starter": "starter-test"}, {"source": "copied by the test"}), start=1):
        placeholder = tmp_path / f"export-{n}"
        placeholder.mkdir()
        (placeholder / "saved_model.pb").write_bytes(b"not loaded: no model server reads this repository")
        repository.promote(placeholder, metadata)
    assert repository.current().version == 2
    return repository


def test_a_rollback_run_serves_the_previous_champion_and_starts_the_retag(
    rollback_dag,
    two_promotions,
    champion_events,  # noqa: F811
):
    from airflow.models.asset import AssetDagRunQueue, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    before = champion_events()
    run = rollback_dag.test()
    (ti,) = run.get_task_instances()
    assert str(run.state) == "success", ti.state
    assert ti.xcom_pull(task_ids="rollback") == {
        "model_name": "imgtag-tagger",
        "serving_version": 1,
        "rolled_back_from": 2,
        "model_version": None,
        "path": str(two_promotions.path(1)),
    }
    assert two_promotions.current().version == 1
    assert champion_events() == before + 1
    with create_session() as session:
        queued = session.scalars(
            select(AssetDagRunQueue.target_dag_id)
            .join(AssetModel, AssetDagRunQueue.asset_id == AssetModel.id)
            .where(AssetModel.uri == CHAMPION_URI)
        ).all()
    assert "nightly_retag" in queued

    # nothing further back: the run fails, saying why, and the champion asset does not move
    again = rollback_dag.test()
    assert str(again.state) == "failed"
    assert two_promotions.current().version == 1
    assert champion_events() == before + 1
