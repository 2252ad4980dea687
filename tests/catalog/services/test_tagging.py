"""Machine tags: idempotent upserts that never override a person; the in-process tagging path."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalog import services
from catalog.models import Asset, AssetTag, ModelVersion, Tag
from core.results import TagScore

pytestmark = pytest.mark.django_db

CAT = [TagScore("cat", 0.93), TagScore("egyptian cat", 0.81), TagScore("animal", 0.95)]


@pytest.fixture
def asset(image):
    return services.ingest(image("red"), "chelsea.png")[0]


def rows(asset) -> dict[str, tuple]:
    return {
        r.tag.name: (r.score, r.source, r.review, str(r.model_version) if r.model_version else None)
        for r in AssetTag.objects.filter(asset=asset).select_related("tag", "model_version")
    }


def record(asset, tags, version="1"):
    return services.record_tags(
        asset,
        tags,
        "net",
        version,
        parents=lambda t: {"egyptian cat": ["cat"], "cat": ["animal"]}.get(t, []),
    )


def test_record_tags_writes_suggested_machine_tags_and_marks_the_asset_tagged(asset):
    changes = record(asset, CAT)
    assert changes == services.TagChanges(created=3)
    assert rows(asset) == {
        "cat": (0.93, "model", "suggested", "net:1"),
        "egyptian cat": (0.81, "model", "suggested", "net:1"),
        "animal": (0.95, "model", "suggested", "net:1"),
    }
    asset.refresh_from_db()
    assert (asset.status, asset.error) == ("tagged", "")


def test_new_tags_are_linked_to_their_parents_which_are_created_as_needed(asset):
    record(asset, [TagScore("egyptian cat", 0.8)])
    assert [t.name for t in Tag.objects.get(name="egyptian cat").parents.all()] == ["cat"]
    assert [t.name for t in Tag.objects.get(name="cat").parents.all()] == ["animal"]
    assert set(rows(asset)) == {"egyptian cat"}  # parents exist as tags, not as tags on this asset


def test_the_tag_map_itself_can_be_passed_as_parents(asset, fake_tagger):
    services.record_tags(asset, [TagScore("coffee mug", 0.7)], "net", "1", parents=fake_tagger.labels)
    assert [t.name for t in Tag.objects.get(name="cup").parents.all()] == ["container"]


def test_recording_the_same_tags_twice_changes_nothing(asset):
    record(asset, CAT)
    asset.refresh_from_db()
    before = (
        asset.updated_at,
        list(AssetTag.objects.order_by("pk").values()),
        Tag.objects.count(),
        ModelVersion.objects.count(),
    )
    assert record(asset, CAT) == services.TagChanges()
    again = Asset.objects.get(pk=asset.pk)  # a fresh instance, as a redelivered message would have
    assert services.record_tags(again, CAT, "net", "1") == services.TagChanges()
    asset.refresh_from_db()
    after = (
        asset.updated_at,
        list(AssetTag.objects.order_by("pk").values()),
        Tag.objects.count(),
        ModelVersion.objects.count(),
    )
    assert after == before


def test_a_newer_model_rescores_suggestions_and_removes_those_it_no_longer_predicts(asset):
    record(asset, CAT, version="1")
    changes = record(
        asset,
        [TagScore("cat", 0.97), TagScore("animal", 0.99), TagScore("tabby", 0.5)],
        version="2",
    )
    assert changes == services.TagChanges(created=1, updated=2, removed=1)
    assert rows(asset) == {
        "cat": (0.97, "model", "suggested", "net:2"),
        "animal": (0.99, "model", "suggested", "net:2"),
        "tabby": (0.5, "model", "suggested", "net:2"),
    }


def test_retagging_never_changes_or_removes_what_a_person_decided(asset, user):
    record(asset, CAT, version="1")
    services.review(asset, "cat", "accept", user)
    services.review(asset, "egyptian cat", "reject", user)
    services.review(asset, "sofa", "add", user)
    decided = {name: value for name, value in rows(asset).items() if name != "animal"}

    record(
        asset,
        [
            TagScore("dog", 0.9),
            TagScore("cat", 0.2),
            TagScore("egyptian cat", 0.99),
            TagScore("sofa", 0.4),
        ],
        version="2",
    )
    now = rows(asset)
    assert {name: now[name] for name in decided} == decided
    assert now["dog"] == (0.9, "model", "suggested", "net:2")
    assert "animal" not in now  # a suggestion from the old run that the new one does not make


def test_duplicate_names_keep_the_best_score_and_names_are_stored_lowercase(asset):
    record(asset, [TagScore("Coffee  Mug", 0.4), TagScore("coffee mug", 0.6)])
    assert rows(asset) == {"coffee mug": (0.6, "model", "suggested", "net:1")}


@pytest.mark.parametrize("bad", [TagScore("cat", 1.5), TagScore("cat", -0.1), TagScore("  ", 0.5)])
def test_bad_tags_are_refused_and_nothing_is_written(asset, bad):
    with pytest.raises(ValueError):
        record(asset, [TagScore("dog", 0.5), bad])
    assert rows(asset) == {}


def test_mark_failed_keeps_the_error_until_tags_are_recorded(asset):
    services.mark_failed(asset, "chelsea.png: the PNG data could not be decoded")
    asset.refresh_from_db()
    assert (asset.status, asset.error) == (
        "failed",
        "chelsea.png: the PNG data could not be decoded",
    )
    record(asset, CAT)
    asset.refresh_from_db()
    assert (asset.status, asset.error) == ("tagged", "")


def test_a_batch_looks_up_each_tag_once(image):
    assets = [services.ingest(image("red", seed=i), f"{i}.png")[0] for i in range(3)]
    with transaction.atomic():
        record(assets[0], CAT)
        with CaptureQueriesContext(connection) as later:
            record(assets[1], CAT)
            record(assets[2], CAT)
    assert not [
        q
        for q in later.captured_queries
        if '"catalog_tag"' in q["sql"] or '"catalog_modelversion"' in q["sql"]
    ]
    assert AssetTag.objects.count() == 9


@pytest.mark.django_db(transaction=True)
def test_ids_learnt_in_a_rolled_back_batch_are_not_reused(image):
    first = services.ingest(image("red", seed=1), "1.png")[0]
    with pytest.raises(RuntimeError), transaction.atomic():
        record(first, CAT)
        raise RuntimeError("the batch fails after the tags were written")
    assert Tag.objects.count() == 0 and ModelVersion.objects.count() == 0
    second = services.ingest(image("red", seed=2), "2.png")[0]
    with transaction.atomic():
        record(second, CAT)  # would violate a foreign key if it reused the rolled-back ids
        record(first, CAT)
    assert AssetTag.objects.count() == 6 and Tag.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_ids_learnt_in_a_rolled_back_savepoint_are_not_reused(image):
    first = services.ingest(image("red", seed=1), "1.png")[0]
    with transaction.atomic():
        record(first, [TagScore("animal", 0.9)])
        with pytest.raises(RuntimeError), transaction.atomic():
            record(first, [TagScore("dog", 0.9)])
            raise RuntimeError("rolled back to the savepoint")
        record(first, [TagScore("dog", 0.8), TagScore("animal", 0.9)])
    assert rows(first) == {
        "dog": (0.8, "model", "suggested", "net:1"),
        "animal": (0.9, "model", "suggested", "net:1"),
    }


def test_tag_assets_in_process_records_tags_and_failures(image, fake_tagger):
    good = services.ingest(image("blue"), "mug.png")[0]
    damaged_png = image("red", seed=5)[:120]  # the header is fine, the pixel data is cut off
    broken = services.ingest(damaged_png, "cut.png")[0]
    results = services.tag_assets_in_process([good, broken])
    assert [r.ok for r in results] == [True, False]
    good.refresh_from_db()
    broken.refresh_from_db()
    assert good.status == "tagged" and set(rows(good)) == {"cup", "coffee mug", "container"}
    assert rows(good)["cup"][3] == "fake-colour:1"
    assert [t.name for t in Tag.objects.get(name="coffee mug").parents.all()] == ["cup"]
    assert broken.status == "failed" and "cut.png" in broken.error


def test_an_original_missing_from_storage_marks_the_asset_failed(image, fake_tagger, stored_files):
    asset = services.ingest(image("blue"), "gone.png")[0]
    stored_files()[0].unlink()
    assert services.tag_assets_in_process([asset]) == []
    asset.refresh_from_db()
    assert (
        asset.status == "failed"
        and "missing from storage" in asset.error
        and "upload it again" in asset.error
    )


def test_review_accepts_rejects_and_adds(asset, user):
    record(asset, CAT)
    assert services.review(asset, "Cat", "accept", user).review == "accepted"
    rejected = services.review(asset, "animal", "reject", user)
    assert (rejected.review, rejected.reviewed_by) == ("rejected", user)
    added = services.review(asset, "Sofa", "add", user)
    assert (added.tag.name, added.score, added.source, added.review, added.model_version) == (
        "sofa",
        1.0,
        "human",
        "accepted",
        None,
    )
    readded = services.review(asset, "egyptian cat", "add", user)  # adding a suggested tag accepts it
    assert (readded.source, readded.review, readded.score) == ("model", "accepted", 0.81)


def test_review_of_a_tag_the_asset_lacks_says_how_to_add_it(asset, user):
    with pytest.raises(services.TagNotOnAsset, match="use the action 'add'"):
        services.review(asset, "dog", "accept", user)
    with pytest.raises(ValueError, match="accept, reject, add"):
        services.review(asset, "dog", "maybe", user)


def test_asset_summary_leaves_rejected_tags_out(asset, user):
    record(asset, CAT)
    services.review(asset, "animal", "reject", user)
    summary = services.asset_summary(asset)
    assert [t["name"] for t in summary["tags"]] == ["cat", "egyptian cat"]
    assert summary["filename"] == "chelsea.png" and summary["tags"][0]["model_version"] == "net:1"


def test_a_whole_batch_is_written_in_a_few_queries_whatever_its_size(image):
    record(services.ingest(image("green"), "first.png")[0], CAT)  # the tags and model version exist

    def batch_queries(n: int, seed: int) -> int:
        assets = [services.ingest(image("red", seed=seed + i), f"{i}.png")[0] for i in range(n)]
        with CaptureQueriesContext(connection) as queries:
            changes = services.record_tags_batch([(a, CAT) for a in assets], "net", "1")
        assert changes == services.TagChanges(created=3 * n)
        return len(queries)

    assert batch_queries(30, seed=1000) == batch_queries(3, seed=2000)


def test_a_batch_gives_the_same_rows_as_one_call_per_asset(image, user):
    one_by_one = [services.ingest(image("red", seed=i), f"{i}.png")[0] for i in range(3)]
    batched = [services.ingest(image("blue", seed=i), f"{i}.png")[0] for i in range(3)]
    runs = [(CAT, "1"), ([TagScore("cat", 0.5), TagScore("dog", 0.7)], "2")]
    for tags, version in runs:
        for asset in one_by_one:
            record(asset, tags, version)
        services.record_tags_batch([(asset, tags) for asset in batched], "net", version)
        services.review(one_by_one[0], "cat", "reject", user)
        services.review(batched[0], "cat", "reject", user)
    assert [rows(a) for a in one_by_one] == [rows(a) for a in batched]
    assert {a.status for a in batched} == {"tagged"}


def test_in_a_batch_the_last_tags_given_for_an_asset_count(asset):
    services.record_tags_batch([(asset, CAT), (asset, [TagScore("dog", 0.6)])], "net", "1")
    assert rows(asset) == {"dog": (0.6, "model", "suggested", "net:1")}
    assert services.record_tags_batch([], "net", "1") == services.TagChanges()
