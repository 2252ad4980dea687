"""The gate's decision: does the challenger beat the champion? A pure function of two metric sets.

:func:`verdict` reads no file and asks no MLflow: :mod:`pipelines.training.gate` measures both
models on the same test split, calls it, and records what it says. Every outcome is a
:class:`Verdict` with a one-line reason for people (the gate report, the MLflow tag, the
``imgtag gate`` output).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from core.errors import InvalidValue

SECOND_METRIC = {"map": "micro_f1", "micro_f1": "map", "macro_f1": "map"}  # the tie-breaker

#: One model's test metrics as the gate compares them: ``{"version": "3", "map": 0.71,
#: "micro_f1": 0.64, "macro_f1": 0.58}`` (each of :data:`~pipelines.training.evaluate.METRICS`).
Metrics = dict


class Verdict(NamedTuple):
    """The gate's decision and its reason, one line for people (``passed, reason = verdict(...)``)."""

    passed: bool
    reason: str


def verdict(
    challenger: Metrics,
    champion: Metrics | None,
    *,
    metric: str,
    margin: float,
    floor: float,
    dropped: list[str] = (),
    allow_dropped_tags: bool = False,
) -> Verdict:
    """The gate's decision from the two models' test metrics (a pure function: no MLflow, no files).

    - below ``floor``: rejected; with no champion, the floor alone decides;
    - better than the champion by ``margin`` on ``metric``: passed;
    - a tie on a saturated metric (the champion is within ``margin`` of 1, so nothing can beat it by
      the margin): the challenger passes when it is no worse on ``metric`` and better by the margin
      on the second metric (:data:`SECOND_METRIC`);
    - otherwise rejected; and always rejected when it ``dropped`` tags the champion emits, unless
      ``allow_dropped_tags``; and when a metric it needs was not measured (missing or not a number).

    Raises:
        InvalidValue: ``metric`` is not one the gate knows.
    """
    if metric not in SECOND_METRIC:
        raise InvalidValue(f"gate metric {metric!r}: expected one of {', '.join(SECOND_METRIC)}")
    value = _measured(challenger, metric)
    if value is None:
        return Verdict(False, f"challenger {metric} was not measured; the gate cannot compare without it")
    if value < floor:
        return Verdict(False, f"challenger {metric} {value:.4f} is below the floor {floor:.4f}")
    if champion is None:
        return Verdict(
            True, f"no champion yet; challenger {metric} {value:.4f} reaches the floor {floor:.4f}"
        )
    name = f"champion v{champion['version']}"
    if dropped and not allow_dropped_tags:
        shown = ", ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else "")
        return Verdict(
            False,
            (
                f"challenger drops {len(dropped)} tags {name} emits ({shown}); train "
                f"with --base starter at the starter's image size to keep them, or gate with --allow-dropped-tags if that is meant"
            ),
        )
    best = _measured(champion, metric)
    if best is None:
        return Verdict(False, f"{name} {metric} was not measured; the gate cannot compare without it")
    if value >= best + margin:
        return Verdict(
            True, f"challenger {metric} {value:.4f} beats {name} {best:.4f} by at least {margin:.4f}"
        )
    if best + margin > 1.0 and value >= best - 1e-9:
        return _saturated(challenger, champion, metric, margin, name)
    return Verdict(
        False, f"challenger {metric} {value:.4f} does not beat {name} {best:.4f} by the margin {margin:.4f}"
    )


def _saturated(challenger: Metrics, champion: Metrics, metric: str, margin: float, name: str) -> Verdict:
    """Both reach the top of ``metric``: the second metric decides."""
    value, best, second = challenger[metric], champion[metric], SECOND_METRIC[metric]
    mine, theirs = _measured(challenger, second), _measured(champion, second)
    if mine is None or theirs is None:
        return Verdict(
            False, f"{metric} is saturated ({value:.4f} vs {best:.4f}) and {second} was not measured"
        )
    if mine >= theirs + margin:
        return Verdict(
            True,
            (
                f"{metric} is saturated ({value:.4f} vs {best:.4f}); challenger {second} "
                f"{mine:.4f} beats {name} {theirs:.4f} by at least {margin:.4f}"
            ),
        )
    return Verdict(
        False,
        (
            f"{metric} is saturated ({value:.4f} vs {best:.4f}) and challenger {second} "
            f"{mine:.4f} does not beat {name} {theirs:.4f} by the margin {margin:.4f}; "
            "add harder test images to tell the models apart"
        ),
    )


def _measured(metrics: Metrics, name: str) -> float | None:
    """``metrics[name]`` as a number, None when it is missing or not a number (NaN)."""
    value = metrics.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)
