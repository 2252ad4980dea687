"""The training DAG's wiring: stage order, trigger-form params, retries, templated command lines.

The stages themselves are tested elsewhere (and end to end in ``test_training_pipeline_run.py``); here a
fake ``imgtag`` that prints canned summaries stands in for them, so a whole run shows which
command line each stage receives, that a rejecting gate skips promotion and notes why, and that
the form's ``gate_version`` gates an existing version without training.
"""

from __future__ import annotations

import itertools
import json
import stat
import sys
from datetime import timedelta

import pytest

ORDER = ("ingest", "validate", "version", "train", "evaluate", "register", "gate", "promote")
FLOW = ("train_or_gate", "existing_version", "note")  # the branch, its empty arm, the verdict's note
RETRIED = {"ingest", "version", "register", "promote"}
RUN_ID = "manual__2026-11-29T10:00:00+00:00"
DATASET = "/home/runs/x/dataset"
CHAMPION_URI = "imgtag://models/imgtag-tagger/champion"

#: What the fake XCom of each earlier stage holds when templates are rendered.
SUMMARIES = {
    "ingest": {"dataset": DATASET, "manifest": "/home/runs/x/dataset/manifest.json"},
    "validate": {"passed": True, "report": "/home/runs/x/validation/report.md"},
    "version": {"dataset_hash": "9f3c0d"},
    "train": {"run_id": "mlflowrun42", "model": "/home/runs/x/model"},
    "evaluate": {"thresholds": "/home/runs/x/model/thresholds.json", "map": 0.71},
    "register": {"model_name": "imgtag-tagger", "model_version": "7"},
}

#: The command line each stage receives with the default params and the summaries above.
DEFAULT_COMMANDS = {
    "ingest": ["ingest", "--folder", "", "--manifest", "", "--catalog", "--run-name", RUN_ID, "--json"],
    "validate": ["validate", DATASET, "--min-examples", "10", "--keep-rare-tags", "--json"],
    "version": ["version", DATASET, "--json"],
    "train": [
        "train",
        DATASET,
        "--dataset-hash",
        "9f3c0d",
        "--epochs",
        "8",
        "--learning-rate",
        "0.001",
        "--batch-size",
        "32",
        "--image-size",
        "256",
        "--fine-tune-blocks",
        "0",
        "--fine-tune-epochs",
        "0",
        "--distill-weight",
        "1.0",
        "--base",
        "champion",
        "--run-name",
        RUN_ID,
        "--json",
    ],
    "evaluate": [
        "evaluate",
        "/home/runs/x/model",
        DATASET,
        "--run-id",
        "mlflowrun42",
        "--target-precision",
        "0.9",
        "--json",
    ],
    "register": [
        "register",
        "/home/runs/x/model",
        "--run-id",
        "mlflowrun42",
        "--thresholds",
        "/home/runs/x/model/thresholds.json",
        "--dag-run-id",
        RUN_ID,
        "--with-general",
        "--json",
    ],
    "gate": [
        "gate",
        "7",
        DATASET,
        "--metric",
        "map",
        "--margin",
        "0.01",
        "--floor",
        "0.5",
        "--keep-vocabulary",
        "--json",
    ],
    "promote": ["promote", "7", "--json"],
}


@pytest.fixture
def dagbag(load_dags):
    return load_dags(IMGTAG_STAGE_EXECUTOR="local")


@pytest.fixture
def training(dagbag):
    return dagbag.get_dag("training_pipeline")


class FakeTI:
    """Just enough of a task instance for ``ti.xcom_pull(task_ids=...)`` in templates."""

    def xcom_pull(self, task_ids, key="return_value", **_):
        return SUMMARIES[task_ids]


def rendered(task, dag, **conf) -> list[str]:
    """The task's command line with the DAG's params (updated by ``conf``) and the fake XComs."""
    context = {"params": {**dag.params.dump(), **conf}, "ti": FakeTI(), "run_id": RUN_ID}
    return [str(arg) for arg in task.render_template(task.arguments, context)]


def trigger_params(dag, **conf) -> dict:
    """The params as Airflow resolves them when the DAG is triggered with ``conf``."""
    from airflow.serialization.serialized_objects import DagSerialization

    scheduler_view = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    return scheduler_view.params.deep_merge(conf).validate()


def test_stages_run_in_order(training):
    assert training.schedule is None
    assert training.max_active_runs == 1
    assert set(training.task_ids) == set(ORDER) | set(FLOW)
    for upstream, task_id in itertools.pairwise(ORDER[:6]):  # ingest ... register
        assert training.get_task(task_id).upstream_task_ids == {upstream}, task_id
    assert training.get_task("train_or_gate").upstream_task_ids == set()
    assert training.get_task("ingest").upstream_task_ids == {"train_or_gate"}
    assert training.get_task("existing_version").upstream_task_ids == {"train_or_gate"}
    assert training.get_task("gate").upstream_task_ids == {"register", "existing_version"}
    assert training.get_task("gate").trigger_rule == "none_failed_min_one_success"
    assert training.get_task("promote").upstream_task_ids == {"gate"}
    assert training.get_task("note").upstream_task_ids == {"gate"}
    assert training.get_task("note").trigger_rule == "all_done"  # a rejected (skipped) gate is noted too


def test_each_stage_gets_its_command_line(training):
    assert {task_id: rendered(training.get_task(task_id), training) for task_id in ORDER} == DEFAULT_COMMANDS


def test_params_shape_the_command_lines(training):
    conf = {
        "folders": ["/data/a", "s3://bucket/b"],
        "manifests": ["/data/m.csv"],
        "use_catalog": False,
        "epochs": 20,
        "learning_rate": 0.0005,
        "image_size": 96,
        "fine_tune_blocks": 2,
        "fine_tune_epochs": 3,
        "learned_only": True,
        "gate_metric": "macro_f1",
        "gate_margin": 0.0,
        "gate_floor": 0.3,
        "base": "none",
        "replace_vocabulary": True,
        "drop_rare_tags": True,
    }
    params = trigger_params(training, **conf)
    command = {task_id: rendered(training.get_task(task_id), training, **params) for task_id in ORDER}
    assert command["ingest"][:6] == [
        "ingest",
        "--folder",
        "/data/a,s3://bucket/b",
        "--manifest",
        "/data/m.csv",
        "--no-catalog",
    ]
    train = command["train"]
    assert [train[train.index(flag) + 1] for flag in ("--epochs", "--learning-rate", "--image-size")] == [
        "20",
        "0.0005",
        "96",
    ]
    assert train[train.index("--fine-tune-blocks") + 1 :][:3] == ["2", "--fine-tune-epochs", "3"]
    assert command["register"][-2] == "--learned-only"
    assert command["gate"][3:10] == [
        "--metric",
        "macro_f1",
        "--margin",
        "0.0",
        "--floor",
        "0.3",
        "--replace-vocabulary",
    ]
    assert train[train.index("--base") + 1] == "none"
    assert command["validate"][-2] == "--drop-rare-tags"


def test_a_version_to_gate_replaces_the_trained_one_and_its_own_dataset_is_used(training):
    params = trigger_params(training, gate_version=4)
    assert rendered(training.get_task("gate"), training, **params)[:3] == ["gate", "4", ""]
    assert rendered(training.get_task("promote"), training, **params) == ["promote", "4", "--json"]


def test_default_params_are_valid_and_complete(training):
    assert trigger_params(training) == {
        "folders": [],
        "manifests": [],
        "use_catalog": True,
        "min_examples_per_tag": 10,
        "drop_rare_tags": False,
        "epochs": 8,
        "learning_rate": 0.001,
        "batch_size": 32,
        "image_size": 256,
        "fine_tune_blocks": 0,
        "fine_tune_epochs": 0,
        "distill_weight": 1.0,
        "base": "champion",
        "learned_only": False,
        "target_precision": 0.9,
        "gate_metric": "map",
        "gate_margin": 0.01,
        "gate_floor": 0.5,
        "replace_vocabulary": False,
        "gate_version": None,
    }
    for name in training.params:
        schema = training.params.get_param(name).schema
        assert schema.get("title") and training.params.get_param(name).description, name


def test_every_command_option_defaults_to_the_form_default(training):
    """Each parameter is declared once (``core.training_limits``): the ``imgtag`` option that takes
    it defaults to what the trigger form does, but where the declaration says otherwise."""
    import typer.main

    from core import training_limits
    from pipelines.cli import app

    commands = typer.main.get_command(app).commands
    differ = {}
    for t in training_limits.TUNABLES:
        if not t.command:
            continue
        (option,) = (p for p in commands[t.command].params if t.flag.split("/")[0] in p.opts)
        command = [] if option.default is None and t.type == "array" else option.default  # nothing given
        assert command == t.command_default, (
            f"imgtag {t.command} {t.flag}: {command!r}, declared {t.command_default!r}"
        )
        if t.form and command != training.params.get_param(t.name).value:
            differ[t.name] = (command, training.params.get_param(t.name).value)
    # `imgtag ingest` at a terminal reads the catalog's database only when asked; the form does
    assert differ == {"use_catalog": (False, True)}


def test_the_form_is_in_sections(training):
    from airflow.serialization.serialized_objects import DagSerialization

    from core.training_limits import SECTIONS

    scheduler_view = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(training))
    sections = [scheduler_view.params.get_param(name).schema["section"] for name in scheduler_view.params]
    assert list(dict.fromkeys(sections)) == list(SECTIONS) == ["Data", "Training", "Evaluation", "Gate"]
    assert sections == sorted(sections, key=list(SECTIONS).index)  # a section's fields together
    assert len(sections) == 20


def test_the_dag_file_reads_in_120_lines(training):
    from pathlib import Path

    assert len(Path(training.fileloc).read_text().splitlines()) <= 120  # stage flags: imgtag_stage.command


@pytest.mark.parametrize(
    "conf",
    [
        {"epochs": 0},
        {"epochs": 201},
        {"epochs": "8"},
        {"learning_rate": 0},
        {"learning_rate": 1.5},
        {"batch_size": 513},
        {"image_size": 100},
        {"image_size": 32},
        {"fine_tune_blocks": 22},  # Lite2 has 21 blocks
        {"fine_tune_epochs": -1},
        {"distill_weight": -1},
        {"min_examples_per_tag": 0},
        {"target_precision": 1.1},
        {"gate_metric": "foo"},
        {"gate_margin": -0.1},
        {"gate_floor": 2},
        {"base": "imagenet"},
        {"folders": "/data/a"},
        {"folders": [1, 2]},
        {"use_catalog": "yes"},
        {"learned_only": 1},
        {"gate_version": 0},
        {"gate_version": "4"},
        {"drop_rare_tags": "yes"},
    ],
)
def test_bad_params_are_refused_at_trigger(training, conf):
    from airflow.sdk.exceptions import ParamValidationError

    (name,) = conf
    with pytest.raises(ParamValidationError, match=f"Invalid input for param {name}"):
        trigger_params(training, **conf)


def test_only_stages_meeting_transient_faults_retry(training):
    for task in training.tasks:
        if task.task_id in RETRIED:
            assert task.retries == 2 and task.retry_delay == timedelta(minutes=1), task.task_id
        else:
            assert task.retries == 0, task.task_id
        if task.task_id not in FLOW[:2]:  # the branch and its empty arm take no time
            assert task.execution_timeout is not None, task.task_id
    assert training.get_task("train").execution_timeout >= timedelta(hours=4)


def test_the_gate_skips_on_rejection_and_promote_updates_the_champion(training, stage_module):
    gate, promote = training.get_task("gate"), training.get_task("promote")
    assert isinstance(gate, stage_module.LocalStageOperator)
    assert list(gate.skip_on_exit_code) == [3]
    assert promote.outlets == [stage_module.CHAMPION_ASSET]
    assert promote.trigger_rule == "all_success"  # a skipped gate skips promote
    assert all(not task.outlets for task in training.tasks if task is not promote)


# --- a whole run, with a fake imgtag printing canned summaries ---

FAKE_IMGTAG = '''\
#!{python}
"""A stand-in for imgtag: records its command line, prints a canned summary per stage."""
import json, os, sys

stage, args = sys.argv[1], sys.argv[2:]
with open(os.environ["FAKE_IMGTAG_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
home = os.environ["FAKE_IMGTAG_HOME"]
if stage == "ingest":
    run = os.path.join(home, "runs", args[args.index("--run-name") + 1])
    summary = {{"dataset": run + "/dataset", "manifest": run + "/dataset/manifest.json"}}
elif stage == "validate":
    summary = {{"passed": True, "report": args[0] + "/../validation/report.md"}}
elif stage == "version":
    summary = {{"dataset_hash": "9f3c0d"}}
elif stage == "train":
    summary = {{"run_id": "mlflowrun42", "model": args[0] + "/../model"}}
elif stage == "evaluate":
    summary = {{"thresholds": args[0] + "/thresholds.json", "map": 0.71}}
elif stage == "register":
    summary = {{"model_name": "imgtag-tagger", "model_version": "7"}}
elif stage == "gate":
    if os.environ.get("FAKE_GATE") == "reject":
        print(json.dumps({{"passed": False, "model_version": args[0],
                          "reason": "map 0.41 does not beat champion 0.62 by 0.01"}}))
        print("gate rejected model version " + args[0], file=sys.stderr)
        sys.exit(3)
    summary = {{"passed": True, "model_version": args[0], "reason": "map 0.71 beats champion 0.62 by 0.01"}}
elif stage == "promote":
    summary = {{"serving_version": 1, "model_version": args[0]}}
print(json.dumps(summary))
'''


@pytest.fixture
def fake_imgtag(tmp_path, stage_module, monkeypatch):
    """A fake imgtag for the local executor; returns the file its command lines are logged to."""
    path = tmp_path / "bin" / "imgtag"
    path.parent.mkdir()
    path.write_text(FAKE_IMGTAG.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(stage_module, "imgtag_executable", lambda: str(path))
    monkeypatch.setenv("FAKE_IMGTAG_LOG", str(tmp_path / "commands.jsonl"))
    monkeypatch.setenv("FAKE_IMGTAG_HOME", str(tmp_path / "home"))
    return tmp_path / "commands.jsonl"


@pytest.fixture
def champion_events():
    """Counts champion asset events; removes those a test made, so later DAG runs start clean."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import delete, func, select

    events = (
        select(AssetEvent.id)
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .where(AssetModel.uri == CHAMPION_URI)
    )

    def count() -> int:
        with create_session() as session:
            return session.scalar(select(func.count()).select_from(events.subquery()))

    with create_session() as session:
        before = set(session.scalars(events))
    yield count
    with create_session() as session:
        made = set(session.scalars(events)) - before
        if made:
            session.execute(delete(AssetEvent).where(AssetEvent.id.in_(made)))
            asset_ids = select(AssetModel.id).where(AssetModel.uri == CHAMPION_URI)
            session.execute(delete(AssetDagRunQueue).where(AssetDagRunQueue.asset_id.in_(asset_ids)))


def run_training(dag, commands_log, **conf):
    """``dag.test()`` the training DAG; returns ``(run, {task: state}, {task: XCom}, {stage: argv})``."""
    run = dag.test(run_conf=conf)
    instances = run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    xcoms = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in instances}
    commands = [json.loads(line) for line in commands_log.read_text().splitlines()]
    commands_log.unlink()
    return run, states, xcoms, {argv[0]: argv for argv in commands}


def test_a_run_passes_each_summary_on_and_promotes(training, fake_imgtag, champion_events, tmp_path):
    before = champion_events()
    run, states, xcoms, commands = run_training(training, fake_imgtag, folders=["/data/a", "/data/b"])

    assert str(run.state) == "success", states
    assert states == {**{t: "success" for t in (*ORDER, *FLOW)}, "existing_version": "skipped"}
    assert list(commands) == list(ORDER)
    dataset = f"{tmp_path}/home/runs/{run.run_id}/dataset"
    model = f"{dataset}/../model"
    assert commands["ingest"] == [
        "ingest",
        "--folder",
        "/data/a,/data/b",
        "--manifest",
        "",
        "--catalog",
        "--run-name",
        run.run_id,
        "--json",
    ]
    assert commands["validate"] == ["validate", dataset, "--min-examples", "10", "--keep-rare-tags", "--json"]
    assert commands["version"] == ["version", dataset, "--json"]
    assert commands["train"][:4] == ["train", dataset, "--dataset-hash", "9f3c0d"]
    assert commands["train"][-3:] == ["--run-name", run.run_id, "--json"]
    assert commands["evaluate"][:5] == ["evaluate", model, dataset, "--run-id", "mlflowrun42"]
    assert commands["register"] == [
        "register",
        model,
        "--run-id",
        "mlflowrun42",
        "--thresholds",
        f"{model}/thresholds.json",
        "--dag-run-id",
        run.run_id,
        "--with-general",
        "--json",
    ]
    assert commands["gate"][:3] == ["gate", "7", dataset]
    assert commands["promote"] == ["promote", "7", "--json"]
    assert xcoms["promote"] == {"serving_version": 1, "model_version": "7"}
    assert xcoms["note"].startswith("**Gate passed**: version 7 is promoted")
    assert champion_events() == before + 1


def test_a_rejecting_gate_skips_promotion(training, fake_imgtag, champion_events, monkeypatch):
    monkeypatch.setenv("FAKE_GATE", "reject")
    before = champion_events()
    run, states, xcoms, commands = run_training(training, fake_imgtag)

    assert states == {
        **{task_id: "success" for task_id in ORDER[:-2]},
        "train_or_gate": "success",
        "existing_version": "skipped",
        "gate": "skipped",
        "promote": "skipped",
        "note": "success",
    }
    assert str(run.state) == "success"  # a rejected model is an outcome, not a failure
    assert "promote" not in commands
    assert xcoms["gate"] == {
        "passed": False,
        "model_version": "7",
        "reason": "map 0.41 does not beat champion 0.62 by 0.01",
    }
    assert xcoms["note"] == (
        "**Gate rejected** version 7: `promote` was skipped, the champion is unchanged.\n\n"
        "Reason: map 0.41 does not beat champion 0.62 by 0.01."
    )
    assert champion_events() == before


def test_a_form_version_is_gated_and_promoted_without_training(training, fake_imgtag, champion_events):
    before = champion_events()
    run, states, xcoms, commands = run_training(training, fake_imgtag, gate_version=4)

    assert str(run.state) == "success", states
    assert list(commands) == ["gate", "promote"]
    assert commands["gate"][:3] == ["gate", "4", ""]  # "": the dataset version 4 was trained on
    assert commands["promote"] == ["promote", "4", "--json"]
    assert {t for t, state in states.items() if state == "skipped"} == {*ORDER[:6]}
    assert champion_events() == before + 1


# --- the trigger form and the stages accept the same values ---


def _probes(limit) -> list:
    """Values on and around each bound of ``limit`` (and off its multiple)."""
    values = []
    for bound in (limit.minimum, limit.maximum):
        if bound is not None:
            step = limit.multiple_of or (1 if float(bound).is_integer() else 0.01)
            values += [bound - step, bound, bound + step]
    if limit.multiple_of:
        values.append(limit.minimum + limit.multiple_of + 1)
    return values


def test_the_trigger_form_refuses_exactly_what_train_params_refuse(training):
    """One source of limits (``core.training_limits``): a value the form accepts, ``TrainParams``
    accepts, and the other way round, on and around every bound."""
    from airflow.sdk.exceptions import ParamValidationError

    from core import training_limits
    from pipelines.training.train import TrainParams

    checked = []
    fields = ("epochs", "learning_rate", "batch_size", "image_size", "fine_tune_blocks", "fine_tune_epochs")
    for name in (*fields, "distill_weight"):
        limit = training_limits.TRIGGER_FORM[name]
        for value in _probes(limit):
            try:
                trigger_params(training, **{name: value})
                form = True
            except ParamValidationError:
                form = False
            try:
                TrainParams(**{name: value}).check()
                stage = True
            except ValueError:
                stage = False
            assert form == stage, (
                f"{name}={value}: the form {'accepts' if form else 'refuses'} it, TrainParams not"
            )
            checked.append((name, value, form))
    assert ("image_size", 64, True) in checked and ("image_size", 32, False) in checked
    assert ("epochs", 201, False) in checked and ("fine_tune_blocks", 21, True) in checked
    assert ("fine_tune_blocks", 22, False) in checked


def test_every_numeric_form_param_takes_its_limits_from_core(training):
    from core import training_limits

    for name, limit in training_limits.TRIGGER_FORM.items():
        schema = training.params.get_param(name).schema
        bounds = {
            k: v for k, v in schema.items() if k in ("minimum", "maximum", "exclusiveMinimum", "multipleOf")
        }
        assert bounds == limit.schema(), name


def test_the_note_says_the_verdict_with_its_figures_and_fits_airflow(stage_module):
    summary = {
        "passed": False,
        "model_version": "4",
        "metric": "map",
        "reason": "challenger drops 90 tags",
        "challenger": {"map": 0.8123},
        "champion": {"map": 0.4},
        "champion_is": "version 3",
        "margin": 0.01,
        "test_images": 18,
        "dropped_tags": [f"tag number {i}" for i in range(90)],
        "gains": [{"tag": "red", "change": 0.52}],
        "losses": [{"tag": "blue", "change": -0.1}],
    }
    note = stage_module.gate_note(summary)
    assert note.startswith("**Gate rejected** version 4: `promote` was skipped, the champion is unchanged.")
    assert (
        "map: challenger 0.8123, champion 0.4000, margin 0.01; 18 test images; the champion is version 3."
        in note
    )
    assert "Tags the champion emits and this version cannot: tag number 0," in note and "and 70 more" in note
    assert "Per-tag AP gains: red +0.520." in note and "Per-tag AP losses: blue -0.100." in note
    many = stage_module.gate_note({**summary, "reason": "x " * 800})
    assert len(many) <= stage_module.NOTE_LIMIT and many.endswith("(the gate's log has it all)")
    assert stage_module.gate_note(None) is None and stage_module.gate_note({}) is None
