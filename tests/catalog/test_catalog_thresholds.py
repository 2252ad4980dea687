"""Thresholds: what each threshold would keep among the stored machine scores, and the one in force."""

import numpy as np
import pytest

from catalog import services, thresholds
from pipelines import tagger
from pipelines.results import TagScore
from pipelines.vocabulary import Vocabulary

pytestmark = pytest.mark.django_db


@pytest.fixture
def cats(image, user):
    """Five assets with a machine ``cat`` score each (one accepted, one rejected), one human ``cat``."""
    scores = [0.12, 0.37, 0.5, 0.81, 0.95]
    assets = []
    for seed, score in enumerate(scores):
        asset, _ = services.ingest(image("red", seed=seed), f"cat{seed}.png")
        services.record_tags(asset, [TagScore("cat", score), TagScore("animal", 0.99)], "net", "1")
        assets.append(asset)
    services.review(assets[3], "cat", "accept", user)
    services.review(assets[1], "cat", "reject", user)
    human, _ = services.ingest(image("blue", seed=9), "drawing.png")
    services.review(human, "cat", "add", user)  # a person's tag, not a machine score: not counted
    return assets


def test_the_table_counts_assets_kept_at_each_step(cats):
    rows = {row.threshold: row for row in thresholds.table("cat")}
    assert list(rows) == [round(0.05 * i, 2) for i in range(1, 20)]
    assert rows[0.05] == thresholds.Row(0.05, 5, 1, 1)
    assert rows[0.35] == thresholds.Row(0.35, 4, 1, 1)
    assert rows[0.4] == thresholds.Row(0.4, 3, 1, 0)
    assert rows[0.5] == thresholds.Row(0.5, 3, 1, 0)  # a score equal to the threshold is kept
    assert rows[0.85] == thresholds.Row(0.85, 1, 0, 0)
    assert thresholds.table("nothing")[0] == thresholds.Row(0.05, 0, 0, 0)


def test_kept_at_any_threshold(cats):
    assert [thresholds.kept("cat", t) for t in (0.0, 0.37, 0.371, 0.9, 1.0)] == [5, 4, 3, 1, 0]


def test_scored_tags_are_those_with_machine_scores(cats):
    assert thresholds.scored_tags() == ["animal", "cat"]


def test_the_current_threshold_comes_from_the_tag_map_files(monkeypatch, tmp_path):
    monkeypatch.delenv("IMGTAG_TAGMAP_DIR", raising=False)
    animal = thresholds.current("animal")
    assert animal.value == 0.5 and animal.model == "efficientnet-lite0-imagenet:pretrained"
    assert "tag_thresholds.csv" in animal.where
    assert thresholds.current("cat").value == 0.35  # a broader tag without its own row: the ** default
    assert thresholds.current("egyptian cat").value == 0.25  # a class tag: the * default
    assert thresholds.current("no such tag").value is None


def test_the_current_threshold_of_a_promoted_model_comes_from_its_vocabulary(monkeypatch, tmp_path):
    Vocabulary(("cat", "sofa"), np.array([0.42, 0.7]), ("learned", "learned"), {}).write(
        tmp_path / "7" / "assets"
    )
    champion = tagger.CurrentModel("imgtag-tagger", "7", tmp_path / "7")
    monkeypatch.setattr(tagger, "current_model", lambda settings=None: champion)
    current = thresholds.current("cat")
    assert (current.value, current.model) == (0.42, "imgtag-tagger:7")
    assert str(tmp_path / "7" / "assets" / "tags.csv") in current.where
