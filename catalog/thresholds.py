"""What a tag's threshold would keep: counts from the machine scores stored in the catalog,
and the threshold in force.

The tagger keeps a tag on an image when its score reaches the tag's threshold. Each model
ships its own: the pretrained tagger's in ``tag_thresholds.csv`` (the packaged one, or
``IMGTAG_TAGMAP_DIR``: ``settings.tagmap_dir``), a promoted model's in its ``assets/tags.csv`` (set by ``imgtag
evaluate``). A content manager can set a tag's threshold for one model on the thresholds page
(:class:`catalog.models.TagThreshold`, :func:`catalog.services.set_threshold`); it replaces
the model's own when the catalog tags images with that model, from the next batch on.

Only scores at or above the threshold in force when an image was tagged are stored, so the
counts are exact above that threshold and a lower bound below it.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Case, Count, When

from catalog import counts
from catalog.facets import about
from catalog.models import ROW_IN_SAMPLE, SAMPLE_EVERY, AssetTag, Tag, TagThreshold
from core import tagmap
from core.settings import Settings
from core.tagmap import TagMap
from serving.current import CurrentModel, current_vocabulary

STEPS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


@dataclass(frozen=True)
class Row:
    """At ``threshold``: ``kept`` assets, of which people ``accepted`` and ``rejected`` some;
    ``estimated``: counted on the catalog's sample (a common tag: see :func:`table`)."""

    threshold: float
    kept: int
    accepted: int
    rejected: int
    estimated: bool = False

    @property
    def shown(self) -> str:
        return f"≈ {self.kept:,}" if self.estimated else f"{self.kept:,}"


@dataclass(frozen=True)
class CurrentThreshold:
    """The threshold the tagger applies now: the one a person set for the current model
    (``override``) if any, else the model's own (``default``, set in ``where``)."""

    value: float | None  # None: the tag is not in the current model's vocabulary
    model: str  # name:version of the current model
    where: str  # where the model's own threshold is set
    default: float | None = None  # the model's own threshold
    override: TagThreshold | None = None  # the threshold a person set, with who and when
    model_name: str = ""
    model_version: str = ""

    @property
    def off(self) -> bool:
        """The tag is never emitted: its calibration showed it cannot reach the target precision
        (a person may still set a threshold to turn it on)."""
        return self.value == float("inf")

    @property
    def shown(self) -> str:
        return shown(self.value)

    @property
    def default_shown(self) -> str:
        return shown(self.default)


SAMPLE_ABOVE = 50_000
"""A tag with more machine scores than this has what its thresholds keep counted on the catalog's
sample (1 asset in 64: ``catalog_assettag_sample``) unless asked for exact counts: a common tag
of a million-asset catalog has a quarter of a million scores, which the page would otherwise read
in full. The figures are then estimates (``≈``), off by about ``1/sqrt(n / 64)`` of themselves
(under 3% above 50,000 scores)."""


def _machine_rows(tag: str):
    return AssetTag.objects.filter(tag__name=tag, source=AssetTag.Source.MODEL)


def sampled(tag: str) -> bool:
    """Whether :func:`table` and :func:`kept` count ``tag`` on the sample unless told ``exact``."""
    scored = counts.annotate(Tag.objects.filter(name=tag)).values_list("machine_count", flat=True)
    return next(iter(scored), 0) > SAMPLE_ABOVE


def _rows(tag: str, exact: bool) -> tuple[object, int]:
    """The machine rows of ``tag`` to count, and how many rows each stands for."""
    if exact or not sampled(tag):
        return _machine_rows(tag), 1
    return _machine_rows(tag).filter(ROW_IN_SAMPLE), SAMPLE_EVERY


def table(tag: str, steps: tuple[float, ...] = STEPS, *, exact: bool = True) -> list[Row]:
    """How many assets each threshold would keep for ``tag``, and how many of those people
    accepted and rejected: one query, the rows counted by how many steps their score reaches
    and by review (PostgreSQL reads the ``(tag, asset)`` index and its included columns alone).
    ``exact=False``: a tag with over :data:`SAMPLE_ABOVE` scores is counted on the sample."""
    rows, every = _rows(tag, exact)
    reached = functools.reduce(operator.add, (Case(When(score__gte=t, then=1), default=0) for t in steps))
    found = [[0] * (len(steps) + 1) for _ in range(3)]  # [kept, accepted, rejected][steps reached]
    which = {AssetTag.Review.ACCEPTED: 1, AssetTag.Review.REJECTED: 2}
    for step, review, n in (
        rows.annotate(reached=reached).order_by().values_list("reached", "review").annotate(n=Count("tag_id"))
    ):
        found[0][step] += n
        if review in which:
            found[which[review]][step] += n

    def at(kind: int, i: int) -> int:  # rows whose score reaches step i (0-based): i + 1 steps or more
        n = sum(found[kind][i + 1 :])
        return about(n * every) if every > 1 else n

    return [Row(t, at(0, i), at(1, i), at(2, i), every > 1) for i, t in enumerate(steps)]


def kept(tag: str, threshold: float, *, exact: bool = True) -> int:
    """How many assets have a machine score of at least ``threshold`` for ``tag`` (an estimate
    from the sample when ``exact=False`` and :func:`sampled`).

    Each asset has at most one row per tag, so rows are assets.
    """
    rows, every = _rows(tag, exact)
    n = rows.filter(score__gte=threshold).count()
    return about(n * every) if every > 1 else n


def scored_tags() -> list[str]:
    """Tags that have machine scores in the catalog, by name (from the counts kept per tag,
    :mod:`catalog.counts`: no tag row is read)."""
    scored = counts.annotate(Tag.objects.all()).filter(machine_count__gt=0)
    return list(scored.order_by("name").values_list("name", flat=True))


def model_thresholds(settings: Settings) -> tuple[CurrentModel, str, dict[str, float]]:
    """The model that tags now, where its own thresholds are set, and those thresholds by tag."""
    model, vocabulary, source = current_vocabulary(settings)
    if vocabulary is not None:
        how = "set by imgtag evaluate" if model.path is not None else "the starter model's calibration"
        where = f"{source} ({how}; off: never emitted, its calibration could not reach the target precision)"
        return model, where, _vocabulary_thresholds(vocabulary)
    folder = Path(settings.tagmap_dir or tagmap.DATA_DIR)
    where = f"{folder / tagmap.THRESHOLD_FILE} (the default rows * and ** or the tag's own row)"
    return model, where, _tagmap_thresholds(str(folder), _mtime(folder / tagmap.THRESHOLD_FILE))


_by_vocabulary: dict[int, tuple[object, dict[str, float]]] = {}


def _vocabulary_thresholds(vocabulary) -> dict[str, float]:
    """``{tag: threshold}`` of a vocabulary (cached: the vocabularies of served models are cached
    and never change)."""
    cached = _by_vocabulary.get(id(vocabulary))
    if cached is None or cached[0] is not vocabulary:
        thresholds = {
            tag: float(limit) for tag, limit in zip(vocabulary.tags, vocabulary.thresholds, strict=True)
        }
        cached = _by_vocabulary[id(vocabulary)] = (vocabulary, thresholds)
    return cached[1]


def current(tag: str, settings: Settings) -> CurrentThreshold:
    """The threshold of ``tag`` in force for the model that tags now
    (``serving.current.current_vocabulary``): the one set on the thresholds page, else the model's.

    ``settings``: the web process's (:func:`catalog.conf.imgtag_settings`)."""
    model, where, thresholds = model_thresholds(settings)
    default = thresholds.get(tag)
    override = (
        TagThreshold.objects.select_related("updated_by")
        .filter(tag__name=tag, model_name=model.name, model_version=model.version)
        .first()
    )
    if default is None:  # not a tag of this model: the tagger ignores any threshold set for it
        value = None
    else:
        value = _rounded(override.threshold if override else default)
    return CurrentThreshold(
        value,
        f"{model.name}:{model.version}",
        where,
        _rounded(default),
        override,
        model.name,
        model.version,
    )


def _rounded(value: float | None) -> float | None:
    return value if value is None or value == float("inf") else round(value, 4)


def shown(value: float | None) -> str:
    """A threshold as people read it: ``off`` when the tag is never emitted."""
    return "off" if value == float("inf") else "" if value is None else f"{value:g}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@functools.lru_cache(maxsize=4)
def _tagmap_thresholds(folder: str, mtime: float) -> dict[str, float]:
    labels = TagMap.load(folder)
    return {tag: float(limit) for tag, limit in zip(labels.tags, labels.thresholds, strict=True)}


@dataclass(frozen=True)
class Listed:
    """A scored tag on the thresholds page's table: how many assets carry it, its threshold in
    force for the model that tags now (None: not one of the model's tags) and who set it (None:
    the model's default)."""

    tag: str
    assets: int
    threshold: float | None
    override: TagThreshold | None = None

    @property
    def shown(self) -> str:
        return shown(self.threshold)

    @property
    def how(self) -> str:
        """How the threshold in force was set, as the table says it."""
        if self.threshold is None:
            return "not a tag of this model"
        if self.override is not None:
            who = self.override.updated_by.get_username() if self.override.updated_by else "someone"
            return f"set by {who} on {self.override.updated_at:%Y-%m-%d %H:%M}"
        return (
            "the model's default: never emitted" if self.threshold == float("inf") else "the model's default"
        )


SORTS = ("assets", "tag", "threshold")  # the table's columns it can be sorted by


def listing(
    settings: Settings, prefix: str = "", sort: str = "assets", descending: bool = True
) -> list[Listed]:
    """The tags with machine scores in the catalog (whose names start with ``prefix``), each with
    its asset count (:mod:`catalog.counts`) and its threshold in force, sorted by ``sort`` (one
    of :data:`SORTS`). Two queries, whatever the catalog's size: the counts and the overrides."""
    model, _, defaults = model_thresholds(settings)
    tags = counts.annotate(Tag.objects.all()).filter(machine_count__gt=0)
    if prefix:
        tags = tags.filter(name__startswith=prefix)
    overrides = {
        row.tag.name: row
        for row in TagThreshold.objects.select_related("tag", "updated_by").filter(
            model_name=model.name, model_version=model.version, tag__in=tags.values("pk")
        )
    }
    rows = []
    for name, assets in tags.values_list("name", "asset_count"):
        override, default = overrides.get(name), defaults.get(name)
        value = None if default is None else _rounded(override.threshold if override else default)
        rows.append(Listed(name, assets, value, override if default is not None else None))
    rows.sort(key=lambda row: row.tag)  # ties by name, whichever way the rest goes (sorts are stable)
    if sort == "assets":
        rows.sort(key=lambda row: row.assets, reverse=descending)
    elif sort == "threshold":  # off (never emitted) is the highest; a tag the model lacks is last either way
        rows.sort(key=lambda row: row.threshold or 0.0, reverse=descending)
        rows.sort(key=lambda row: row.threshold is None)
    elif descending:
        rows.reverse()
    return rows
