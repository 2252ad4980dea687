"""The gate's decision (pipelines.training.verdict.verdict, a pure function of two metric sets) and
the comparison it rests on (pipelines.training.gate.compare_on), on generated metrics and scores:
no MLflow, no model."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidValue
from core.vocabulary import Vocabulary
from pipelines.training import dataset as ds
from pipelines.training.gate import Scored, compare_on, per_tag_changes
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


def test_the_comparison_covers_every_checkable_tag_of_either_model(tmp_path):
    """A tag one model lacks scores 0 for it (and is never emitted): the champion's ``person``
    counts against a challenger that cannot tag people."""
    examples = [
        ds.Example(f"{i:064x}", f"images/{i}.jpg", tags, "test")
        for i, tags in enumerate([("cat", "person"), ("person",), ("cat",), ("dog",)])
    ]
    data = ds.write(tmp_path / "dataset", examples)
    tags = ("cat", "dog")
    challenger = Scored(
        "2",
        Vocabulary(tags, np.array([0.5, 0.5]), ("learned",) * 2, {}),
        np.array([[0.9, 0.1], [0.1, 0.1], [0.8, 0.2], [0.1, 0.9]], np.float32),
    )
    champion = Scored(
        "1",
        Vocabulary(("cat", "person"), np.array([0.5, 0.5]), ("learned",) * 2, {}),
        np.array([[0.9, 0.9], [0.1, 0.8], [0.8, 0.1], [0.1, 0.1]], np.float32),
    )
    compared, y, (mine, theirs) = compare_on([challenger, champion], data)
    assert compared == ["cat", "dog", "person"]  # the labels check all three
    assert y[:, compared.index("person")].tolist() == [1, 1, 0, 0]
    assert mine["per_tag"]["person"]["precision"] == 0.0 and theirs["per_tag"]["person"]["recall"] == 1.0
    assert mine["per_tag"]["dog"]["recall"] == 1.0 and theirs["per_tag"]["dog"]["recall"] == 0.0
    assert champion.emitted_tags - challenger.emitted_tags == {"person"}


def test_per_tag_changes_list_gains_first_and_leave_out_tags_without_a_positive():
    def per_tag(**aps):
        return {"per_tag": {t: {"ap": ap, "support": 0 if ap is None else 3} for t, ap in aps.items()}}

    rows = per_tag_changes(
        per_tag(cat=0.9, dog=0.4, owl=None, red=0.8), per_tag(cat=0.5, dog=0.6, owl=None, red=0.0)
    )
    assert [(r["tag"], r["change"]) for r in rows] == [("red", 0.8), ("cat", 0.4), ("dog", -0.2)]
    assert rows[0] == {"tag": "red", "support": 3, "challenger_ap": 0.8, "champion_ap": 0.0, "change": 0.8}
    alone = per_tag_changes(per_tag(cat=0.9), None)
    assert alone == [{"tag": "cat", "support": 3, "challenger_ap": 0.9, "champion_ap": None, "change": None}]
