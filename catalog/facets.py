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
of assets in the current result that match it, which is exactly the result count after
clicking it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMonth

from catalog.models import REVIEW_STATES, Asset, AssetTag
from catalog.query import SOURCES, compile_query, normalize_tag_name

FACETS = ("tag", "source", "review", "model", "date")
TOP_TAGS = 20
MONTH = re.compile(r"^(\d{4})-(\d{2})$")


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


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int
    label: str = ""
    active: bool = False


@dataclass
class Facets:
    """Counts per facet value, most frequent first (months newest first)."""

    tag: list[FacetValue] = field(default_factory=list)
    source: list[FacetValue] = field(default_factory=list)
    review: list[FacetValue] = field(default_factory=list)
    model: list[FacetValue] = field(default_factory=list)
    date: list[FacetValue] = field(default_factory=list)

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
    """The tag rows that make an asset match ``facet=value`` (score aside)."""
    not_rejected = ~Q(review=AssetTag.Review.REJECTED)
    if facet == "tag":
        return Q(tag__name=value) & not_rejected
    if facet == "source":
        return Q(source=value) & not_rejected
    if facet == "review":
        return REVIEW_STATES[value]
    if facet == "model":
        name, version = value.rsplit(":", 1)
        return Q(model_version__name=name, model_version__version=version) & not_rejected
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
            assets = assets.filter(pk__in=rows.values("asset_id"))
    return assets


def facet_counts(assets: QuerySet[Asset], filters: Filters) -> Facets:
    """How many of ``assets`` each facet value would keep (see the module docstring).

    Args:
        assets: the current result, e.g. from :func:`filter_assets`.
        filters: the filters that made it (for ``min_score`` and which values are active).
    """
    ids = assets.order_by().values("pk")
    rows = AssetTag.objects.filter(asset_id__in=ids, score__gte=filters.min_score)
    counted = rows.exclude(review=AssetTag.Review.REJECTED)

    def value(facet: str, raw: str, count: int, label: str = "") -> FacetValue:
        return FacetValue(raw, count, label or raw, raw in getattr(filters, facet))

    facets = Facets()
    by_tag = (
        counted.values("tag__name")
        .annotate(n=Count("asset_id", distinct=True))
        .order_by("-n", "tag__name")[:TOP_TAGS]
    )
    facets.tag = [value("tag", row["tag__name"], row["n"]) for row in by_tag]
    by_source = counted.values("source").annotate(n=Count("asset_id", distinct=True)).order_by("-n", "source")
    facets.source = [value("source", row["source"], row["n"]) for row in by_source]
    states = rows.aggregate(
        **{
            state: Count("asset_id", filter=condition, distinct=True)
            for state, condition in REVIEW_STATES.items()
        }
    )
    facets.review = [value("review", state, n) for state, n in states.items() if n]
    by_model = (
        counted.filter(model_version__isnull=False)
        .values("model_version__name", "model_version__version")
        .annotate(n=Count("asset_id", distinct=True))
        .order_by("-n", "model_version__name", "model_version__version")
    )
    facets.model = [
        value("model", f"{row['model_version__name']}:{row['model_version__version']}", row["n"])
        for row in by_model
    ]
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
