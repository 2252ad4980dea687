"""Both DAGs run whole with ``dag.test()`` in local mode: real ``imgtag``, real RabbitMQ, real catalog.

Each test gets its own catalog (SQLite in a temporary IMGTAG_HOME) and its own tagging queue,
deleted afterwards. RabbitMQ must answer on IMGTAG_AMQP_URL (default 127.0.0.1:5672): a missing
broker fails these tests with a message saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dagrun, pytest.mark.slow]

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
UNREACHABLE_AMQP_URL = "amqp://guest:guest@127.0.0.1:1/%2F"
OLD_MODEL = ("efficientnet-lite0-imagenet", "older-for-dag-test")


@pytest.fixture
def imgtag_env(airflow_home, tmp_path, monkeypatch):
    """A fresh catalog and tagging queue for the stage commands, which inherit this environment."""
    import pika

    url = os.environ.get("IMGTAG_AMQP_URL", DEFAULT_AMQP_URL)
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {url} ({exc!r}): start it (rabbitmq-server -detached)")
    queue = f"imgtag.test-dags.{uuid.uuid4().hex[:8]}"
    for name in ("DATABASE_URL", "IMGTAG_STORAGE_URL", "IMGTAG_STAGE_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMGTAG_HOME", str(tmp_path / "imgtag-home"))
    monkeypatch.setenv("IMGTAG_QUEUE", queue)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    yield tmp_path / "imgtag-home"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for name in (queue, f"{queue}.dead", f"{queue}.suspect"):
        channel.queue_delete(name)
    channel.exchange_delete(f"{queue}.dead")
    connection.close()


@pytest.fixture
def photos(tmp_path):
    """Three photos that scikit-image ships, one folder each so they can be imported apart."""
    from skimage import data

    folders = {}
    for name in ("chelsea", "coffee", "astronaut"):
        folder = tmp_path / "photos" / name
        folder.mkdir(parents=True)
        shutil.copy(Path(data.data_dir) / f"{name}.png", folder)
        folders[name] = folder
    return folders


def imgtag(*args: str, **env: str) -> dict:
    """Run the installed ``imgtag`` and return its JSON summary."""
    command = [str(Path(sys.executable).parent / "imgtag"), *args, "--json"]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=300, env={**os.environ, **env}
    )
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def run_dag(dag_id: str, **conf) -> dict:
    """``dag.test()`` the DAG from dags/ and return ``{task_id: XCom}``; every task must succeed."""
    from airflow.dag_processing.dagbag import BundleDagBag

    dags_folder = Path(__file__).resolve().parents[2] / "dags"
    dagbag = BundleDagBag(dag_folder=dags_folder, bundle_path=dags_folder, bundle_name="dags-folder")
    assert dagbag.import_errors == {}
    run = dagbag.get_dag(dag_id).test(run_conf=conf)
    instances = run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    assert str(run.state) == "success" and set(states.values()) == {"success"}, states
    return {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in instances}


def catalog(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "catalog.sqlite3")


def test_streaming_tagging_drains_the_queue_into_the_catalog(imgtag_env, photos):
    for folder in photos.values():
        assert imgtag("import", "--queue", str(folder))["published"] == 1

    results = run_dag("streaming_tagging", max_seconds=60)

    assert results["drain"]["received"] == results["drain"]["tagged"] == 3
    assert results["drain"]["dead_lettered"] == 0
    with catalog(imgtag_env) as db:
        assert db.execute("SELECT status, COUNT(*) FROM catalog_asset GROUP BY status").fetchall() == [
            ("tagged", 3)
        ]


def test_nightly_retag_requeues_pending_and_stale_assets_and_keeps_human_decisions(imgtag_env, photos):
    # Two assets tagged in process, then made to look tagged by an older model version, one of
    # whose tags a person accepted; a third uploaded while the broker was down stays pending.
    imgtag("import", str(photos["chelsea"]))
    imgtag("import", str(photos["coffee"]))
    with catalog(imgtag_env) as db:
        db.execute(
            "INSERT INTO catalog_modelversion (name, version, created_at) VALUES (?, ?, datetime('now'))",
            OLD_MODEL,
        )
        (old_id,) = db.execute(
            "SELECT id FROM catalog_modelversion WHERE version = ?", OLD_MODEL[1:]
        ).fetchone()
        db.execute("UPDATE catalog_assettag SET model_version_id = ? WHERE source = 'model'", (old_id,))
        (accepted_id,) = db.execute("SELECT MIN(id) FROM catalog_assettag").fetchone()
        db.execute("UPDATE catalog_assettag SET review = 'accepted' WHERE id = ?", (accepted_id,))
    pending = imgtag("import", "--queue", str(photos["astronaut"]), IMGTAG_AMQP_URL=UNREACHABLE_AMQP_URL)
    assert pending["published"] == 0 and pending["broker_error"]

    results = run_dag("nightly_retag", batch_size=1, max_seconds=60)

    assert results["requeue_pending"]["pending"]["published"] == 1
    assert results["requeue_stale_model"]["stale_model"]["published"] == 2
    assert results["requeue_stale_model"]["stale_model"]["batches"] == 2
    assert results["drain"]["received"] == results["drain"]["tagged"] == 3
    assert results["drain"]["dead_lettered"] == 0
    with catalog(imgtag_env) as db:
        assert db.execute("SELECT status, COUNT(*) FROM catalog_asset GROUP BY status").fetchall() == [
            ("tagged", 3)
        ]
        stale_suggestions = db.execute(
            "SELECT COUNT(*) FROM catalog_assettag WHERE source = 'model' AND review = 'suggested'"
            " AND model_version_id = ?",
            (old_id,),
        ).fetchone()
        assert stale_suggestions == (0,)
        assert db.execute(
            "SELECT review, model_version_id FROM catalog_assettag WHERE id = ?", (accepted_id,)
        ).fetchone() == ("accepted", old_id)
