"""The gallery's search: a tag query plus facet filters, and the facet counts of a result.

A search is a :class:`Filters`: the query text (:mod:`catalog.query`), ``min_score``, and
filters picked from the facets. Each facet filter keeps the assets that have at least one tag
row matching it; a tag row counts when its score is at least ``min_score``:

| facet | value | an asset matches when it has a tag row |
|---|---|---|
| ``tag`` | a tag name | with that tag, not rejected |
| ``source`` | ``model`` or ``human`` | from that source, not rejected |
| ``review`` | ``suggested``, ``accepted``, ``added``, ``rejected`` | in that review state (:data:`catalog.models.REVIEW_STATES`) |
| ``model`` | ``name:version`` | scored by that model version, not rejected |
| ``date`` | ``YYYY-MM`` | (the asset itself was uploaded in that month, UTC) |

Filters of the same or different facets combine with AND. A facet value's count is the number
of assets in the current result that match it, which is the result count after clicking it.

**Counts at scale.** A result of up to :data:`EXACT_UP_TO` assets is counted and faceted
exactly. A larger one is counted and faceted on the catalog's sample
(:data:`catalog.models.IN_SAMPLE`): its assets in the small sample (1 in 512) when there are at
least :data:`ENOUGH` of them (a result of about 50,000 assets or more), else in the sample (1 in
64). The figures are then estimates that say so (``≈ 12,000``), and no page waits on reading a
million tag rows; ``exact=1`` asks for exact counts (a slow page at a million assets). A
search the per-tag counts kept as tags are written already size (:func:`kept_bounds`: one tag
exactly; ``a OR b`` and ``a AND NOT b`` at least) is not counted up to the limit first.
Estimates are rounded to two significant digits; one from ``k`` assets of a sample is off by
about ``1/sqrt(k)`` of itself (a facet value on 100 sampled assets: about 10%). The ids counted
(the whole result, or its sampled assets: at most about 2,000 at a million assets) are read
once; their tag rows are then read in one query and counted in Python, rather than the search
running again under each facet's aggregate.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncMonth

from catalog import counts
from catalog.models import (
    IN_SAMPLE,
    IN_SMALL_SAMPLE,
    REVIEW_STATES,
    ROW_IN_SAMPLE,
    ROW_IN_SMALL_SAMPLE,
    SAMPLE_EVERY,
    SMALL_SAMPLE_EVERY,
    Asset,
    AssetTag,
    ModelVersion,
    Tag,
    review_state,
)
from catalog.query import (
    SOURCES,
    And,
    Not,
    Or,
    QueryError,
    Term,
    compile_query,
    matching_rows,
    normalize_tag_name,
    tag_ids,
    tag_names,
)
from catalog.query import parse as parse_query

FACETS = ("tag", "source", "review", "model", "date")
TOP_TAGS = 20
MONTH = re.compile(r"^(\d{4})-(\d{2})$")
EXACT_UP_TO = 1_000  # results up to this many assets get exact counts
ENOUGH = 100  # sampled assets of a result that make a good enough estimate (about 10%)


@dataclass(frozen=True)
class Filters:
    """What the gallery shows; every field maps to a URL query parameter of the same name."""

    q: str = ""
    min_score: float = 0.0
    tag: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    review: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    date: tuple[str, ...] = ()

    def with_value(self, facet: str, value: str) -> Filters:
        """These filters plus ``facet=value`` (unchanged when already there)."""
        values = getattr(self, facet)
        return self if value in values else replace(self, **{facet: (*values, value)})

    def without_value(self, facet: str, value: str) -> Filters:
        return replace(self, **{facet: tuple(v for v in getattr(self, facet) if v != value)})

    def active(self) -> list[tuple[str, str]]:
        """``(facet, value)`` of every facet filter in use, in facet order."""
        return [(facet, value) for facet in FACETS for value in getattr(self, facet)]

    def params(self) -> list[tuple[str, str]]:
        """The URL query parameters that give these filters back (see :func:`parse`)."""
        out = [("q", self.q)] if self.q else []
        if self.min_score:
            out.append(("min_score", f"{self.min_score:g}"))
        return out + self.active()


def about(count: int) -> int:
    """An estimate rounded to two significant digits (``12,437`` → ``12,000``)."""
    if count < 100:
        return count
    unit = 10 ** (int(math.log10(count)) - 1)
    return round(count / unit) * unit


@dataclass(frozen=True)
class Size:
    """How many assets a result has: exact, or estimated from the sample.

    Attributes:
        ids: the assets counted: the whole result when exact, its sampled assets when not;
            None when the count did not read them (the facets then run the search again).
        every: how many assets of the result each id stands for (1 when exact).
    """

    count: int
    exact: bool = True
    ids: tuple[int, ...] | None = field(default=None, repr=False, compare=False)
    every: int = field(default=1, compare=False)

    def __str__(self) -> str:
        return f"{self.count:,}" if self.exact else f"≈ {self.count:,}"


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int
    label: str = ""
    active: bool = False
    exact: bool = True

    @property
    def shown(self) -> str:
        return str(Size(self.count, self.exact))


@dataclass
class Facets:
    """Counts per facet value, most frequent first (months newest first); ``exact`` is False
    when they are estimates from the sample."""

    tag: list[FacetValue] = field(default_factory=list)
    source: list[FacetValue] = field(default_factory=list)
    review: list[FacetValue] = field(default_factory=list)
    model: list[FacetValue] = field(default_factory=list)
    date: list[FacetValue] = field(default_factory=list)
    exact: bool = True

    def items(self) -> list[tuple[str, list[FacetValue]]]:
        return [(facet, getattr(self, facet)) for facet in FACETS]


def parse(params) -> tuple[Filters, list[str]]:
    """Filters from URL query parameters (a ``QueryDict`` or a dict of lists).

    Returns:
        ``(filters, problems)``: values that make no sense are left out and described in
        ``problems`` (a message per value), so the page can say what it ignored.
    """
    getlist = params.getlist if hasattr(params, "getlist") else lambda key: list(params.get(key, []))
    problems: list[str] = []
    q = (getlist("q") or [""])[-1].strip()
    min_score = 0.0
    raw = (getlist("min_score") or [""])[-1].strip()
    if raw:
        try:
            min_score = float(raw)
        except ValueError:
            problems.append(f"min_score must be a number between 0 and 1, got {raw!r}")
        else:
            if not 0.0 <= min_score <= 1.0:
                problems.append(f"min_score must be between 0 and 1, got {raw}")
                min_score = 0.0
    checks = {
        "tag": lambda v: bool(v),
        "source": lambda v: v in SOURCES,
        "review": lambda v: v in REVIEW_STATES,
        "model": lambda v: ":" in v,
        "date": lambda v: _month(v) is not None,
    }
    expected = {
        "tag": "a tag name",
        "source": f"one of {', '.join(SOURCES)}",
        "review": f"one of {', '.join(REVIEW_STATES)}",
        "model": "name:version",
        "date": "a month as YYYY-MM",
    }
    values: dict[str, tuple[str, ...]] = {}
    for facet in FACETS:
        kept = []
        for value in getlist(facet):
            value = normalize_tag_name(value) if facet == "tag" else value.strip()
            if checks[facet](value):
                kept.append(value)
            else:
                problems.append(f"{facet} must be {expected[facet]}, got {value!r}")
        values[facet] = tuple(dict.fromkeys(kept))
    return Filters(q=q, min_score=min_score, **values), problems


def _month(value: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The UTC start of the month ``YYYY-MM`` and of the next one; None when not a month."""
    match = MONTH.match(value)
    if not match:
        return None
    year, month = int(match[1]), int(match[2])
    if not (1 <= month <= 12 and 1 <= year <= 9998):
        return None
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


def _row_condition(facet: str, value: str) -> Q:
    """The tag rows that make an asset match ``facet=value`` (score aside); tags and model
    versions are named by id, as :mod:`catalog.query` does, so the planner sees how common
    they are."""
    not_rejected = ~Q(review=AssetTag.Review.REJECTED)
    if facet == "tag":
        tag = tag_ids([value]).get(value)
        return Q(pk__in=[]) if tag is None else Q(tag_id=tag) & not_rejected
    if facet == "source":
        return Q(source=value) & not_rejected
    if facet == "review":
        return REVIEW_STATES[value]
    if facet == "model":
        name, version = value.rsplit(":", 1)
        model = ModelVersion.objects.filter(name=name, version=version).values_list("pk", flat=True).first()
        return Q(pk__in=[]) if model is None else Q(model_version_id=model) & not_rejected
    raise ValueError(f"no tag-row condition for facet {facet!r}")


def filter_assets(filters: Filters) -> QuerySet[Asset]:
    """The assets the filters select, newest first (tags not prefetched).

    Raises:
        catalog.query.QueryError: the query text does not parse (the message says where).
    """
    assets = Asset.objects.all()
    if filters.q:
        assets = assets.filter(compile_query(filters.q, min_score=filters.min_score))
    for facet, value in filters.active():
        if facet == "date":
            start, end = _month(value)
            assets = assets.filter(created_at__gte=start, created_at__lt=end)
        else:
            rows = AssetTag.objects.filter(_row_condition(facet, value), score__gte=filters.min_score)
            assets = assets.filter(Exists(rows.filter(asset_id=OuterRef("pk"))))
    return assets


@dataclass(frozen=True)
class Bounds:
    """How many assets a search matches at least and at most, from the per-tag counts kept as
    tags are written (:mod:`catalog.counts`): exact when the two meet (one tag)."""

    low: int = 0
    high: float = math.inf
    #: The query's tags' ids and kept counts by name, when the bounds read them: the search is
    #: then compiled without reading them again (:func:`catalog.query.compile_query`'s ``ids``),
    #: and counted from its rarest tag (:func:`catalog.query.matching_rows`).
    ids: Mapping[str, int] | None = field(default=None, compare=False)
    counts: Mapping[str, int] | None = field(default=None, compare=False)

    @property
    def exact(self) -> int | None:
        return self.low if self.low == self.high else None


def kept_bounds(text: str, *, min_score: float = 0.0, source=None, review=None) -> Bounds:
    """:class:`Bounds` of a search with no ``min_score``, source or review option (the kept
    counts count every tag row not rejected, whatever its score, source or review): for one
    tag its count; for ``a OR b`` at least the larger count; for ``a AND NOT b`` at least
    ``a``'s count less ``b``'s, at most ``a``'s. :func:`result_size` then skips counting a
    result the counts already show is over :data:`EXACT_UP_TO`. Nothing known for any other
    search, or for a query that does not parse (the search says why). The tags' ids and counts
    come along for any query that parses (:attr:`Bounds.ids`)."""
    if not text.strip():
        return Bounds()
    try:
        tree = parse_query(text)
    except QueryError:
        return Bounds()
    found = counts.of_tags(tag_names(tree))
    kept = {name: count for name, (_, count) in found.items()}
    read = Bounds(ids={name: id_ for name, (id_, _) in found.items()}, counts=kept)
    # the kept counts count every tag row not rejected, whatever its score, source or review
    if min_score or source is not None or review is not None or not _has_floor(tree):
        return read  # e.g. a AND b: the counts could only cap it, which no caller uses
    bounds = _bounds(tree, lambda name: kept.get(name) or 0)
    return replace(read, low=bounds.low, high=bounds.high)


def _has_floor(node) -> bool:
    """Whether the kept counts can give ``node`` a lower bound above 0 (see :func:`_bounds`)."""
    if isinstance(node, Term):
        return True
    if isinstance(node, Or):
        return any(_has_floor(operand) for operand in node.operands)
    if isinstance(node, Not):
        return False
    positive = [operand for operand in node.operands if not isinstance(operand, Not)]
    return len(positive) == 1 and _has_floor(positive[0])


def _bounds(node, count) -> Bounds:
    if isinstance(node, Term):
        kept = count(node.name)
        return Bounds(kept, kept)
    if isinstance(node, Not):
        return Bounds()  # all the assets less some: the catalog's own size is not kept
    if isinstance(node, Or):
        parts = [_bounds(operand, count) for operand in node.operands]
        return Bounds(max(p.low for p in parts), sum(p.high for p in parts))
    assert isinstance(node, And), node
    positive = [_bounds(o, count) for o in node.operands if not isinstance(o, Not)]
    negated = [_bounds(o.operand, count) for o in node.operands if isinstance(o, Not)]
    high = min((p.high for p in positive), default=math.inf)
    if len(positive) != 1:  # two sets' overlap has no floor without the catalog's size
        return Bounds(0, high)
    floor = positive[0].low - sum(n.high for n in negated)
    return Bounds(int(floor) if floor > 0 else 0, high)


def _tag_count(name: str) -> int:
    return counts.of_tags([name]).get(name, (None, 0))[1]


def gallery_bounds(filters: Filters) -> Bounds:
    """:func:`kept_bounds` of the gallery's filters: a query alone, or one tag as the only facet
    filter (nothing known with more filters)."""
    if filters.min_score or len(filters.active()) + bool(filters.q) != 1:
        return Bounds()
    if filters.q:
        return kept_bounds(filters.q)
    facet, value = filters.active()[0]
    if facet != "tag":
        return Bounds()
    count = _tag_count(value)
    return Bounds(count, count)


def walked_rows(text: str, bounds: Bounds, **options) -> QuerySet[AssetTag] | None:
    """The search ``text`` (``options``: min_score, source, review) as the tag rows of its
    rarest tag (:func:`catalog.query.matching_rows`), with the tags ``bounds`` read; None for a
    blank query, or one that is not a tag ANDed with anything. For :func:`result_size`."""
    if not text.strip():
        return None
    return matching_rows(text, ids=bounds.ids, counts=bounds.counts, **options)


def search_size(assets: QuerySet[Asset], bounds: Bounds, rows: QuerySet[AssetTag] | None = None) -> Size:
    """The size of a search shown without facets (the API, ``imgtag search``): the kept count
    when ``bounds`` is exact, without reading an id; else :func:`result_size`."""
    if bounds.exact is not None:
        return Size(bounds.exact)
    return result_size(assets, bounds=bounds, rows=rows)


def result_size(
    assets: QuerySet[Asset],
    limit: int | None = None,
    *,
    bounds: Bounds = Bounds(),
    rows: QuerySet[AssetTag] | None = None,
) -> Size:
    """How many assets ``assets`` has: counted up to ``limit`` (:data:`EXACT_UP_TO`), estimated
    from the sample above (see the module docstring). Reads at most ``limit + 1`` ids of the
    result, then its ids in the small sample, then (too few there) in the sample.

    ``bounds``: what the kept counts tell of it (:func:`kept_bounds`). Exact, the ids are read
    only for the facets, the result's own up to ``limit``, its sampled ones above; over
    ``limit`` at least, the result is not counted up to ``limit`` first. ``rows``: the same
    assets as tag rows (:func:`catalog.query.matching_rows`), read instead of ``assets``.
    """
    limit = EXACT_UP_TO if limit is None else limit
    if rows is None:
        ids, in_small, in_sample = assets.order_by().values_list("pk", flat=True), IN_SMALL_SAMPLE, IN_SAMPLE
    else:
        ids, in_small, in_sample = rows.values_list("asset_id", flat=True), ROW_IN_SMALL_SAMPLE, ROW_IN_SAMPLE
    known = bounds.exact
    if bounds.low <= limit:
        found = tuple(ids[: limit + 1])
        if len(found) <= limit:
            return Size(len(found), ids=found)
    sampled, every = tuple(ids.filter(in_small)), SMALL_SAMPLE_EVERY
    if len(sampled) < ENOUGH:
        sampled, every = tuple(ids.filter(in_sample)), SAMPLE_EVERY
    if known is not None:
        return Size(known, exact=True, ids=sampled, every=every)
    return Size(max(limit + 1, about(len(sampled) * every)), exact=False, ids=sampled, every=every)


def counted(assets: QuerySet[Asset], size: Size) -> QuerySet[Asset]:
    """``assets`` as the ids its count read, when that count read the whole result (up to
    :data:`EXACT_UP_TO` assets); else ``assets``. A page of a small result then looks its
    assets up by id instead of running the search again: newest first, that walks the whole
    catalog when a few assets of common tags match (``dog AND NOT animal``: nothing)."""
    if size.exact and size.every == 1 and size.ids is not None:
        return Asset.objects.filter(pk__any_of=size.ids)
    return assets


def facet_counts(assets: QuerySet[Asset], filters: Filters, *, size: Size | None = None) -> Facets:
    """How many of ``assets`` each facet value would keep (see the module docstring).

    Args:
        assets: the current result, e.g. from :func:`filter_assets`.
        filters: the filters that made it (for ``min_score`` and which values are active).
        size: the result's size, when already known (:func:`result_size`; an exact count of
            a large result without its ids gives exact facet counts, slow at a million assets).
    """
    size = size or result_size(assets)
    if size.ids is None:
        rows = AssetTag.objects.filter(asset_id__in=assets.order_by().values("pk"))
    else:  # look the counted ids up, rather than run the search again
        assets = Asset.objects.filter(pk__any_of=size.ids)
        rows = AssetTag.objects.filter(asset_id__any_of=size.ids)
    rows = rows.filter(score__gte=filters.min_score)

    def value(facet: str, raw: str, count: int, label: str = "") -> FacetValue:
        count = about(count * size.every) if size.every > 1 else count
        return FacetValue(raw, count, label or raw, raw in getattr(filters, facet), not estimated)

    estimated = size.every > 1  # counted on the sample: estimates, whether or not the count is exact
    facets = Facets(exact=not estimated)
    tallies = _row_counts(rows) if size.ids is not None else _row_counts_in_sql(rows)
    for facet in ("tag", "source", "review", "model"):
        setattr(facets, facet, [value(facet, raw, n) for raw, n in tallies[facet]])
    by_month = (
        assets.order_by()
        .annotate(month=TruncMonth("created_at", tzinfo=dt.UTC))
        .values("month")
        .annotate(n=Count("pk"))
        .order_by("-month")
    )
    facets.date = [
        value("date", row["month"].strftime("%Y-%m"), row["n"], row["month"].strftime("%B %Y"))
        for row in by_month
    ]
    return facets


WHOLE_CATALOG_SECONDS = 60
"""How long a process keeps the whole catalog's sampled sidebar (:func:`whole_catalog_facets`)."""


def whole_catalog_facets(assets: QuerySet[Asset], size: Size) -> Facets:
    """The sidebar of the unfiltered gallery (every page of it, deep ones too): the top tags from
    the counts kept per tag (exact and fresh: :mod:`catalog.counts`), the other facets from the
    catalog's sample as :func:`facet_counts` counts them.

    A catalog large enough for the small sample (about 50,000 assets and more, where reading the
    sample's tag rows is what a page waits for) has those sampled figures kept by the process for
    :data:`WHOLE_CATALOG_SECONDS`: they are estimates of the whole catalog, which a minute of
    uploads barely moves, and the same for every user. So the sources, review states, model
    versions and months shown are at most a minute old; the tags and the total never are stale.
    """
    key = f"imgtag:whole-catalog-facets:{connection.alias}:{connection.settings_dict['NAME']}"
    cached = cache.get(key) if size.every == SMALL_SAMPLE_EVERY else None
    if cached is None:
        cached = facet_counts(assets, Filters(), size=size)
        if size.every == SMALL_SAMPLE_EVERY:
            cache.set(key, cached, WHOLE_CATALOG_SECONDS)
    top = counts.annotate(Tag.objects.all()).filter(asset_count__gt=0).order_by("-asset_count", "name")
    tags = [FacetValue(name, n, name) for name, n in top.values_list("name", "asset_count")[:TOP_TAGS]]
    return replace(cached, tag=tags)


def _row_counts(rows: QuerySet[AssetTag]) -> dict[str, list[tuple[str, int]]]:
    """Assets per tag (the top :data:`TOP_TAGS`), source, review state and model version among
    ``rows``, counted in Python from one read of the rows: for the few thousand assets of a
    small result or a sample, one query instead of four aggregates that each read the rows."""
    per_tag: Counter[int] = Counter()
    sources, states, models = defaultdict(set), defaultdict(set), defaultdict(set)
    fields = ("asset_id", "tag_id", "source", "review", "model_version_id")
    for asset_id, tag_id, source, review, model_id in rows.values_list(*fields):
        states[review_state(review, source)].add(asset_id)
        if review == AssetTag.Review.REJECTED:
            continue
        per_tag[tag_id] += 1  # an asset has a tag once
        sources[source].add(asset_id)
        if model_id is not None:
            models[model_id].add(asset_id)
    least = sorted(per_tag.values(), reverse=True)[TOP_TAGS - 1] if len(per_tag) >= TOP_TAGS else 0
    top = [tag for tag, n in per_tag.items() if n >= least]  # the top ones and their ties
    names = dict(Tag.objects.filter(pk__in=top).values_list("pk", "name"))
    versions = {m.pk: (m.name, m.version) for m in ModelVersion.objects.filter(pk__in=list(models))}
    by_tag = sorted(((names[t], per_tag[t]) for t in top), key=lambda item: (-item[1], item[0]))
    by_model = [
        (f"{name}:{version}", n)
        for (name, version), n in sorted(
            ((versions[m], len(a)) for m, a in models.items()), key=lambda item: (-item[1], item[0])
        )
    ]
    return {
        "tag": by_tag[:TOP_TAGS],
        "source": sorted(((k, len(a)) for k, a in sources.items()), key=lambda item: (-item[1], item[0])),
        "review": [(state, len(states[state])) for state in REVIEW_STATES if states[state]],
        "model": by_model,
    }


def _row_counts_in_sql(rows: QuerySet[AssetTag]) -> dict[str, list[tuple[str, int]]]:
    """What :func:`_row_counts` gives, with the database aggregating (for exact counts of a
    large result, whose rows are too many to read)."""
    counted = rows.exclude(review=AssetTag.Review.REJECTED)
    by_tag = (
        counted.values("tag__name")
        .annotate(n=Count("asset_id"))  # an asset has a tag once
        .order_by("-n", "tag__name")[:TOP_TAGS]
    )
    by_source = counted.values("source").annotate(n=Count("asset_id", distinct=True)).order_by("-n", "source")
    states = rows.aggregate(
        **{
            state: Count("asset_id", filter=condition, distinct=True)
            for state, condition in REVIEW_STATES.items()
        }
    )
    by_model = (
        counted.filter(model_version__isnull=False)
        .values("model_version__name", "model_version__version")
        .annotate(n=Count("asset_id", distinct=True))
        .order_by("-n", "model_version__name", "model_version__version")
    )
    return {
        "tag": [(row["tag__name"], row["n"]) for row in by_tag],
        "source": [(row["source"], row["n"]) for row in by_source],
        "review": [(state, n) for state, n in states.items() if n],
        "model": [
            (f"{row['model_version__name']}:{row['model_version__version']}", row["n"]) for row in by_model
        ],
    }
