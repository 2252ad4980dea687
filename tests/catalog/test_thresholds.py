"""Thresholds: what each threshold would keep among the stored machine scores, the one in force, and
the thresholds people set, which the next tagging applies."""

import dataclasses

import numpy as np
import pytest
from django.db import IntegrityError, transaction

from catalog import services, thresholds
from catalog.models import AssetTag, Tag, TagThreshold
from core import broker
from core.results import TagScore
from core.vocabulary import Vocabulary
from pipelines.tagging import worker
from serving import current

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


def test_the_current_threshold_comes_from_the_tag_map_files(tag_map, settings):
    animal = thresholds.current("animal", settings.IMGTAG)
    assert animal.value == 0.5 and animal.model == "efficientnet-lite0-imagenet:pretrained"
    assert "tag_thresholds.csv" in animal.where
    assert (
        thresholds.current("cat", settings.IMGTAG).value == 0.35
    )  # a broader tag without its own row: the ** default
    assert thresholds.current("egyptian cat", settings.IMGTAG).value == 0.25  # a class tag: the * default
    assert thresholds.current("no such tag", settings.IMGTAG).value is None


def test_a_tag_turned_off_by_calibration_shows_off_and_can_be_turned_on(tag_map, user, settings):
    from rest_framework.test import APIClient

    tabby = thresholds.current("tabby cat", settings.IMGTAG)
    assert tabby.off and tabby.shown == "off" and tabby.default_shown == "off"
    api = APIClient()
    api.force_authenticate(user)
    answer = api.get("/api/tags/tabby cat/threshold/")
    assert answer.status_code == 200, answer.content
    assert (answer.json()["threshold"], answer.json()["default"], answer.json()["off"]) == (None, None, True)
    services.set_threshold("tabby cat", "efficientnet-lite0-imagenet", "pretrained", 0.6, user)
    answer = api.get("/api/tags/tabby cat/threshold/").json()
    assert (answer["threshold"], answer["default"], answer["off"]) == (0.6, None, False)


def test_the_starter_models_thresholds_are_its_calibrated_ones(settings):
    from serving import starter

    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, tagmap_dir=None, starter=True)
    person = thresholds.current("person", settings.IMGTAG)
    assert person.model_name == starter.MODEL_NAME
    calibrated = starter.load_head().thresholds["person"]
    assert person.value == pytest.approx(calibrated, abs=1e-4) and not person.off


def test_the_current_threshold_of_a_promoted_model_comes_from_its_vocabulary(monkeypatch, tmp_path, settings):
    Vocabulary(("cat", "sofa"), np.array([0.42, 0.7]), ("learned", "learned"), {}).write(
        tmp_path / "7" / "assets"
    )
    (tmp_path / "7" / "assets" / "model.json").write_text('{"image_size": 224}')
    promotion = type("Promotion", (), {"version": 7, "path": str(tmp_path / "7")})()
    monkeypatch.setattr(current.ModelRepository, "current", lambda self: promotion)
    in_force = thresholds.current("cat", settings.IMGTAG)
    assert (in_force.value, in_force.model) == (0.42, "imgtag-tagger:7")
    assert str(tmp_path / "7" / "assets" / "tags.csv") in in_force.where


# ---------------------------------------------------------------------------- thresholds people set


def test_overrides_are_per_model_and_read_in_one_query(user, django_assert_num_queries):
    services.set_threshold("cat", "net", "1", 0.2, user)
    services.set_threshold("Egyptian  Cat", "net", "1", 0.9)
    services.set_threshold("cat", "net", "2", 0.6, user)  # another model's scores: its own threshold
    with django_assert_num_queries(1):
        assert services.threshold_overrides("net", "1") == {"cat": 0.2, "egyptian cat": 0.9}
    assert services.threshold_overrides("net", "2") == {"cat": 0.6}
    assert services.threshold_overrides("other", "1") == {}
    services.set_threshold("cat", "net", "1", 0.25, user)  # replaces
    assert TagThreshold.objects.filter(model_name="net", model_version="1").count() == 2
    assert services.reset_threshold("cat", "net", "1") is True
    assert services.reset_threshold("cat", "net", "1") is False
    assert services.threshold_overrides("net", "1") == {"egyptian cat": 0.9}


@pytest.mark.parametrize("value", [0.0, -0.1, 1.01, float("nan")])
def test_a_threshold_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match="above 0 and at most 1"):
        services.set_threshold("cat", "net", "1", value)
    assert not TagThreshold.objects.exists()


def test_the_database_refuses_a_threshold_outside_0_1():
    tag = Tag.objects.create(name="cat")
    TagThreshold.objects.create(tag=tag, model_name="net", model_version="1", threshold=1.0)
    with pytest.raises(IntegrityError), transaction.atomic():
        TagThreshold.objects.create(tag=tag, model_name="net", model_version="2", threshold=0.0)
    with pytest.raises(IntegrityError), transaction.atomic():
        TagThreshold.objects.create(tag=tag, model_name="net", model_version="1", threshold=0.5)  # twice


def test_the_threshold_in_force_is_the_one_set_for_the_current_model(tag_map, user, settings):
    services.set_threshold("animal", "efficientnet-lite0-imagenet", "pretrained", 0.8, user)
    services.set_threshold("cat", "efficientnet-lite0-imagenet", "other", 0.1, user)
    animal = thresholds.current("animal", settings.IMGTAG)
    assert (animal.value, animal.default, animal.override.updated_by) == (0.8, 0.5, user)
    cat = thresholds.current("cat", settings.IMGTAG)  # set for another version of the model only
    assert (cat.value, cat.default, cat.override) == (0.35, 0.35, None)
    assert (cat.model_name, cat.model_version) == ("efficientnet-lite0-imagenet", "pretrained")


@pytest.fixture
def red(image):
    return services.ingest(image("red"), "red.png")[0]


def machine_tags(asset) -> dict[str, float]:
    rows = AssetTag.objects.filter(asset=asset, source=AssetTag.Source.MODEL).select_related("tag")
    return {row.tag.name: row.score for row in rows}


def test_the_next_tagging_uses_the_thresholds_set_for_the_taggers_model(red, fake_tagger, user):
    services.tag_assets_in_process([red])
    assert machine_tags(red) == {"animal": 0.95, "cat": 0.93, "egyptian cat": 0.81}  # dog 0.3 < 0.5

    services.set_threshold("dog", "fake-colour", "1", 0.25, user)  # lower: dog is kept
    services.set_threshold("egyptian cat", "fake-colour", "1", 0.85, user)  # higher: dropped
    services.set_threshold("cat", "fake-colour", "2", 0.99, user)  # another model version: ignored
    services.tag_assets_in_process([red])
    assert machine_tags(red) == {"animal": 0.95, "cat": 0.93, "dog": 0.3}
    assert fake_tagger.labels.thresholds.tolist() == [0.5] * 7  # the process-wide tagger is untouched

    services.reset_threshold("dog", "fake-colour", "1")
    services.tag_assets_in_process([red])
    assert machine_tags(red) == {"animal": 0.95, "cat": 0.93}


def test_the_queue_workers_batches_use_the_thresholds_set(red, image, fake_tagger, user):
    services.set_threshold("dog", "fake-colour", "1", 0.25, user)
    deliveries = [
        (None, None, broker.TaggingMessage.for_asset(red).encode()),
        (None, None, b"not json"),
    ]
    outcome = worker.tag_batch(fake_tagger, deliveries)
    assert outcome[0] == ("", "") and outcome[1][0] == "bad_message"
    assert machine_tags(red) == {"animal": 0.95, "cat": 0.93, "egyptian cat": 0.81, "dog": 0.3}
    assert str(AssetTag.objects.filter(asset=red).first().model_version) == "fake-colour:1"


def test_a_common_tag_is_counted_on_the_sample_unless_asked_exactly(monkeypatch, user):
    """Over SAMPLE_ABOVE machine scores, the table and the live count come from the catalog's
    sample (the tag rows of 1 asset in 64), scaled up and marked estimated; exact=True counts
    every row."""
    from catalog.facets import about
    from catalog.models import SAMPLE_EVERY, SAMPLE_RUN, Asset

    monkeypatch.setattr(thresholds, "SAMPLE_ABOVE", 1000)
    assets = Asset.objects.bulk_create(
        Asset(
            sha256=f"{i:064x}",
            uri=f"file:///{i}",
            filename=f"{i}.jpg",
            size=1,
            width=1,
            height=1,
            format="JPEG",
        )
        for i in range(2048)
    )
    cat = Tag.objects.create(name="cat")
    scores = {asset.pk: round(0.05 + 0.9 * ((asset.pk * 7919) % 1000) / 1000, 3) for asset in assets}
    AssetTag.objects.bulk_create(
        AssetTag(
            asset_id=pk,
            tag=cat,
            score=score,
            source="model",
            review="rejected" if pk % 5 == 0 else "suggested",
        )
        for pk, score in scores.items()
    )
    sampled = {pk: score for pk, score in scores.items() if pk // SAMPLE_RUN % SAMPLE_EVERY == 0}
    assert sampled and thresholds.sampled("cat")

    estimated = {row.threshold: row for row in thresholds.table("cat", exact=False)}
    exact = {row.threshold: row for row in thresholds.table("cat")}
    for t in (0.05, 0.5, 0.9):
        in_sample = sum(score >= t for score in sampled.values())
        rejected = sum(score >= t and pk % 5 == 0 for pk, score in sampled.items())
        assert estimated[t] == thresholds.Row(t, about(in_sample * 64), 0, about(rejected * 64), True)
        assert exact[t] == thresholds.Row(
            t,
            sum(s >= t for s in scores.values()),
            0,
            sum(s >= t and pk % 5 == 0 for pk, s in scores.items()),
        )
    assert thresholds.kept("cat", 0.5, exact=False) == about(64 * sum(s >= 0.5 for s in sampled.values()))
    assert thresholds.kept("cat", 0.5) == sum(s >= 0.5 for s in scores.values())
    assert estimated[0.5].shown.startswith("≈ ") and not exact[0.5].shown.startswith("≈")
