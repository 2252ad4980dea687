"""The ``register``, ``gate``, ``promote`` and ``rollback`` stages: from a trained model to TF Serving.

- ``register`` exports the SavedModel (:mod:`serving.export`), logs it to the training run and
  registers it in MLflow as a new version of ``imgtag-tagger``, tagged with the dataset hash,
  the git commit and the DAG run id.
- ``gate`` scores the challenger and the ``champion`` alias on the same test split, through
  the exported ``serving_default`` signature both times (encoded bytes in, scores out), and
  passes only if the challenger is better by the margin on the chosen metric (and above the
  floor; with no champion yet, the floor alone). A rejection changes nothing but the tags it
  leaves on the run and the model version.
- ``promote`` copies the model into the TF Serving repository as the next numbered version
  (atomically, :mod:`serving.repository`), then moves the ``champion`` alias to it.
- ``rollback`` serves the previous champion again and moves the alias back.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from pipelines import dataset as ds
from pipelines import model as tagger_model
from pipelines import tracking
from pipelines.evaluate import METRICS, score_metrics
from pipelines.settings import Settings

SAVED_MODEL_ARTIFACT = "saved_model"
GATE_REJECTED_EXIT = 3  # `imgtag gate` exit status for a rejected challenger (the DAG skips on it)
WARMUP_IMAGES = 4


def register(
    model_dir: str | Path,
    *,
    run_id: str,
    thresholds: str | Path | None = None,
    dag_run_id: str | None = None,
    learned_only: bool = False,
    settings: Settings | None = None,
) -> dict:
    """Export the trained model and register it as a new MLflow model version.

    Returns:
        The stage summary: ``model_name``, ``model_version``, ``saved_model`` (the local export),
        ``source`` (its MLflow artifact URI), ``tags``.
    """
    import mlflow

    from serving.export import export

    settings = settings or Settings.from_env()
    model_dir = Path(model_dir)
    info = json.loads((model_dir / tagger_model.INFO_FILE).read_text())
    thresholds = Path(thresholds) if thresholds else model_dir / "thresholds.json"
    if not thresholds.is_file():
        raise FileNotFoundError(
            f"{thresholds}: no thresholds; run `imgtag evaluate {model_dir} DATASET` first"
        )
    warmup = _warmup_images(info.get("dataset"))
    tags = {
        "dataset_hash": str(info.get("dataset_hash") or "unversioned"),
        "git_commit": tracking.git_commit(),
        "dag_run_id": dag_run_id or "",
        "learned_only": str(learned_only).lower(),
        "learned_tags": ",".join(info["tags"]),
    }
    out = model_dir.parent / SAVED_MODEL_ARTIFACT
    export(
        model_dir,
        thresholds,
        out,
        learned_only=learned_only,
        model_name=settings.model_name,
        warmup_images=warmup,
        info={"run_id": run_id, **tags},
    )

    client = tracking.client(settings)
    with mlflow.start_run(run_id=run_id) as run:
        mlflow.log_artifacts(str(out), SAVED_MODEL_ARTIFACT)
        source = f"{run.info.artifact_uri}/{SAVED_MODEL_ARTIFACT}"
    try:
        client.get_registered_model(settings.model_name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(
            settings.model_name,
            description="imgtag's image tagger: SavedModel, encoded images in, tag scores out.",
        )
    version = client.create_model_version(settings.model_name, source=source, run_id=run_id, tags=tags)
    return {
        "model_name": settings.model_name,
        "model_version": str(version.version),
        "saved_model": str(out),
        "source": source,
        "tags": tags,
    }


def _warmup_images(dataset_dir: str | None) -> list[bytes]:
    """A few real images for TF Serving's warm-up requests (the test split's first ones)."""
    if not dataset_dir or not Path(dataset_dir).is_dir():
        return []
    data = ds.load(dataset_dir)
    rows = (data.split("test") or data.examples)[:WARMUP_IMAGES]
    return [data.image_path(e).read_bytes() for e in rows]


@contextlib.contextmanager
def _downloaded(version) -> Iterator[Path]:
    """A model version's SavedModel in a local temporary folder, removed afterwards."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix=f"imgtag-model-v{version.version}-") as target:
        yield Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=target))


def champion_version(client, name: str):
    """The model version the ``champion`` alias points at, or None."""
    import mlflow

    try:
        return client.get_model_version_by_alias(name, tracking.CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def _test_scores(saved_model: Path, data: ds.Dataset, tags: list[str]) -> tuple[np.ndarray, dict[str, float]]:
    """Scores of one exported model on the test split, in ``tags`` order (0 for a tag it lacks)."""
    from serving.export import LoadedModel

    loaded = LoadedModel(saved_model)
    rows = data.split("test")
    scores = loaded.scores([data.image_path(e).read_bytes() for e in rows])
    vocab = loaded.vocabulary
    column = {t: j for j, t in enumerate(vocab.tags)}
    picked = np.zeros((len(rows), len(tags)), np.float32)
    limits = {}
    for j, tag in enumerate(tags):
        if tag in column:
            picked[:, j] = scores[:, column[tag]]
            limits[tag] = float(vocab.thresholds[column[tag]])
    return picked, limits


@dataclass
class GateResult:
    passed: bool
    reason: str
    metric: str
    challenger: dict
    champion: dict | None
    report: Path | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "metric": self.metric,
            "challenger": self.challenger,
            "champion": self.champion,
            "report": str(self.report) if self.report else None,
            **self.details,
        }


def gate(
    model_version: str,
    dataset_dir: str | Path,
    *,
    metric: str = "map",
    margin: float = 0.01,
    floor: float = 0.5,
    report_dir: str | Path | None = None,
    settings: Settings | None = None,
) -> GateResult:
    """Compare a registered model version with the champion on the dataset's test split.

    Args:
        model_version: the challenger's MLflow model version.
        dataset_dir: the dataset whose test split both are scored on.
        metric: one of ``map``, ``micro_f1``, ``macro_f1``.
        margin: how much better than the champion the challenger must be.
        floor: the least the challenger must reach, champion or not.
        report_dir: where ``report.json`` and ``report.md`` go; default ``<dataset>/../gate``.
    """
    if metric not in METRICS:
        raise ValueError(f"gate metric {metric!r}: expected one of {', '.join(METRICS)}")
    import mlflow

    from pipelines.tf_runtime import import_tensorflow

    import_tensorflow()
    settings = settings or Settings.from_env()
    client = tracking.client(settings)
    data = ds.load(dataset_dir)
    if not data.split("test"):
        raise ValueError(f"{data.root}: the test split is empty; the gate has nothing to compare on")
    tags = data.tags
    y = np.zeros((len(data.split("test")), len(tags)), np.float32)
    for i, e in enumerate(data.split("test")):
        for t in e.tags:
            y[i, tags.index(t)] = 1.0

    def measure(version) -> dict:
        with _downloaded(version) as saved_model:
            scores, limits = _test_scores(saved_model, data, tags)
        return _summary(score_metrics(y, scores, tags, limits), version.version)

    challenger_mv = client.get_model_version(settings.model_name, str(model_version))
    challenger = measure(challenger_mv)
    champion_mv = champion_version(client, settings.model_name)
    champion = None if champion_mv is None else measure(champion_mv)

    value = challenger[metric]
    if value < floor:
        passed, reason = False, f"challenger {metric} {value:.4f} is below the floor {floor:.4f}"
    elif champion is None:
        passed, reason = (
            True,
            f"no champion yet; challenger {metric} {value:.4f} reaches the floor {floor:.4f}",
        )
    elif value >= champion[metric] + margin:
        passed, reason = (
            True,
            (
                f"challenger {metric} {value:.4f} beats champion v{champion['version']} "
                f"{champion[metric]:.4f} by at least {margin:.4f}"
            ),
        )
    else:
        passed, reason = (
            False,
            (
                f"challenger {metric} {value:.4f} does not beat champion v{champion['version']} "
                f"{champion[metric]:.4f} by the margin {margin:.4f}"
            ),
        )
    result = GateResult(
        passed,
        reason,
        metric,
        challenger,
        champion,
        details={
            "margin": margin,
            "floor": floor,
            "test_images": int(len(y)),
            "model_version": str(model_version),
        },
    )
    result.report = _write_gate_report(result, Path(report_dir) if report_dir else data.root.parent / "gate")

    verdict = "passed" if passed else "rejected"
    client.set_model_version_tag(settings.model_name, str(model_version), "gate", verdict)
    client.set_model_version_tag(settings.model_name, str(model_version), "gate_reason", reason)
    with mlflow.start_run(run_id=challenger_mv.run_id):
        mlflow.set_tag("imgtag.gate", verdict)
        mlflow.log_metrics({f"gate/challenger_{k}": challenger[k] for k in METRICS})
        if champion is not None:
            mlflow.log_metrics({f"gate/champion_{k}": champion[k] for k in METRICS})
        mlflow.log_artifacts(str(result.report), "gate")
    return result


def _summary(metrics: dict, version: str) -> dict:
    return {"version": str(version), **{k: round(metrics[k], 4) for k in METRICS}}


def _write_gate_report(result: GateResult, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    lines = [
        f"# Gate: {'PASSED' if result.passed else 'REJECTED'}",
        "",
        result.reason + ".",
        "",
        "| model | version | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for who, m in (("challenger", result.challenger), ("champion", result.champion)):
        if m is not None:
            lines.append(f"| {who} | {m['version']} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    lines += [
        "",
        f"Metric `{result.metric}`, margin {result.details['margin']}, floor {result.details['floor']}, "
        f"{result.details['test_images']} test images.",
    ]
    (directory / "report.md").write_text("\n".join(lines) + "\n")
    return directory


def _repository(settings: Settings):
    from serving.repository import ModelRepository

    return ModelRepository(
        settings.model_base, settings.model_name, serving_base_path=settings.serving_base_path
    )


def _load_waiter(settings: Settings):
    """Waits for TF Serving to load a version before its label moves (``IMGTAG_SERVING_STATUS_URL``)."""
    from serving.predictors import ServingSettings

    return ServingSettings.from_env().load_waiter(settings.model_name)


def promote(model_version: str, *, settings: Settings | None = None) -> dict:
    """Serve a registered model version: the next numbered version in the model repository,
    then the ``champion`` alias. Promoting the version that is already champion changes nothing.
    """
    settings = settings or Settings.from_env()
    client = tracking.client(settings)
    version = client.get_model_version(settings.model_name, str(model_version))
    repository = _repository(settings)
    current = repository.current()
    if current is not None and str(current.metadata.get("mlflow_version")) == str(version.version):
        promotion, changed = current, False  # a retried promote after the copy: only the alias may be missing
    else:
        metadata = {
            "mlflow_model": settings.model_name,
            "mlflow_version": str(version.version),
            "run_id": version.run_id,
            "dataset_hash": (version.tags or {}).get("dataset_hash", ""),
            "source": version.source,
        }
        with _downloaded(version) as saved_model:
            promotion = repository.promote(saved_model, metadata, wait=_load_waiter(settings))
            changed = True
    client.set_registered_model_alias(settings.model_name, tracking.CHAMPION, str(version.version))
    client.set_model_version_tag(
        settings.model_name, str(version.version), "serving_version", str(promotion.version)
    )
    return {
        "model_name": settings.model_name,
        "model_version": str(version.version),
        "serving_version": promotion.version,
        "previous_serving_version": promotion.previous,
        "path": str(promotion.path),
        "changed": changed,
    }


def rollback(*, settings: Settings | None = None) -> dict:
    """Serve the previous champion again and point the ``champion`` alias back at it."""
    settings = settings or Settings.from_env()
    repository = _repository(settings)
    before = repository.current()
    promotion = repository.rollback(wait=_load_waiter(settings))
    mlflow_version = promotion.metadata.get("mlflow_version")
    if mlflow_version:
        tracking.client(settings).set_registered_model_alias(
            settings.model_name, tracking.CHAMPION, str(mlflow_version)
        )
    return {
        "model_name": settings.model_name,
        "serving_version": promotion.version,
        "rolled_back_from": before.version if before else None,
        "model_version": mlflow_version,
        "path": str(promotion.path),
    }
