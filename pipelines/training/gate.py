"""The ``gate`` stage: does the challenger beat the champion on the same test images?

It reads top to bottom, the decision in the middle and the effects around it:

1. **which champion**: what TF Serving serves (:func:`pipelines.training.champion.champion_status`;
   with nothing served, the shipped starter model); the MLflow alias must agree, else
   :class:`~pipelines.training.champion.ChampionDivergence` before anything is scored;
2. **measure** (:func:`measure`): both models scored through their exported ``serving_default``
   signature (encoded bytes in, scores out) on the dataset's test split, and their metrics on
   every tag the test labels can check (:func:`compare_on`);
3. **decide** (:func:`pipelines.training.verdict.verdict`): a pure function of the two metric sets;
4. **record** (:func:`record`): ``report.json`` and ``report.md`` in the run's ``gate/`` folder,
   the outcome tagged on the MLflow model version and logged to its training run. A rejection
   changes nothing else; ``imgtag gate`` then exits ``GATE_REJECTED`` and the DAG skips promotion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core import training_limits
from core.errors import InvalidValue
from core.settings import Settings
from core.tagmap import TagMap
from core.tf_runtime import import_tensorflow
from core.vocabulary import Vocabulary
from pipelines.training import calibration, tracking
from pipelines.training import dataset as ds
from pipelines.training.champion import ChampionDivergence, ChampionStatus, champion_status, downloaded
from pipelines.training.evaluate import METRICS, score_metrics
from pipelines.training.layout import RunLayout
from pipelines.training.verdict import Metrics, verdict
from serving import starter
from serving.export import LoadedModel

# ---------------------------------------------------------------------------- measure


@dataclass
class Scored:
    """One model's scores on the test split: its vocabulary and ``(images, tags)`` scores."""

    version: str
    vocabulary: Vocabulary
    scores: np.ndarray

    @property
    def emitted_tags(self) -> set[str]:
        """The tags this model can emit (its thresholds are not off)."""
        return {
            t
            for t, limit in zip(self.vocabulary.tags, self.vocabulary.thresholds, strict=True)
            if np.isfinite(limit)
        }


def score(saved_model: Path, version: str, data: ds.Dataset) -> Scored:
    """An exported model's scores on the test split, through its ``serving_default`` signature."""
    loaded = LoadedModel(saved_model)
    rows = data.split("test")
    return Scored(
        str(version), loaded.vocabulary, loaded.scores([data.image_path(e).read_bytes() for e in rows])
    )


def compare_on(
    models: list[Scored], data: ds.Dataset, tagmap_dir: Path | None = None
) -> tuple[list[str], np.ndarray, list[dict]]:
    """The tags the test labels can check in any of ``models`` (:func:`pipelines.training.calibration.evidence`),
    and each model's test truth columns and metrics on them (a tag a model lacks scores 0).
    ``tagmap_dir``: the tag map whose hierarchy relates the tags (``settings.tagmap_dir``)."""
    hierarchy = dict(TagMap.load(tagmap_dir).parent)
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
        thresholds = {}
        for j, tag in enumerate(tags):
            if tag in column:
                scores[:, j] = model.scores[:, column[tag]]
                thresholds[tag] = float(model.vocabulary.thresholds[column[tag]])
            else:
                thresholds[tag] = float("inf")  # never emitted
        out.append(score_metrics(y, scores, tags, thresholds))
    return tags, y, out


@dataclass
class Measured:
    """What :func:`measure` found: each model's metrics and what the verdict needs besides."""

    challenger: Metrics
    champion: Metrics | None
    champion_is: str  # what the champion is, in words ("none" when there is none)
    dropped: list[str]  # tags the champion emits and the challenger cannot
    test_images: int
    compared_tags: int


def measure(
    challenger_dir: Path,
    challenger_version: str,
    status: ChampionStatus,
    settings: Settings,
    data: ds.Dataset,
) -> Measured:
    """Score the challenger (its SavedModel in ``challenger_dir``) and the champion on the test split."""
    challenger = score(challenger_dir, challenger_version, data)
    champion, champion_is = _champion(status, settings, data)
    models = [challenger] + ([champion] if champion else [])
    tags, y, metrics = compare_on(models, data, settings.tagmap_dir)
    return Measured(
        challenger=_summary(metrics[0], challenger.version),
        champion=_summary(metrics[1], champion.version) if champion else None,
        champion_is=champion_is,
        dropped=sorted(champion.emitted_tags - challenger.emitted_tags) if champion else [],
        test_images=len(y),
        compared_tags=len(tags),
    )


def _champion(status: ChampionStatus, settings: Settings, data: ds.Dataset) -> tuple[Scored | None, str]:
    """The champion scored on the test split, and what it is: the SavedModel TF Serving serves
    (the model repository's ``champion``, as ``status`` found it); with nothing served, the
    shipped starter model, which tags in process until the first promotion. None when there is
    neither. Never the MLflow alias's model: :func:`gate` has checked that they agree."""
    if status.serving_version is not None:
        label = status.mlflow_version or f"serving-{status.serving_version}"
        return score(status.path, label, data), status.served
    head = starter.load_head(tagmap_dir=settings.tagmap_dir) if settings.starter else None
    if head is None:
        return None, "none"
    return score(starter.saved_model(settings.cache_dir, head), head.version, data), "the starter model"


def _summary(metrics: dict, version: str) -> Metrics:
    return {"version": str(version), **{k: round(metrics[k], 4) for k in METRICS}}


# ---------------------------------------------------------------------------- the stage


@dataclass
class GateResult:
    passed: bool
    reason: str
    metric: str
    challenger: Metrics
    champion: Metrics | None
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
    allow_dropped_tags: bool = False,
    report_dir: str | Path | None = None,
    settings: Settings,
) -> GateResult:
    """Compare a registered model version with the champion on the dataset's test split.

    Both are scored through their exported ``serving_default`` signature on every tag the test
    labels can check (:func:`compare_on`). The champion is what TF Serving serves (the model
    repository's ``champion``); with nothing served yet, the starter model that ships
    (:mod:`serving.starter`). The MLflow ``champion`` alias must agree with it
    (:func:`~pipelines.training.champion.champion_status`), else nothing is scored and nothing is tagged.

    Args:
        model_version: the challenger's MLflow model version.
        dataset_dir: the dataset whose test split both are scored on.
        metric: one of ``map``, ``micro_f1``, ``macro_f1``.
        margin: how much better than the champion the challenger must be.
        floor: the least the challenger must reach, champion or not.
        allow_dropped_tags: let a challenger pass that cannot emit tags the champion emits.
        report_dir: where ``report.json`` and ``report.md`` go; default the run's ``gate/``
            (``<dataset>/../gate``).

    Raises:
        ChampionDivergence: the MLflow alias ``champion`` does not name what is served (moved by
            hand); the message says what to do. Checked first, before any scoring.
        InvalidValue: an unknown metric, a margin or floor out of range, an empty test split.
    """
    if metric not in METRICS:
        raise InvalidValue(f"gate metric {metric!r}: expected one of {', '.join(METRICS)}")
    for limit, value in ((training_limits.GATE_MARGIN, margin), (training_limits.GATE_FLOOR, floor)):
        if problem := limit.problem(value):
            raise InvalidValue(problem)
    client = tracking.client(settings)
    status = champion_status(settings, client=client)
    if not status.agree:
        raise ChampionDivergence(status)
    import_tensorflow()
    data = ds.load(dataset_dir)
    if not data.split("test"):
        raise InvalidValue(f"{data.root}: the test split is empty; the gate has nothing to compare on")

    challenger_mv = client.get_model_version(settings.model_name, str(model_version))
    with downloaded(challenger_mv) as saved_model:
        measured = measure(saved_model, challenger_mv.version, status, settings, data)
    passed, reason = verdict(
        measured.challenger,
        measured.champion,
        metric=metric,
        margin=margin,
        floor=floor,
        dropped=measured.dropped,
        allow_dropped_tags=allow_dropped_tags,
    )
    result = GateResult(
        passed,
        reason,
        metric,
        measured.challenger,
        measured.champion,
        details={
            "margin": margin,
            "floor": floor,
            "test_images": measured.test_images,
            "compared_tags": measured.compared_tags,
            "model_version": str(model_version),
            "champion_is": measured.champion_is,
            "dropped_tags": measured.dropped,
        },
    )
    record(
        result,
        Path(report_dir) if report_dir else RunLayout.of(data.root).gate,
        client,
        challenger_mv,
        settings,
    )
    return result


# ---------------------------------------------------------------------------- record


def record(result: GateResult, report_dir: Path, client, challenger_mv, settings: Settings) -> None:
    """Write the gate report, tag the model version with the outcome and log it to its training run."""
    import mlflow

    result.report = write_report(result, report_dir)
    outcome = "passed" if result.passed else "rejected"
    version = str(result.details["model_version"])
    client.set_model_version_tag(settings.model_name, version, "gate", outcome)
    client.set_model_version_tag(settings.model_name, version, "gate_reason", result.reason[:5000])
    with mlflow.start_run(run_id=challenger_mv.run_id):
        mlflow.set_tag("imgtag.gate", outcome)
        mlflow.log_metrics({f"gate/challenger_{k}": result.challenger[k] for k in METRICS})
        if result.champion is not None:
            mlflow.log_metrics({f"gate/champion_{k}": result.champion[k] for k in METRICS})
        mlflow.log_artifacts(str(result.report), "gate")


def write_report(result: GateResult, directory: Path) -> Path:
    """``report.json`` (the result) and ``report.md`` (a table for people) in ``directory``."""
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
        (
            f"Metric `{result.metric}`, margin {details['margin']}, floor {details['floor']}, "
            f"{details['test_images']} test images, {details['compared_tags']} tags the labels can check; "
            f"the champion is {details['champion_is']}."
        ),
    ]
    if details["dropped_tags"]:
        lines += [
            "",
            f"Tags the champion emits and the challenger cannot: {', '.join(details['dropped_tags'])}.",
        ]
    (directory / "report.md").write_text("\n".join(lines) + "\n")
    return directory
