"""A training run's folder layout (pipelines.training.layout) and the parameter limits the stages,
the CLI and the trigger form share (core.training_limits): no model, no MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core import training_limits as limits
from pipelines.training.layout import RunLayout, folder_name
from pipelines.training.validate import default_report_dir


def test_a_run_is_one_folder_with_a_folder_per_stage(tmp_path):
    run = RunLayout.named(tmp_path, "manual__2026-11-29T10:00:00+00:00")
    assert run.root == tmp_path / "manual__2026-11-29T10_00_00_00_00"
    assert {
        p.name for p in (run.dataset, run.validation, run.model, run.evaluation, run.saved_model, run.gate)
    } == {
        "dataset",
        "validation",
        "model",
        "evaluation",
        "saved_model",
        "gate",
    }
    assert all(p.parent == run.root for p in (run.dataset, run.model, run.gate))
    assert run.manifest == run.dataset / "manifest.jsonl"
    assert run.thresholds == run.model / "thresholds.json"
    assert run.validation_report == run.validation / "report.md"


def test_a_stage_finds_its_run_from_the_folder_it_is_given(tmp_path):
    run = RunLayout.named(tmp_path, "r1")
    assert RunLayout.of(run.dataset) == run == RunLayout.of(run.model) == RunLayout.of(run.manifest)
    assert default_report_dir(run.dataset) == run.validation == default_report_dir(run.manifest)
    elsewhere = tmp_path / "mine" / "data"  # `imgtag ingest --out` anywhere: the rest goes beside it
    assert RunLayout.of(elsewhere).model == tmp_path / "mine" / "model"


def test_run_names_become_safe_folder_names():
    assert folder_name("a b/../c") == "a_b_.._c"
    assert folder_name("..hidden") == "hidden"


def test_limits_name_the_parameter_and_the_range():
    assert limits.IMAGE_SIZE.problem(224) is None
    assert (
        limits.IMAGE_SIZE.problem(100) == "image size must be between 64 and 512, a multiple of 32 (got 100)"
    )
    assert limits.LEARNING_RATE.problem(0) == "learning rate must be in (0, 1] (got 0)"
    assert limits.LEARNING_RATE.problem(1) is None
    assert limits.MIN_EXAMPLES_PER_TAG.problem(0) == "minimum examples per tag must be at least 1 (got 0)"
    assert limits.IMAGE_SIZE.schema() == {"minimum": 64, "maximum": 512, "multipleOf": 32}
    assert limits.TARGET_PRECISION.schema() == {"exclusiveMinimum": 0, "maximum": 1}


def test_fine_tune_blocks_are_the_backbones_blocks():
    from core import model

    assert limits.FINE_TUNE_BLOCKS.maximum == model.NUM_BLOCKS


@pytest.mark.parametrize(
    "params, message",
    [
        ({"image_size": 32}, "image size"),
        ({"image_size": 100}, "multiple of 32"),
        ({"epochs": 201}, "epochs"),
        ({"batch_size": 513}, "batch size"),
        ({"fine_tune_epochs": 101}, "fine-tune epochs"),
    ],
)
def test_train_params_use_the_shared_limits(params, message):
    from pipelines.training.train import TrainParams

    with pytest.raises(ValueError, match=message):
        TrainParams(**params).check()


def test_the_limits_module_imports_only_the_standard_library():
    """The DAG files import it, and Airflow's stock image has none of the project's dependencies."""
    root = Path(__file__).resolve().parents[3]
    code = (
        "import sys; before = set(sys.modules); import core.training_limits; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(new - set(sys.stdlib_module_names) - {'core'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_stages_default_to_the_declarations():
    """TrainParams and the stage functions take their defaults from the one declaration; the
    calibration's minimum of right images is the ``evaluate`` option's default (5, not 3)."""
    import dataclasses
    import inspect

    from pipelines.training import calibration, evaluate, gate, registry, validate
    from pipelines.training.train import BASES, TrainParams

    def defaults(function) -> dict:
        return {name: p.default for name, p in inspect.signature(function).parameters.items()}

    fields = {f.name: f.default for f in dataclasses.fields(TrainParams)}
    assert {t.name: fields[t.name] for t in limits.of("train")} == {
        t.name: t.default for t in limits.of("train")
    }
    assert (
        BASES == limits.TUNABLE["base"].choices and evaluate.METRICS == limits.TUNABLE["gate_metric"].choices
    )
    declared = {t.name: t.default for t in limits.TUNABLES}
    assert (
        defaults(evaluate.evaluate)["target_precision"]
        == declared["target_precision"]
        == calibration.TARGET_PRECISION
    )
    assert (
        defaults(evaluate.evaluate)["min_positives"]
        == declared["min_positives"]
        == calibration.MIN_POSITIVES
        == 5
    )
    assert defaults(calibration.calibrate)["min_positives"] == 5
    gate_defaults = defaults(gate.gate)
    assert [gate_defaults[k] for k in ("metric", "margin", "floor", "replace_vocabulary")] == [
        declared[k] for k in ("gate_metric", "gate_margin", "gate_floor", "replace_vocabulary")
    ]
    assert defaults(validate.validate)["min_examples_per_tag"] == declared["min_examples_per_tag"]
    assert defaults(validate.validate)["drop_rare_tags"] == declared["drop_rare_tags"]
    assert defaults(registry.register)["learned_only"] == declared["learned_only"]


@pytest.mark.parametrize(("base", "fits"), [("champion", True), ("none", True), ("imagenet", False)])
def test_train_params_take_the_declared_bases(base, fits):
    from pipelines.training.train import TrainParams

    if fits:
        TrainParams(base=base).check()
    else:
        with pytest.raises(ValueError, match="base must be one of champion, starter, none"):
            TrainParams(base=base).check()
