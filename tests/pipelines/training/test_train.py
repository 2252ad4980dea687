"""train on a drawn shapes dataset: the model learns, MLflow holds the run, bad parameters are
refused first, fine-tuning keeps what it must. Its evaluation is in test_evaluate.py."""

from __future__ import annotations

import os

import pytest

from pipelines.training.train import TrainParams, train


def test_training_learns_and_logs_the_run(trained, shapes_dataset):
    import mlflow

    result, _ = trained
    assert result.tags == shapes_dataset.tags == ["blue", "circle", "green", "red", "square", "triangle"]
    losses = result.history["train/loss"]
    assert len(losses) == 5 and losses[-1] < losses[0] * 0.8, losses

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.get_run(result.run_id)
    assert run.data.params["epochs"] == "5" and run.data.params["image_size"] == "96"
    assert run.data.tags["imgtag.dataset_hash"] == "0123abcd"
    assert run.data.tags["imgtag.git_commit"] not in ("", None)
    assert [m.step for m in client.get_metric_history(result.run_id, "val/loss")] == [0, 1, 2, 3, 4]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert "training_curves.png" in artifacts
    assert run.inputs.dataset_inputs[0].dataset.digest == "0123abcd"


@pytest.mark.parametrize(
    "params, message",
    [
        (TrainParams(epochs=0), "epochs"),
        (TrainParams(learning_rate=0), "learning rate"),
        (TrainParams(fine_tune_blocks=22), "fine-tune blocks"),  # Lite2 has 21
        (TrainParams(image_size=8), "image size"),
    ],
)
def test_bad_parameters_are_refused_before_anything_runs(params, message, shapes_dataset, training_settings):
    with pytest.raises(ValueError, match=message):
        train(shapes_dataset.root, params=params, settings=training_settings)


def test_a_model_built_on_the_champion_must_keep_its_image_size(
    shapes_dataset, training_settings, monkeypatch
):
    """The champion (here the starter: nothing else is served in this home yet) is a 256 px head:
    a 96 px run cannot keep its tags, and says what to do before anything trains."""
    monkeypatch.setenv("IMGTAG_MODEL_BASE", str(shapes_dataset.root.parent / "no-models"))
    from core.settings import Settings

    with pytest.raises(ValueError, match=r"trained at 256 px and this run asks for 96 px.*--base none"):
        train(shapes_dataset.root, params=TrainParams(image_size=96), settings=Settings.from_env())


def test_fine_tuning_unfreezes_only_the_top_blocks_and_no_batchnorm():
    from core import model as tagger_model

    full, _ = tagger_model.build(3, 64)
    names = tagger_model.unfreeze_top_blocks(full, 2)
    last = tagger_model.NUM_BLOCKS - 1
    assert names and all(n.startswith((f"blocks.{last - 1}.", f"blocks.{last}.", "conv_head")) for n in names)
    trainable = {layer.name for layer in full.layers if layer.trainable and layer.weights}
    assert "fc" not in trainable and not any("bn" in n.split(".")[-1] for n in trainable)
    assert trainable == set(names) | {"learned"}


@pytest.mark.slow  # trains a model of its own
def test_fine_tuning_holds_the_imagenet_head_with_distillation(shapes_dataset, tmp_path, training_settings):
    """Fine-tuning trains the top blocks with a second target, the pretrained ImageNet outputs;
    the learned loss stays comparable across both phases and the distillation loss is logged."""
    from core import model as tagger_model

    params = TrainParams(
        epochs=1, batch_size=16, image_size=64, fine_tune_blocks=1, fine_tune_epochs=1, base="none"
    )
    result = train(
        shapes_dataset.root, tmp_path / "model", params, run_name="fine-tune", settings=training_settings
    )
    assert len(result.history["train/loss"]) == 2  # the learned loss, not the sum with distillation
    assert len(result.history["train/distill_loss"]) == 1
    assert result.history["train/distill_loss"][0] > 0
    trained = tagger_model.load(result.model)
    assert trained.info["fine_tuned_layers"] > 0
    assert set(trained.model.output) == {"learned", "imagenet"}  # both heads are saved
