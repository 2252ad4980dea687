"""A large catalog stays fast by not reading all of a large result: counts and facet counts are
exact up to a limit and estimates from the catalog's sample above it (and say so), pages go by
keyset, and the scale migration applies to a catalog that already holds assets.

The figures at a million assets are in ``tests/bench/bench_scale.py``; these tests pin what a
user sees, on a catalog of a few thousand fake assets with the exact-count limit lowered.
"""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from catalog import facets, services
from catalog.models import IN_SMALL_SAMPLE, Asset, AssetTag, ModelVersion, Tag
from tests.catalog.htmlquery import parse as parse_html

ASSETS = 8_192  # 128 in the sample (1 in 64): an estimate within about 10% (one sigma)
LIMIT = 500  # the exact-count limit in these tests


def fake_assets(n: int) -> list[Asset]:
    """``n`` tagged assets without originals, oldest first."""
    assets = Asset.objects.bulk_create(
        Asset(
            sha256=f"{i:064x}",
            uri=f"file:///nowhere/{i}",
            filename=f"{i}.jpg",
            size=1,
            width=1,
            height=1,
            format="JPEG",
            status=Asset.Status.TAGGED,
        )
        for i in range(n)
    )
    return sorted(assets, key=lambda a: a.pk)


def fake_catalog(n: int = ASSETS) -> dict[str, int]:
    """``n`` tagged assets without originals: all have "thing", every third "third", the first
    200 "rare"; returns how many assets have each tag."""
    model = ModelVersion.objects.create(name="net", version="1")
    tags = {name: Tag.objects.create(name=name) for name in ("thing", "third", "rare")}
    assets = fake_assets(n)
    rows, having = [], {"thing": 0, "third": 0, "rare": 0}
    for i, asset in enumerate(assets):
        for name, on in (("thing", True), ("third", i % 3 == 0), ("rare", i < 200)):
            if on:
                rows.append(
                    AssetTag(asset=asset, tag=tags[name], score=0.9, source="model", model_version=model)
                )
                having[name] += 1
    AssetTag.objects.bulk_create(rows, batch_size=2_000)
    return having


@pytest.fixture
def large(db, monkeypatch):
    monkeypatch.setattr(facets, "EXACT_UP_TO", LIMIT)
    return fake_catalog()


def about_right(shown: str, truth: int, within: float = 0.3) -> bool:
    """``shown`` is an estimate ("≈ 2,700") within ``within`` of ``truth``."""
    match = re.fullmatch(r"≈ ([\d,]+)", shown.strip())
    return bool(match) and abs(int(match[1].replace(",", "")) - truth) <= within * truth


def test_a_small_result_is_counted_exactly(large):
    size = facets.result_size(facets.filter_assets(facets.Filters(q="rare")))
    assert size == facets.Size(200) and str(size) == "200"
    result = facets.facet_counts(facets.filter_assets(facets.Filters(q="rare")), facets.Filters(q="rare"))
    assert result.exact and {v.value: v.count for v in result.tag} == {"rare": 200, "thing": 200, "third": 67}


def test_a_large_result_is_estimated_from_the_sample_and_says_so(large, viewer):
    size = facets.result_size(Asset.objects.all())
    assert not size.exact and about_right(str(size), ASSETS)
    html = parse_html(viewer.get("/", {"q": "thing OR rare"}).content)
    assert about_right(html.find(testid="result-count").text.removesuffix(" assets"), large["thing"])
    shown = {
        link.get("data-value"): link.find(testid="facet-count").text
        for link in html.find_all(testid="facet-value")
    }
    assert about_right(shown["third"], large["third"]) and about_right(shown["net:1"], large["thing"])
    assert len(html.find_all(testid="estimate-note")) == 1


def test_one_tag_is_counted_exactly_from_the_kept_counts_whatever_its_size(large, viewer, reader):
    """A search for one tag alone (the query, or the only facet filter) is counted from the counts
    kept per tag: exact, with no pass over its assets; its facets are still the sample's."""
    for params in ({"q": "third"}, {"tag": "third"}):
        html = parse_html(viewer.get("/", params).content)
        assert html.find(testid="result-count").text == f"{large['third']:,} assets"
        shown = {
            v.get("data-value"): v.find(testid="facet-count").text
            for v in html.find_all(testid="facet-value")
        }
        assert about_right(shown["thing"], large["third"]) and len(html.find_all(testid="estimate-note")) == 1
    answer = reader.get("/api/assets/", {"q": '"THIRD"', "page_size": 10}).json()
    assert (answer["count"], answer["count_exact"]) == (large["third"], True)
    assert facets.kept_bounds("third", min_score=0.5).exact is None  # a score bound: counted from the rows
    assert facets.kept_bounds("third AND thing").exact is None
    assert facets.kept_bounds('"no such tag"').exact == 0


def test_exact_counts_on_demand(large, viewer):
    html = parse_html(viewer.get("/", {"q": "thing OR rare"}).content)
    exact = parse_html(viewer.get("/" + html.find(testid="exact-link").get("href")).content)
    assert exact.find(testid="result-count").text == f"{ASSETS:,} assets"
    shown = {
        v.get("data-value"): v.find(testid="facet-count").text for v in exact.find_all(testid="facet-value")
    }
    assert shown["third"] == f"{large['third']:,}" and exact.find_all(testid="estimate-note") == []
    # paging on keeps the exact counts
    assert "exact=1" in exact.find(testid="page-next").get("href")


def test_the_api_counts_exactly_up_to_its_limit_then_estimates(large, reader, monkeypatch):
    answer = reader.get("/api/assets/", {"q": "rare", "page_size": 10}).json()
    assert answer["count"] == large["rare"] and answer["count_exact"] is True
    answer = reader.get("/api/assets/", {"q": "third OR rare", "page_size": 10}).json()
    union = large["third"] + large["rare"] - 67  # the first 200 assets: 67 of them have "third"
    assert answer["count_exact"] is False and abs(answer["count"] - union) <= 0.3 * union
    # every page of a large result follows by cursor, newest first, none missed or repeated
    seen, url = [], "/api/assets/?q=rare&page_size=64"
    while url:
        page = reader.get(url).json()
        seen += [a["id"] for a in page["results"]]
        url = page["next"]
    assert len(seen) == 200 == len(set(seen)) and seen == sorted(seen, reverse=True)


def test_a_tag_the_catalog_does_not_have_matches_nothing_and_not_it_matches_everything(large):
    assert services.search("no such tag").count() == 0
    assert services.search('-"no such tag"').count() == ASSETS
    assert services.search('rare OR "no such tag"').count() == 200
    assert facets.filter_assets(facets.Filters(tag=("no such tag",))).count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_scale_migration_applies_to_a_catalog_that_holds_assets():
    executor = MigrationExecutor(connection)
    executor.migrate([("catalog", "0005_tagthreshold_roles")])
    old = MigrationExecutor(connection).loader.project_state([("catalog", "0005_tagthreshold_roles")]).apps
    asset = old.get_model("catalog", "Asset").objects.create(
        sha256="a" * 64, uri="file:///a", filename="a.jpg", size=1, width=1, height=1, format="JPEG"
    )
    tag = old.get_model("catalog", "Tag").objects.create(name="cat")
    old.get_model("catalog", "AssetTag").objects.create(asset=asset, tag=tag, score=0.8, source="model")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, "catalog_assettag")
    assert "catalog_assettag_tag_asset" in indexes and "catalog_assettag_tag_score" not in indexes
    assert [a.filename for a in services.search("cat")] == ["a.jpg"]


def test_the_top_tags_break_ties_by_name_as_the_database_does(db):
    """25 tags, several tied at the 20th place: the counts read in Python keep the same top 20
    as SQL's ORDER BY count DESC, name."""
    model = ModelVersion.objects.create(name="net", version="1")
    assets = fake_assets(30)
    tags = [Tag.objects.create(name=f"tag {25 - k:02d}") for k in range(25)]  # names against count order
    counts = [30 - k if k < 15 else 12 for k in range(25)]  # tags 16 to 25 tie at 12 assets
    AssetTag.objects.bulk_create(
        AssetTag(asset=asset, tag=tag, score=0.9, source="model", model_version=model)
        for tag, n in zip(tags, counts, strict=True)
        for asset in assets[:n]
    )
    everything = Asset.objects.all()
    read = facets.facet_counts(everything, facets.Filters())
    aggregated = facets.facet_counts(everything, facets.Filters(), size=facets.Size(30))
    assert [(v.value, v.count) for v in read.tag] == [(v.value, v.count) for v in aggregated.tag]
    assert len(read.tag) == facets.TOP_TAGS and read.tag[-1].count == 12


def test_a_model_filter_looks_each_asset_up_by_model_and_asset(large):
    """The model facet's EXISTS per asset reads (model version, asset): SQLite, without table
    statistics, used to take the model version's own index and read every row of that version
    for each asset (26 s for one gallery page of 20,000 assets in bench_catalog.py)."""
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL plans by its statistics; bench_scale.py --explain shows its plans")
    plan = facets.filter_assets(facets.Filters(tag=("rare",), model=("net:1",))).explain()
    assert "catalog_assettag_model_asset" in plan, plan


def test_the_whole_catalogs_sidebar_has_fresh_tag_counts_and_keeps_its_sampled_facets_a_minute(
    large, viewer, monkeypatch, user
):
    """The unfiltered gallery (every page of it): its top tags come from the counts kept per tag,
    so a new tag shows at once; on a catalog large enough for the small sample, the sampled
    facets (sources, review states, models, months) are kept by the process for a minute."""
    from django.core.cache import cache

    monkeypatch.setattr(facets, "ENOUGH", 5)  # the small sample (16 of these 8,192 assets) is enough
    cache.clear()
    try:
        first = parse_html(viewer.get("/").content)
        reviews = {
            v.get("data-value")
            for v in first.find_all(testid="facet-value")
            if v.get("data-value") in ("added", "accepted", "rejected")
        }
        assert reviews == set()
        # a person adds a tag to 600 assets, the small sample's among them
        chosen = {a.pk for a in Asset.objects.filter(IN_SMALL_SAMPLE)}
        chosen |= set(
            Asset.objects.exclude(pk__in=chosen)
            .order_by("pk")
            .values_list("pk", flat=True)[: 600 - len(chosen)]
        )
        assert len(chosen) == 600
        for asset in Asset.objects.filter(pk__in=chosen):
            services.review(asset, "new tag", "add", user)
        again = parse_html(viewer.get("/", {"after": Asset.objects.order_by("-pk")[30].pk}).content)
        shown = {
            v.get("data-value"): v.find(testid="facet-count").text
            for v in again.find_all(testid="facet-value")
        }
        assert shown["new tag"] == "600"  # the tags: exact and fresh
        assert "added" not in shown  # the sampled review states: as a minute ago
        cache.clear()  # a minute later
        later = parse_html(viewer.get("/").content)
        assert "added" in {v.get("data-value") for v in later.find_all(testid="facet-value")}
    finally:
        cache.clear()


BOUNDED = [
    "third",
    "third OR rare",
    "rare OR third",
    "thing AND NOT third",
    "thing AND NOT (third OR rare)",
    "third AND rare",
    "third AND NOT rare AND NOT rare",
    "NOT third",
    "NOT NOT third",
    "thing AND NOT NOT rare",
    '"no such tag" OR rare',
    '"no such tag" AND NOT rare',
    "(third OR rare) AND NOT thing",
    "(thing AND NOT third) OR rare",
]


@pytest.mark.parametrize("query", BOUNDED)
def test_what_the_kept_counts_say_of_a_search_holds_its_true_count(large, query):
    """The counts kept per tag bound a search's size (and skip counting a result they show is
    large); whatever the query, its true size is inside the bounds."""
    bounds = facets.kept_bounds(query)
    true = services.search(query).count()
    assert bounds.low <= true <= bounds.high, (bounds, true)


def test_a_large_and_not_search_is_estimated_without_counting_it_first(large, reader):
    """``thing AND NOT rare``: the counts show it is over the limit, so it is estimated at once,
    and the estimate is still near the truth."""
    bounds = facets.kept_bounds("thing AND NOT rare")
    assert bounds.low == large["thing"] - large["rare"] > LIMIT
    answer = reader.get("/api/assets/", {"q": "thing AND NOT rare", "page_size": 10}).json()
    truth = large["thing"] - large["rare"]
    assert answer["count_exact"] is False and abs(answer["count"] - truth) <= 0.3 * truth
    assert facets.kept_bounds("thing AND NOT rare", min_score=0.5) == facets.Bounds()  # scores: unknown
