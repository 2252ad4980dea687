"""The query language never answers 5xx, through the API search and the web search: queries
over a limit (length, terms, depth) are a 400 with the parser's message, odd values of every
search parameter are a 4xx at worst, and hypothesis feeds both endpoints arbitrary strings.

bob (``reader`` on the API, ``viewer`` on the web) searches the three ``tagged`` assets: red
(animal, cat, sofa), blue (cup, coffee mug), green (animal, dog).
"""

import base64
from urllib.parse import urlencode

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.query import MAX_DEPTH, MAX_LENGTH, MAX_TERMS, QueryLimitError, parse
from catalog.web.views import MAX_FACET_FILTERS
from tests.catalog.htmlquery import parse as parse_html

pytestmark = pytest.mark.django_db

ASSETS = "/api/assets/"
SEARCH = "/search/"


def cursor(position: str) -> str:
    """The API's ``cursor`` parameter for a page starting at ``position`` (DRF's encoding)."""
    return base64.b64encode(position.encode()).decode()


def api_search(reader, params, status: int):
    response = reader.get(ASSETS, params)
    assert response.status_code == status, response.content[:500]
    return response.json()


def web_search(viewer, params, status: int):
    response = viewer.get(SEARCH, params)
    assert response.status_code == status, response.content[:500]
    assert b"Traceback" not in response.content
    return parse_html(response.content)


def filenames(api_page) -> set[str]:
    return {asset["filename"] for asset in api_page["results"]}


def web_errors(html) -> list[str]:
    return [p.text for p in html.find_all(testid="query-error")]


# ---------------------------------------------------------------------------- the limits

OVER_THE_LIMITS = {
    "250 nested parentheses": ("(" * 250 + "cat" + ")" * 250, f"the depth limit of {MAX_DEPTH}"),
    "250 negations": ("-" * 250 + "cat", f"the depth limit of {MAX_DEPTH}"),
    "1,000 OR terms": (" OR ".join(f"t{i}" for i in range(1000)), f"the term limit is {MAX_TERMS} terms"),
    "1,000 ANDed terms": (" ".join(f"t{i}" for i in range(1000)), f"the term limit is {MAX_TERMS} terms"),
    "21 terms": (" OR ".join(["cat"] * (MAX_TERMS + 1)), f"the term limit is {MAX_TERMS} terms"),
    "10,000 characters": ("cat OR " + "x" * 9993, f"the length limit is {MAX_LENGTH:,} characters"),
}


@pytest.mark.parametrize("query, message", OVER_THE_LIMITS.values(), ids=OVER_THE_LIMITS)
def test_a_query_over_a_limit_is_400_naming_the_limit(reader, viewer, tagged, query, message):
    assert message in api_search(reader, {"q": query}, 400)["q"][0]
    html = web_search(viewer, {"q": query}, 400)
    assert any(message in error for error in web_errors(html)), web_errors(html)
    assert html.find("input", name="q").get("value") == query  # the form shows it back
    assert html.find(testid="result-count").text == "0 assets"


def at_the_limits(names: list[str], joiner: str) -> str:
    """``names`` joined, nested MAX_DEPTH deep (parentheses and NOTs), padded to MAX_LENGTH."""
    assert len(names) == MAX_TERMS
    groups = MAX_DEPTH // 4  # "NOT NOT (": 3 levels each, parentheses for the rest
    parens = MAX_DEPTH - 3 * groups
    text = "(" * parens + "NOT NOT (" * groups + joiner.join(names) + ")" * (groups + parens)
    assert len(text) <= MAX_LENGTH
    return text + " " * (MAX_LENGTH - len(text))


def test_the_largest_allowed_queries_work(reader, viewer, tagged):
    """As long, as deep and with as many terms as allowed: an OR (a long quoted name among
    them) and an AND (the most expensive shape: every term a semi-join) both answer."""
    long_name = '"' + "z" * 600 + '"'
    any_of = at_the_limits(["cat", "dog", '"coffee mug"', long_name, *(f"t{i}" for i in range(16))], " OR ")
    all_of = at_the_limits(["animal", "cat", "sofa"] * 6 + ["animal", "cat"], " AND ")
    for query, expected in ((any_of, {"red", "green", "blue"}), (all_of, {"red"})):
        assert len(query) == MAX_LENGTH and parse(query)
        assert filenames(api_search(reader, {"q": query}, 200)) == {f"{c}.png" for c in expected}
        html = web_search(viewer, {"q": query}, 200)
        assert web_errors(html) == []
        shown = {int(card.get("data-asset-id")) for card in html.find_all(testid="asset-card")}
        assert shown == {tagged[colour].pk for colour in expected}
    with pytest.raises(QueryLimitError):  # one character, term or level more is refused
        parse(any_of + "x")
    with pytest.raises(QueryLimitError):
        parse(any_of.strip() + " OR dog")
    with pytest.raises(QueryLimitError):
        parse("NOT " + any_of.strip())


# ---------------------------------------------------------------------------- odd inputs

# (params, API status, web status); the API search ignores the facet parameters
ODD_INPUTS = {
    "NUL in the query": ({"q": "cat\0dog"}, 400, 400),
    "a lone quote": ({"q": '"'}, 400, 400),
    "only parentheses": ({"q": "()"}, 400, 400),
    "a keyword alone": ({"q": "NOT"}, 400, 400),
    "unicode": ({"q": "猫 OR İstanbul OR straße OR 🐈 OR \u200b"}, 200, 200),
    "a name as long as allowed": ({"q": "x" * MAX_LENGTH}, 200, 200),
    "a quoted name of only spaces": ({"q": '"' + " " * (MAX_LENGTH - 2) + '"'}, 400, 400),
    "min_score nan": ({"q": "cat", "min_score": "nan"}, 400, 400),
    "min_score inf": ({"q": "cat", "min_score": "inf"}, 400, 400),
    "min_score -1e400": ({"q": "cat", "min_score": "-1e400"}, 400, 400),
    "min_score text": ({"q": "cat", "min_score": "high"}, 400, 400),
    "min_score NUL": ({"q": "cat", "min_score": "\0"}, 400, 400),
    "a cursor that is not one": ({"q": "cat", "cursor": "garbage"}, 404, 200),
    "a cursor past any id": ({"q": "cat", "cursor": cursor("p=" + "9" * 40)}, 404, 200),
    "a cursor with text for an id": ({"q": "cat", "cursor": cursor("p=cat")}, 404, 200),
    "after a huge id": ({"q": "cat", "after": "9" * 40}, 200, 400),
    "after -1": ({"q": "cat", "after": "-1"}, 200, 400),
    "before 1e400": ({"q": "cat", "before": "1e400"}, 200, 400),
    "after a superscript digit": ({"q": "cat", "after": "²"}, 200, 400),
    "a cursor at a superscript digit": ({"q": "cat", "cursor": cursor("p=²")}, 404, 200),
    "a huge page_size": ({"q": "cat", "page_size": "9" * 40}, 200, 200),
    "source NUL": ({"q": "cat", "source": "\0"}, 400, 400),
    "review text": ({"q": "cat", "review": "maybe"}, 400, 400),  # the gallery's review facet
    "a tag facet with NUL": ({"tag": "cat\0"}, 400, 400),  # any NUL in the API's query is a 400
    "a model facet with NUL": ({"model": "net\0:1"}, 400, 400),
    "a long tag facet": ({"tag": "x" * 10_000}, 200, 200),
    "a month out of range": ({"date": "9999-12"}, 200, 400),
    "too many facet values": ({"tag": [f"t{i}" for i in range(MAX_FACET_FILTERS + 1)]}, 200, 400),
}


@pytest.mark.parametrize("params, api_status, web_status", ODD_INPUTS.values(), ids=ODD_INPUTS)
def test_odd_search_inputs_are_answered_without_a_server_error(
    reader, viewer, tagged, params, api_status, web_status
):
    body = api_search(reader, params, api_status)
    if api_status == 400:
        assert body and all(isinstance(messages, list) for messages in body.values()), body
    html = web_search(viewer, params, web_status)
    assert bool(web_errors(html)) == (web_status == 400)


def test_too_many_facet_values_say_how_many_may_be_combined(viewer, tagged):
    html = web_search(viewer, {"tag": [f"t{i}" for i in range(MAX_FACET_FILTERS + 1)]}, 400)
    assert web_errors(html) == [f"11 filters at once; at most {MAX_FACET_FILTERS} can be combined"]
    allowed = web_search(viewer, {"tag": ["animal"] + [f"t{i}" for i in range(MAX_FACET_FILTERS - 1)]}, 200)
    assert allowed.find(testid="result-count").text == "0 assets"


@pytest.mark.parametrize(
    "raw", ["q=%ff%fe%00", "q=%C0%AF", "q=%", "q=cat&q=%28" * 20, "min_score=%00&page=%ff"]
)
def test_undecodable_query_strings_are_no_server_error(reader, viewer, tagged, raw):
    assert reader.get(f"{ASSETS}?{raw}").status_code < 500
    assert viewer.get(f"{SEARCH}?{raw}").status_code < 500


def test_a_tag_prefix_with_nul_is_400(reader, tagged):
    response = reader.get("/api/tags/", {"prefix": "ca\0"})
    assert response.status_code == 400 and "prefix" in response.json()
    assert reader.get("/api/tags/", {"prefix": "ca"}).status_code == 200


# ---------------------------------------------------------------------------- hypothesis

LEAVES = st.sampled_from(["cat", "animal", "dog", '"coffee mug"', "sofa", "t-shirt", "Cat", '"or"', "x"])
NESTED = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        inner.map(lambda q: f"({q})"),
        inner.map(lambda q: f"NOT {q}"),
        inner.map(lambda q: f"-{q}"),
        st.tuples(inner, inner).map(" AND ".join),
        st.tuples(inner, inner).map(" OR ".join),
        st.tuples(inner, inner).map(" ".join),
    ),
    max_leaves=30,
)
DEEP = st.builds(
    lambda depth, opener, leaf, closed: (
        opener * depth + leaf + (")" * opener.count("(") * depth if closed else "")
    ),
    st.integers(0, 300),
    st.sampled_from(["(", "-(", "NOT (", "-", "NOT ", "((", "(NOT "]),
    LEAVES,
    st.booleans(),
)
PIECES = ["AND", "OR", "NOT", "and", "Or", "nOt", "-", "(", ")", '"', " ", "cat", "dog", "coffee mug"]
SOUP = st.lists(st.sampled_from([*PIECES, "\0", "\t", "é", "猫", "🐈", "\u200b"]), max_size=80).map("".join)
SYNTAX_TEXT = st.text(alphabet='()"- \tANDORNOTandortc\0', max_size=400)
MANY_TERMS = st.builds(
    lambda n, joiner: joiner.join(f"t{i}" for i in range(n)),
    st.integers(0, 1200),
    st.sampled_from([" OR ", " AND ", " ", " -", ") OR ("]),
)
QUERIES = st.one_of(
    st.text(max_size=1200),  # any unicode (no lone surrogates: a URL cannot carry them)
    SYNTAX_TEXT,
    SOUP,
    NESTED,
    DEEP,
    MANY_TERMS,
    st.tuples(NESTED, SOUP, NESTED).map("".join),  # valid queries with garbage in the middle
)
ODD_TEXT = st.text(max_size=12)
MIN_SCORES = st.one_of(
    st.sampled_from(["0.5", "1", "0", "-0", "1e400", "nan", "-inf", "", " 0.3 "]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    ODD_TEXT,
)
PAGES = st.one_of(st.integers(-5, 10**30).map(str), ODD_TEXT)
CURSORS = st.one_of(ODD_TEXT, st.one_of(PAGES, ODD_TEXT).map(lambda p: cursor(f"p={p}")))
FACETS = st.lists(
    st.tuples(st.sampled_from(["tag", "source", "review", "model", "date"]), st.one_of(LEAVES, ODD_TEXT)),
    max_size=12,
)
FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    database=None,  # no example database: every run starts from the same examples
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def assert_no_server_error(reader, viewer, params: dict, facets: list | None = None):
    """Both searches answer below 500; a 400 carries its reasons (JSON fields, the page's errors)."""
    with transaction.atomic():  # a database error would not poison the next examples
        api = reader.get(ASSETS, params)
        assert api.status_code < 500, (params, api.status_code)
        if api.status_code == 400:
            body = api.json()
            assert body and all(isinstance(messages, list) for messages in body.values()), body
        web_params = list(params.items()) + list(facets or [])
        web = viewer.get(f"{SEARCH}?{urlencode(web_params)}")
        assert web.status_code < 500, (web_params, web.status_code)
        if web.status_code == 400:
            assert web_errors(parse_html(web.content)) and b"Traceback" not in web.content


@FUZZ_SETTINGS
@given(query=QUERIES)
def test_no_query_text_makes_a_server_error(reader, viewer, tagged, query):
    assert_no_server_error(reader, viewer, {"q": query})


@FUZZ_SETTINGS
@given(
    query=st.one_of(NESTED, st.text(max_size=50)),
    min_score=st.none() | MIN_SCORES,
    page=st.none() | CURSORS,
    page_size=st.none() | PAGES,
    after=st.none() | PAGES,
    source=st.none() | st.sampled_from(["model", "human"]) | ODD_TEXT,
    review=st.none() | st.sampled_from(["suggested", "accepted", "rejected"]) | ODD_TEXT,
    facets=FACETS,
)
def test_no_search_parameters_make_a_server_error(
    reader, viewer, tagged, query, min_score, page, page_size, after, source, review, facets
):
    options = {
        "min_score": min_score,
        "cursor": page,
        "after": after,
        "page_size": page_size,
        "source": source,
        "review": review,
    }
    params = {"q": query} | {name: value for name, value in options.items() if value is not None}
    assert_no_server_error(reader, viewer, params, facets)
