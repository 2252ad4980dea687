"""Catalog tables: assets, tags and their hierarchy, tags on assets, model versions, and the
tag thresholds people set for a model.

An :class:`Asset` is identified by the sha256 of its original bytes. Every :class:`AssetTag`
says where it came from (``source``: the model or a human, the :class:`ModelVersion` that
scored it) and what a person decided about it (``review``), so retagging with a newer model
can replace machine suggestions without ever touching a human decision.

People see one *review state* per tag row, derived from ``source`` and ``review``
(:attr:`AssetTag.review_state`): ``suggested`` and ``accepted`` (a model's tag, not yet judged
or confirmed), ``added`` (a tag a person added: source human, accepted) and ``rejected``.
The permission ``catalog.review_asset`` (besides Django's ``add``/``view``) lets a user judge
tags, ``catalog.change_tagthreshold`` set a :class:`TagThreshold`; :mod:`catalog.roles` groups
the permissions into roles.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import models
from django.db.models import F, Lookup, Q
from django.db.models.lookups import Exact

SAMPLE_RUN = 8
SAMPLE_EVERY = 64
SMALL_SAMPLE_EVERY = 512
"""The catalog's sample, for counting and faceting large results (:mod:`catalog.facets`): one
run of 8 consecutive ids in every 64 such runs (1 asset in 64), and a smaller sample inside
it, one run in every 512 (1 in 512). Ids are given in upload order, so the sample spreads evenly over
time and content; runs of neighbours keep its rows on few disk pages (a sample of single ids
touches nearly every page of the tables). A partial index holds the sample's ids."""
IN_SAMPLE = Q(Exact(F("id") / SAMPLE_RUN % SAMPLE_EVERY, 0))  # run 0 of every 64 runs of 8
# IN_SAMPLE first: PostgreSQL uses the index of IN_SAMPLE only when the query states it
IN_SMALL_SAMPLE = IN_SAMPLE & Q(Exact(F("id") / SAMPLE_RUN % SMALL_SAMPLE_EVERY, 0))
ROW_IN_SAMPLE = Q(Exact(F("asset_id") / SAMPLE_RUN % SAMPLE_EVERY, 0))  # tag rows of the sample's assets
ROW_IN_SMALL_SAMPLE = ROW_IN_SAMPLE & Q(Exact(F("asset_id") / SAMPLE_RUN % SMALL_SAMPLE_EVERY, 0))


class AnyOf(Lookup):
    """``id_field__any_of=ids``: ``__in`` for integer ids, the ids one parameter on PostgreSQL,
    an array (``field = ANY(%s)``). ``__in`` makes each value a parameter of its own, checked
    one by one: for the 1,000 ids of a small search's page that cost about 1 ms of CPU in
    Django and psycopg, and more in PostgreSQL's parser. Elsewhere (SQLite) it is ``IN (...)``."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        values = list(map(int, self.rhs))
        if not values:
            raise EmptyResultSet  # as __in does: the condition matches nothing
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*params, values]
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*params, *values]


models.Field.register_lookup(AnyOf)  # ids: pk__any_of
models.ForeignObject.register_lookup(AnyOf)  # a foreign key's ids: asset_id__any_of (Django looks no higher)


class ModelVersion(models.Model):
    """A tagging model that produced tags, e.g. ``efficientnet-lite0-imagenet`` ``pretrained``."""

    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="catalog_modelversion_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class Tag(models.Model):
    """A tag name (lowercase, may contain spaces) and its broader tags (``tabby`` → ``cat``)."""

    name = models.CharField(max_length=200, unique=True)
    parents = models.ManyToManyField("self", symmetrical=False, related_name="children", blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Asset(models.Model):
    """One original image, stored once by content (see :mod:`catalog.storage`)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        TAGGED = "tagged", "tagged"
        FAILED = "failed", "failed"

    sha256 = models.CharField(max_length=64, unique=True)
    uri = models.CharField("storage URI", max_length=1024)
    filename = models.CharField("original filename", max_length=255)
    size = models.PositiveBigIntegerField(help_text="bytes")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=16)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True, default="", help_text="why tagging failed, when it did")
    tags = models.ManyToManyField(Tag, through="AssetTag", related_name="assets")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("review_asset", "Can accept, reject and add the tags of assets")]
        indexes = [
            models.Index(fields=["status"], name="catalog_asset_status"),
            models.Index(fields=["id"], condition=IN_SAMPLE, name="catalog_asset_sample"),
            # an asset's upload time by id, from the index alone: a month facet filter checks it for
            # each asset of a tag, the month facet for each asset counted
            models.Index(fields=["id"], include=["created_at"], name="catalog_asset_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "tagged", "failed"]),
                name="catalog_asset_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.sha256[:12]})"


class AssetTag(models.Model):
    """A tag on an asset, with its score and provenance."""

    class Source(models.TextChoices):
        MODEL = "model", "model"
        HUMAN = "human", "human"

    class Review(models.TextChoices):
        SUGGESTED = "suggested", "suggested"
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"

    # No index of their own: (asset, tag) is unique and (tag, asset) is indexed (see Meta).
    asset = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="asset_tags", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="asset_tags", db_index=False)
    score = models.FloatField(help_text="0 to 1; 1 for a tag a person added")
    source = models.CharField(max_length=8, choices=Source.choices)
    model_version = models.ForeignKey(
        ModelVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="asset_tags",
        db_index=False,  # (model_version, asset) is indexed (see Meta)
    )
    review = models.CharField(max_length=10, choices=Review.choices, default=Review.SUGGESTED)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # a partial index (see Meta): most rows have no reviewer
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        # Every index is paid on each worker commit, so there are few (measured at a million
        # assets by tests/bench/bench_scale.py): a search term reads (tag, asset) and, on
        # PostgreSQL, the score, review and source from the index alone (INCLUDE; SQLite has
        # no INCLUDE and reads the row).
        indexes = [
            models.Index(
                fields=["tag", "asset"],
                include=["score", "review", "source"],
                name="catalog_assettag_tag_asset",
            ),
            # the sample's rows of a tag (1 in 64), for what a threshold keeps of a common tag
            # (catalog.thresholds): a few thousand index entries instead of a quarter million
            models.Index(
                fields=["tag", "asset"],
                include=["score", "review", "source"],
                condition=ROW_IN_SAMPLE,
                name="catalog_assettag_sample",
            ),
            # the rows people decided on (a few percent): the review-state facet filters and
            # counts (accepted, added, rejected) read them instead of every asset's rows
            models.Index(
                fields=["asset"],
                include=["review", "source", "score"],
                condition=Q(review__in=["accepted", "rejected"]),
                name="catalog_assettag_reviewed",
            ),
            # a model facet filter looks up (model version, asset); SQLite, without table
            # statistics, would otherwise pick a model-version-only index and read a whole
            # version's rows for every asset
            models.Index(fields=["model_version", "asset"], name="catalog_assettag_model_asset"),
            models.Index(
                fields=["reviewed_by"],
                condition=Q(reviewed_by__isnull=False),
                name="catalog_assettag_reviewer",
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["asset", "tag"], name="catalog_assettag_unique"),
            models.CheckConstraint(
                condition=Q(score__gte=0.0, score__lte=1.0), name="catalog_assettag_score_0_1"
            ),
            models.CheckConstraint(
                condition=Q(source__in=["model", "human"]), name="catalog_assettag_source_valid"
            ),
            models.CheckConstraint(
                condition=Q(review__in=["suggested", "accepted", "rejected"]),
                name="catalog_assettag_review_valid",
            ),
        ]

    @property
    def review_state(self) -> str:
        """What people see: ``suggested``, ``accepted``, ``added`` or ``rejected`` (see
        :data:`REVIEW_STATES`)."""
        return review_state(self.review, self.source)

    def __str__(self) -> str:
        return f"{self.tag} on asset {self.asset_id}: {self.score:.2f} ({self.source}, {self.review})"


class TagCount(models.Model):
    """How many assets carry a tag, kept by the database as tag rows are written.

    Triggers on the tag table (migration ``0007_tag_counts``) keep these figures: on SQLite each
    row written updates its tag's count at once; on PostgreSQL each statement appends its net
    change per tag to :class:`TagCountDelta`, which :func:`catalog.counts.fold` moves into this
    table after the writes commit. Writers never wait on each other's counts, and readers add the
    changes not folded yet (:func:`catalog.counts.annotate`), so what they read is exact. No
    application code writes these rows: every write to ``catalog_assettag`` counts, the admin's and
    a cascade's too. ``db_constraint=False``: a tag may be deleted while a change of its count
    waits to be folded (the fold drops it).
    """

    tag = models.OneToOneField(
        Tag, on_delete=models.CASCADE, primary_key=True, related_name="count", db_constraint=False
    )
    assets = models.BigIntegerField(default=0, help_text="tag rows not rejected: assets that carry the tag")
    machine = models.BigIntegerField(default=0, help_text="tag rows from a model, any review: scored assets")

    def __str__(self) -> str:
        return f"{self.tag_id}: {self.assets} assets, {self.machine} scored"


class TagCountDelta(models.Model):
    """A change of one tag's counts not yet folded into :class:`TagCount` (PostgreSQL only; see
    there). Rows are appended by the triggers and deleted by :func:`catalog.counts.fold`."""

    tag_id = models.BigIntegerField()
    assets = models.BigIntegerField()
    machine = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["tag_id"], name="catalog_tagcountdelta_tag")]


class TagThreshold(models.Model):
    """A tag's threshold for one model, set by a person: it replaces the threshold the model
    ships with (``tag_thresholds.csv``, a promoted model's ``assets/tags.csv``) when the catalog
    tags images with that model. Scores of different models are not comparable, so a
    threshold holds for the model name and version it was tuned for only.
    """

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="thresholds")
    model_name = models.CharField(max_length=200)
    model_version = models.CharField(max_length=100)
    threshold = models.FloatField(help_text="a score at or above it keeps the tag; in (0, 1]")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_name", "model_version", "tag__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["tag", "model_name", "model_version"], name="catalog_tagthreshold_unique"
            ),
            models.CheckConstraint(
                condition=Q(threshold__gt=0.0, threshold__lte=1.0), name="catalog_tagthreshold_0_1"
            ),
        ]
        indexes = [
            models.Index(fields=["model_name", "model_version"], name="catalog_tagthreshold_model"),
        ]

    def clean(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise ValidationError({"threshold": "a threshold is above 0 and at most 1"})

    def __str__(self) -> str:
        return f"{self.tag} in {self.model_name}:{self.model_version}: {self.threshold:g}"


@functools.cache  # a handful of pairs; a search page asks for each of its ~450 tag rows
def review_state(review: str, source: str) -> str:
    """The review state people see of a tag row with this ``review`` and ``source``."""
    if review == AssetTag.Review.REJECTED:
        return "rejected"
    if source == AssetTag.Source.HUMAN and review == AssetTag.Review.ACCEPTED:
        return "added"
    return review


# The review states people see, as conditions on tag rows (the same mapping as
# AssetTag.review_state; a human row still "suggested", which only the admin can make, counts
# as suggested). ``imgtag ingest --catalog`` reads "accepted" and "added" rows as labels.
REVIEW_STATES: dict[str, Q] = {
    "suggested": Q(review=AssetTag.Review.SUGGESTED),
    "accepted": Q(review=AssetTag.Review.ACCEPTED, source=AssetTag.Source.MODEL),
    "added": Q(review=AssetTag.Review.ACCEPTED, source=AssetTag.Source.HUMAN),
    "rejected": Q(review=AssetTag.Review.REJECTED),
}


class AssetEmbedding(models.Model):
    """An asset's image embedding (:mod:`core.embedding`: 256 ``int8`` numbers) and the model
    that made it. One per asset: tagging with another model replaces it, and similarity
    searches compare only embeddings of one model version (:mod:`catalog.similar`)."""

    asset = models.OneToOneField(Asset, on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="embeddings")
    vector = models.BinaryField(help_text="int8 numbers, core.embedding.BYTES bytes")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["model_version", "asset"], name="catalog_embedding_version"),
            # what each similar-images search reads first: the rows written since the last one
            models.Index(fields=["model_version", "updated_at"], name="catalog_embedding_written"),
        ]

    def __str__(self) -> str:
        return f"embedding of asset {self.asset_id} by model version {self.model_version_id}"


class NearDuplicate(models.Model):
    """An asset flagged, when it was embedded, as a near-duplicate of an older asset: within
    :data:`catalog.duplicates.DISTANCE` of its embedding (a re-encoded, resized, cropped,
    watermarked or slightly rotated copy). A flag, not a refusal: the Duplicates page lets a
    content manager keep one of a group and delete the others."""

    asset = models.OneToOneField(
        Asset, on_delete=models.CASCADE, primary_key=True, related_name="near_duplicate"
    )
    of = models.ForeignKey(Asset, on_delete=models.CASCADE, related_name="near_duplicates")
    distance = models.FloatField(help_text="cosine distance of the embeddings")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"asset {self.asset_id} is a near-duplicate of asset {self.of_id} ({self.distance:.3f})"
