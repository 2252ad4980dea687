"""Machine tags: write a model's tags for many assets in a few queries, or record why tagging failed.

The provenance rules of :mod:`catalog.services` are kept here: :func:`record_tags` writes
``source=model, review=suggested`` rows, never touches a row a person decided on, and writing
the same tags twice changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.db.transaction import get_connection
from django.utils import timezone

from catalog import counts
from catalog.models import Asset, AssetTag, ModelVersion, Tag
from catalog.query import normalize_tag_name
from catalog.services._sql import SQL_IN_CHUNK, chunks
from catalog.services.embeddings import record_result_embeddings
from core.results import TagResult, TagScore

Parents = Callable[[str], Iterable[str]]  # tag -> its immediate parents, like TagMap.parents


@dataclass(frozen=True)
class TagChanges:
    """What :func:`record_tags` wrote: rows created, rescored and removed."""

    created: int = 0
    updated: int = 0
    removed: int = 0


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
        changes = _plan_changes(wanted, _existing_rows(wanted), tag_ids, version_id)
        _apply_changes(changes, version_id)
    return TagChanges(len(changes.created), len(changes.rescored), len(changes.stale))


def _existing_rows(wanted: dict[int, tuple]) -> dict[int, dict[int, AssetTag]]:
    """The tag rows the assets have now, by asset and tag id (a few queries, whatever their number)."""
    rows_by_asset: dict[int, dict[int, AssetTag]] = defaultdict(dict)
    for chunk in chunks(list(wanted)):
        for row in AssetTag.objects.filter(asset_id__in=chunk):
            rows_by_asset[row.asset_id][row.tag_id] = row
    return rows_by_asset


@dataclass
class _BatchChanges:
    """What :func:`record_tags_batch` writes: rows to create, to rescore and to delete (by pk),
    and the assets that become tagged."""

    created: list[AssetTag] = field(default_factory=list)
    rescored: list[AssetTag] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    newly_tagged: list[Asset] = field(default_factory=list)


def _plan_changes(
    wanted: dict[int, tuple],
    rows_by_asset: dict[int, dict[int, AssetTag]],
    tag_ids: dict[str, int],
    version_id: int,
) -> _BatchChanges:
    """Compare each asset's predicted tags with its rows: new suggestions, rescored ones, and
    machine suggestions no longer predicted (a person's tags are never touched)."""
    changes = _BatchChanges()
    for asset, scores in wanted.values():
        rows = rows_by_asset[asset.pk]
        for name, score in scores.items():
            row = rows.get(tag_ids[name])
            if row is None:
                changes.created.append(
                    AssetTag(
                        asset=asset,
                        tag_id=tag_ids[name],
                        score=score,
                        source=AssetTag.Source.MODEL,
                        model_version_id=version_id,
                        review=AssetTag.Review.SUGGESTED,
                    )
                )
            elif _is_machine_suggestion(row) and (row.score != score or row.model_version_id != version_id):
                row.score = score
                changes.rescored.append(row)
        predicted = {tag_ids[name] for name in scores}
        changes.stale += [
            row.pk for row in rows.values() if _is_machine_suggestion(row) and row.tag_id not in predicted
        ]
        if asset.status != Asset.Status.TAGGED or asset.error:
            changes.newly_tagged.append(asset)
    return changes


def _apply_changes(changes: _BatchChanges, version_id: int) -> None:
    """Write the planned changes in bulk, and mark the assets tagged (in the database and in memory)."""
    created, rescored, stale, newly_tagged = (
        changes.created,
        changes.rescored,
        changes.stale,
        changes.newly_tagged,
    )
    now = timezone.now()
    AssetTag.objects.bulk_create(created, batch_size=SQL_IN_CHUNK)
    if rescored:  # only the score differs per row: a one-field bulk update is much cheaper
        AssetTag.objects.bulk_update(rescored, ["score"], batch_size=SQL_IN_CHUNK)
    for chunk in chunks([row.pk for row in rescored]):
        AssetTag.objects.filter(pk__in=chunk).update(model_version_id=version_id, updated_at=now)
    for chunk in chunks(stale):
        AssetTag.objects.filter(pk__in=chunk).delete()
    for chunk in chunks([asset.pk for asset in newly_tagged]):
        Asset.objects.filter(pk__in=chunk).update(status=Asset.Status.TAGGED, error="", updated_at=now)
    for asset in newly_tagged:
        asset.status, asset.error, asset.updated_at = Asset.Status.TAGGED, "", now
    if created or stale:
        counts.fold_after_commit()


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


def record_results(results: Sequence[TagResult], tagger, asset_of: Callable = lambda key: key) -> None:
    """Commit a tagger's results in one transaction: the tags (and embeddings, when the model
    makes them) of the images it tagged and the errors of the others (assets marked ``failed``).

    Args:
        results: from ``tagger.tag_images``.
        tagger: the :class:`core.tagger.Tagger` that produced them (its model is recorded).
        asset_of: turns a result's ``key`` into its :class:`Asset` (default: the key is one).
    """
    with transaction.atomic():
        tagged = [(asset_of(result.key), result.tags) for result in results if result.ok]
        record_tags_batch(tagged, tagger.model_name, tagger.model_version, parents=tagger.labels.parents)
        record_result_embeddings(results, tagger, asset_of)
        for result in results:
            if not result.ok:
                mark_failed(asset_of(result.key), str(result.error))
