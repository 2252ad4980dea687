"""What the catalog does, as plain functions: ingest, tag, review, search.

The CLI, the REST API and the queue worker all call these; nothing here knows about HTTP.
Each function is safe to call inside the caller's transaction (the bulk importer commits one
transaction per chunk) and opens its own when there is none.

Tag provenance rules (the contract every caller relies on):

- machine tags are written by :func:`record_tags` as ``source=model, review=suggested``;
- a tag row that a person touched (``source=human``, or review ``accepted``/``rejected``) is
  never changed or removed by :func:`record_tags`;
- writing the same tags twice changes nothing (not even a timestamp), so a message that is
  delivered twice is harmless.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from django.db.transaction import get_connection
from django.utils import timezone

from catalog.models import Asset, AssetTag, ModelVersion, Tag, TagThreshold
from catalog.query import compile_query, normalize_tag_name
from catalog.storage import get_storage
from serving import current as tagging
from core.imageio import ImageInfo, probe
from core.results import TagResult, TagScore

Parents = Callable[[str], Iterable[str]]  # tag -> its immediate parents, like TagMap.parents

REVIEW_ACTIONS = ("accept", "reject", "add")
_SQL_IN_CHUNK = 500
logger = logging.getLogger(__name__)


class UploadTooLarge(ValueError):
    """An original over ``IMGTAG_MAX_UPLOAD_MB``; the message names the file and the limit."""

    reason = "too_large"

    def __init__(self, name: str, limit: int, size: int | None = None):
        self.name, self.limit, self.size = name, limit, size
        actual = f" ({size / 2**20:.1f} MiB)" if size is not None else ""
        super().__init__(
            f"{name}: the file{actual} is larger than the upload limit of {limit / 2**20:g} MiB; "
            "downscale or recompress it, or raise IMGTAG_MAX_UPLOAD_MB on the server"
        )


class TagNotOnAsset(LookupError):
    """A review of a tag that the asset does not have."""


@dataclass(frozen=True)
class TagChanges:
    """What :func:`record_tags` wrote: rows created, rescored and removed."""

    created: int = 0
    updated: int = 0
    removed: int = 0


# ---------------------------------------------------------------------------- ingest


def clean_filename(filename: str) -> str:
    """The base name of an uploaded file, at most 255 characters, never empty."""
    name = os.path.basename(filename.replace("\\", "/")).strip() or "unnamed"
    if len(name) > 255:
        stem, ext = os.path.splitext(name)
        name = stem[: 255 - len(ext[:16])] + ext[:16]
    return name


def validate(data: bytes, filename: str) -> ImageInfo:
    """Check an upload without storing it: size limit first, then the image header.

    Returns:
        The header information (format, width, height).

    Raises:
        UploadTooLarge: more than ``IMGTAG_MAX_UPLOAD_BYTES``.
        core.imageio.ImageError: not an image we can decode; ``.reason`` names the problem.
    """
    limit = settings.IMGTAG_MAX_UPLOAD_BYTES
    if len(data) > limit:
        raise UploadTooLarge(filename, limit, len(data))
    return probe(data, filename, settings.IMGTAG_MAX_PIXELS, settings.IMGTAG_MAX_DECODE_BYTES)


@dataclass(frozen=True)
class Prepared:
    """An original that passed validation and is stored, waiting for its catalog row."""

    sha256: str
    uri: str
    filename: str
    size: int
    info: ImageInfo


def prepare(data: bytes, filename: str, sha256: str | None = None) -> Prepared:
    """Validate and store an original; touches no database, so threads may call it.

    Args:
        data: the encoded image bytes.
        filename: the name it was uploaded or imported under (kept for display).
        sha256: the hex digest of ``data`` when the caller has it already.

    Raises:
        UploadTooLarge, core.imageio.ImageError: see :func:`validate`; nothing is stored.
    """
    info = validate(data, filename)
    # The file goes first: a crash before the row leaves an orphan file that the next upload
    # of the same bytes reuses, never a row without its file. ``put`` is a no-op when present.
    stored_sha, uri = get_storage().put(data, sha256)
    return Prepared(stored_sha, uri, clean_filename(filename), len(data), info)


def register(prepared: Sequence[Prepared]) -> list[tuple[Asset, bool]]:
    """Create the asset rows (status ``pending``) of stored originals, in few queries.

    Returns:
        ``(asset, created)`` per item, in order; content already in the catalog (or repeated
        within ``prepared``) returns the existing asset and ``False``.
    """
    shas = [p.sha256 for p in prepared]
    existing = {
        a.sha256: a for values in _chunks(list(set(shas))) for a in Asset.objects.filter(sha256__in=values)
    }
    new = {p.sha256: p for p in prepared if p.sha256 not in existing}
    rows = [
        Asset(
            sha256=p.sha256,
            uri=p.uri,
            filename=p.filename,
            size=p.size,
            width=p.info.width,
            height=p.info.height,
            format=p.info.format,
        )
        for p in new.values()
    ]
    try:
        with transaction.atomic():
            created = {a.sha256: a for a in Asset.objects.bulk_create(rows)}
    except IntegrityError:  # the same bytes were registered concurrently: one at a time
        created = {}
        for row in rows:
            try:
                with transaction.atomic():
                    row.save()
                created[row.sha256] = row
            except IntegrityError:
                existing[row.sha256] = Asset.objects.get(sha256=row.sha256)
    out, first = [], set()
    for sha in shas:
        if sha in created and sha not in first:
            first.add(sha)
            out.append((created[sha], True))
        else:
            out.append((existing.get(sha) or created[sha], False))
    return out


def ingest(data: bytes, filename: str) -> tuple[Asset, bool]:
    """Store an original and create its asset row (status ``pending``), once per content.

    Returns:
        ``(asset, created)``; bytes already in the catalog return that asset and ``False``
        (and are stored again only if their file went missing).

    Raises:
        UploadTooLarge, core.imageio.ImageError: see :func:`validate`; nothing is stored.
    """
    return register([prepare(data, filename)])[0]


def _chunks(values: list) -> Iterator[list]:
    """Slices short enough for an ``IN (...)`` on any database."""
    for start in range(0, len(values), _SQL_IN_CHUNK):
        yield values[start : start + _SQL_IN_CHUNK]


def existing_sha256(shas: Iterable[str]) -> set[str]:
    """The hashes among ``shas`` that the catalog already holds (queried in chunks)."""
    found: set[str] = set()
    for chunk in _chunks(list(dict.fromkeys(shas))):
        found.update(Asset.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
    return found


# ---------------------------------------------------------------------------- tagging


class _TransactionIds:
    """Primary keys learnt inside the current transaction, so a batch looks each one up once.

    The ids ride on the transaction itself: each batch of learnt ids is registered as a
    (no-op) ``on_commit`` callback. Django drops the callbacks of a transaction or savepoint
    that rolls back and clears them at commit, so an id is reused exactly while the row it
    names is certain to be visible to this transaction: never after a rollback, never in a
    later transaction (where another process may have deleted or renamed the row).
    """

    class _Batch:
        def __init__(self, owner: _TransactionIds, ids: dict):
            self.owner, self.ids = owner, ids

        def __call__(self) -> None:
            """Nothing to do at commit: the ids simply stop being reused."""

    def get(self, keys: Iterable) -> dict:
        connection = get_connection()
        found: dict = {}
        if connection.in_atomic_block:
            wanted = set(keys)
            # Django's list of pending (savepoint ids, callback, robust) entries; the tests
            # test_ids_learnt_in_a_rolled_back_* guard this use of it.
            for _savepoints, callback, _robust in connection.run_on_commit:
                if isinstance(callback, self._Batch) and callback.owner is self:
                    found.update((key, callback.ids[key]) for key in wanted & callback.ids.keys())
        return found

    def remember(self, ids: dict) -> None:
        if ids and get_connection().in_atomic_block:
            transaction.on_commit(self._Batch(self, ids))


_tag_ids_cache = _TransactionIds()
_model_version_ids_cache = _TransactionIds()


def _model_version_id(name: str, version: str) -> int:
    key = (name, version)
    cached = _model_version_ids_cache.get([key])
    if key in cached:
        return cached[key]
    model_version, _ = ModelVersion.objects.get_or_create(name=name, version=version)
    _model_version_ids_cache.remember({key: model_version.pk})
    return model_version.pk


def _with_ancestors(names: Iterable[str], parents: Parents | None) -> tuple[set[str], set[tuple[str, str]]]:
    """Every tag in ``names`` and above it, and the (child, parent) links between them."""
    seen: set[str] = set()
    links: set[tuple[str, str]] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for parent in parents(name) if parents else ():
            parent = normalize_tag_name(parent)
            if parent and parent != name:
                links.add((name, parent))
                todo.append(parent)
    return seen, links


def _tag_ids(names: set[str], parents: Parents | None) -> dict[str, int]:
    """Ids of the tags ``names``, creating missing tags and their parent links."""
    ids = _tag_ids_cache.get(names)
    missing = names - ids.keys()
    if not missing:
        return ids
    wanted, links = _with_ancestors(missing, parents)
    known = dict(Tag.objects.filter(name__in=wanted).values_list("name", "id"))
    if len(known) < len(wanted):
        Tag.objects.bulk_create([Tag(name=n) for n in sorted(wanted - known.keys())], ignore_conflicts=True)
        known = dict(Tag.objects.filter(name__in=wanted).values_list("name", "id"))
    if links:
        Link = Tag.parents.through
        Link.objects.bulk_create(
            [Link(from_tag_id=known[child], to_tag_id=known[parent]) for child, parent in sorted(links)],
            ignore_conflicts=True,
        )
    _tag_ids_cache.remember(known)
    ids.update((name, known[name]) for name in missing)
    return ids


def _best_scores(tags: Sequence[TagScore]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for tag in tags:
        name = normalize_tag_name(tag.name)
        score = float(tag.score)
        if not name:
            raise ValueError(f"empty tag name in {tag!r}")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"tag {name!r} has score {score}; scores must be between 0 and 1")
        scores[name] = max(score, scores.get(name, 0.0))
    return scores


def record_tags(
    asset: Asset,
    tags: Sequence[TagScore],
    model_name: str,
    model_version: str,
    *,
    parents: Parents | None = None,
) -> TagChanges:
    """Write a model's tags for one asset (idempotent upsert) and mark it ``tagged``.

    New tags are created as ``source=model, review=suggested``; suggested machine tags are
    rescored; suggested machine tags from earlier runs that this run no longer predicts are
    removed. Rows a person decided on (human tags, accepted or rejected ones) are left as
    they are. Calling it again with the same input writes nothing.

    Called for many assets inside one transaction, it looks up each tag and the model version
    once per transaction; :func:`record_tags_batch` is faster still for a whole batch.

    Args:
        asset: the asset the tags belong to.
        tags: the predicted tags (names are stored lowercase).
        model_name, model_version: the model that produced them (a :class:`ModelVersion`).
        parents: ``tag -> immediate parent tags`` (``tagger.labels.parents``) or an object with
            such a ``parents`` method (the tag map); when given, new tags are linked to their
            parents, which are created as needed.

    Returns:
        How many tag rows were created, rescored and removed.

    Raises:
        ValueError: a tag with an empty name or a score outside [0, 1]; nothing is written.
    """
    return record_tags_batch([(asset, tags)], model_name, model_version, parents=parents)


def record_tags_batch(
    items: Iterable[tuple[Asset, Sequence[TagScore]]],
    model_name: str,
    model_version: str,
    *,
    parents: Parents | None = None,
) -> TagChanges:
    """:func:`record_tags` for many assets at once, in a few queries whatever their number.

    Args:
        items: ``(asset, tags)`` pairs; when an asset comes twice, its last tags count.
        model_name, model_version, parents: as for :func:`record_tags`.

    Returns:
        The total of rows created, rescored and removed.

    Raises:
        ValueError: a tag with an empty name or a score outside [0, 1]; nothing is written.
    """
    if parents is not None and not callable(parents):
        parents = parents.parents
    wanted = {asset.pk: (asset, _best_scores(tags)) for asset, tags in items}
    if not wanted:
        return TagChanges()
    with transaction.atomic(savepoint=False):
        version_id = _model_version_id(model_name, model_version)
        tag_ids = _tag_ids(set().union(*(scores for _, scores in wanted.values())), parents)
        rows_by_asset: dict[int, dict[int, AssetTag]] = defaultdict(dict)
        for chunk in _chunks(list(wanted)):
            for row in AssetTag.objects.filter(asset_id__in=chunk):
                rows_by_asset[row.asset_id][row.tag_id] = row

        created, rescored, stale, newly_tagged = [], [], [], []
        for asset, scores in wanted.values():
            rows = rows_by_asset[asset.pk]
            for name, score in scores.items():
                row = rows.get(tag_ids[name])
                if row is None:
                    created.append(
                        AssetTag(
                            asset=asset,
                            tag_id=tag_ids[name],
                            score=score,
                            source=AssetTag.Source.MODEL,
                            model_version_id=version_id,
                            review=AssetTag.Review.SUGGESTED,
                        )
                    )
                elif _is_machine_suggestion(row) and (
                    row.score != score or row.model_version_id != version_id
                ):
                    row.score = score
                    rescored.append(row)
            predicted = {tag_ids[name] for name in scores}
            stale += [
                row.pk for row in rows.values() if _is_machine_suggestion(row) and row.tag_id not in predicted
            ]
            if asset.status != Asset.Status.TAGGED or asset.error:
                newly_tagged.append(asset)

        now = timezone.now()
        AssetTag.objects.bulk_create(created, batch_size=_SQL_IN_CHUNK)
        if rescored:  # only the score differs per row: a one-field bulk update is much cheaper
            AssetTag.objects.bulk_update(rescored, ["score"], batch_size=_SQL_IN_CHUNK)
        for chunk in _chunks([row.pk for row in rescored]):
            AssetTag.objects.filter(pk__in=chunk).update(model_version_id=version_id, updated_at=now)
        for chunk in _chunks(stale):
            AssetTag.objects.filter(pk__in=chunk).delete()
        for chunk in _chunks([asset.pk for asset in newly_tagged]):
            Asset.objects.filter(pk__in=chunk).update(status=Asset.Status.TAGGED, error="", updated_at=now)
        for asset in newly_tagged:
            asset.status, asset.error, asset.updated_at = Asset.Status.TAGGED, "", now
    return TagChanges(len(created), len(rescored), len(stale))


def _is_machine_suggestion(row: AssetTag) -> bool:
    return row.source == AssetTag.Source.MODEL and row.review == AssetTag.Review.SUGGESTED


def mark_failed(asset: Asset, error: str) -> None:
    """Record that tagging ``asset`` failed and why; its existing tags are kept.

    Args:
        asset: the asset that could not be tagged.
        error: a message a person can act on (it names the file and the problem).
    """
    asset.status, asset.error, asset.updated_at = Asset.Status.FAILED, error, timezone.now()
    Asset.objects.filter(pk=asset.pk).update(status=asset.status, error=error, updated_at=asset.updated_at)


def tag_assets_in_process(assets: Iterable[Asset], tagger=None) -> list[TagResult]:
    """Tag stored assets with the in-process model and record their tags or failures.

    Args:
        assets: assets whose originals are stored (typically the ``pending`` ones just uploaded).
        tagger: a :class:`core.tagger.Tagger`; default the process-wide one from
            :func:`serving.current.get_tagger` (the model loads on first use, in about 3 s).
            The thresholds people set for its model (:func:`threshold_overrides`) apply.

    Returns:
        One result per asset whose original could be read, in order (``result.key`` is the
        asset); an asset whose original is missing from storage is marked failed.
    """
    storage = get_storage()
    items = []
    for asset in assets:
        try:
            items.append((asset, storage.read(asset.uri), asset.filename))
        except FileNotFoundError:
            mark_failed(
                asset,
                f"{asset.filename}: the original is missing from storage at {asset.uri}; upload it again",
            )
    if not items:
        return []
    if tagger is None:
        tagger = tagging.get_tagger()
    tagger = with_catalog_thresholds(tagger)
    results = list(tagger.tag_images(items))
    record_results(results, tagger)
    return results


def record_results(results: Sequence[TagResult], tagger, asset_of: Callable = lambda key: key) -> None:
    """Commit a tagger's results in one transaction: the tags of the images it tagged and
    the errors of the others (assets marked ``failed``).

    Args:
        results: from ``tagger.tag_images``.
        tagger: the :class:`core.tagger.Tagger` that produced them (its model is recorded).
        asset_of: turns a result's ``key`` into its :class:`Asset` (default: the key is one).
    """
    with transaction.atomic():
        tagged = [(asset_of(result.key), result.tags) for result in results if result.ok]
        record_tags_batch(tagged, tagger.model_name, tagger.model_version, parents=tagger.labels.parents)
        for result in results:
            if not result.ok:
                mark_failed(asset_of(result.key), str(result.error))


def publish_for_tagging(assets: Iterable[Asset]) -> bool:
    """Publish a tagging message per asset (persistent, confirmed).

    Returns:
        True when published; False when RabbitMQ is unreachable — the assets then stay
        ``pending`` and ``imgtag requeue --pending`` publishes them later.
    """
    from pika.exceptions import AMQPError

    from core import broker
    from core.settings import Settings

    assets = list(assets)
    if not assets:
        return True
    try:
        with broker.Publisher(Settings.from_env()) as publisher:
            publisher.publish_many(broker.TaggingMessage.for_asset(asset) for asset in assets)
    except (broker.BrokerUnavailable, broker.QueueMismatch, AMQPError) as exc:  # unreachable, refused,
        # lost mid-publish, or a queue declared with other settings (the log says which)
        logger.warning(
            "%s; %d upload(s) stay pending until `imgtag requeue --pending`", exc or repr(exc), len(assets)
        )
        return False
    return True


def tag_uploads(assets: Iterable[Asset]) -> None:
    """Tag new uploads the way ``IMGTAG_UPLOAD_TAGGING`` says: through the queue or in process."""
    if settings.IMGTAG_UPLOAD_TAGGING == "inprocess":
        tag_assets_in_process(assets)
    else:
        publish_for_tagging(assets)


# ---------------------------------------------------------------------------- thresholds


def with_catalog_thresholds(tagger):
    """``tagger`` with the thresholds people set for its model (:func:`threshold_overrides`)."""
    return tagger.with_thresholds(threshold_overrides(tagger.model_name, tagger.model_version))


def threshold_overrides(model_name: str, model_version: str) -> dict[str, float]:
    """The thresholds people set for a model's tags, ``{tag name: threshold}``, in one query.

    Whatever tags for the catalog (the queue worker's ``tag_batch``, :func:`tag_assets_in_process`,
    ``imgtag import``) applies them before each batch with ``tagger.with_thresholds``, so a
    change holds from the next batch on, in every worker, with no restart.
    """
    rows = TagThreshold.objects.filter(model_name=model_name, model_version=model_version)
    return dict(rows.values_list("tag__name", "threshold"))


def set_threshold(
    tag_name: str, model_name: str, model_version: str, threshold: float, user=None
) -> TagThreshold:
    """Set the threshold of a tag for one model (replacing the one set before, if any).

    Args:
        tag_name: the tag (any case; stored lowercase); created when the catalog has no such tag yet.
        model_name, model_version: the model whose scores the threshold was tuned on.
        threshold: above 0 and at most 1.
        user: who set it (a Django user, or ``None``).

    Raises:
        ValueError: an empty tag name or a threshold outside (0, 1]; nothing is written.
    """
    name = normalize_tag_name(tag_name)
    if not name:
        raise ValueError("the tag name is empty")
    value = float(threshold)
    if not 0.0 < value <= 1.0:  # also refuses NaN
        raise ValueError(f"a threshold is above 0 and at most 1; {value:g} is not")
    if not (model_name and model_version):
        raise ValueError("name the model (name and version) the threshold is for")
    setter = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        tag, _ = Tag.objects.get_or_create(name=name)
        row, _ = TagThreshold.objects.update_or_create(
            tag=tag,
            model_name=model_name,
            model_version=model_version,
            defaults={"threshold": value, "updated_by": setter},
        )
    return row


def reset_threshold(tag_name: str, model_name: str, model_version: str) -> bool:
    """Remove the threshold people set for a tag and model: the model's own applies again.

    Returns:
        True when there was one to remove.
    """
    rows = TagThreshold.objects.filter(
        tag__name=normalize_tag_name(tag_name), model_name=model_name, model_version=model_version
    )
    deleted, _ = rows.delete()
    return bool(deleted)


# ---------------------------------------------------------------------------- review


def review(asset: Asset, tag_name: str, action: str, user=None) -> AssetTag:
    """Record a person's decision about one tag on one asset.

    Args:
        asset: the asset.
        tag_name: the tag (any case; stored lowercase).
        action: ``accept`` or ``reject`` an existing tag, or ``add`` a tag (a human tag,
            score 1.0, accepted; adding a tag the asset already has accepts it).
        user: who decided (a Django user, or ``None``).

    Returns:
        The tag row after the decision.

    Raises:
        ValueError: an unknown action or an empty tag name.
        TagNotOnAsset: ``accept``/``reject`` of a tag the asset does not have.
    """
    if action not in REVIEW_ACTIONS:
        raise ValueError(f"unknown review action {action!r}; use one of {', '.join(REVIEW_ACTIONS)}")
    name = normalize_tag_name(tag_name)
    if not name:
        raise ValueError("the tag name is empty")
    reviewer = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        rows = AssetTag.objects.select_for_update(of=("self",))
        row = rows.filter(asset=asset, tag__name=name).first()
        if row is None:
            if action != "add":
                raise TagNotOnAsset(f"asset {asset.pk} has no tag {name!r}; use the action 'add' to add it")
            tag, _ = Tag.objects.get_or_create(name=name)
            return AssetTag.objects.create(
                asset=asset,
                tag=tag,
                score=1.0,
                source=AssetTag.Source.HUMAN,
                review=AssetTag.Review.ACCEPTED,
                reviewed_by=reviewer,
            )
        row.review = AssetTag.Review.REJECTED if action == "reject" else AssetTag.Review.ACCEPTED
        row.reviewed_by = reviewer
        row.save(update_fields=["review", "reviewed_by", "updated_at"])
        return row


def add_tag_to_assets(asset_ids: Iterable[int], tag_name: str, user=None) -> int:
    """Add one tag to many assets (``review(asset, tag, "add")`` on each), in one transaction.

    Args:
        asset_ids: the assets' ids; ids of assets that do not exist are skipped.
        tag_name: the tag (any case; stored lowercase); an asset that has it already gets
            it accepted, as :func:`review` does.
        user: who decided.

    Returns:
        How many assets now carry the tag as a person's decision.

    Raises:
        ValueError: an empty tag name; nothing is changed.
    """
    if not normalize_tag_name(tag_name):
        raise ValueError("the tag name is empty")
    ids = sorted(set(asset_ids))
    with transaction.atomic():
        assets = [asset for chunk in _chunks(ids) for asset in Asset.objects.filter(pk__in=chunk)]
        for asset in assets:
            review(asset, tag_name, "add", user)
    return len(assets)


# ---------------------------------------------------------------------------- search


def with_tags(assets: QuerySet[Asset]) -> QuerySet[Asset]:
    """``assets`` with their tag rows (tag and model version joined) fetched in one query."""
    rows = AssetTag.objects.select_related("tag", "model_version").order_by("-score", "tag__name")
    return assets.prefetch_related(Prefetch("asset_tags", queryset=rows))


def search(
    query: str, *, min_score: float = 0.0, source: str | None = None, review: str | None = None
) -> QuerySet[Asset]:
    """Assets matching a tag query, newest first, with their tags prefetched.

    Args:
        query: see :mod:`catalog.query`, e.g. ``'cat AND NOT "coffee mug"'``; blank lists
            every asset (the options below then do not apply).
        min_score, source, review: see :func:`catalog.query.compile_query`.

    Raises:
        catalog.query.QuerySyntaxError: the query does not parse (the message says where).
        catalog.query.QueryError: an option is out of range.
    """
    assets = Asset.objects.all()
    if query.strip():
        assets = assets.filter(compile_query(query, min_score=min_score, source=source, review=review))
    return with_tags(assets)


def asset_summary(asset: Asset) -> dict:
    """A JSON-ready view of an asset and its tags that count (rejected ones left out)."""
    tags = sorted(
        (row for row in asset.asset_tags.all() if row.review != AssetTag.Review.REJECTED),
        key=lambda row: (-row.score, row.tag.name),
    )
    return {
        "id": asset.pk,
        "sha256": asset.sha256,
        "filename": asset.filename,
        "format": asset.format,
        "width": asset.width,
        "height": asset.height,
        "size": asset.size,
        "status": asset.status,
        "error": asset.error,
        "created_at": asset.created_at.isoformat(),
        "tags": [
            {
                "name": row.tag.name,
                "score": row.score,
                "source": row.source,
                "model_version": str(row.model_version) if row.model_version else None,
                "review": row.review,
            }
            for row in tags
        ],
    }
