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
    replace_vocabulary: bool = False,
) -> Verdict:
    """The gate's decision from the two models' test metrics (a pure function: no MLflow, no files).

    - with a champion, the comparison decides: the challenger passes when its ``metric`` is at
      least the champion's plus ``margin`` (both measured on the same tags and images), and it
      drops no tag the champion emits; ``floor`` does not apply;
    - a challenger that ``dropped`` tags the champion emits is refused, with the list, unless
      ``replace_vocabulary`` says that replacing the champion's vocabulary is meant;
    - a tie on a saturated metric (the champion is within ``margin`` of 1, so nothing can beat it by
      the margin): the challenger passes when it is no worse on ``metric`` and better by the margin
      on the second metric (:data:`SECOND_METRIC`);
    - with no champion to compare with, the challenger must reach ``floor``;
    - a metric it needs that was not measured (missing or not a number) rejects it.

    Raises:
        InvalidValue: ``metric`` is not one the gate knows.
    """
    if metric not in SECOND_METRIC:
        raise InvalidValue(f"gate metric {metric!r}: expected one of {', '.join(SECOND_METRIC)}")
    value = _measured(challenger, metric)
    if value is None:
        return Verdict(False, f"challenger {metric} was not measured; the gate cannot compare without it")
    if champion is None:
        return _against_floor(value, metric, floor)
    name = f"champion v{champion['version']}"
    if dropped and not replace_vocabulary:
        return _refused_for_dropping(dropped, name)
    best = _measured(champion, metric)
    if best is None:
        return Verdict(False, f"{name} {metric} was not measured; the gate cannot compare without it")
    replaced = f" (replacing its vocabulary: {len(dropped)} tags dropped)" if dropped else ""
    if value >= best + margin - 1e-9:
        return Verdict(
            True,
            f"challenger {metric} {value:.4f} beats {name} {best:.4f} by at least {margin:.4f}{replaced}",
        )
    if best + margin > 1.0 and value >= best - 1e-9:
        return _saturated(challenger, champion, metric, margin, name)
    return Verdict(
        False, f"challenger {metric} {value:.4f} does not beat {name} {best:.4f} by the margin {margin:.4f}"
    )


def _against_floor(value: float, metric: str, floor: float) -> Verdict:
    """With no champion to compare with: the challenger must reach ``floor``."""
    if value < floor:
        return Verdict(
            False,
            f"no champion to compare with, and challenger {metric} {value:.4f} is below the floor {floor:.4f}",
        )
    return Verdict(
        True, f"no champion to compare with; challenger {metric} {value:.4f} reaches the floor {floor:.4f}"
    )


def _refused_for_dropping(dropped: list[str], name: str) -> Verdict:
    """The refusal of a challenger that drops tags the champion emits, with the list and the way out."""
    shown = ", ".join(dropped[:12]) + (f" and {len(dropped) - 12} more" if len(dropped) > 12 else "")
    return Verdict(
        False,
        (
            f"challenger drops {len(dropped)} tags {name} emits ({shown}); train it on the champion "
            f"(--base champion, the default, at the champion's image size) to keep them, or gate with "
            f"--replace-vocabulary if replacing the champion's vocabulary is meant"
        ),
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
