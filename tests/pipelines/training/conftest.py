"""Fixtures of the training-stage tests: an isolated IMGTAG_HOME (runs, MLflow, model
repository) and a labelled shapes dataset with a model trained on it once per session."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from core.settings import Settings
from pipelines.training import dataset as ds
from tests.shapes import make_images


def write_dataset(root: Path, count: int, seed: int = 1, size: int = 160) -> ds.Dataset:
    """Draw ``count`` shape images and write them as a dataset folder at ``root`` (no ingest)."""
    examples = []
    for path, tags in make_images(root.parent / f"{root.name}-source", count, seed, size):
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        relative = f"{ds.IMAGES_DIR}/{sha[:2]}/{sha}{path.suffix}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
        fmt = "png" if path.suffix == ".png" else "jpeg"
        examples.append(
            ds.Example(
                sha,
                relative,
                tuple(sorted(tags)),
                ds.split_for(sha),
                ("folder",),
                (str(path),),
                size,
                size,
                fmt,
                len(data),
            )
        )
    return ds.write(root, examples)


@pytest.fixture(scope="session")
def training_env(tmp_path_factory):
    """IMGTAG_HOME, IMGTAG_RUNS_DIR and MLflow in a fresh folder for the whole session."""
    home = tmp_path_factory.mktemp("training-home")
    env = {
        "IMGTAG_HOME": str(home),
        "IMGTAG_RUNS_DIR": str(home / "runs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "IMGTAG_DVC_REMOTE": str(home / "dvc-remote"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("DATABASE_URL", raising=False)
        yield env


@pytest.fixture(scope="session")
def training_settings(training_env) -> Settings:
    """The settings of :func:`training_env`'s installation, as an entry point would build them."""
    return Settings.from_env()


@pytest.fixture(scope="session")
def shapes_dataset(training_env) -> ds.Dataset:
    return write_dataset(Path(training_env["IMGTAG_RUNS_DIR"]) / "run-a" / "dataset", 96)


@pytest.fixture(scope="session")
def trained(shapes_dataset, training_settings):
    """A model trained briefly (96 px, on nothing: the starter is at 256 px) on the shapes, evaluated:
    ``(TrainResult, EvaluationResult)``."""
    from pipelines.training.evaluate import evaluate
    from pipelines.training.train import TrainParams, train

    result = train(
        shapes_dataset.root,
        params=TrainParams(epochs=5, learning_rate=3e-3, batch_size=16, image_size=96, base="none"),
        dataset_hash="0123abcd",
        run_name="session-model",
        settings=training_settings,
    )
    evaluation = evaluate(
        result.model,
        shapes_dataset.root,
        run_id=result.run_id,
        target_precision=0.8,
        settings=training_settings,
    )
    return result, evaluation
