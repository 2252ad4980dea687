"""The training DAG end to end with ``dag.test()`` in local mode, on images the test draws.

Real stages in real processes: ingest, Great Expectations, DVC, Keras, MLflow (SQLite), the
TF Serving model repository on disk. In order, sharing one IMGTAG_HOME:

1. round 1 on drawn shapes (at the starter's 256 px) is built on the champion, the starter:
   its first registration makes the starter version 1, and the shapes model, version 2, beats
   it on the shapes and is served as version 2 (one number); the promoted SavedModel, loaded
   alone, gives the tags of the in-memory model; a tagger records version 2 on its tags;
2. round 2 on other drawings labelled with colours only is built on version 2: the shapes and
   the starter's tags are kept exactly (same scores, same thresholds), so version 3 emits the
   colours, the shapes and ``person``;
3. a model that learns only the colours (``base`` none) drops the champion's tags: the gate
   refuses it with the list, ``promote`` is skipped, the run's note says why, and version 4 gets
   no serving directory; ``imgtag rollback`` then serves version 2 and ``imgtag promote 1`` the
   starter;
4. a set with a corrupt image and a tag with too few examples fails ``validate`` with a report
   naming both, and nothing is registered.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.shapes import LABELS, make_images, make_tree

pytestmark = [pytest.mark.dagrun, pytest.mark.slow]

MODEL = "imgtag-tagger"
COMMON = {
    "use_catalog": False,
    "min_examples_per_tag": 5,
    "batch_size": 16,
    "epochs": 12,
    "gate_margin": 0.02,
    "target_precision": 0.8,
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
def shapes(training_home) -> Path:
    """A folder-per-tag tree of 120 drawings at 256 px labelled with their shapes only."""
    return make_tree(training_home / "labelled" / "shapes", 120, seed=3, size=256, only=LABELS["shapes"])


@pytest.fixture(scope="module")
def colours(training_home) -> Path:
    """120 other drawings labelled with their colours only: a second round on different tags."""
    return make_tree(training_home / "labelled" / "colours", 120, seed=4, size=256, only=LABELS["colours"])


def astronaut() -> bytes:
    from PIL import Image

    skimage = pytest.importorskip("skimage")
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


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


def test_two_rounds_keep_every_tag_and_a_model_that_drops_tags_is_refused(training_home, shapes, colours):
    from pipelines.training import dataset as ds
    from serving.export import LoadedModel

    # Round 1: built on the champion, the starter, which the first registration made version 1.
    state, states, out = run_dag(folders=[str(shapes)])
    assert state == "success", states
    assert states == {**{t: "success" for t in states}, "existing_version": "skipped"}, states
    assert out["validate"]["passed"] is True
    assert out["train"]["run_id"] and out["version"]["dataset_hash"]
    assert (
        out["register"]["model_version"] == "2"
        and out["register"]["starter_installed"]["serving_version"] == 1
    )
    assert out["promote"]["serving_version"] == 2 and out["promote"]["previous_serving_version"] == 1
    gate = json.loads((Path(out["ingest"]["dataset"]).parent / "gate" / "report.json").read_text())
    assert gate["champion_is"] == "version 1 (the starter model)" and gate["dropped_tags"] == []
    assert out["note"].startswith("**Gate passed**: version 2 is promoted")
    assert champion_alias() == "2" and repository(training_home).versions() == [1, 2]
    assert champion_events() == 1

    data = ds.load(out["ingest"]["dataset"])
    files = [data.image_path(e) for e in data.split("test")]
    expected = in_memory_tags(Path(out["train"]["model"]), Path(out["evaluate"]["thresholds"]), files)
    first = LoadedModel(repository(training_home).path(2))
    shape_tags = set(LABELS["shapes"])
    got = [
        {t.name for t in tags} & shape_tags
        for tags in first.vocabulary.select(first.scores([f.read_bytes() for f in files]))
    ]
    assert got == [tags & shape_tags for tags in expected]
    assert any(got), "the model tags shapes on the test images"

    # Taggers now serve the champion and record its number, MLflow's, on every tag.
    tagged_file = files[next(i for i, tags in enumerate(got) if tags)]
    assert imgtag("import", str(tagged_file))["imported"] == 1
    with sqlite3.connect(training_home / "catalog.sqlite3") as db:
        versions = db.execute(
            "SELECT DISTINCT v.name, v.version FROM catalog_assettag t"
            " JOIN catalog_modelversion v ON t.model_version_id = v.id"
        ).fetchall()
    assert versions == [(MODEL, "2")]

    # Round 2, on other tags, built on version 2: its tags are kept exactly, the colours added.
    state, states, out = run_dag(folders=[str(colours)])
    assert state == "success" and out["promote"]["serving_version"] == 3, states
    second = LoadedModel(repository(training_home).path(3))
    photos = [f.read_bytes() for f in files] + [p.read_bytes() for p in sorted(colours.rglob("*.jpg"))[:40]]
    photos.append(astronaut())
    before, after = first.scores(photos), second.scores(photos)
    for tag in (*LABELS["shapes"], "person", "car", "cat"):
        old, new = first.vocabulary.tags.index(tag), second.vocabulary.tags.index(tag)
        np.testing.assert_allclose(after[:, new], before[:, old], atol=1e-4, err_msg=tag)
        assert second.vocabulary.thresholds[new] == first.vocabulary.thresholds[old], tag
    emitted = [{t.name for t in row} for row in second.vocabulary.select(after)]
    assert {*LABELS["shapes"], *LABELS["colours"]} <= set().union(*emitted[:-1])
    assert "person" in emitted[-1], emitted[-1]  # the astronaut

    # A model of the colours alone drops the champion's tags: refused with the list, nothing served.
    state, states, out = run_dag(folders=[str(colours)], base="none", epochs=2, image_size=96)
    assert state == "success" and states["gate"] == "skipped" and states["promote"] == "skipped", states
    rejected = out["register"]["model_version"]
    assert rejected == "4" and out["gate"]["passed"] is False
    assert {"person", "circle"} <= set(out["gate"]["dropped_tags"]) and "--replace-vocabulary" in out["gate"][
        "reason"
    ]
    assert out["note"].startswith("**Gate rejected** version 4: `promote` was skipped")
    assert "Tags the champion emits and this version cannot:" in out["note"]
    assert champion_alias() == "3" and repository(training_home).current().version == 3
    assert not repository(training_home).path(4).exists()
    assert champion_events() == 2

    back = imgtag("rollback")
    assert (back["serving_version"], back["rolled_back_from"], back["model_version"]) == (2, 3, "2")
    assert champion_alias() == "2"
    starter = imgtag("promote", "1")  # the starter is a version like any other
    assert starter["serving_version"] == 1 and not starter["path"].endswith("/4")
    assert champion_alias() == "1" and repository(training_home).current().version == 1


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
