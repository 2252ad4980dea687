"""Training pipeline: train a tagging model on the champion and promote it if it is better.

Triggered by hand (no schedule), one run at a time, with the parameters of the trigger form.
Each stage is one `imgtag <stage> ... --json` command; its JSON summary is the task's XCom, and
later stages read earlier summaries from XCom (paths, ids and versions, never data):

1. `ingest` — `imgtag ingest --folder <folders> --manifest <manifests> --catalog|--no-catalog
   --run-name <Airflow run id>`: gathers the labelled images (folder-per-tag trees, manifests,
   and the human-reviewed tags of the catalog) into one dataset with train/val/test splits under
   `$IMGTAG_HOME/runs/<run id>/dataset`. A manifest row without tags is a negative (counted).
   Summary: `dataset`, `manifest`, `negatives`.
2. `validate` — `imgtag validate <dataset> --min-examples <min_examples_per_tag>`: Great
   Expectations checks (every image decodes, labels come from the vocabulary, no duplicates,
   no leakage between splits, enough examples per tag). A failure fails the run here, with a
   report naming each bad file and tag; with `drop_rare_tags`, tags under the minimum are taken
   off the dataset and listed in the report instead. Summary: `passed`, `report`, `dropped_tags`.
3. `version` — `imgtag version <dataset>`: `dvc add` + `dvc push`; the hash names exactly the
   data the model is trained on. Summary: `dataset_hash`.
4. `train` — `imgtag train <dataset> --dataset-hash ... --base <base>`: the learned head on the
   frozen backbone for `epochs`, built on the champion with `base` `champion` (the default: its
   learned head, and every tag of it these images do not label kept as it is, so training adds
   and improves tags and never loses one), then `fine_tune_epochs` of fine-tuning the top
   `fine_tune_blocks` blocks; an MLflow run named after the Airflow run, one log line per epoch.
   Summary: `run_id` (MLflow), `model`.
5. `evaluate` — `imgtag evaluate <model> <dataset> --run-id ...`: per-tag thresholds reaching
   `target_precision` on the validation split, for the learned tags and the general tags the
   labels can check (a tag that cannot reach it is turned off, with the reason; the champion's
   kept tags keep theirs); mAP, the share of test images with a correct tag and with none,
   precision and person AP on the test split, logged to the MLflow run. Summary: `thresholds`.
6. `register` — `imgtag register <model> --thresholds ... --dag-run-id <run id>`: exports the
   SavedModel (learned tags only with `learned_only`, else beside the general ImageNet tags)
   and registers it as a new MLflow model version (the first registration of a new install
   makes the starter model version 1 first). Summary: `model_version`.
7. `gate` — `imgtag gate <model_version> <dataset> --metric ... --margin ...`: scores the
   challenger and the champion (the starter model, version 1, until a first promotion) on the
   same test split, on every tag its labels can check. It passes when the challenger's
   `gate_metric` beats the champion's by `gate_margin` and it drops no tag the champion emits
   (unless `replace_vocabulary`); `gate_floor` applies only when there is no champion. Its log
   shows both models' figures, the margin, per-tag gains and losses and the reason, and the
   verdict is recorded on the MLflow version (tag `gate`) and its training run. **A rejection
   skips promotion**: the gate exits 3, the task is skipped (not failed), and `promote` with it.
   The champion is what TF Serving serves; when MLflow's `champion` alias points elsewhere
   (moved by hand in the MLflow UI) the gate fails with exit 4 and says how to put it back.
8. `promote` — `imgtag promote <model_version>`: serves the version under its own number (one
   number names a model in MLflow, the serving directory and the catalog's tags) and moves the
   MLflow alias `champion`. It updates the asset `imgtag://models/imgtag-tagger/champion`,
   which schedules `nightly_retag`.
9. `note` — the gate's verdict as the run's note (shown on the run's page in the grid): passed
   or rejected, the reason and the figures. It needs the Airflow connection
   `imgtag_airflow_api` (Airflow's REST API: host, login and password of a user who may edit
   DAG runs; `imgtag platform` defines it); without it the task logs the verdict and says so.

**Gating an existing version**: with `gate_version` (any registered model version: a rejected
one after a fix, or one to compare with a new champion), the run skips `ingest` to `register`
(`train_or_gate` branches to `existing_version`) and gates that version on the dataset it was trained on, then
promotes it if it passes.

Parameters (the trigger form): the labelled sources `folders`, `manifests`, `use_catalog`;
`min_examples_per_tag`, `drop_rare_tags`; training `epochs`, `learning_rate`, `batch_size`,
`image_size`, `fine_tune_blocks`, `fine_tune_epochs`, `distill_weight`, `base`; `learned_only`;
`target_precision`; the gate's `gate_metric`, `gate_margin`, `gate_floor`, `replace_vocabulary`;
and `gate_version`. Airflow refuses a trigger whose parameters do not fit their schema; the
numeric limits are `core/training_limits.py`, which the stages check too.
Folders and manifests are paths on the filesystem the stages see (object
storage URIs are not read; copy the images to the shared volume first). Only the stages that
talk to storage, the MLflow server or the database (`ingest`, `version`, `register`, `promote`)
are retried, and only on a transient failure: a stage that exits with status 2 (bad input: a
folder that does not exist, a malformed manifest, a failed validation) fails at once without
retries, so a typo in the form costs seconds, not the retry delays. The stages run as local processes or as Kubernetes pods, chosen
by `IMGTAG_STAGE_EXECUTOR` (see `dags/imgtag_stage.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import Param, dag, task
from imgtag_stage import CHAMPION_ASSET, MODEL_RESOURCES, TRAINING_RESOURCES, note_gate_verdict, stage

from core import training_limits as limits
from core.errors import ExitCode

#: Stages that meet transient faults (storage, MLflow server, database) try again.
TRANSIENT = {"retries": 2, "retry_delay": timedelta(minutes=1)}


def out(task_id: str, key: str) -> str:
    """The template of one key of an earlier stage's summary (its XCom)."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"  # {{{{ }}}}: Jinja's own braces


DATASET = out("ingest", "dataset")
MODEL = out("train", "model")
MLFLOW_RUN = out("train", "run_id")
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
    doc_md=__doc__,
    tags=["imgtag", "training"],
    default_args={"owner": "data-science", "retries": 0},
    params={
        "folders": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Labelled folders",
            description="Folder-per-tag trees of labelled images, one absolute path per line, on the "
            "filesystem the stages see (this machine, or the shared /data volume in a cluster).",
        ),
        "manifests": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Manifests",
            description="CSV manifests (path,tags) of labelled images, one absolute path per line, on the "
            "filesystem the stages see (this machine, or the shared /data volume in a cluster).",
        ),
        "use_catalog": Param(
            True,
            type="boolean",
            title="Use the catalog",
            description="Add the catalog's human-reviewed tags to the labelled images.",
        ),
        "min_examples_per_tag": Param(
            10,
            type="integer",
            **limits.MIN_EXAMPLES_PER_TAG.schema(),
            title="Minimum examples per tag",
            description="Validation fails when a tag has fewer labelled images than this (unless "
            "Drop rare tags).",
        ),
        "drop_rare_tags": Param(
            False,
            type="boolean",
            title="Drop rare tags",
            description="Take the tags with fewer images than the minimum off the dataset and list them in "
            "the validation report, instead of failing the run (the long tail of a library exported as it is).",
        ),
        "epochs": Param(
            8,
            type="integer",
            **limits.EPOCHS.schema(),
            title="Epochs",
            description="Epochs of training the learned head on the frozen backbone.",
        ),
        "learning_rate": Param(
            0.001,
            type="number",
            **limits.LEARNING_RATE.schema(),
            title="Learning rate",
            description="Adam learning rate of the head training (fine-tuning uses a tenth of it).",
        ),
        "batch_size": Param(
            32,
            type="integer",
            **limits.BATCH_SIZE.schema(),
            title="Batch size",
            description="Images per training step.",
        ),
        "image_size": Param(
            limits.DEFAULT_IMAGE_SIZE,
            type="integer",
            **limits.IMAGE_SIZE.schema(),
            title="Image size",
            description=f"Input side in pixels, a multiple of 32; the starter model's is {limits.DEFAULT_IMAGE_SIZE} "
            "(Starting point 'starter' needs it), smaller is faster.",
        ),
        "fine_tune_blocks": Param(
            0,
            type="integer",
            **limits.FINE_TUNE_BLOCKS.schema(),
            title="Fine-tuned blocks",
            description="After the head, fine-tune this many top blocks of the backbone (0: none).",
        ),
        "fine_tune_epochs": Param(
            0,
            type="integer",
            **limits.FINE_TUNE_EPOCHS.schema(),
            title="Fine-tuning epochs",
            description="Epochs of fine-tuning the top blocks (0: none).",
        ),
        "distill_weight": Param(
            1.0,
            type="number",
            **limits.DISTILL_WEIGHT.schema(),
            title="Distillation weight",
            description="While fine-tuning, hold the ImageNet head to its pretrained outputs with this "
            "weight, so the general tags survive (0: let it drift).",
        ),
        "base": Param(
            "champion",
            type="string",
            enum=["champion", "starter", "none"],
            title="Build on",
            description="champion: the served champion (the starter model until a first promotion): its "
            "learned head, and every tag of it these images do not label kept as it is (train at its image "
            "size, the starter's is the default image size); starter: the shipped starter model; none: only these images' tags "
            "(the gate refuses a model that drops the champion's tags unless Replace the vocabulary).",
        ),
        "learned_only": Param(
            False,
            type="boolean",
            title="Learned tags only",
            description="Export only the learned tags, without the general ImageNet-derived tags.",
        ),
        "target_precision": Param(
            0.9,
            type="number",
            **limits.TARGET_PRECISION.schema(),
            title="Target precision",
            description="Each tag's threshold is the lowest score reaching this precision on validation.",
        ),
        "gate_metric": Param(
            "map",
            type="string",
            enum=["map", "micro_f1", "macro_f1"],
            title="Gate metric",
            description="The test-split metric on which the challenger must beat the champion.",
        ),
        "gate_margin": Param(
            0.01,
            type="number",
            **limits.GATE_MARGIN.schema(),
            title="Gate margin",
            description="How much better than the champion's the challenger's metric must be.",
        ),
        "gate_floor": Param(
            0.5,
            type="number",
            **limits.GATE_FLOOR.schema(),
            title="Gate floor",
            description="The least metric the challenger must reach when there is no champion to compare "
            "with (with one, the comparison alone decides).",
        ),
        "replace_vocabulary": Param(
            False,
            type="boolean",
            title="Replace the vocabulary",
            description="Let a challenger pass that cannot emit tags the champion emits: it replaces the "
            "champion's vocabulary, and those tags are no longer given. Off, the gate refuses it and lists them.",
        ),
        "gate_version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Gate an existing version",
            description="A registered model version to gate against the champion (and promote if it passes) "
            "without training: ingest to register are skipped, and it is scored on the dataset it was "
            "trained on. Empty: train a new one.",
        ),
    },
)
def training_pipeline():
    @task.branch(task_id="train_or_gate")
    def train_or_gate(params=None) -> str:
        """Train a new model (`ingest` ...), or gate the existing version the form names."""
        return "existing_version" if params and params.get("gate_version") else "ingest"

    choose = train_or_gate()
    existing = EmptyOperator(task_id="existing_version", doc_md="Gate the form's `gate_version`: no training.")
    ingest = stage(
        "ingest",
        [
            "ingest",
            "--folder",
            "{{ params.folders | join(',') }}",
            "--manifest",
            "{{ params.manifests | join(',') }}",
            "{{ '--catalog' if params.use_catalog else '--no-catalog' }}",
            "--run-name",
            "{{ run_id }}",
            "--json",
        ],
        execution_timeout=timedelta(hours=1),
        **TRANSIENT,
    )
    validate = stage(
        "validate",
        [
            "validate",
            DATASET,
            "--min-examples",
            "{{ params.min_examples_per_tag }}",
            "{{ '--drop-rare-tags' if params.drop_rare_tags else '--keep-rare-tags' }}",
            "--json",
        ],
        execution_timeout=timedelta(minutes=30),
    )
    version = stage(
        "version",
        ["version", DATASET, "--json"],
        execution_timeout=timedelta(hours=1),
        **TRANSIENT,
    )
    train = stage(
        "train",
        [
            "train",
            DATASET,
            "--dataset-hash",
            out("version", "dataset_hash"),
            "--epochs",
            "{{ params.epochs }}",
            "--learning-rate",
            "{{ params.learning_rate }}",
            "--batch-size",
            "{{ params.batch_size }}",
            "--image-size",
            "{{ params.image_size }}",
            "--fine-tune-blocks",
            "{{ params.fine_tune_blocks }}",
            "--fine-tune-epochs",
            "{{ params.fine_tune_epochs }}",
            "--distill-weight",
            "{{ params.distill_weight }}",
            "--base",
            "{{ params.base }}",
            "--run-name",
            "{{ run_id }}",
            "--json",
        ],
        resources=TRAINING_RESOURCES,
        execution_timeout=timedelta(hours=8),
    )
    evaluate = stage(
        "evaluate",
        [
            "evaluate",
            MODEL,
            DATASET,
            "--run-id",
            MLFLOW_RUN,
            "--target-precision",
            "{{ params.target_precision }}",
            "--json",
        ],
        resources=MODEL_RESOURCES,
        execution_timeout=timedelta(hours=1),
    )
    register = stage(
        "register",
        [
            "register",
            MODEL,
            "--run-id",
            MLFLOW_RUN,
            "--thresholds",
            out("evaluate", "thresholds"),
            "--dag-run-id",
            "{{ run_id }}",
            "{{ '--learned-only' if params.learned_only else '--with-general' }}",
            "--json",
        ],
        resources=MODEL_RESOURCES,
        execution_timeout=timedelta(minutes=30),
        **TRANSIENT,
    )
    gate = stage(
        "gate",
        [
            "gate",
            MODEL_VERSION,
            GATE_DATASET,
            "--metric",
            "{{ params.gate_metric }}",
            "--margin",
            "{{ params.gate_margin }}",
            "--floor",
            "{{ params.gate_floor }}",
            "{{ '--replace-vocabulary' if params.replace_vocabulary else '--keep-vocabulary' }}",
            "--json",
        ],
        resources=MODEL_RESOURCES,
        skip_on_exit_code=ExitCode.GATE_REJECTED.value,  # rejected (exit 3): skipped, and promote with it
        trigger_rule="none_failed_min_one_success",  # after register, or after existing_version
        execution_timeout=timedelta(hours=1),
    )
    promote = stage(
        "promote",
        ["promote", MODEL_VERSION, "--json"],
        outlets=[CHAMPION_ASSET],
        execution_timeout=timedelta(minutes=15),
        **TRANSIENT,
    )

    @task(task_id="note", trigger_rule="all_done", retries=0, execution_timeout=timedelta(minutes=5))
    def note(**context) -> str:
        """The gate's verdict as the run's note: passed or rejected, why, and the figures."""
        return note_gate_verdict(context)

    choose >> [ingest, existing]
    existing >> gate
    ingest >> validate >> version >> train >> evaluate >> register >> gate >> [promote, note()]


training_pipeline()
