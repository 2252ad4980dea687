"""The gate's decision (pipelines.training.registry.verdict) and the comparison it rests on
(pipelines.training.registry.compare_on), on generated metrics and scores: no MLflow, no model."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.training import dataset as ds
from pipelines.training.registry import Scored, compare_on, verdict
from core.vocabulary import Vocabulary


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
    assert decide(metrics(map=0.72), metrics("1", map=0.70), floor=0.8)[0] is False  # the floor still holds


def test_a_saturated_metric_is_decided_by_the_second_one():
    champion = metrics("1", map=1.0, micro_f1=0.80)
    passed, reason = decide(metrics(map=1.0, micro_f1=0.90), champion)
    assert passed and "saturated" in reason and "micro_f1" in reason
    passed, reason = decide(metrics(map=1.0, micro_f1=0.805), champion)
    assert not passed and "add harder test images" in reason
    assert decide(metrics(map=0.995, micro_f1=0.95), champion)[0] is False  # worse on the first metric


def test_dropping_the_champions_tags_is_refused_unless_allowed():
    passed, reason = decide(metrics(map=0.9), metrics("starter-1", map=0.5), dropped=["people", "person"])
    assert not passed and "drops 2 tags" in reason and "person" in reason and "--allow-dropped-tags" in reason
    assert decide(metrics(map=0.9), metrics("starter-1", map=0.5), dropped=["person"], allow_dropped_tags=True)[0]


def test_the_comparison_covers_every_checkable_tag_of_either_model(tmp_path):
    """A tag one model lacks scores 0 for it (and is never emitted): the champion's ``person``
    counts against a challenger that cannot tag people."""
    examples = [
        ds.Example(f"{i:064x}", f"images/{i}.jpg", tags, "test")
        for i, tags in enumerate([("cat", "person"), ("person",), ("cat",), ("dog",)])
    ]
    data = ds.write(tmp_path / "dataset", examples)
    tags = ("cat", "dog")
    challenger = Scored("2", Vocabulary(tags, np.array([0.5, 0.5]), ("learned",) * 2, {}), np.array(
        [[0.9, 0.1], [0.1, 0.1], [0.8, 0.2], [0.1, 0.9]], np.float32))
    champion = Scored("1", Vocabulary(("cat", "person"), np.array([0.5, 0.5]), ("learned",) * 2, {}), np.array(
        [[0.9, 0.9], [0.1, 0.8], [0.8, 0.1], [0.1, 0.1]], np.float32))
    compared, y, (mine, theirs) = compare_on([challenger, champion], data)
    assert compared == ["cat", "dog", "person"]  # the labels check all three
    assert y[:, compared.index("person")].tolist() == [1, 1, 0, 0]
    assert mine["per_tag"]["person"]["precision"] == 0.0 and theirs["per_tag"]["person"]["recall"] == 1.0
    assert mine["per_tag"]["dog"]["recall"] == 1.0 and theirs["per_tag"]["dog"]["recall"] == 0.0
    assert champion.emitted_tags - challenger.emitted_tags == {"person"}
