"""The per-tag asset counts the database keeps as tags are written (:mod:`catalog.counts`) match
an exact count of the tag rows after every kind of write: a worker's tags, a retag, reviews,
bulk tagging, the admin's edits, deletes of assets and tags; and the tag list, autocomplete and
the thresholds page read them. On both databases (``make test`` runs this file on each)."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from catalog import counts, services
from catalog.models import Asset, AssetTag, Tag, TagCount, TagCountDelta
from core.results import TagScore
from tests.catalog.conftest import fake_labels
from tests.catalog.test_facets_scale import fake_assets


def shown() -> dict[str, int]:
    """``{tag: asset count}`` as the tag list and autocomplete read it (non-zero only)."""
    rows = counts.annotate(Tag.objects.all()).values_list("name", "asset_count")
    return {name: n for name, n in rows if n}


def exact() -> dict[str, int]:
    """``{tag: assets carrying it, not rejected}`` counted from the tag rows."""
    found: dict[str, int] = {}
    for name in AssetTag.objects.exclude(review=AssetTag.Review.REJECTED).values_list("tag__name", flat=True):
        found[name] = found.get(name, 0) + 1
    return found


def searched() -> dict[str, int]:
    """``{tag: asset count}`` as a search reads its tags' counts (non-zero only)."""
    found = counts.of_tags(Tag.objects.values_list("name", flat=True))
    return {name: n for name, (_, n) in found.items() if n}


def check() -> None:
    assert counts.mismatches() == {}
    assert shown() == exact()
    assert searched() == shown()


def tags(**scores: float) -> list[TagScore]:
    return [TagScore(name.replace("_", " "), score) for name, score in scores.items()]


@pytest.fixture
def assets(db):
    return fake_assets(6)


def test_counts_follow_writes_retags_reviews_and_deletes(assets, user):
    a, b, c, d, e, f = assets
    services.record_tags_batch(
        [(a, tags(cat=0.9, animal=0.95)), (b, tags(cat=0.8, dog=0.6)), (c, tags(cat=0.7))],
        "net",
        "1",
        parents=fake_labels().parents,
    )
    check()
    assert shown() == {"cat": 3, "animal": 1, "dog": 1}

    # a retag by another model: rescored, one tag dropped, one new
    services.record_tags_batch([(b, tags(cat=0.85, coffee_mug=0.7)), (d, tags(dog=0.9))], "net", "2")
    check()
    assert shown() == {"cat": 3, "animal": 1, "dog": 1, "coffee mug": 1}

    # reviews: a reject takes the tag off the asset's count, an accept of it puts it back,
    # an added tag counts (and is a human's: it is not a scored one)
    services.review(a, "cat", "reject", user)
    check()
    assert shown()["cat"] == 2
    services.review(a, "cat", "accept", user)
    services.review(c, "sofa", "add", user)
    services.review(b, "dog", "add", user)
    check()
    assert shown()["cat"] == 3 and shown()["sofa"] == 1
    assert counts.annotate(Tag.objects.filter(name="sofa")).get().machine_count == 0

    services.add_tag_to_assets([e.pk, f.pk, a.pk], "holiday", user)
    check()
    assert shown()["holiday"] == 3

    # a retag never touches what people decided: the rejected and the added stay as they are
    services.review(d, "dog", "reject", user)
    services.record_tags_batch([(d, tags(cat=0.6))], "net", "3")
    check()

    # deletes: an asset with its tags (a cascade), then a tag with its rows
    Asset.objects.filter(pk=b.pk).delete()
    check()
    Tag.objects.filter(name="holiday").delete()
    check()
    assert "holiday" not in shown()


def test_counts_follow_any_write_to_the_tag_rows(assets):
    """Not only the services': bulk inserts, queryset updates and deletes (the admin, a script)."""
    cat, dog = Tag.objects.create(name="cat"), Tag.objects.create(name="dog")
    AssetTag.objects.bulk_create(
        AssetTag(asset=asset, tag=tag, score=0.9, source="model") for asset in assets for tag in (cat, dog)
    )
    check()
    AssetTag.objects.filter(asset__in=assets[:2], tag=cat).update(review=AssetTag.Review.REJECTED)
    AssetTag.objects.filter(asset=assets[2], tag=dog).update(source=AssetTag.Source.HUMAN)
    puppy = Tag.objects.create(name="puppy")
    AssetTag.objects.filter(asset=assets[3], tag=dog).update(tag=puppy, score=0.5)  # moved to another tag
    check()
    assert shown() == {"cat": 4, "dog": 5, "puppy": 1}
    assert counts.annotate(Tag.objects.filter(name="dog")).get().machine_count == 4
    AssetTag.objects.filter(score__gte=0.9, tag=dog).delete()
    check()
    assert shown() == {"cat": 4, "puppy": 1}


def test_folding_moves_the_changes_and_keeps_the_counts(assets):
    services.record_tags_batch([(asset, tags(cat=0.9, dog=0.5)) for asset in assets], "net", "1")
    services.record_tags_batch([(asset, tags(cat=0.9)) for asset in assets[:2]], "net", "1")
    waiting = TagCountDelta.objects.count()
    folded = counts.fold()
    check()
    assert shown() == {"cat": 6, "dog": 4}
    assert TagCountDelta.objects.count() == 0
    if connection.vendor == "postgresql":
        assert waiting > 0 and folded > 0  # each statement left its change per tag
        assert dict(TagCount.objects.values_list("tag__name", "assets")) == {"cat": 6, "dog": 4}
    else:
        assert waiting == folded == 0  # SQLite's row triggers count at once


@pytest.mark.django_db(transaction=True)
def test_writers_fold_after_they_commit():
    asset = fake_assets(1)[0]
    services.record_tags_batch([(asset, tags(cat=0.9))], "net", "1")
    assert TagCountDelta.objects.count() == 0  # folded once the commit was done
    assert dict(TagCount.objects.values_list("tag__name", "assets")) == {"cat": 1}


@pytest.mark.django_db(transaction=True)
def test_workers_committing_the_same_tags_at_once_neither_wait_nor_miscount():
    """Two workers tag assets with the same tags in opposite orders, in transactions held open
    together: on PostgreSQL neither waits for the other (the triggers only append), so both
    commit and the counts are exact."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    earlier, first, second = fake_assets(3)
    names = ["cat", "dog", "animal", "cup"]
    # the tags and the model exist (creating the same new tag name at once waits, as any unique key)
    services.record_tags_batch([(earlier, [TagScore(n, 0.9) for n in names])], "net", "1")
    both_written = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def worker(asset, order):
        try:
            with transaction.atomic():
                services.record_tags_batch([(asset, [TagScore(n, 0.9) for n in order])], "net", "1")
                both_written.wait()  # both hold their uncommitted rows (and any row locks) here
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=worker, args=(first, names)),
        threading.Thread(target=worker, args=(second, names[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    check()
    assert shown() == dict.fromkeys(names, 3)


def test_the_tag_list_and_autocomplete_read_the_kept_counts(assets, reader, django_assert_max_num_queries):
    services.record_tags_batch(
        [(asset, tags(cat=0.9) if i < 4 else tags(car=0.8, cat=0.6)) for i, asset in enumerate(assets)],
        "net",
        "1",
    )
    services.record_tags_batch([(assets[0], tags(carrot=0.7))], "net", "1")
    answer = reader.get("/api/tags/").json()
    assert [(t["name"], t["asset_count"]) for t in answer["results"]] == [
        ("cat", 5),
        ("car", 2),
        ("carrot", 1),
    ]
    with django_assert_max_num_queries(8):  # auth, the page of tags, its count, their parents
        suggestions = reader.get("/api/tags/", {"prefix": "CAR", "page_size": 5}).json()
    assert [(t["name"], t["asset_count"]) for t in suggestions["results"]] == [("car", 2), ("carrot", 1)]
    assert reader.get("/api/tags/", {"prefix": "ca t"}).json()["results"] == []


def test_the_tagcounts_command_checks_and_recounts(assets, capsys):
    services.record_tags_batch([(asset, tags(cat=0.9)) for asset in assets], "net", "1")
    call_command("tagcounts")
    assert "match" in capsys.readouterr().out
    counts.fold()  # in this test's transaction nothing commits, so nothing folded yet
    counted = TagCount.objects.get(tag__name="cat")
    TagCount.objects.filter(pk=counted.pk).update(assets=1)  # as if something bypassed the triggers
    with pytest.raises(CommandError, match="--recount"):
        call_command("tagcounts")
    assert "cat: kept 1 assets" in capsys.readouterr().out
    call_command("tagcounts", "--recount")
    check()


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_tags_a_catalog_already_has():
    executor = MigrationExecutor(connection)
    executor.migrate([("catalog", "0006_scale_indexes")])
    old = MigrationExecutor(connection).loader.project_state([("catalog", "0006_scale_indexes")]).apps
    Asset_, Tag_, AssetTag_ = (old.get_model("catalog", name) for name in ("Asset", "Tag", "AssetTag"))
    cat, dog = Tag_.objects.create(name="cat"), Tag_.objects.create(name="dog")
    for i in range(3):
        asset = Asset_.objects.create(
            sha256=f"{i:064x}",
            uri=f"file:///{i}",
            filename=f"{i}.jpg",
            size=1,
            width=1,
            height=1,
            format="JPEG",
        )
        AssetTag_.objects.create(asset=asset, tag=cat, score=0.8, source="model")
        AssetTag_.objects.create(
            asset=asset, tag=dog, score=0.8, source="model", review="rejected" if i else "suggested"
        )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    check()
    assert shown() == {"cat": 3, "dog": 1}
