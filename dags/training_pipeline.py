"""Training pipeline: train a tagging model on the champion and promote it if it is better.

Triggered by hand, one run at a time. Each stage is one `imgtag <stage> ... --json` command
(`imgtag <stage> --help` says all it does); its JSON summary is the task's XCom, which later
stages read (paths, ids and versions, never data):

1. `ingest`: labelled folders, manifests and the catalog's reviewed tags → one dataset with
   train/val/test splits under `$IMGTAG_HOME/runs/<run id>/dataset`.
2. `validate`: Great Expectations checks; a failure fails the run, naming each bad file and tag.
3. `version`: `dvc add` + `dvc push`; the hash names exactly the data the model is trained on.
4. `train`: the learned head, built on the champion by default (keeping every tag of it these
   images do not label), then optional fine-tuning; an MLflow run named after the Airflow run.
5. `evaluate`: per-tag thresholds reaching the target precision on validation; quality on test.
6. `register`: exports the SavedModel as a new MLflow model version.
7. `gate`: scores challenger and champion on the same test split. **A rejection (exit 3) skips
   promotion**; exit 4 when MLflow's alias `champion` no longer names what TF Serving serves.
8. `promote`: serves the version, moves the alias, updates the asset that schedules `nightly_retag`.
9. `note`: the gate's verdict as the run's note (needs the connection `imgtag_airflow_api`).

*Gate an existing version* skips `ingest` to `register`. Paths are on the filesystem the stages
see. Only stages that talk to storage, MLflow or the database retry; exit 2 (bad input) fails at
once. Stages run as local processes or Kubernetes pods (`IMGTAG_STAGE_EXECUTOR`, `imgtag_stage.py`).

## Parameters

"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag, task
from imgtag_stage import (
    CHAMPION_ASSET,
    MODEL_RESOURCES,
    TRAINING_RESOURCES,
    command,
    form,
    note_gate_verdict,
    stage,
    xcom,
)

from core import training_limits
from core.errors import ExitCode

#: Stages that meet transient faults (storage, MLflow server, database) try again.
TRANSIENT = {"retries": 2, "retry_delay": timedelta(minutes=1)}
RUN_NAME = ("--run-name", "{{ run_id }}")
DATASET, MODEL, MLFLOW_RUN = xcom("ingest", "dataset"), xcom("train", "model"), xcom("train", "run_id")
#: The version to gate and promote: the form's `gate_version`, else the one `register` made.
MODEL_VERSION = (
    "{{ params.gate_version if params.gate_version else ti.xcom_pull(task_ids='register')['model_version'] }}"
)
#: The dataset to gate on: this run's; with `gate_version`, "" (the version's own, from MLflow).
GATE_DATASET = "{{ '' if params.gate_version else ti.xcom_pull(task_ids='ingest')['dataset'] }}"


@dag(
    dag_id="training_pipeline",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    is_paused_upon_creation=False,  # active as soon as Airflow parses it
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=16),
    doc_md=__doc__ + training_limits.markdown(),
    tags=["imgtag", "training"],
    default_args={"owner": "data-science", "retries": 0},
    params=form(),  # sections Data, Training, Evaluation, Gate: core/training_limits.py declares each
)
def training_pipeline():
    @task.branch(task_id="train_or_gate")
    def train_or_gate(params=None) -> str:
        """Train a new model (`ingest` ...), or gate the existing version the form names."""
        return "existing_version" if params and params.get("gate_version") else "ingest"

    choose = train_or_gate()
    existing = EmptyOperator(task_id="existing_version", doc_md="Gate `gate_version`: no training.")
    hour, half_hour, quarter = timedelta(hours=1), timedelta(minutes=30), timedelta(minutes=15)
    ingest = stage("ingest", command("ingest", after=RUN_NAME), execution_timeout=hour, **TRANSIENT)
    validate = stage("validate", command("validate", DATASET), execution_timeout=half_hour)
    version = stage("version", command("version", DATASET), execution_timeout=hour, **TRANSIENT)
    dataset_hash = xcom("version", "dataset_hash")
    train_command = command("train", DATASET, "--dataset-hash", dataset_hash, after=RUN_NAME)
    train = stage("train", train_command, resources=TRAINING_RESOURCES, execution_timeout=timedelta(hours=8))
    evaluate_command = command("evaluate", MODEL, DATASET, "--run-id", MLFLOW_RUN)
    evaluate = stage("evaluate", evaluate_command, resources=MODEL_RESOURCES, execution_timeout=hour)
    thresholds = xcom("evaluate", "thresholds")
    register_command = command(
        "register", MODEL, "--run-id", MLFLOW_RUN, "--thresholds", thresholds, "--dag-run-id", "{{ run_id }}"
    )
    register = stage(
        "register", register_command, resources=MODEL_RESOURCES, execution_timeout=half_hour, **TRANSIENT
    )
    gate = stage(
        "gate",
        command("gate", MODEL_VERSION, GATE_DATASET),
        resources=MODEL_RESOURCES,
        skip_on_exit_code=ExitCode.GATE_REJECTED.value,  # rejected (exit 3): skipped, and promote with it
        trigger_rule="none_failed_min_one_success",  # after register, or after existing_version
        execution_timeout=hour,
    )
    promote_command = command("promote", MODEL_VERSION)
    promote = stage(
        "promote", promote_command, outlets=[CHAMPION_ASSET], execution_timeout=quarter, **TRANSIENT
    )

    @task(task_id="note", trigger_rule="all_done", retries=0, execution_timeout=timedelta(minutes=5))
    def note(**context) -> str:
        """The gate's verdict as the run's note: passed or rejected, why, and the figures."""
        return note_gate_verdict(context)

    choose >> [ingest, existing]
    existing >> gate
    ingest >> validate >> version >> train >> evaluate >> register >> gate >> [promote, note()]


training_pipeline()
