"""The tag query language: grammar, errors a person can act on, and search results."""

import pytest

from catalog import services
from catalog.query import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_TERMS,
    And,
    Not,
    Or,
    QueryError,
    QueryLimitError,
    QuerySyntaxError,
    Term,
    compile_query,
    matching_rows,
    parse,
)
from core.results import TagScore

cat, dog, mug, animal = Term("cat"), Term("dog"), Term("coffee mug"), Term("animal")


@pytest.mark.parametrize(
    "text, tree",
    [
        ("cat", cat),
        ("cat AND dog", And((cat, dog))),
        ("cat dog", And((cat, dog))),
        ("cat OR dog", Or((cat, dog))),
        ("cat or dog and animal", Or((cat, And((dog, animal))))),
        ("cat dog OR animal", Or((And((cat, dog)), animal))),
        ("NOT cat", Not(cat)),
        ("-cat", Not(cat)),
        ("animal -cat", And((animal, Not(cat)))),
        ("not not cat", Not(Not(cat))),
        ("NOT cat OR dog", Or((Not(cat), dog))),
        ("NOT (cat OR dog)", Not(Or((cat, dog)))),
        ("(cat OR dog) AND animal", And((Or((cat, dog)), animal))),
        ("((cat))", cat),
        ('"coffee mug" AND NOT dog', And((mug, Not(dog)))),
        ('"Coffee   Mug"', mug),
        ('-"coffee mug"', Not(mug)),
        ("Cat", cat),
        ("t-shirt", Term("t-shirt")),
        ("jack-o'-lantern", Term("jack-o'-lantern")),
        ('"and" OR "not"', Or((Term("and"), Term("not")))),
        ("cat(dog)", And((cat, dog))),
    ],
)
def test_grammar(text, tree):
    assert parse(text) == tree


@pytest.mark.parametrize(
    "text, position, expected, found",
    [
        ("", 0, "at least one tag", "an empty query"),
        ("   ", 0, "at least one tag", "an empty query"),
        ("cat AND", 7, "a tag, NOT, '-' or '('", "the end of the query"),
        ("cat OR OR dog", 7, "a tag, NOT, '-' or '('", "'OR'"),
        ("AND cat", 0, "a tag, NOT, '-' or '('", "'AND'"),
        ("(cat OR dog", 11, "')' to close the '(' at character 1", "the end of the query"),
        ("cat)", 3, "a tag, AND, OR or the end of the query (this ')' closes nothing)", "')'"),
        ("()", 1, "a tag, NOT, '-' or '('", "')'"),
        ('"coffee mug', 0, 'a closing " for the quote opened here', "the end of the query"),
        ('cat ""', 4, "a tag name between the quotes", "empty quotes"),
        ("cat -", 5, "a tag, NOT, '-' or '('", "the end of the query"),
    ],
)
def test_syntax_errors_say_where_and_what_was_expected(text, position, expected, found):
    with pytest.raises(QuerySyntaxError) as error:
        parse(text)
    assert (error.value.position, error.value.expected, error.value.found) == (
        position,
        expected,
        found,
    )
    assert f"at character {position + 1}" in str(error.value) and repr(text) in str(error.value)


def test_a_keyword_where_a_tag_was_expected_suggests_quoting_it():
    with pytest.raises(QuerySyntaxError, match='quote it: "or"'):
        parse("cat AND or")


def nested(depth: int, inner: str = "cat") -> str:
    return "(" * depth + inner + ")" * depth


def or_terms(count: int) -> str:
    return " OR ".join(f"t{i}" for i in range(count))


@pytest.mark.parametrize(
    "text",
    [
        nested(MAX_DEPTH),
        "NOT " * MAX_DEPTH + "cat",
        "-" * (MAX_DEPTH // 2) + nested(MAX_DEPTH // 2),
        or_terms(MAX_TERMS),
        "x" * MAX_LENGTH,
        f'"{"x" * (MAX_LENGTH - 2)}"',
    ],
)
def test_queries_at_the_limits_parse(text):
    assert parse(text)


@pytest.mark.parametrize(
    "text, position",
    [
        (nested(MAX_DEPTH + 1), MAX_DEPTH),
        (nested(250), MAX_DEPTH),
        ("-" * (MAX_DEPTH + 1) + "cat", MAX_DEPTH),
        ("NOT " * (MAX_DEPTH + 1) + "cat", 4 * MAX_DEPTH),
        ("cat " + "-(" * 11 + "dog" + ")" * 11, 4 + 2 * 10),  # the 21st level: the 11th "-"
        ("(" * (MAX_LENGTH - 1) + "c", MAX_DEPTH),  # once a RecursionError
        ("-" * (MAX_LENGTH - 1) + "c", MAX_DEPTH),
    ],
)
def test_deeper_nesting_is_refused_naming_the_depth_limit(text, position):
    with pytest.raises(QueryLimitError) as error:
        parse(text)
    assert (error.value.limits, error.value.position) == (("depth",), position)
    assert f"depth limit of {MAX_DEPTH} at character {position + 1}" in str(error.value)


def test_more_terms_are_refused_naming_the_term_limit():
    text = or_terms(MAX_TERMS + 1)
    with pytest.raises(QueryLimitError) as error:
        parse(text)
    assert error.value.limits == ("terms",) and error.value.position == text.index(f"t{MAX_TERMS}")
    assert str(error.value).startswith(f"the query has 21 tag terms; the term limit is {MAX_TERMS} terms")


def test_a_thousand_terms_name_both_the_length_and_the_term_limit():
    with pytest.raises(QueryLimitError) as error:
        parse(or_terms(1000))
    assert error.value.limits == ("length", "terms")
    assert "has 1,000 tag terms" in str(error.value) and f"the term limit is {MAX_TERMS}" in str(error.value)
    assert f"the length limit is {MAX_LENGTH:,} characters" in str(error.value)


@pytest.mark.parametrize("text", ["x" * (MAX_LENGTH + 1), "cat " * 3000, '"' + "x" * 5000, "(" * 10**6])
def test_longer_queries_are_refused_naming_the_length_limit(text):
    with pytest.raises(QueryLimitError) as error:
        parse(text)
    assert error.value.limits == ("length",)
    assert str(error.value) == (
        f"the query is {len(text):,} characters long; the length limit is {MAX_LENGTH:,} characters"
    )


def test_a_nul_character_is_a_syntax_error():
    with pytest.raises(QuerySyntaxError) as error:
        parse("cat\0dog")
    assert (error.value.position, error.value.found) == (3, "a NUL character")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"min_score": 1.5}, "min_score must be between 0 and 1"),
        ({"source": "robot"}, "source must be one of model, human"),
        ({"review": "rejected"}, "rejected tags never match"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(QueryError, match=message):
        compile_query("cat", **options)


@pytest.fixture
def catalog(image, user):
    """Five assets: a cat, a mug, a dog (tagged by a person), a rejected cat, an untagged one."""
    made = {}
    for i, name in enumerate(["cat", "mug", "dog", "rejected_cat", "untagged"]):
        made[name] = services.ingest(image("red", seed=100 + i), f"{name}.png")[0]
    services.record_tags(made["cat"], [TagScore("cat", 0.9), TagScore("animal", 0.95)], "net", "1")
    services.record_tags(made["mug"], [TagScore("coffee mug", 0.6), TagScore("cup", 0.7)], "net", "1")
    services.record_tags(made["dog"], [TagScore("animal", 0.4)], "net", "1")
    services.review(made["dog"], "dog", "add", user)
    services.record_tags(made["rejected_cat"], [TagScore("cat", 0.8), TagScore("animal", 0.3)], "net", "1")
    services.review(made["rejected_cat"], "cat", "reject", user)
    services.review(made["cat"], "animal", "accept", user)
    return made


def found(catalog, query, **options) -> set[str]:
    names = {asset.pk: name for name, asset in catalog.items()}
    return {names[asset.pk] for asset in services.search(query, **options)}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, options, expected",
    [
        ("cat", {}, {"cat"}),  # the rejected cat never matches
        ("CAT", {}, {"cat"}),
        ("animal", {}, {"cat", "dog", "rejected_cat"}),
        ("cat OR dog", {}, {"cat", "dog"}),
        ("animal AND NOT cat", {}, {"dog", "rejected_cat"}),
        ("animal -cat", {}, {"dog", "rejected_cat"}),
        ("NOT animal", {}, {"mug", "untagged"}),
        ('"coffee mug" AND NOT dog', {}, {"mug"}),
        ("(cat OR cup) animal", {}, {"cat"}),
        ("(cat OR cup) OR (dog -animal)", {}, {"cat", "mug"}),
        (
            "animal",
            {"min_score": 0.5},
            {"cat"},
        ),  # the dog's animal scores 0.4, the rejected cat's 0.3
        ("animal OR dog", {"min_score": 0.5}, {"cat", "dog"}),  # a human tag scores 1
        ("animal", {"source": "model"}, {"cat", "dog", "rejected_cat"}),
        ("dog OR cat", {"source": "human"}, {"dog"}),
        ("animal OR dog", {"review": "accepted"}, {"cat", "dog"}),
        ("animal", {"review": "suggested"}, {"dog", "rejected_cat"}),
        ("unicorn", {}, set()),
        ("", {}, {"cat", "mug", "dog", "rejected_cat", "untagged"}),
    ],
)
def test_search(catalog, query, options, expected):
    assert found(catalog, query, **options) == expected
    # counted from the tag rows of one of its tags, when it is a tag ANDed with anything
    names = {asset.pk: name for name, asset in catalog.items()}
    for counts in ({}, {"animal": 1, "cat": 2, "dog": 3}, {"animal": 3, "cat": 2, "dog": 1}):
        rows = matching_rows(query, counts=counts, **options) if query else None
        if rows is not None:
            asset_ids = list(rows.values_list("asset_id", flat=True))
            assert len(asset_ids) == len(set(asset_ids)) and {names[pk] for pk in asset_ids} == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query, walked",
    [
        ("cat", True),
        ("animal AND NOT cat", True),
        ("(cat OR cup) animal", True),
        ("NOT animal", False),
        ("cat OR dog", False),
        ("(cat OR cup) AND NOT dog", False),
    ],
)
def test_a_tag_anded_with_anything_is_counted_from_its_rarest_tags_rows(catalog, query, walked):
    rows = matching_rows(query, counts={"animal": 3, "cat": 1})
    assert (rows is not None) == walked
    if walked:
        sql = str(rows.values_list("asset_id").query)
        assert sql.split(" WHERE ")[0].endswith('FROM "catalog_assettag"'), sql
        assert '"catalog_asset"' not in sql  # the assets' table is not read at all


@pytest.mark.django_db
def test_search_is_newest_first_with_tags_prefetched(catalog, django_assert_num_queries):
    with django_assert_num_queries(3):  # the query's tag ids, the assets, then all their tags
        assets = list(services.search("animal"))
        summaries = [services.asset_summary(a) for a in assets]
    assert [s["filename"] for s in summaries] == ["rejected_cat.png", "dog.png", "cat.png"]
    assert [t["name"] for t in summaries[0]["tags"]] == ["animal"]
