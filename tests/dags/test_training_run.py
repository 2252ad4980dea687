"""The training DAG end to end with ``dag.test()`` in local mode, on images the test draws.

Real stages in real processes: ingest, Great Expectations, DVC, Keras, MLflow (SQLite), the
TF Serving model repository on disk. In order, sharing one IMGTAG_HOME:

1. run 1 beats the starter model (the champion before any promotion), promotes serving
   version 1 and sets ``champion``; the promoted SavedModel, loaded alone, gives the tags of
   the in-memory model; a tagger now records version 1 on its tags;
2. run 2, deliberately weak, is stopped by the gate: promote is skipped, champion unchanged;
3. run 3 with good parameters promotes version 2; ``imgtag rollback`` brings version 1 back;
4. a set with a corrupt image and a tag with too few examples fails ``validate`` with a report
   naming both, and nothing is registered.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shapes import make_images, make_tree

pytestmark = [pytest.mark.dagrun, pytest.mark.slow]

MODEL = "imgtag-tagger"
COMMON = {
    "use_catalog": False,
    "min_examples_per_tag": 5,
    "batch_size": 16,
    "image_size": 96,
    "gate_floor": 0.3,
    "gate_margin": 0.02,
    "target_precision": 0.8,
    # 96 px shape models cannot keep the starter's head (224 px): they drop its tags on purpose
    "gate_allow_dropped_tags": True,
}


@pytest.fixture(scope="module")
def training_home(airflow_home, tmp_path_factory):
    home = tmp_path_factory.mktemp("training-dag-home")
    env = {
        "IMGTAG_HOME": str(home),
        "IMGTAG_RUNS_DIR": str(home / "runs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "IMGTAG_DVC_REMOTE": str(home / "dvc-remote"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in ("DATABASE_URL", "IMGTAG_STORAGE_URL", "IMGTAG_STAGE_EXECUTOR", "IMGTAG_MODEL_BASE"):
            patch.delenv(key, raising=False)
        yield home


@pytest.fixture(scope="module")
def labelled(training_home) -> Path:
    """A folder-per-tag tree of 120 drawn images, two to four tags each."""
    return make_tree(training_home / "labelled" / "shapes", 120, seed=3)


def run_dag(**conf):
    """``dag.test()`` the training DAG; returns ``(run state, {task: state}, {task: XCom})``."""
    from airflow.dag_processing.dagbag import BundleDagBag

    dags_folder = Path(__file__).resolve().parents[2] / "dags"
    dagbag = BundleDagBag(dag_folder=dags_folder, bundle_path=dags_folder, bundle_name="dags-folder")
    assert dagbag.import_errors == {}
    run = dagbag.get_dag("training_pipeline").test(run_conf={**COMMON, **conf})
    instances = run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    return str(run.state), states, {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in instances}


def imgtag(*args: str) -> dict:
    command = [str(Path(sys.executable).parent / "imgtag"), *args, "--json"]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=600, env=os.environ.copy()
    )
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def champion_alias() -> str:
    import mlflow

    return str(mlflow.MlflowClient().get_model_version_by_alias(MODEL, "champion").version)


def repository(home: Path):
    from serving.repository import ModelRepository

    return ModelRepository(home / "models", MODEL)


def champion_events() -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(
            select(func.count())
            .select_from(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "imgtag://models/imgtag-tagger/champion")
        )


def in_memory_tags(model_dir: Path, thresholds: Path, files: list[Path]) -> list[set[str]]:
    """Tags of the trained Keras model (as training left it) with the evaluated thresholds."""
    from core import model
    from pipelines.training import evaluate

    trained = model.load(model_dir)
    scores = evaluate.predict(trained, files)["learned"]
    from core.tagmap import parse_threshold

    chosen = json.loads(thresholds.read_text())["tags"]
    limits = {t: parse_threshold(c["threshold"]) for t, c in chosen.items()}  # "off": never emitted
    return [{t for t, s in zip(trained.tags, row, strict=True) if s >= limits[t]} for row in scores]


def test_train_gate_promote_rollback(training_home, labelled):
    from pipelines.training import dataset as ds
    from serving.export import LoadedModel

    # Run 1: the starter model is the champion until a promotion; the shapes model beats it on
    # the shapes (it has no shape tags), and version 1 is served.
    state, states, out = run_dag(folders=[str(labelled)], epochs=2, learning_rate=0.001)
    assert state == "success" and set(states.values()) == {"success"}, states
    assert out["validate"]["passed"] is True
    assert out["train"]["run_id"] and out["version"]["dataset_hash"]
    assert out["promote"]["serving_version"] == 1
    gate = json.loads((Path(out["ingest"]["dataset"]).parent / "gate" / "report.json").read_text())
    assert gate["champion_is"] == "the starter model" and "person" in gate["dropped_tags"]
    assert champion_alias() == out["register"]["model_version"]
    assert repository(training_home).current().version == 1
    assert champion_events() == 1
    first = out["evaluate"]

    data = ds.load(out["ingest"]["dataset"])
    files = [data.image_path(e) for e in data.split("test")]
    expected = in_memory_tags(Path(out["train"]["model"]), Path(out["evaluate"]["thresholds"]), files)
    served = LoadedModel(repository(training_home).path(1))
    learned = set(out["train"]["tags"])
    got = [
        {t.name for t in tags} & learned
        for tags in served.vocabulary.select(served.scores([f.read_bytes() for f in files]))
    ]
    assert got == expected
    assert any(expected), "the model tags something on the test images"

    # Taggers now serve the champion and record its version on every tag.
    tagged_file = files[next(i for i, tags in enumerate(expected) if tags)]
    assert imgtag("import", str(tagged_file))["imported"] == 1
    with sqlite3.connect(training_home / "catalog.sqlite3") as db:
        versions = db.execute(
            "SELECT DISTINCT v.name, v.version FROM catalog_assettag t"
            " JOIN catalog_modelversion v ON t.model_version_id = v.id"
        ).fetchall()
    assert versions == [(MODEL, "1")]

    # Run 2: too weak to beat the champion: the gate skips promotion and changes nothing.
    state, states, out = run_dag(folders=[str(labelled)], epochs=1, learning_rate=0.00001)
    assert states["gate"] == "skipped" and states["promote"] == "skipped", states
    assert all(
        states[t] == "success" for t in ("ingest", "validate", "version", "train", "evaluate", "register")
    )
    weak = out["register"]["model_version"]
    assert champion_alias() != weak and repository(training_home).current().version == 1
    assert champion_events() == 1
    report = json.loads((Path(out["ingest"]["dataset"]).parent / "gate" / "report.json").read_text())
    assert report["passed"] is False and "does not beat champion" in report["reason"]

    # Run 3: good parameters beat the champion by the margin: version 2 is served.
    state, states, out = run_dag(
        folders=[str(labelled)], epochs=10, learning_rate=0.003, fine_tune_blocks=2, fine_tune_epochs=2
    )
    assert set(states.values()) == {"success"}, states
    assert out["evaluate"]["map"] > first["map"], (out["evaluate"], first)
    assert out["promote"]["serving_version"] == 2 and out["promote"]["previous_serving_version"] == 1
    assert champion_alias() == out["register"]["model_version"]
    assert champion_events() == 2

    back = imgtag("rollback")
    assert back["serving_version"] == 1 and back["rolled_back_from"] == 2
    assert repository(training_home).current().version == 1
    assert champion_alias() == back["model_version"] != out["register"]["model_version"]


def test_validation_failure_names_the_file_and_the_tag_and_registers_nothing(training_home, tmp_path):
    import mlflow

    tree = make_tree(tmp_path / "bad-set", 40, seed=5)
    good = next((tree / "circle").glob("*.jpg")).read_bytes()
    (tree / "circle" / "broken_upload.jpg").write_bytes(good[: len(good) // 3])
    make_images(tree / "hexagon", 2, seed=99)  # a tag with 2 examples where 5 are required
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    before = len(client.search_model_versions(f"name='{MODEL}'"))

    state, states, out = run_dag(folders=[str(tree)], epochs=1)

    assert state == "failed" and states["ingest"] == "success" and states["validate"] == "failed", states
    assert all(
        states[t] == "upstream_failed"
        for t in ("version", "train", "evaluate", "register", "gate", "promote")
    )
    assert len(client.search_model_versions(f"name='{MODEL}'")) == before
    report = (Path(out["ingest"]["dataset"]).parent / "validation" / "report.md").read_text()
    assert "broken_upload.jpg" in report and "hexagon" in report
