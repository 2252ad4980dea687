"""From a trained model to serving: the SavedModel's signatures and assets, registration in
MLflow, the gate, promotion and rollback, the tagger following the champion, DVC hashes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.training import dataset as ds
from pipelines.training import registry
from tests.pipelines.training.conftest import write_dataset


@pytest.fixture(scope="module")
def registered(trained, shapes_dataset, training_settings):
    result, evaluation = trained
    return registry.register(
        result.model,
        run_id=result.run_id,
        thresholds=evaluation.thresholds,
        dag_run_id="manual__test",
        settings=training_settings,
    )


def test_saved_model_cli_lists_the_serving_signature(registered):
    shown = subprocess.run(
        [
            str(Path(sys.executable).parent / "saved_model_cli"),
            "show",
            "--dir",
            registered["saved_model"],
            "--all",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    default = shown[shown.index("signature_def['serving_default']") :]
    default = default[: default.index("Method name is")]
    assert (
        "inputs['images'] tensor_info" in default
        and "dtype: DT_STRING" in default
        and "shape: (-1)" in default
    )
    assert "outputs['scores'] tensor_info" in default and "dtype: DT_FLOAT" in default
    assert "signature_def['predict_pixels']" in shown


def test_exported_model_alone_gives_the_in_memory_model_tags(trained, registered, shapes_dataset):
    """The served artifact (encoded bytes in) agrees with the Keras model evaluation measured."""
    from core import model
    from pipelines.training import evaluate
    from serving.export import LoadedModel

    result, _ = trained
    rows = shapes_dataset.split("test")
    files = [shapes_dataset.image_path(e) for e in rows]
    in_memory = evaluate.predict(model.load(result.model), files)["learned"]

    loaded = LoadedModel(registered["saved_model"])
    served = loaded.scores([f.read_bytes() for f in files])
    columns = [loaded.vocabulary.tags.index(t) for t in result.tags]
    np.testing.assert_allclose(served[:, columns], in_memory, atol=1e-4)
    learned = set(result.tags)
    assert [[t.name for t in tags if t.name in learned] for tags in loaded.vocabulary.select(served)] == [
        [t.name for t in tags]
        for tags in loaded.vocabulary.select(
            np.pad(in_memory, ((0, 0), (len(loaded.vocabulary.tags) - len(learned), 0)))
        )
    ]


def test_the_served_scores_are_the_merge_of_both_heads(trained, registered, shapes_dataset):
    """Every column the SavedModel serves (general, learned, both) is the NumPy merge rule
    (core.vocabulary.Merge) applied to the Keras model's two heads."""
    from core import model
    from pipelines.training import evaluate
    from serving.export import LoadedModel, read_thresholds, tag_merge

    result, evaluation = trained
    files = [shapes_dataset.image_path(e) for e in shapes_dataset.split("test")][:8]
    heads = evaluate.predict(model.load(result.model), files)
    merged = tag_merge(model.load(result.model), read_thresholds(evaluation.thresholds)[0])
    expected = merged.scores(evaluate._softmax(heads["imagenet"]), heads["learned"])
    loaded = LoadedModel(registered["saved_model"])
    assert loaded.vocabulary.tags == merged.vocabulary.tags
    np.testing.assert_allclose(loaded.scores([f.read_bytes() for f in files]), expected, atol=1e-4)


def test_export_keeps_the_general_tags_unless_asked_not_to(trained, registered, tmp_path):
    from core.tagmap import TagMap
    from serving.export import LoadedModel, export
    from serving.warmup import read_warmup

    result, evaluation = trained
    both = LoadedModel(registered["saved_model"]).vocabulary
    general = TagMap.load().tags
    assert both.tags[: len(general)] == general  # then the learned tags no general tag names
    assert set(both.tags) == set(general) | set(result.tags)
    assert set(both.heads[len(general) :]) <= {"learned"} and "cat" in both.tags and "cat" in both.parent
    requests = read_warmup(Path(registered["saved_model"]))
    assert requests and requests[0].model_spec.signature_name == "serving_default"

    learned_only = export(result.model, evaluation.thresholds, tmp_path / "learned", learned_only=True)
    assert LoadedModel(learned_only).vocabulary.tags == tuple(result.tags)


def test_registered_version_carries_provenance(registered):
    import mlflow

    version = mlflow.MlflowClient().get_model_version("imgtag-tagger", registered["model_version"])
    assert version.tags["dataset_hash"] == "0123abcd"
    assert version.tags["dag_run_id"] == "manual__test"
    assert len(version.tags["git_commit"]) >= 7


def test_gate_promote_tagger_and_rollback(registered, shapes_dataset, trained, training_settings):
    """The first registration made the starter model version 1: served and the champion. A
    challenger that cannot emit its tags (a 96 px model learns only its own) passes only when
    replacing the vocabulary is meant. Promotion serves it under its own number, which the tagger
    records; a second model that is no better is rejected and gets no serving directory; rollback
    returns to the starter."""
    import mlflow

    settings = training_settings
    version = registered["model_version"]

    from serving.current import current_model, get_tagger

    client = mlflow.MlflowClient()
    starter_version = client.get_model_version("imgtag-tagger", "1")
    assert starter_version.tags["starter"] and starter_version.aliases == ["champion"]
    assert (current_model(settings).name, current_model(settings).version) == ("imgtag-tagger", "1")

    dropping = registry.gate(version, shapes_dataset.root, settings=settings)
    assert not dropping.passed and "drops" in dropping.reason, dropping.reason
    assert dropping.details["champion_is"] == "version 1 (the starter model)"
    assert "person" in dropping.details["dropped_tags"]

    verdict = registry.gate(version, shapes_dataset.root, replace_vocabulary=True, settings=settings)
    assert verdict.passed and verdict.champion["version"] == "1", verdict.reason
    assert (verdict.report / "report.md").read_text().startswith("# Gate: PASSED")
    assert client.get_model_version("imgtag-tagger", version).tags["gate"] == "passed"

    promoted = registry.promote(version, settings=settings)
    assert promoted["serving_version"] == int(version) and promoted["changed"]  # one number
    assert registry.promote(version, settings=settings)["changed"] is False  # a retried promote
    assert str(client.get_model_version_by_alias("imgtag-tagger", "champion").version) == version

    model = current_model(settings)
    assert (model.name, model.version) == ("imgtag-tagger", version)
    tagger = get_tagger(settings)
    assert tagger.model_version == version and tagger.image_size == 96
    example = shapes_dataset.split("test")[0]
    (tagged,) = tagger.tag_images([("k", shapes_dataset.image_path(example), "x")])
    assert {t.name for t in tagged.tags} & set(example.tags), (tagged.tags, example.tags)

    same_again = registry.register(trained[0].model, run_id=trained[0].run_id, settings=settings)
    rejected = registry.gate(same_again["model_version"], shapes_dataset.root, margin=0.05, settings=settings)
    assert not rejected.passed and f"does not beat champion v{version}" in rejected.reason
    assert client.get_model_version("imgtag-tagger", same_again["model_version"]).tags["gate"] == "rejected"
    assert not registry.repository_of(settings).path(int(same_again["model_version"])).exists()

    restored = registry.rollback(settings=settings)
    assert (restored["serving_version"], restored["model_version"]) == (1, "1")
    assert current_model(settings).version == "1"
    assert str(client.get_model_version_by_alias("imgtag-tagger", "champion").version) == "1"


def test_dataset_hash_follows_content(training_env, training_settings, tmp_path):
    from pipelines.training.versioning import version_dataset

    runs = Path(training_env["IMGTAG_RUNS_DIR"])
    first = write_dataset(runs / "hash-1" / "dataset", 12, seed=7)
    shutil.copytree(first.root, runs / "hash-2" / "dataset")
    a = version_dataset(first.root, settings=training_settings)
    b = version_dataset(runs / "hash-2" / "dataset", settings=training_settings)
    assert a["dataset_hash"] == b["dataset_hash"] and len(a["dataset_hash"]) == 32
    assert a["pushed"] and any(Path(training_env["IMGTAG_DVC_REMOTE"]).rglob("*"))

    changed = ds.load(runs / "hash-2" / "dataset")
    relabelled = [changed.examples[0].__class__(**{**changed.examples[0].__dict__, "tags": ("purple",)})]
    ds.write(changed.root, relabelled + changed.examples[1:])
    assert version_dataset(changed.root, settings=training_settings)["dataset_hash"] != a["dataset_hash"]
