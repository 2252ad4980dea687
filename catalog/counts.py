"""Per-tag asset counts kept as tags are written, so no page counts a million tag rows.

Two figures per tag (:class:`catalog.models.TagCount`): ``assets``, the tag rows not rejected
(the assets that carry the tag: what the tag list, autocomplete, the gallery's unfiltered tag
facet and a one-tag search count), and ``machine``, the rows a model scored, whatever their
review (the tags the thresholds page lists).

**Who keeps them: the database.** Triggers on ``catalog_assettag`` (migration ``0007_tag_counts``)
see every write, the services', the admin's and a cascade's alike:

- **SQLite**: a row trigger adds each row's change to its tag's count at once (SQLite has one
  writer at a time, so there is nothing to wait for).
- **PostgreSQL**: a statement trigger appends the statement's net change per tag to
  ``catalog_tagcountdelta`` (an append-only table: two workers committing the same tags never
  wait for each other or deadlock on a count row). :func:`fold` moves the changes into
  ``catalog_tagcount`` in one statement; the services that write tags call it after they commit
  (:func:`fold_after_commit`), and one process folds at a time (an advisory lock; the others
  skip, their changes are folded next time).

**Freshness: exact, always.** Readers take the count plus the changes not folded yet, in one
query (:func:`annotate`), so a count read after a commit includes it, folded or not. The cost of
a read grows with the changes waiting, which the writers' folds keep to a few hundred rows.

:func:`recount` rebuilds both tables from the tag rows (one pass over them, writes waiting
meanwhile), and :func:`mismatches` compares them with an exact count (one pass too):
``python -m catalog tagcounts`` (``--recount`` to rebuild).
"""

from __future__ import annotations

from collections.abc import Collection

from django.db import connection, transaction
from django.db.models import BigIntegerField, F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from catalog.models import Tag, TagCount, TagCountDelta

#: The PostgreSQL advisory lock held while folding ("imgtagTC").
FOLD_LOCK_KEY = int.from_bytes(b"imgtagTC", "big", signed=True)

_FOLD = """
WITH moved AS (DELETE FROM catalog_tagcountdelta RETURNING tag_id, assets, machine),
summed AS (SELECT tag_id, SUM(assets) AS assets, SUM(machine) AS machine FROM moved GROUP BY tag_id)
INSERT INTO catalog_tagcount (tag_id, assets, machine)
SELECT summed.tag_id, summed.assets, summed.machine FROM summed
WHERE EXISTS (SELECT 1 FROM catalog_tag WHERE catalog_tag.id = summed.tag_id)
ORDER BY summed.tag_id
ON CONFLICT (tag_id) DO UPDATE
SET assets = catalog_tagcount.assets + EXCLUDED.assets, machine = catalog_tagcount.machine + EXCLUDED.machine
"""


def _pending(field: str) -> Coalesce:
    changes = (
        TagCountDelta.objects.filter(tag_id=OuterRef("pk"))
        .order_by()
        .values("tag_id")
        .annotate(total=Sum(field))
        .values("total")
    )
    return Coalesce(Subquery(changes, output_field=BigIntegerField()), Value(0))


def annotate(tags: QuerySet[Tag]) -> QuerySet[Tag]:
    """``tags`` with ``asset_count`` and ``machine_count``: the kept counts plus the changes not
    folded yet (on SQLite there are none). Filter and order on them like any annotation."""
    if connection.vendor != "postgresql":  # the row triggers keep TagCount itself exact
        return tags.annotate(
            asset_count=Coalesce(F("count__assets"), Value(0)),
            machine_count=Coalesce(F("count__machine"), Value(0)),
        )
    return tags.annotate(
        asset_count=Coalesce(F("count__assets"), Value(0)) + _pending("assets"),
        machine_count=Coalesce(F("count__machine"), Value(0)) + _pending("machine"),
    )


# A search's tags by name: the count read as :func:`annotate` reads it, in SQL of its own. Built
# by the ORM, this query cost a search request 1 ms of CPU, about 16 times its own run time
# (the count of changes waiting is a correlated subquery); a search reads it on every request.
# On SQLite nothing waits (the row triggers keep TagCount exact): the subquery finds no row.
_OF_TAGS = """
SELECT catalog_tag.name, catalog_tag.id,
       COALESCE(kept.assets, 0)
       + COALESCE((SELECT SUM(waiting.assets) FROM catalog_tagcountdelta AS waiting
                   WHERE waiting.tag_id = catalog_tag.id), 0)
FROM catalog_tag LEFT JOIN catalog_tagcount AS kept ON kept.tag_id = catalog_tag.id
WHERE catalog_tag.name IN ({names})
"""


def of_tags(names: Collection[str]) -> dict[str, tuple[int, int]]:
    """``{name: (tag id, assets)}`` of the tags among ``names`` that exist, with the assets count
    :func:`annotate` gives (``asset_count``), in one query. At most a search's terms
    (:data:`catalog.query.MAX_TERMS`) at a time: each name is a parameter of its own."""
    names = list(names)
    if not names:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_OF_TAGS.format(names=", ".join(["%s"] * len(names))), names)
        return {name: (id_, int(assets)) for name, id_, assets in cursor.fetchall()}


def fold() -> int:
    """Move the changes waiting in ``catalog_tagcountdelta`` into ``catalog_tagcount`` (PostgreSQL;
    nothing to do on SQLite), in a transaction of its own. Skips, returning 0, when another
    process is folding. Returns how many changes it moved."""
    if connection.vendor != "postgresql":
        return 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FOLD_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return 0
        # a fold lost in a crash loses its delete and its insert together (the changes stay
        # waiting), so it need not wait for its commit to reach the disk
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute(_FOLD)
        return cursor.rowcount


def fold_after_commit() -> None:
    """Fold once the current transaction commits (at once outside one); for the services that
    write tag rows. A fold that fails is left for the next one: the counts read stay exact."""
    if connection.vendor != "postgresql":
        return
    if connection.in_atomic_block and any(callback is fold for _, callback, _ in connection.run_on_commit):
        return  # once a transaction (Django's list of pending callbacks: see services.tagging)
    transaction.on_commit(fold, robust=True)


_EXACT = """
SELECT tag_id,
       SUM(CASE WHEN review <> 'rejected' THEN 1 ELSE 0 END) AS assets,
       SUM(CASE WHEN source = 'model' THEN 1 ELSE 0 END) AS machine
FROM catalog_assettag GROUP BY tag_id
"""

# Every tag's kept counts (with the changes not folded) beside its exact counts, in one statement
# (so one snapshot on PostgreSQL, however the tag rows change meanwhile).
_COMPARE = f"""
SELECT catalog_tag.name,
       COALESCE(kept.assets, 0) + COALESCE(waiting.assets, 0),
       COALESCE(kept.machine, 0) + COALESCE(waiting.machine, 0),
       COALESCE(exact.assets, 0), COALESCE(exact.machine, 0)
FROM catalog_tag
LEFT JOIN catalog_tagcount AS kept ON kept.tag_id = catalog_tag.id
LEFT JOIN (SELECT tag_id, SUM(assets) AS assets, SUM(machine) AS machine
           FROM catalog_tagcountdelta GROUP BY tag_id) AS waiting ON waiting.tag_id = catalog_tag.id
LEFT JOIN ({_EXACT}) AS exact ON exact.tag_id = catalog_tag.id
"""


def mismatches() -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Tags whose counts as read (:func:`annotate`) differ from an exact count of their rows:
    ``{name: ((assets, machine) read, (assets, machine) counted)}``, empty when all agree. Reads
    every tag row (one statement, one snapshot)."""
    with connection.cursor() as cursor:
        cursor.execute(_COMPARE)
        rows = cursor.fetchall()
    return {name: ((int(a), int(m)), (int(ea), int(em))) for name, a, m, ea, em in rows if (a, m) != (ea, em)}


def recount() -> int:
    """Rebuild the counts from the tag rows; writes to tag rows wait meanwhile (about 5 s at
    a million assets). Returns how many tags have a count."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE catalog_assettag IN SHARE MODE")  # no writes, reads go on
        cursor.execute("DELETE FROM catalog_tagcountdelta")
        cursor.execute("DELETE FROM catalog_tagcount")
        cursor.execute(
            "INSERT INTO catalog_tagcount (tag_id, assets, machine) "
            f"SELECT tag_id, assets, machine FROM ({_EXACT}) AS exact WHERE tag_id IN (SELECT id FROM catalog_tag)"
        )
        return TagCount.objects.count()
