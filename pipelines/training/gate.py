"""The ``gate`` stage: does the challenger beat the champion on the same test images?

It reads top to bottom, the decision in the middle and the effects around it:

1. **which champion**: what TF Serving serves (:func:`pipelines.training.champion.champion_status`:
   the starter model, version 1, until a first promotion; with nothing served at all, the
   shipped starter model); the MLflow alias must agree, else
   :class:`~pipelines.training.champion.ChampionDivergence` before anything is scored;
2. **measure** (:func:`measure`): both models scored through their exported ``serving_default``
   signature (encoded bytes in, scores out) on the dataset's test split, and their metrics on
   every tag the test labels can check (:func:`compare_on`);
3. **decide** (:func:`pipelines.training.verdict.verdict`): a pure function of the two metric sets;
4. **record** (:func:`describe`, :func:`record`): both models' figures, the margin, the per-tag
   AP gains and losses and the reason on stderr (the stage's log), ``report.json`` and
   ``report.md`` in the run's ``gate/`` folder, the verdict and its figures tagged on the MLflow
   model version and logged to its training run (metrics, tags, the run's description). A
   rejection changes nothing else; ``imgtag gate`` then exits ``GATE_REJECTED`` and the DAG
   skips promotion (and notes why on the run).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    per_tag: list[dict] = field(default_factory=list)  # each compared tag's AP for both, and the change


def per_tag_changes(challenger: dict, champion: dict | None) -> list[dict]:
    """Each compared tag's test AP for the challenger and the champion and the change, the
    largest gain first (tags without a positive test image have no AP and are left out)."""
    rows = []
    for tag, mine in challenger["per_tag"].items():
        if mine["ap"] is None:
            continue
        theirs = champion["per_tag"][tag]["ap"] if champion is not None else None
        change = None if theirs is None else round(mine["ap"] - theirs, 4)
        rows.append(
            {
                "tag": tag,
                "support": mine["support"],
                "challenger_ap": round(mine["ap"], 4),
                "champion_ap": None if theirs is None else round(theirs, 4),
                "change": change,
            }
        )
    return sorted(rows, key=lambda r: (-(r["change"] or 0.0), r["tag"]))


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
        per_tag=per_tag_changes(metrics[0], metrics[1] if champion else None),
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


GAIN = 0.005  # a per-tag AP change smaller than this is neither a gain nor a loss


def gate(
    model_version: str,
    dataset_dir: str | Path | None = None,
    *,
    metric: str = training_limits.default("gate_metric"),
    margin: float = training_limits.default("gate_margin"),
    floor: float = training_limits.default("gate_floor"),
    replace_vocabulary: bool = training_limits.default("replace_vocabulary"),
    report_dir: str | Path | None = None,
    settings: Settings,
) -> GateResult:
    """Compare a registered model version with the champion on a dataset's test split.

    Long because its docstring is the gate's documentation (the CLI and the DAG's form point
    here); the body reads as its steps.

    Both are scored through their exported ``serving_default`` signature on every tag the test
    labels can check (:func:`compare_on`; a tag a model cannot emit counts as missed). The
    champion is what TF Serving serves (the model repository's ``champion``: the starter model,
    version 1, until a first promotion; with nothing served, the starter that ships). The MLflow
    ``champion`` alias must agree with it (:func:`~pipelines.training.champion.champion_status`),
    else nothing is scored and nothing is tagged. Any registered version can be gated, again
    (after a fix, or against a new champion).

    Every verdict is printed (both models' figures, the margin, per-tag gains and losses, the
    reason) and recorded: ``report.json``/``report.md``, tags on the MLflow version (``gate``,
    ``gate_reason`` ...) and metrics, tags and the report on its training run.

    Args:
        model_version: the challenger's MLflow model version.
        dataset_dir: the dataset whose test split both are scored on; default the one the
            version was trained on (its training run's ``imgtag.dataset``).
        metric: one of ``map``, ``micro_f1``, ``macro_f1``.
        margin: how much better than the champion the challenger must be.
        floor: the least the challenger must reach when there is no champion to compare with.
        replace_vocabulary: let a challenger pass that cannot emit tags the champion emits (it
            replaces the champion's vocabulary); refused otherwise, with the list.
        report_dir: where ``report.json`` and ``report.md`` go; default the run's ``gate/``
            (``<dataset>/../gate``).

    Raises:
        ChampionDivergence: the MLflow alias ``champion`` does not name what is served (moved by
            hand); the message says what to do. Checked first, before any scoring.
        InvalidValue: an unknown metric, a margin or floor out of range, no such version, the
            version is the champion, no dataset to score on, an empty test split.
    """
    _check_settings(metric, margin, floor)
    client = tracking.client(settings)
    status = champion_status(settings, client=client)
    if not status.agree:
        raise ChampionDivergence(status)
    challenger_mv = _challenger(client, settings, status, model_version)
    data = _test_data(Path(dataset_dir) if dataset_dir else _trained_on(client, challenger_mv))

    with downloaded(challenger_mv) as saved_model:
        measured = measure(saved_model, challenger_mv.version, status, settings, data)
    result = _decide(
        measured,
        metric=metric,
        margin=margin,
        floor=floor,
        replace_vocabulary=replace_vocabulary,
        details={
            "dataset": str(data.root),
            **_measured_details(measured, str(challenger_mv.version), status),
        },
    )
    print(describe(result), file=sys.stderr, flush=True)  # the stage's log: the figures behind the verdict
    record(
        result,
        Path(report_dir) if report_dir else RunLayout.of(data.root).gate,
        client,
        challenger_mv,
        settings,
    )
    return result


def _decide(
    measured: Measured, *, metric: str, margin: float, floor: float, replace_vocabulary: bool, details: dict
) -> GateResult:
    """The verdict on the measured figures (:func:`verdict`), with the settings it was reached with."""
    passed, reason = verdict(
        measured.challenger,
        measured.champion,
        metric=metric,
        margin=margin,
        floor=floor,
        dropped=measured.dropped,
        replace_vocabulary=replace_vocabulary,
    )
    return GateResult(
        passed,
        reason,
        metric,
        measured.challenger,
        measured.champion,
        details={"margin": margin, "floor": floor, "replace_vocabulary": replace_vocabulary, **details},
    )


def _check_settings(metric: str, margin: float, floor: float) -> None:
    """Refuse an unknown metric, or a margin or floor out of range (:class:`InvalidValue`)."""
    if metric not in METRICS:
        raise InvalidValue(f"gate metric {metric!r}: expected one of {', '.join(METRICS)}")
    for limit, value in ((training_limits.GATE_MARGIN, margin), (training_limits.GATE_FLOOR, floor)):
        if problem := limit.problem(value):
            raise InvalidValue(problem)


def _challenger(client, settings: Settings, status: ChampionStatus, model_version: str):
    """The registered version to gate, refused when it is the champion itself."""
    challenger_mv = _model_version(client, settings, model_version)
    if status.mlflow_version is not None and str(challenger_mv.version) == status.mlflow_version:
        raise InvalidValue(
            f"version {challenger_mv.version} is the champion (served now): there is nothing to gate it "
            "against; gate another version (`imgtag models` lists them)"
        )
    return challenger_mv


def _test_data(dataset_dir: Path) -> ds.Dataset:
    """The dataset both models are scored on, refused when its test split is empty."""
    import_tensorflow()
    data = ds.load(dataset_dir)
    if not data.split("test"):
        raise InvalidValue(f"{data.root}: the test split is empty; the gate has nothing to compare on")
    return data


def _measured_details(measured: Measured, model_version: str, status: ChampionStatus) -> dict:
    """The report's figures behind a verdict: what was compared, and each tag's gain or loss."""
    changes = [r for r in measured.per_tag if r["change"] is not None]
    return {
        "test_images": measured.test_images,
        "compared_tags": measured.compared_tags,
        "model_version": model_version,
        "champion_version": status.mlflow_version,
        "champion_is": measured.champion_is,
        "dropped_tags": measured.dropped,
        "gains": [r for r in changes if r["change"] >= GAIN],
        "losses": sorted((r for r in changes if r["change"] <= -GAIN), key=lambda r: r["change"]),
        "per_tag": measured.per_tag,
    }


def _model_version(client, settings: Settings, version: str):
    """The registered version, or an error naming what exists."""
    import mlflow

    try:
        return client.get_model_version(settings.model_name, str(version))
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        raise InvalidValue(
            f"{settings.model_name} has no version {version!r} in {settings.mlflow_tracking_uri}; "
            "`imgtag models` lists the registered versions"
        ) from None


def _trained_on(client, version) -> Path:
    """The dataset a version was trained on (its training run's ``imgtag.dataset``)."""
    run = client.get_run(version.run_id) if version.run_id else None
    recorded = (run.data.tags if run else {}).get("imgtag.dataset")
    if not recorded or not Path(recorded).is_dir():
        where = f"it was trained on {recorded}, which is gone" if recorded else "its run records no dataset"
        raise InvalidValue(
            f"version {version.version}: {where}; give the dataset to score it on "
            "(`imgtag gate VERSION DATASET`, the form's Gate dataset)"
        )
    return Path(recorded)


def describe(result: GateResult) -> str:
    """The verdict with its figures, for the stage's log (a few lines)."""
    d = result.details
    metric = result.metric
    mine = result.challenger[metric]
    lines = [
        f"gate: version {d['model_version']} against the champion, {d['champion_is']}, on "
        f"{d['test_images']} test images of {d['dataset']}, {d['compared_tags']} tags the labels can check",
    ]
    if result.champion is not None:
        theirs = result.champion[metric]
        lines.append(
            f"  {metric}: challenger {mine:.4f}, champion {theirs:.4f}; margin {d['margin']:.4f}, "
            f"so at least {theirs + d['margin']:.4f} was needed"
        )
        for key in METRICS:
            if key != metric:
                lines.append(
                    f"  {key}: challenger {result.challenger[key]:.4f}, champion {result.champion[key]:.4f}"
                )
    else:
        lines.append(f"  {metric}: challenger {mine:.4f}; no champion, floor {d['floor']:.4f}")

    def shown(rows):
        return ", ".join(
            f"{r['tag']} {r['change']:+.3f} ({r['champion_ap']:.3f} -> {r['challenger_ap']:.3f})"
            for r in rows[:10]
        ) + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")

    if result.champion is not None:
        lines.append(f"  per-tag AP gains: {shown(d['gains']) or 'none'}")
        lines.append(f"  per-tag AP losses: {shown(d['losses']) or 'none'}")
    if d["dropped_tags"]:
        lines.append(f"  tags the champion emits and the challenger cannot: {', '.join(d['dropped_tags'])}")
    lines.append(f"gate {'PASSED' if result.passed else 'REJECTED'}: {result.reason}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- record


def record(result: GateResult, report_dir: Path, client, challenger_mv, settings: Settings) -> None:
    """Write the gate report, tag the model version with the verdict and its figures, and mark
    its training run: tags, metrics, a note and the report."""
    import mlflow

    result.report = write_report(result, report_dir)
    outcome = "passed" if result.passed else "rejected"
    details = result.details
    version = str(details["model_version"])
    champion = result.champion
    tags = {
        "gate": outcome,
        "gate_reason": result.reason[:5000],
        "gate_metric": result.metric,
        "gate_margin": str(details["margin"]),
        "gate_challenger": f"{result.challenger[result.metric]:.4f}",
        "gate_champion": "" if champion is None else f"{champion[result.metric]:.4f}",
        "gate_champion_version": str(details["champion_version"] or (champion or {}).get("version", "")),
        "gate_dropped_tags": str(len(details["dropped_tags"])),
        "gate_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    if not challenger_mv.run_id:
        return
    with mlflow.start_run(run_id=challenger_mv.run_id):
        mlflow.set_tags(
            {
                "imgtag.gate": outcome,
                "imgtag.gate_reason": result.reason[:5000],
                "mlflow.note.content": f"Gate {outcome.upper()} (model version {version}): {result.reason}",
            }
        )
        values = {f"gate/challenger_{k}": result.challenger[k] for k in METRICS}
        if champion is not None:
            values.update({f"gate/champion_{k}": champion[k] for k in METRICS})
        values.update(
            {
                "gate/margin": details["margin"],
                "gate/passed": 1.0 if result.passed else 0.0,
                "gate/dropped_tags": len(details["dropped_tags"]),
            }
        )
        values.update(
            {
                tracking.metric_key("gate", "ap_change", r["tag"]): r["change"]
                for r in details["per_tag"]
                if r["change"] is not None
            }
        )
        mlflow.log_metrics(values)
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
            f"Metric `{result.metric}`, margin {details['margin']}"
            + ("" if result.champion is not None else f", floor {details['floor']} (no champion)")
            + ", "
            f"{details['test_images']} test images, {details['compared_tags']} tags the labels can check; "
            f"the champion is {details['champion_is']}."
        ),
    ]
    if details["dropped_tags"]:
        lines += [
            "",
            f"Tags the champion emits and the challenger cannot: {', '.join(details['dropped_tags'])}.",
        ]
    if details.get("per_tag"):
        lines += ["", "| tag | test images | challenger AP | champion AP | change |", "|---|---|---|---|---|"]
        for r in details["per_tag"]:
            champion_ap = "" if r["champion_ap"] is None else f"{r['champion_ap']:.4f}"
            change = "" if r["change"] is None else f"{r['change']:+.4f}"
            lines.append(
                f"| {r['tag']} | {r['support']} | {r['challenger_ap']:.4f} | {champion_ap} | {change} |"
            )
    (directory / "report.md").write_text("\n".join(lines) + "\n")
    return directory
