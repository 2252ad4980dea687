"""The gate's decision (pipelines.training.verdict.verdict, a pure function of two metric sets),
on generated metrics: no MLflow, no model. The comparison it rests on is in test_gate.py."""

from __future__ import annotations

import pytest

from core.errors import InvalidValue
from pipelines.training.verdict import Verdict, verdict


def metrics(version="2", map=0.7, micro_f1=0.6, macro_f1=0.5):
    return {"version": version, "map": map, "micro_f1": micro_f1, "macro_f1": macro_f1}


def decide(challenger, champion, **kwargs):
    return verdict(challenger, champion, **{"metric": "map", "margin": 0.01, "floor": 0.5, **kwargs})


def test_the_floor_decides_without_a_champion():
    assert decide(metrics(map=0.6), None)[0] is True
    passed, reason = decide(metrics(map=0.4), None)
    assert not passed and "below the floor 0.5000" in reason


def test_a_challenger_must_beat_the_champion_by_the_margin():
    assert decide(metrics(map=0.72), metrics("1", map=0.70))[0] is True
    passed, reason = decide(metrics(map=0.705), metrics("1", map=0.70))
    assert not passed and "does not beat champion v1" in reason
    assert decide(
        metrics(map=0.70), metrics("1", map=0.70), margin=0.0
    ).passed  # at least the champion + margin


def test_a_saturated_metric_is_decided_by_the_second_one():
    champion = metrics("1", map=1.0, micro_f1=0.80)
    passed, reason = decide(metrics(map=1.0, micro_f1=0.90), champion)
    assert passed and "saturated" in reason and "micro_f1" in reason
    passed, reason = decide(metrics(map=1.0, micro_f1=0.805), champion)
    assert not passed and "add harder test images" in reason
    assert decide(metrics(map=0.995, micro_f1=0.95), champion)[0] is False  # worse on the first metric


def test_dropping_the_champions_tags_is_refused_unless_the_vocabulary_is_replaced():
    passed, reason = decide(metrics(map=0.9), metrics("1", map=0.5), dropped=["people", "person"])
    assert not passed and "drops 2 tags champion v1 emits (people, person)" in reason
    assert "--base champion" in reason and "--replace-vocabulary" in reason
    passed, reason = decide(
        metrics(map=0.9), metrics("1", map=0.5), dropped=["person"], replace_vocabulary=True
    )
    assert passed and "replacing its vocabulary: 1 tags dropped" in reason
    # replacing the vocabulary is no excuse for being worse
    assert not decide(
        metrics(map=0.4), metrics("1", map=0.5), dropped=["person"], replace_vocabulary=True
    ).passed
    many = [f"tag {i}" for i in range(15)]
    assert "and 3 more" in decide(metrics(map=0.9), metrics("1", map=0.5), dropped=many).reason


def test_a_challenger_equal_to_the_champion_within_the_margin_is_rejected():
    champion = metrics("1", map=0.70)
    for value in (0.70, 0.705, 0.7099):
        passed, reason = decide(metrics(map=value), champion)
        assert not passed and "does not beat champion v1 0.7000 by the margin 0.0100" in reason, value
    assert decide(metrics(map=0.71), champion) == Verdict(True, decide(metrics(map=0.71), champion).reason)
    assert decide(metrics(map=0.69), champion, margin=0.0).passed is False  # worse is never better


def test_with_a_champion_the_comparison_decides_not_the_floor():
    """A challenger at 0.415 against a champion at 0.183 on the same test split is better, whatever
    the floor says: the floor is only for when there is nothing to compare with."""
    verdict_ = decide(metrics(map=0.415), metrics("1", map=0.183), floor=0.5)
    assert verdict_ == (True, "challenger map 0.4150 beats champion v1 0.1830 by at least 0.0100")
    assert decide(metrics(map=0.5), None, floor=0.5).passed  # the floor itself is reached
    passed, reason = decide(metrics(map=0.45), None, floor=0.5)
    assert (
        not passed
        and reason == "no champion to compare with, and challenger map 0.4500 is below the floor 0.5000"
    )


def test_no_champion_passes_on_the_floor_alone_whatever_was_dropped():
    passed, reason = decide(metrics(map=0.51), None, dropped=["person"])
    assert (
        passed and reason.startswith("no champion to compare with") and "reaches the floor 0.5000" in reason
    )


@pytest.mark.parametrize(
    "challenger, champion, who",
    [
        ({"version": "2", "micro_f1": 0.9}, metrics("1"), "challenger map was not measured"),
        (metrics(map=float("nan")), metrics("1"), "challenger map was not measured"),
        (metrics(map=0.9), {"version": "1", "micro_f1": 0.5}, "champion v1 map was not measured"),
        (metrics(map=1.0, micro_f1=None), metrics("1", map=1.0), "micro_f1 was not measured"),
    ],
)
def test_a_missing_metric_is_rejected_with_the_reason(challenger, champion, who):
    passed, reason = decide(challenger, champion)
    assert not passed and who in reason


def test_an_unknown_metric_is_a_usage_error():
    with pytest.raises(InvalidValue, match="gate metric 'accuracy'"):
        decide(metrics(), None, metric="accuracy")


def test_every_gate_metric_has_a_tie_breaker_and_the_other_metrics_decide_too():
    champion = metrics("1", map=0.5, micro_f1=0.5, macro_f1=0.5)
    for metric in ("map", "micro_f1", "macro_f1"):
        better = metrics(**{"map": 0.5, "micro_f1": 0.5, "macro_f1": 0.5, metric: 0.6})
        assert decide(better, champion, metric=metric).passed, metric
        assert not decide(champion | {"version": "2"}, champion, metric=metric).passed, metric
