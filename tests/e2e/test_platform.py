"""The platform on one machine, used as data scientists and MLOps use it.

One ``imgtag platform`` (the command the README gives; ``make platform`` runs it) per module, on
free ports, with its own ``IMGTAG_HOME`` and a uuid tagging queue on the real RabbitMQ. Every
behaviour goes through the real DAGs on the real Airflow and MLflow. In order:

1. it refuses a taken port and a missing RabbitMQ before starting anything, and keeps Airflow's
   metadata in PostgreSQL when given a URL;
2. every URL answers and every DAG is active; the first start made the starter model version 1:
   registered in MLflow with the alias ``champion`` and served;
3. ``training_pipeline`` triggered through Airflow's REST API on drawn shapes (at the starter's
   256 px, the README's walk-through) succeeds: the train log has a line per epoch and no
   TensorFlow start-up noise, the gate's log its figures, MLflow has version 2 with the
   ``champion`` alias, TF Serving's repository serves it as version 2, the champion asset
   triggered ``nightly_retag``, and an upload through the catalog's API is tagged by the worker
   with version 2;
4. a second round on other drawings labelled with colours is built on version 2 and promoted as
   version 3, which emits the shapes, the colours and ``person``;
5. a manifest exported as it is (rows without tags, a rare tag) fails ``validate`` naming the
   rare tag and the option; with ``drop_rare_tags`` it passes, and the model it trains (only
   these tags) is refused by the gate: ``promote`` skipped, the reason in the run's note and the
   gate's log, the verdict on the MLflow version and run, and in ``imgtag models``;
6. the ``rollback_champion`` DAG serves version 2 again; the form's ``gate_version`` gates
   version 3 again without training, against that champion, and serves it again; ``imgtag
   promote 1`` returns to the starter;
7. in Chromium, a data scientist fills the trigger form, sees the run succeed, and finds the
   ``champion`` alias on MLflow's registered-model page;
8. SIGTERM stops every process the platform started, the scheduler's children too.

Without RabbitMQ or Chromium the tests fail under ``CI=true``, naming what is missing.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pika
import psutil
import pytest
import requests

from pipelines.airflow_client import AirflowAPI, airflow_password
from tests.shapes import LABELS, make_csv, make_tree

pytestmark = pytest.mark.slow

AMQP_URL = os.environ.get("IMGTAG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
CHROMIUM = os.environ.get("IMGTAG_CHROMIUM", "/usr/bin/chromium")
IMGTAG = str(Path(sys.executable).parent / "imgtag")
MODEL = "imgtag-tagger"
#: The README's walk-through: drawn shapes at the starter's size, trained with the defaults but
#: fewer examples per tag, more epochs for these few images and a target precision they can reach.
TRAINING = {
    "use_catalog": False,
    "min_examples_per_tag": 5,
    "epochs": 12,
    "batch_size": 16,
    "target_precision": 0.8,
    "gate_margin": 0.02,
}
PORTS = (
    "airflow",
    "mlflow",
    "catalog",
    "worker-metrics",
    "prometheus",
    "airflow-worker-logs",
    "airflow-trigger-logs",
)


def _missing(problem: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(problem)
    pytest.skip(problem)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def platform_env(home: Path, queue: str, amqp_url: str = AMQP_URL) -> dict[str, str]:
    """This test session's environment without what other tests set (Airflow, MLflow, a database)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "MLFLOW_", "IMGTAG_", "DATABASE_URL", "DJANGO_"))
    }
    env.update(IMGTAG_HOME=str(home), IMGTAG_QUEUE=queue, IMGTAG_AMQP_URL=amqp_url, TF_CPP_MIN_LOG_LEVEL="2")
    for name in (
        "IMGTAG_CHROMIUM",
        "IMGTAG_CACHE_DIR",
    ):  # the session's model cache: the starter exported once
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def port_options(ports: dict[str, int]) -> list[str]:
    return [item for name, port in ports.items() for item in (f"--{name}-port", str(port))]


@dataclass
class Running:
    home: Path
    ports: dict[str, int]
    process: subprocess.Popen
    env: dict[str, str]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def state(self) -> dict:
        return json.loads((self.home / "platform" / "platform.json").read_text())

    def airflow(self) -> AirflowAPI:
        password = airflow_password(self.home / "airflow" / "simple_auth_manager_passwords.json.generated")
        return AirflowAPI(self.url("airflow"), "admin", password)

    def imgtag(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [IMGTAG, *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def log(self, name: str) -> str:
        path = self.home / "platform" / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def rabbitmq() -> str:
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL)).close()
    except pika.exceptions.AMQPError as exc:
        _missing(
            f"RabbitMQ at 127.0.0.1:5672 is not reachable ({exc!r}); start it with 'rabbitmq-server -detached'"
        )
    return AMQP_URL


@pytest.fixture(scope="module")
def platform(rabbitmq, tmp_path_factory):
    home = tmp_path_factory.mktemp("platform") / "home"
    queue = f"test.platform.{uuid.uuid4().hex[:10]}"
    ports = {name: free_port() for name in PORTS}
    env = platform_env(home, queue)
    home.mkdir(parents=True)
    with (home.parent / "platform.out").open("wb") as out:
        process = subprocess.Popen(
            [IMGTAG, "platform", *port_options(ports)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    running = Running(home, ports, process, env)
    try:
        deadline = time.monotonic() + 300
        while "ready_seconds" not in _state_or_empty(home):
            output = (home.parent / "platform.out").read_text(errors="replace")
            assert process.poll() is None, (
                f"imgtag platform exited with {process.returncode}:\n{output[-5000:]}"
            )
            assert time.monotonic() < deadline, f"imgtag platform is not up after 300 s:\n{output[-5000:]}"
            time.sleep(1)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        connection = pika.BlockingConnection(pika.URLParameters(rabbitmq))
        channel = connection.channel()
        for name in (queue, f"{queue}.dead", f"{queue}.suspect"):
            channel.queue_delete(name)
        channel.exchange_delete(f"{queue}.dead")
        connection.close()


def _state_or_empty(home: Path) -> dict:
    try:
        return json.loads((home / "platform" / "platform.json").read_text())
    except (OSError, ValueError):
        return {}


def wait_for_run(
    api: AirflowAPI, dag_id: str, run_id: str, seconds: float = 900
) -> tuple[str, dict[str, str]]:
    """Poll a DAG run until it ends; returns its state and each task's state."""
    quoted = urllib.parse.quote(run_id, safe="")
    deadline = time.monotonic() + seconds
    while True:
        run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
        tasks = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances")["task_instances"]
        states = {t["task_id"]: t["state"] for t in tasks}
        if run["state"] in ("success", "failed"):
            return run["state"], states
        assert time.monotonic() < deadline, (
            f"{dag_id} {run_id} still {run['state']} after {seconds} s: {states}"
        )
        time.sleep(5)


def trigger(api: AirflowAPI, dag_id: str, **conf) -> str:
    """Trigger a DAG run as a script would (``POST /api/v2/dags/.../dagRuns``); returns its run id."""
    return api.post(f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})["dag_run_id"]


def dag_run(api: AirflowAPI, dag_id: str, run_id: str) -> dict:
    return api.get(f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")


def task_log(api: AirflowAPI, dag_id: str, run_id: str, task_id: str) -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    log = api.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/logs/1", full_content="true"
    )
    return "\n".join(e.get("event", "") if isinstance(e, dict) else str(e) for e in log.get("content", []))


# --- 1. refusals ---


def test_the_platform_refuses_a_taken_port_or_a_missing_rabbitmq_and_starts_nothing(rabbitmq, tmp_path):
    ports = {name: free_port() for name in PORTS}
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["mlflow"]))
        squatter.listen()
        done = subprocess.run(
            [IMGTAG, "platform", *port_options(ports)],
            env=platform_env(tmp_path / "a", "unused.a"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {ports['mlflow']} (mlflow) is taken" in done.stderr and "--mlflow-port" in done.stderr
    assert not (tmp_path / "a" / "platform" / "logs").exists(), "nothing may start before the checks pass"

    closed = free_port()  # nothing listens there
    done = subprocess.run(
        [IMGTAG, "platform", *port_options(ports)],
        env=platform_env(tmp_path / "b", "unused.b", amqp_url=f"amqp://guest:guest@127.0.0.1:{closed}/%2F"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"RabbitMQ at 127.0.0.1:{closed}/%2F is not reachable" in done.stderr
    assert "IMGTAG_AMQP_URL" in done.stderr


def test_airflow_keeps_its_metadata_in_postgresql_when_given_a_url(rabbitmq, tmp_path):
    import psycopg

    server = "postgresql://postgres@127.0.0.1:5432"
    try:
        admin = psycopg.connect(f"{server}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _missing(f"PostgreSQL at 127.0.0.1:5432 (user postgres, database test) is not reachable: {exc}")
    database = f"imgtag_platform_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {database}")
    ports = {name: free_port() for name in PORTS}
    home = tmp_path / "home"
    process = subprocess.Popen(
        [
            IMGTAG,
            "platform",
            *port_options(ports),
            "--no-worker",
            "--no-prometheus",
            "--airflow-db",
            f"postgres://postgres@127.0.0.1:5432/{database}",
        ],
        env=platform_env(home, "unused.pg"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while "ready_seconds" not in _state_or_empty(home):
            assert process.poll() is None, process.stdout.read()[-5000:]
            assert time.monotonic() < deadline, "not up after 240 s"
            time.sleep(1)
        with psycopg.connect(f"{server}/{database}") as metadata:
            parsed = {row[0] for row in metadata.execute("SELECT dag_id FROM dag")}
        assert {"training_pipeline", "nightly_retag"} <= parsed
        assert not (home / "airflow" / "airflow.db").exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(90)
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.close()


# --- 2. up ---


def test_every_url_answers_and_every_dag_is_active(platform):
    assert requests.get(f"{platform.url('airflow')}/api/v2/version", timeout=10).ok
    assert requests.get(f"{platform.url('mlflow')}/health", timeout=10).text.strip() == "OK"
    assert requests.get(f"{platform.url('catalog')}/healthz", timeout=10).ok
    assert "imgtag_" in requests.get(f"{platform.url('worker-metrics')}/metrics", timeout=10).text
    dags = {d["dag_id"]: d for d in platform.airflow().get("/api/v2/dags")["dags"]}
    assert {"training_pipeline", "nightly_retag", "streaming_tagging", "rollback_champion"} <= set(dags)
    assert not [dag_id for dag_id, d in dags.items() if d["is_paused"]], "every DAG must be active"
    state = platform.state
    assert 0 < state["ready_seconds"] < 300
    names = {c["name"] for c in state["components"]}
    assert {
        "airflow api-server",
        "airflow scheduler",
        "airflow dag-processor",
        "airflow triggerer",
        "mlflow server",
        "catalog",
        "tagging worker",
    } <= names


def test_the_first_start_made_the_starter_version_1_registered_served_and_champion(platform):
    import mlflow

    client = mlflow.MlflowClient(platform.url("mlflow"), platform.url("mlflow"))
    starter = client.get_model_version(MODEL, "1")
    assert starter.aliases == ["champion"] and starter.tags["starter"].startswith("starter-")
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    models = platform.imgtag("models", "--json")
    assert models.returncode == 0, models.stderr
    status = json.loads(models.stdout)
    assert (status["serving_version"], status["mlflow_version"], status["agree"]) == (1, "1", True)
    assert status["served"] == "version 1 (the starter model)"
    assert [v["version"] for v in status["versions"]] == [1] and status["versions"][0]["aliases"] == [
        "champion"
    ]


# --- 3. training through the REST API ---


@pytest.fixture(scope="module")
def labelled(platform) -> Path:
    """What ``make labelled-sample`` draws: 120 shapes at the starter's 256 px."""
    return make_tree(platform.home / "labelled" / "shapes", 120, seed=3, size=256, only=LABELS["shapes"])


@pytest.fixture(scope="module")
def colours(platform) -> Path:
    """120 other drawings labelled with their colours only: a second round on different tags."""
    return make_tree(platform.home / "labelled" / "colours", 120, seed=4, size=256, only=LABELS["colours"])


@pytest.fixture(scope="module")
def promoted(platform, labelled) -> dict:
    """The first training run, triggered as a script would: ``POST /api/v2/dags/.../dagRuns``."""
    api = platform.airflow()
    run_id = trigger(api, "training_pipeline", **TRAINING, folders=[str(labelled)])
    state, tasks = wait_for_run(api, "training_pipeline", run_id)
    assert state == "success" and tasks == {**{t: "success" for t in tasks}, "existing_version": "skipped"}, (
        f"{tasks}\nscheduler log:\n{platform.log('airflow-scheduler')}"
    )
    return dag_run(api, "training_pipeline", run_id)


def test_a_run_triggered_through_the_rest_api_registers_and_serves_a_champion(platform, promoted):
    import mlflow

    api = platform.airflow()
    run_id = promoted["dag_run_id"]
    log = task_log(api, "training_pipeline", run_id, "train")
    assert re.search(r"epoch 1/12: train/loss \d", log) and re.search(r"kept the head of epoch \d+", log), (
        log[-3000:]
    )
    # the stage's own lines, not TensorFlow's start-up or MLflow's store creation
    for noise in ("oneDNN", "cuda", "WARNING:tensorflow", "retracing", "Creating initial MLflow database"):
        assert noise not in log, (noise, log[-3000:])
    gate_log = task_log(api, "training_pipeline", run_id, "gate")
    assert "gate: version 2 against the champion, version 1 (the starter model), on " in gate_log, gate_log[
        -3000:
    ]
    assert re.search(r"map: challenger 0\.\d+, champion 0\.\d+; margin 0\.0200", gate_log)
    assert "per-tag AP gains: " in gate_log and "gate PASSED" in gate_log
    assert promoted["note"].startswith("**Gate passed**: version 2 is promoted")

    client = mlflow.MlflowClient(platform.url("mlflow"), platform.url("mlflow"))
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "2" and champion.tags["dag_run_id"] == run_id
    assert champion.tags["gate"] == "passed" and champion.tags["gate_champion_version"] == "1"
    experiment = client.get_experiment_by_name("imgtag-training")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on its runs

    from serving.repository import ModelRepository

    served = ModelRepository(platform.home / "models", MODEL).current()
    assert served.version == 2 and served.metadata["mlflow_version"] == "2"  # one number


def test_the_promotion_triggers_nightly_retag_through_the_champion_asset(platform, promoted):
    api = platform.airflow()
    deadline = time.monotonic() + 300
    while True:
        runs = api.get("/api/v2/dags/nightly_retag/dagRuns")["dag_runs"]
        triggered = [r for r in runs if r["run_type"] == "asset_triggered"]
        if triggered and triggered[0]["state"] in ("success", "failed"):
            break
        assert time.monotonic() < deadline, f"no finished asset-triggered nightly_retag run: {runs}"
        time.sleep(5)
    assert triggered[0]["state"] == "success"
    assert [r for r in runs if r["run_type"] == "scheduled"] == [], "no missed 02:00 slot may run at start"


def test_an_upload_is_tagged_by_the_new_champion(platform, promoted, labelled):
    from serving.export import LoadedModel
    from serving.repository import ModelRepository

    # The drawn image the served model tags most surely (its best margin over a threshold).
    served = LoadedModel(ModelRepository(platform.home / "models", MODEL).path(2))
    files = sorted(labelled.rglob("*.jpg"))[:40]
    scores = served.scores([f.read_bytes() for f in files])
    margins = (scores - served.vocabulary.thresholds).max(axis=1)
    best = int(margins.argmax())
    assert margins[best] > 0.05, "the champion tags none of the drawn images surely"

    made = platform.imgtag(
        "createuser", "carol", "--role", "content_manager", "--password-stdin", stdin="carol-Secret-42\n"
    )
    assert made.returncode == 0, made.stderr
    token = re.search(r"API token: (\w+)", made.stdout).group(1)
    headers = {"Authorization": f"Token {token}"}
    with files[best].open("rb") as image:
        answer = requests.post(
            f"{platform.url('catalog')}/api/assets/",
            headers=headers,
            files={"file": ("upload.jpg", image, "image/jpeg")},
            timeout=60,
        )
    assert answer.status_code == 201, answer.text
    asset_id = answer.json()["assets"][0]["id"]
    deadline = time.monotonic() + 120
    while True:
        asset = requests.get(
            f"{platform.url('catalog')}/api/assets/{asset_id}/", headers=headers, timeout=30
        ).json()
        if asset["status"] != "pending":
            break
        assert time.monotonic() < deadline, (
            f"the worker never tagged the upload:\n{platform.log('tagging-worker')}"
        )
        time.sleep(2)
    assert asset["status"] == "tagged" and asset["tags"], asset
    # the same number as MLflow's version and the serving directory
    assert {(t["model_version"]["name"], t["model_version"]["version"]) for t in asset["tags"]} == {
        (MODEL, "2")
    }


# --- 4. a second round on other tags keeps the first round's and the starter's ---


@pytest.fixture(scope="module")
def second_round(platform, promoted, colours) -> dict:
    api = platform.airflow()
    run_id = trigger(api, "training_pipeline", **TRAINING, folders=[str(colours)])
    state, tasks = wait_for_run(api, "training_pipeline", run_id)
    assert state == "success" and tasks["promote"] == "success", (
        f"{tasks}\n{platform.log('airflow-scheduler')}"
    )
    return dag_run(api, "training_pipeline", run_id)


def test_two_rounds_on_different_tags_both_rounds_tags_and_person_are_still_emitted(
    platform, second_round, labelled, colours
):
    from PIL import Image

    from serving.export import LoadedModel
    from serving.repository import ModelRepository

    repository = ModelRepository(platform.home / "models", MODEL)
    assert repository.current().version == 3
    served = LoadedModel(repository.path(3))
    skimage = pytest.importorskip("skimage")
    astronaut = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(astronaut, "JPEG", quality=92)
    images = [
        f.read_bytes() for f in (*sorted(labelled.rglob("*.jpg"))[:40], *sorted(colours.rglob("*.jpg"))[:40])
    ]
    emitted = [
        {t.name for t in row}
        for row in served.vocabulary.select(served.scores([*images, astronaut.getvalue()]))
    ]
    assert {*LABELS["shapes"], *LABELS["colours"]} <= set().union(*emitted[:-1]), emitted
    assert "person" in emitted[-1], emitted[-1]
    gate = task_log(platform.airflow(), "training_pipeline", second_round["dag_run_id"], "gate")
    assert (
        "gate: version 3 against the champion, version 2, on " in gate and "per-tag AP losses: none" in gate
    )


# --- 5. a manifest as exported; a model that drops tags is refused, and says so ---


@pytest.fixture(scope="module")
def exported(platform) -> Path:
    """A library's export: colour labels, a rare tag on 2 images, and 12 rows without tags."""
    manifest = make_csv(platform.home / "labelled" / "export", 100, seed=5, size=256, only=LABELS["colours"])
    rows = manifest.read_text().splitlines()
    rows = [
        rows[0],
        *(f"{r.split(',')[0]},{r.split(',')[1]};striped" if i < 2 else r for i, r in enumerate(rows[1:])),
    ]
    rows = [*rows[:-12], *(f"{r.split(',')[0]}," for r in rows[-12:])]  # nobody tagged these
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


@pytest.fixture(scope="module")
def rejected(platform, second_round, exported) -> dict:
    api = platform.airflow()
    conf = {**TRAINING, "manifests": [str(exported)], "base": "none", "image_size": 96, "epochs": 4}
    failed = trigger(api, "training_pipeline", **conf)
    state, tasks = wait_for_run(api, "training_pipeline", failed)
    assert state == "failed" and tasks["validate"] == "failed" and tasks["train"] == "upstream_failed", tasks
    log = task_log(api, "training_pipeline", failed, "validate")
    assert "`striped`: 2 images, at least 5 required" in log and "--drop-rare-tags" in log, log[-3000:]
    assert "12 images have no tag" in log

    run_id = trigger(api, "training_pipeline", **conf, drop_rare_tags=True)
    state, tasks = wait_for_run(api, "training_pipeline", run_id)
    assert state == "success" and tasks["gate"] == "skipped" and tasks["promote"] == "skipped", tasks
    assert tasks["note"] == "success"
    return dag_run(api, "training_pipeline", run_id)


def test_a_model_that_drops_tags_is_refused_where_people_look(platform, rejected):
    import mlflow

    api = platform.airflow()
    run_id = rejected["dag_run_id"]
    validated = task_log(api, "training_pipeline", run_id, "validate")
    assert "dropped 1 tags with fewer than 5 images: striped (2)" in validated, validated[-3000:]
    quoted = urllib.parse.quote(run_id, safe="")
    summary = api.get(
        f"/api/v2/dags/training_pipeline/dagRuns/{quoted}/taskInstances/validate/xcomEntries/return_value"
    )["value"]
    summary = json.loads(summary) if isinstance(summary, str) else summary
    assert summary["dropped_tags"] == {"striped": 2} and summary["negatives"] == 12
    # the run's note, on the run's page in Airflow
    note = rejected["note"]
    assert note.startswith(
        "**Gate rejected** version 4: `promote` was skipped, the champion is unchanged."
    ), note
    assert "drops" in note and "person" in note and "--replace-vocabulary" in note
    # the gate's log: both figures and the reason
    gate = task_log(api, "training_pipeline", run_id, "gate")
    assert (
        "gate: version 4 against the champion, version 3, on " in gate
        and "gate REJECTED: challenger drops" in gate
    )
    assert "tags the champion emits and the challenger cannot: " in gate
    # MLflow: the version and its training run
    client = mlflow.MlflowClient(platform.url("mlflow"), platform.url("mlflow"))
    version = client.get_model_version(MODEL, "4")
    assert version.tags["gate"] == "rejected" and "drops" in version.tags["gate_reason"]
    run = client.get_run(version.run_id)
    assert run.data.tags["imgtag.gate"] == "rejected"
    assert run.data.tags["mlflow.note.content"].startswith("Gate REJECTED (model version 4)")
    assert "gate/challenger_map" in run.data.metrics and "gate/champion_map" in run.data.metrics
    # imgtag models lists the verdicts, and a rejected version never gets a serving directory
    status = json.loads(platform.imgtag("models", "--json").stdout)
    verdicts = {v["version"]: (v["gate"], v["aliases"]) for v in status["versions"]}
    assert verdicts[4] == ("rejected", []) and verdicts[3] == ("passed", ["champion"])
    assert status["serving_version"] == 3 and not (platform.home / "models" / MODEL / "4").exists()


# --- 6. roll back; gate a version again from the form; back to the starter ---


def test_the_rollback_dag_the_form_gating_a_version_again_and_promote_move_the_champion(platform, rejected):
    """Every step can be undone: the rollback DAG serves version 2 again; the form gates version
    3 again, without training, against that champion (as after a fix, or a new champion) and
    serves it again from its directory; ``imgtag promote 1`` returns to the starter."""
    import mlflow

    api = platform.airflow()
    client = mlflow.MlflowClient(platform.url("mlflow"), platform.url("mlflow"))
    back = trigger(api, "rollback_champion")
    state, tasks = wait_for_run(api, "rollback_champion", back, seconds=300)
    assert state == "success", tasks
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"

    run_id = trigger(api, "training_pipeline", gate_version=3, gate_margin=0.02)
    state, tasks = wait_for_run(api, "training_pipeline", run_id)
    assert state == "success" and tasks["gate"] == "success" and tasks["promote"] == "success", tasks
    skipped = {t for t, s in tasks.items() if s == "skipped"}
    assert skipped == {"ingest", "validate", "version", "train", "evaluate", "register"}  # no training
    assert dag_run(api, "training_pipeline", run_id)["note"].startswith(
        "**Gate passed**: version 3 is promoted"
    )
    gate = task_log(api, "training_pipeline", run_id, "gate")
    assert (
        "gate: version 3 against the champion, version 2, on " in gate and "/runs/" in gate
    )  # on its own dataset
    assert client.get_model_version_by_alias(MODEL, "champion").version == "3"

    starter = platform.imgtag("promote", "1", "--json")
    assert starter.returncode == 0, starter.stderr
    assert json.loads(starter.stdout)["serving_version"] == 1
    status = json.loads(platform.imgtag("models", "--json").stdout)
    assert (status["serving_version"], status["alias_version"], status["served"]) == (
        1,
        "1",
        "version 1 (the starter model)",
    )
    actions = [(e["action"], e["version"]) for e in status["history"]][:4]
    assert actions == [("promote", 1), ("promote", 3), ("rollback", 2), ("promote", 3)]


# --- 7. the same in a browser ---


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no Chromium at {CHROMIUM}: install Debian's 'chromium' package ('make browser')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def field(form, name: str):
    """The trigger form's field ``name``, its section (Data, Training, Evaluation, Gate) opened
    first as a person opens it: Airflow folds the sections that need nothing filled in."""
    from core.training_limits import TUNABLE

    element = form.locator(f"[name=element_{name}]")
    if not element.is_visible():
        form.get_by_role("button", name=TUNABLE[name].section, exact=True).click()
        element.wait_for(state="visible")
    return element


def test_a_data_scientist_triggers_training_from_the_form_and_finds_the_champion_in_mlflow(
    platform, labelled, browser, promoted
):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(f"{platform.url('airflow')}/dags/training_pipeline")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(
        airflow_password(platform.home / "airflow" / "simple_auth_manager_passwords.json.generated")
    )
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("button", name="Trigger").click()
    form = page.get_by_role("dialog")
    field(form, "folders").fill(str(labelled))
    for name in ("use_catalog",):  # switches: click what people click
        if field(form, name).is_checked() != TRAINING[name]:
            field(form, name).locator("xpath=..").click()
    for name in ("min_examples_per_tag", "epochs", "batch_size", "target_precision", "gate_margin"):
        field(form, name).fill(str(TRAINING[name]))
    form.get_by_role("button", name="Trigger").click()

    page.wait_for_url(re.compile(r".*/dags/training_pipeline/runs/manual__.*"))
    run_id = urllib.parse.unquote(page.url.rsplit("/runs/", 1)[1])
    conf = platform.airflow().get(
        f"/api/v2/dags/training_pipeline/dagRuns/{urllib.parse.quote(run_id, safe='')}"
    )["conf"]
    assert conf["folders"] == [str(labelled)] and conf["use_catalog"] is False and conf["epochs"] == 12
    state, tasks = wait_for_run(platform.airflow(), "training_pipeline", run_id)
    assert state == "success", tasks
    page.reload()
    expect(page.get_by_role("heading", name=run_id).locator("xpath=..")).to_contain_text("Success")

    page.goto(f"{platform.url('mlflow')}/#/models/{MODEL}")
    expect(page.get_by_text("@ champion").first).to_be_visible(timeout=30_000)
    page.close()


# --- 8. stop ---


def test_sigterm_stops_every_process_the_platform_started(platform):
    root = psutil.Process(platform.process.pid)
    everyone = [root, *root.children(recursive=True)]
    assert len(everyone) > 10, [p.name() for p in everyone]  # components, their workers, the executor's
    os.kill(platform.process.pid, signal.SIGTERM)
    assert platform.process.wait(120) == 0
    _, alive = psutil.wait_procs(everyone, timeout=10)
    assert alive == [], [(p.pid, p.cmdline()) for p in alive]
    assert not (platform.home / "platform" / "platform.json").exists()
