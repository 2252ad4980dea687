"""The gallery's search: facet filters, and facet counts that equal the result after a click."""

import datetime as dt

import pytest
from django.http import QueryDict

from catalog import facets
from catalog.models import Asset
from catalog.query import QueryError

pytestmark = pytest.mark.django_db


def counts(result: facets.Facets) -> dict[str, dict[str, int]]:
    return {facet: {v.value: v.count for v in values} for facet, values in result.items()}


def names(assets) -> set[str]:
    return {a.filename for a in assets}


def test_counts_per_facet_over_everything(tagged):
    month = tagged["red"].created_at.astimezone(dt.UTC).strftime("%Y-%m")
    result = counts(facets.facet_counts(Asset.objects.all(), facets.Filters()))
    assert result == {
        # rejected rows do not count: red's "egyptian cat" is gone, its parents come from the map
        "tag": {"animal": 2, "cat": 1, "coffee mug": 1, "cup": 1, "dog": 1, "sofa": 1},
        "source": {"model": 3, "human": 1},
        "review": {"suggested": 3, "accepted": 1, "added": 1, "rejected": 1},
        "model": {"net:1": 2, "net:2": 1},
        "date": {month: 3},
    }


def test_tags_are_most_frequent_first_and_capped(tagged):
    tag_values = facets.facet_counts(Asset.objects.all(), facets.Filters()).tag
    assert [v.value for v in tag_values][:1] == ["animal"]
    assert len(tag_values) <= facets.TOP_TAGS


@pytest.mark.parametrize("facet", facets.FACETS)
def test_every_facet_value_count_is_the_result_after_clicking_it(tagged, facet):
    for q in ("", "animal", "NOT cup"):
        base = facets.Filters(q=q)
        current = facets.filter_assets(base)
        for value in getattr(facets.facet_counts(current, base), facet):
            clicked = base.with_value(facet, value.value)
            assert facets.filter_assets(clicked).count() == value.count, (q, facet, value)


def test_filters_combine_with_and_and_with_the_query(tagged):
    def only(**kw):
        return names(facets.filter_assets(facets.Filters(**kw)))

    assert only(tag=("animal",)) == {"red.png", "green.png"}
    assert only(tag=("animal",), model=("net:2",)) == {"green.png"}
    assert only(source=("human",)) == {"red.png"}
    assert only(review=("rejected",)) == {"red.png"}
    assert only(review=("suggested",)) == {"red.png", "blue.png", "green.png"}
    assert only(q="cup OR dog", review=("suggested",)) == {"blue.png", "green.png"}
    assert only(q='"egyptian cat"') == set()  # rejected tags never match
    assert only(tag=("egyptian cat",)) == set()


def test_min_score_applies_to_the_query_the_tag_filter_and_the_tag_counts(tagged):
    strict = facets.Filters(min_score=0.92)
    assert names(facets.filter_assets(strict.with_value("tag", "animal"))) == {"red.png"}
    assert names(facets.filter_assets(facets.Filters(q="animal", min_score=0.92))) == {"red.png"}
    tag_counts = counts(facets.facet_counts(Asset.objects.all(), strict))["tag"]
    assert tag_counts == {"animal": 1, "cat": 1, "sofa": 1}


def test_date_filter_by_upload_month(tagged):
    Asset.objects.filter(pk=tagged["blue"].pk).update(
        created_at=dt.datetime(2024, 2, 29, 23, 59, tzinfo=dt.UTC)
    )
    result = counts(facets.facet_counts(Asset.objects.all(), facets.Filters()))["date"]
    assert result["2024-02"] == 1 and sum(result.values()) == 3
    assert names(facets.filter_assets(facets.Filters(date=("2024-02",)))) == {"blue.png"}
    assert names(facets.filter_assets(facets.Filters(date=("2024-03",)))) == set()


def test_active_values_are_marked(tagged):
    filters = facets.Filters(tag=("animal",))
    result = facets.facet_counts(facets.filter_assets(filters), filters)
    assert [v.value for v in result.tag if v.active] == ["animal"]


def test_parse_keeps_good_values_and_names_the_bad_ones():
    params = QueryDict(
        "q=+cat+&min_score=0.5&tag=Coffee++Mug&tag=cat&tag=cat&source=robot&review=added"
        "&model=net:1&model=bad&date=2025-13&date=2025-01"
    )
    filters, problems = facets.parse(params)
    assert filters == facets.Filters(
        q="cat",
        min_score=0.5,
        tag=("coffee mug", "cat"),
        review=("added",),
        model=("net:1",),
        date=("2025-01",),
    )
    assert problems == [
        "source must be one of model, human, got 'robot'",
        "model must be name:version, got 'bad'",
        "date must be a month as YYYY-MM, got '2025-13'",
    ]
    assert facets.parse(QueryDict("min_score=2"))[1] == ["min_score must be between 0 and 1, got 2"]
    assert "a number" in facets.parse(QueryDict("min_score=lots"))[1][0]


def test_params_give_the_filters_back():
    filters = facets.Filters(q='"coffee mug"', min_score=0.25, tag=("cup",), date=("2025-01",))
    qd = QueryDict(mutable=True)
    for key, value in filters.params():
        qd.appendlist(key, value)
    assert facets.parse(qd) == (filters, [])
    assert filters.without_value("tag", "cup").tag == ()


def test_a_bad_query_raises_with_the_parser_message(tagged):
    with pytest.raises(QueryError, match=r"at character 5: expected '\)'"):
        list(facets.filter_assets(facets.Filters(q="(cat")))


def test_counting_the_read_rows_gives_what_the_database_aggregates_give(tagged):
    """Facets of a result whose ids were read are counted in Python from its tag rows; those of
    a result counted without its ids (exact counts of a large result) by SQL aggregates."""
    for filters in (facets.Filters(), facets.Filters(min_score=0.9), facets.Filters(q="animal")):
        assets = facets.filter_assets(filters)
        read = facets.facet_counts(assets, filters)
        aggregated = facets.facet_counts(assets, filters, size=facets.Size(assets.count()))
        assert read.items() == aggregated.items() and read.review, filters
