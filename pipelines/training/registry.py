"""The ``register``, ``gate``, ``promote`` and ``rollback`` stages: from a trained model to TF Serving.

- ``register`` exports the SavedModel (:mod:`serving.export`), logs it to the training run and
  registers it in MLflow as a new version of ``imgtag-tagger``, tagged with the dataset hash,
  the git commit and the DAG run id.
- ``gate`` scores the challenger and the champion (what TF Serving serves) on the same test
  split, through the exported ``serving_default`` signature both times (encoded bytes in,
  scores out), and passes only if the challenger is better by the margin on the chosen metric
  (and above the floor; with no champion yet, the floor alone). A rejection changes nothing but
  the tags it leaves on the run and the model version.
- ``promote`` copies the model into the TF Serving repository as the next numbered version
  (atomically, :mod:`serving.repository`), then moves the ``champion`` alias to it.
- ``rollback`` serves the previous champion again and moves the alias back.

One champion: what the model repository serves (the ``champion`` label of ``models.config``)
*is* the champion; the MLflow alias ``champion`` only mirrors it, and only ``promote`` and
``rollback`` move either. :func:`champion_status` tells whether they agree; an alias moved by
hand (the MLflow UI offers it) makes the gate fail with :class:`ChampionDivergence` rather than
compare with a model that is not served.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from pipelines.training import calibration
from pipelines.training import dataset as ds
from core import model as tagger_model
from pipelines.training import tracking
from pipelines.training.evaluate import METRICS, score_metrics
from core.settings import Settings
from core.vocabulary import Vocabulary

SAVED_MODEL_ARTIFACT = "saved_model"
SECOND_METRIC = {"map": "micro_f1", "micro_f1": "map", "macro_f1": "map"}  # the gate's tie-breaker
GATE_REJECTED_EXIT = 3  # `imgtag gate` exit status for a rejected challenger (the DAG skips on it)
CHAMPION_DIVERGENCE_EXIT = 4  # `imgtag gate` and `imgtag models`: the MLflow alias is not what is served
#: MLflow error codes that mean "no such registered model" or "no such alias" (not "cannot tell").
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
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
    """The model version the ``champion`` alias points at, or None when the alias or the
    registered model does not exist. Other MLflow errors (an unreachable server) are raised:
    "no alias" must never be a guess."""
    import mlflow

    try:
        return client.get_model_version_by_alias(name, tracking.CHAMPION)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return None
        raise


class ChampionDivergence(RuntimeError):
    """The MLflow alias ``champion`` does not name what TF Serving serves (it was moved by hand).

    The message says what is served, where the alias points and how to put it back.

    Attributes:
        status: the :class:`ChampionStatus` that disagrees.
    """

    def __init__(self, status: "ChampionStatus"):
        super().__init__(f"champion divergence: {status.reason}")
        self.status = status


@dataclass(frozen=True)
class ChampionStatus:
    """Which model is the champion: what the model repository serves, and where the MLflow alias points.

    Attributes:
        model_name: the model's name in the repository and in the MLflow registry.
        serving_version: the version labelled ``champion`` in ``models.config``; None when
            nothing is served yet.
        mlflow_version: the MLflow model version it was promoted from; None for the installed
            starter model, a version copied in by hand, or nothing served.
        served: what is served, in words (see :func:`describe_served`).
        alias_version: the MLflow model version the ``champion`` alias points at; None when
            there is no alias (or no registered model).
        agree: whether the alias names what is served (:func:`champion_agreement`).
        reason: one line: why they agree, or what differs and what to do about it.
        path: the served version's local directory (the SavedModel the gate scores).
        previous: the version labelled ``previous`` beside it (what a rollback would serve).
        metadata: the served version's promotion record: run id, dataset hash, source ...
        promoted_at: when the served version was promoted (ISO 8601), if recorded.
    """

    model_name: str
    serving_version: int | None
    mlflow_version: str | None
    served: str
    alias_version: str | None
    agree: bool
    reason: str
    path: Path | None = None
    previous: int | None = None
    metadata: dict = field(default_factory=dict)
    promoted_at: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (``path`` as a string)."""
        return {
            "model_name": self.model_name,
            "serving_version": self.serving_version,
            "previous_serving_version": self.previous,
            "mlflow_version": self.mlflow_version,
            "served": self.served,
            "run_id": self.metadata.get("run_id"),
            "dataset_hash": self.metadata.get("dataset_hash"),
            "promoted_at": self.promoted_at,
            "path": str(self.path) if self.path else None,
            "alias_version": self.alias_version,
            "agree": self.agree,
            "reason": self.reason,
        }


def describe_served(serving_version: int | None, metadata: dict, *, starter: bool = True) -> str:
    """What the model repository serves, in words (a pure function of its promotion record).

    ``"MLflow version 3 (serving version 4)"``, ``"the starter model (serving version 1)"``,
    ``"serving version 2, which MLflow never registered"`` (copied in by hand), or with nothing
    served ``"nothing promoted: the shipped starter model tags in process"``.
    """
    if serving_version is None:
        if starter:
            return "nothing promoted: the shipped starter model tags in process"
        return "nothing promoted: the general ImageNet tags only (IMGTAG_STARTER=off)"
    if metadata.get("mlflow_version"):
        return f"MLflow version {metadata['mlflow_version']} (serving version {serving_version})"
    if metadata.get("starter"):
        return f"the starter model (serving version {serving_version})"
    return f"serving version {serving_version}, which MLflow never registered (copied in by hand)"


def champion_agreement(
    serving_version: int | None, mlflow_version: str | None, alias_version: str | None, *, served: str
) -> tuple[bool, str]:
    """Whether the MLflow alias ``champion`` agrees with what is served, and a one-line reason
    (a pure function: no MLflow, no files).

    They agree when the alias points at the served MLflow version, or when nothing MLflow
    registered is served (nothing at all, the starter model, a hand-copied version) and there is
    no alias. Otherwise the reason says what is served, where the alias points, and how to put
    the alias back: only ``promote`` and ``rollback`` move it.

    Args:
        serving_version: the served version (the ``champion`` label), None when nothing is.
        mlflow_version: the MLflow version it was promoted from, None when MLflow never had it.
        alias_version: where the alias points, None when there is no alias.
        served: what is served, in words (:func:`describe_served`).
    """
    alias = None if alias_version is None else str(alias_version)
    registered = None if mlflow_version is None else str(mlflow_version)
    rule = "the alias is only moved by `imgtag promote` and `imgtag rollback`, never by hand"
    serves = f"TF Serving serves {served}"
    if serving_version is None:
        serves = f"TF Serving serves nothing ({served})"
    if registered is not None and alias == registered:
        return True, f"{serves}, where the MLflow alias `champion` points"
    if registered is None and alias is None:
        return True, f"{serves}; no MLflow version has the alias `champion`, as none is served"
    if registered is None:
        return False, (
            f"the MLflow alias `champion` points at version {alias} but {serves}, which MLflow never "
            f"registered: undo the hand edit by deleting the alias (MLflow UI: the registered model's "
            f"Aliases), then promote a version through the gate; {rule}"
        )
    if alias is None:
        return False, (
            f"{serves} but no MLflow version has the alias `champion` (removed by hand): "
            f"put it back with `imgtag promote {registered}` (re-runs the promotion of the served version: "
            f"nothing is copied, only the alias is set); {rule}"
        )
    return False, (
        f"the MLflow alias `champion` points at version {alias} but {serves}: "
        f"the gate would compare challengers with a model that is not served. Move the alias back "
        f"with `imgtag promote {registered}` (re-runs the promotion of the served version: nothing "
        f"is copied, only the alias moves), or serve the champion before it with `imgtag rollback`; {rule}"
    )


def _alias_version(settings: Settings, client=None) -> str | None:
    """Where the ``champion`` alias points, or None. A local MLflow database that does not exist
    yet holds no alias: it is not created just to look (``imgtag models`` on a fresh install)."""
    uri = settings.mlflow_tracking_uri
    if client is None and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    found = champion_version(client or tracking.client(settings), settings.model_name)
    return None if found is None else str(found.version)


def champion_status(settings: Settings | None = None, *, client=None) -> ChampionStatus:
    """What TF Serving serves, where the MLflow alias ``champion`` points, and whether they agree.

    Args:
        settings: where the model repository and MLflow are; from the environment when omitted.
        client: an MLflow client to reuse (else one is made, unless the local MLflow database
            does not exist yet).

    Raises:
        serving.repository.RepositoryError: ``models.config`` cannot be read.
        mlflow.exceptions.MlflowException: MLflow cannot be asked (not "no alias": that is None).
    """
    settings = settings or Settings.from_env()
    repository = _repository(settings)
    current = repository.current()
    serving_version = current.version if current else None
    metadata = dict(current.metadata) if current else {}
    mlflow_version = str(metadata["mlflow_version"]) if metadata.get("mlflow_version") else None
    served = describe_served(serving_version, metadata, starter=settings.starter)
    alias = _alias_version(settings, client)
    agree, reason = champion_agreement(serving_version, mlflow_version, alias, served=served)
    return ChampionStatus(
        model_name=settings.model_name,
        serving_version=serving_version,
        mlflow_version=mlflow_version,
        served=served,
        alias_version=alias,
        agree=agree,
        reason=reason,
        path=current.path if current else None,
        previous=current.previous if current else None,
        metadata=metadata,
        promoted_at=(repository.version_metadata(current.version).get("promoted_at") if current else None),
    )


@dataclass
class Scored:
    """One model's scores on the test split: its vocabulary and ``(images, tags)`` scores."""

    version: str
    vocabulary: Vocabulary
    scores: np.ndarray

    @property
    def emitted_tags(self) -> set[str]:
        """The tags this model can emit (its thresholds are not off)."""
        return {t for t, limit in zip(self.vocabulary.tags, self.vocabulary.thresholds) if np.isfinite(limit)}


def _score(saved_model: Path, version: str, data: ds.Dataset) -> Scored:
    """An exported model's scores on the test split, through its ``serving_default`` signature."""
    from serving.export import LoadedModel

    loaded = LoadedModel(saved_model)
    rows = data.split("test")
    return Scored(str(version), loaded.vocabulary, loaded.scores([data.image_path(e).read_bytes() for e in rows]))


def compare_on(models: list[Scored], data: ds.Dataset) -> tuple[list[str], np.ndarray, list[dict]]:
    """The tags the test labels can check in any of ``models`` (:func:`pipelines.training.calibration.evidence`),
    and each model's test truth columns and metrics on them (a tag a model lacks scores 0)."""
    from core.tagmap import TagMap

    hierarchy = dict(TagMap.load().parent)
    for model in models:
        hierarchy.update(model.vocabulary.parent)
    union = sorted({t for m in models for t in m.vocabulary.tags} | set(data.tags))
    right = calibration.evidence(union, data.tags, hierarchy)
    tags = [t for t in union if t in right]
    rows = data.split("test")
    y = calibration.truth([e.tags for e in rows], tags, right)
    out = []
    for model in models:
        column = {t: j for j, t in enumerate(model.vocabulary.tags)}
        scores = np.zeros((len(rows), len(tags)), np.float32)
        limits = {}
        for j, tag in enumerate(tags):
            if tag in column:
                scores[:, j] = model.scores[:, column[tag]]
                limits[tag] = float(model.vocabulary.thresholds[column[tag]])
            else:
                limits[tag] = float("inf")  # never emitted
        out.append(score_metrics(y, scores, tags, limits))
    return tags, y, out


def verdict(
    challenger: dict,
    champion: dict | None,
    *,
    metric: str,
    margin: float,
    floor: float,
    dropped: list[str] = (),
    allow_dropped_tags: bool = False,
) -> tuple[bool, str]:
    """The gate's decision from the two models' test metrics (a pure function: no MLflow, no files).

    - below ``floor``: rejected; with no champion, the floor alone decides;
    - better than the champion by ``margin`` on ``metric``: passed;
    - a tie on a saturated metric (the champion is within ``margin`` of 1, so nothing can beat it by
      the margin): the challenger passes when it is no worse on ``metric`` and better by the margin
      on the second metric (:data:`SECOND_METRIC`);
    - otherwise rejected; and always rejected when it ``dropped`` tags the champion emits, unless
      ``allow_dropped_tags``.
    """
    value = challenger[metric]
    if value < floor:
        return False, f"challenger {metric} {value:.4f} is below the floor {floor:.4f}"
    if champion is None:
        return True, f"no champion yet; challenger {metric} {value:.4f} reaches the floor {floor:.4f}"
    if dropped and not allow_dropped_tags:
        shown = ", ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else "")
        return False, (
            f"challenger drops {len(dropped)} tags champion v{champion['version']} emits ({shown}); train "
            f"with --base starter at 224 px to keep them, or gate with --allow-dropped-tags if that is meant"
        )
    best = champion[metric]
    name = f"champion v{champion['version']}"
    if value >= best + margin:
        return True, f"challenger {metric} {value:.4f} beats {name} {best:.4f} by at least {margin:.4f}"
    second = SECOND_METRIC[metric]
    if best + margin > 1.0 and value >= best - 1e-9:
        if challenger[second] >= champion[second] + margin:
            return True, (
                f"{metric} is saturated ({value:.4f} vs {best:.4f}); challenger {second} "
                f"{challenger[second]:.4f} beats {name} {champion[second]:.4f} by at least {margin:.4f}"
            )
        return False, (
            f"{metric} is saturated ({value:.4f} vs {best:.4f}) and challenger {second} "
            f"{challenger[second]:.4f} does not beat {name} {champion[second]:.4f} by the margin {margin:.4f}; "
            "add harder test images to tell the models apart"
        )
    return False, f"challenger {metric} {value:.4f} does not beat {name} {best:.4f} by the margin {margin:.4f}"


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


def champion_history(settings: Settings | None = None, *, last: int | None = None) -> list[dict]:
    """The model repository's promotions and rollbacks, newest first (the last ``last`` of them).

    Each is a ``promotions.jsonl`` entry (``action``, ``version``, ``previous``, ``at``, a
    rollback's ``rolled_back``) plus ``mlflow_version``: the MLflow version the served version
    was promoted from, None for the starter model (a rollback's own entry does not record it).
    """
    settings = settings or Settings.from_env()
    entries = [e for e in _repository(settings).history() if "version" in e]
    registered = {
        int(e["version"]): (e.get("metadata") or {}).get("mlflow_version")
        for e in entries
        if e.get("action") == "promote"
    }
    newest_first = [{**e, "mlflow_version": registered.get(int(e["version"]))} for e in reversed(entries)]
    return newest_first if last is None else newest_first[:last]


def _champion(status: ChampionStatus, settings: Settings, data: ds.Dataset) -> tuple[Scored | None, str]:
    """The champion scored on the test split, and what it is: the SavedModel TF Serving serves
    (the model repository's ``champion``, as ``status`` found it); with nothing served, the
    shipped starter model, which tags in process until the first promotion. None when there is
    neither. Never the MLflow alias's model: :func:`gate` has checked that they agree."""
    from serving import starter

    if status.serving_version is not None:
        label = status.mlflow_version or f"serving-{status.serving_version}"
        return _score(status.path, label, data), status.served
    head = starter.load_head() if settings.starter else None
    if head is None:
        return None, "none"
    return _score(starter.saved_model(settings.cache_dir, head), head.version, data), "the starter model"


def gate(
    model_version: str,
    dataset_dir: str | Path,
    *,
    metric: str = "map",
    margin: float = 0.01,
    floor: float = 0.5,
    allow_dropped_tags: bool = False,
    report_dir: str | Path | None = None,
    settings: Settings | None = None,
) -> GateResult:
    """Compare a registered model version with the champion on the dataset's test split.

    Both are scored through their exported ``serving_default`` signature on every tag the test
    labels can check (:func:`compare_on`). The champion is what TF Serving serves (the model
    repository's ``champion``); with nothing served yet, the starter model that ships
    (:mod:`serving.starter`). The MLflow ``champion`` alias must agree with it
    (:func:`champion_status`), else nothing is scored and nothing is tagged.

    Args:
        model_version: the challenger's MLflow model version.
        dataset_dir: the dataset whose test split both are scored on.
        metric: one of ``map``, ``micro_f1``, ``macro_f1``.
        margin: how much better than the champion the challenger must be.
        floor: the least the challenger must reach, champion or not.
        allow_dropped_tags: let a challenger pass that cannot emit tags the champion emits.
        report_dir: where ``report.json`` and ``report.md`` go; default ``<dataset>/../gate``.

    Raises:
        ChampionDivergence: the MLflow alias ``champion`` does not name what is served (moved by
            hand); the message says what to do. Checked first, before any scoring.
    """
    if metric not in METRICS:
        raise ValueError(f"gate metric {metric!r}: expected one of {', '.join(METRICS)}")
    import mlflow

    from core.tf_runtime import import_tensorflow

    settings = settings or Settings.from_env()
    client = tracking.client(settings)
    status = champion_status(settings, client=client)
    if not status.agree:
        raise ChampionDivergence(status)
    import_tensorflow()
    data = ds.load(dataset_dir)
    if not data.split("test"):
        raise ValueError(f"{data.root}: the test split is empty; the gate has nothing to compare on")

    challenger_mv = client.get_model_version(settings.model_name, str(model_version))
    with _downloaded(challenger_mv) as saved_model:
        challenger_scored = _score(saved_model, challenger_mv.version, data)
    champion_scored, champion_kind = _champion(status, settings, data)
    models = [challenger_scored] + ([champion_scored] if champion_scored else [])
    tags, y, measured = compare_on(models, data)
    challenger = _summary(measured[0], challenger_scored.version)
    champion = _summary(measured[1], champion_scored.version) if champion_scored else None
    dropped = sorted(champion_scored.emitted_tags - challenger_scored.emitted_tags) if champion_scored else []
    passed, reason = verdict(
        challenger, champion, metric=metric, margin=margin, floor=floor, dropped=dropped,
        allow_dropped_tags=allow_dropped_tags,
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
            "compared_tags": len(tags),
            "model_version": str(model_version),
            "champion_is": champion_kind,
            "dropped_tags": dropped,
        },
    )
    result.report = _write_gate_report(result, Path(report_dir) if report_dir else data.root.parent / "gate")

    outcome = "passed" if passed else "rejected"
    client.set_model_version_tag(settings.model_name, str(model_version), "gate", outcome)
    client.set_model_version_tag(settings.model_name, str(model_version), "gate_reason", reason[:5000])
    with mlflow.start_run(run_id=challenger_mv.run_id):
        mlflow.set_tag("imgtag.gate", outcome)
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
    details = result.details
    lines += [
        "",
        f"Metric `{result.metric}`, margin {details['margin']}, floor {details['floor']}, "
        f"{details['test_images']} test images, {details['compared_tags']} tags the labels can check; "
        f"the champion is {details['champion_is']}.",
    ]
    if details["dropped_tags"]:
        lines += ["", f"Tags the champion emits and the challenger cannot: {', '.join(details['dropped_tags'])}."]
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
    client = tracking.client(settings)
    if mlflow_version:
        client.set_registered_model_alias(settings.model_name, tracking.CHAMPION, str(mlflow_version))
    elif champion_version(client, settings.model_name) is not None:
        # back to a version MLflow never registered (the installed starter model): no alias
        client.delete_registered_model_alias(settings.model_name, tracking.CHAMPION)
    return {
        "model_name": settings.model_name,
        "serving_version": promotion.version,
        "rolled_back_from": before.version if before else None,
        "model_version": mlflow_version,
        "path": str(promotion.path),
    }
