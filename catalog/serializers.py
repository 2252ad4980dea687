"""JSON shapes of the REST API (also the source of the OpenAPI schema)."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.models import REVIEW_STATES, Asset, AssetTag, ModelVersion, Tag, TagThreshold, review_state
from catalog.query import REVIEW_FILTERS, SOURCES
from catalog.services import REVIEW_ACTIONS, tag_rows


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["name", "version"]


class AssetTagSerializer(serializers.ModelSerializer):
    """A tag on an asset with its provenance."""

    name = serializers.CharField(source="tag.name")
    model_version = ModelVersionSerializer(
        allow_null=True, help_text="the model that scored it; null for a human tag"
    )
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    state = serializers.ChoiceField(
        list(REVIEW_STATES),
        source="review_state",
        read_only=True,
        help_text="the review state the web pages show: suggested, accepted (a model's tag a person "
        "confirmed), added (a person's tag) or rejected",
    )

    class Meta:
        model = AssetTag
        fields = ["name", "score", "source", "model_version", "review", "state", "reviewed_by", "updated_at"]


class AssetSerializer(serializers.ModelSerializer):
    """An asset and all its tags, rejected ones included (their ``review`` says so)."""

    tags = AssetTagSerializer(source="asset_tags", many=True, read_only=True)
    original = serializers.SerializerMethodField(help_text="URL of the original bytes")

    class Meta:
        model = Asset
        fields = [
            "id",
            "sha256",
            "filename",
            "format",
            "width",
            "height",
            "size",
            "status",
            "error",
            "created_at",
            "updated_at",
            "original",
            "tags",
        ]

    @extend_schema_field(OpenApiTypes.URI)
    def get_original(self, asset: Asset) -> str:
        path = reverse("catalog:asset-original", args=[asset.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


_URL_MARK = 987654321  # an id that reverse() turns into the URL pattern's text


def _original_url(context: dict):
    """``pk -> the URL of the asset's original``, as :meth:`AssetSerializer.get_original` gives
    it, with the URL resolved once rather than for every asset."""
    path = reverse("catalog:asset-original", args=[_URL_MARK])
    request = context.get("request")
    prefix, suffix = (request.build_absolute_uri(path) if request else path).split(str(_URL_MARK))
    return lambda pk: f"{prefix}{pk}{suffix}"


def _datetime_text():
    """``value -> text`` as DRF's ``DateTimeField`` writes it (ISO 8601 in the current time zone,
    ``Z`` for UTC), with the time zone looked up once rather than for every value."""
    zone = timezone.get_current_timezone()

    def text(value):
        if value is None:
            return None
        out = value.astimezone(zone).isoformat()
        return out[:-6] + "Z" if out.endswith("+00:00") else out

    return text


_ASSET_FIELDS = ("id", "sha256", "filename", "format", "width", "height", "size", "status", "error")


def asset_list_data(assets: list[Asset], context: dict) -> list[dict]:
    """What ``AssetSerializer(assets, many=True, context=context).data`` gives, built from plain
    values: the assets' fields as they are, their tags as plain rows read in one query.

    A search page of 50 assets has about 300 tag rows: building them as models and serializing
    them through the nested serializers took about 25 ms of a search's 45 ms at a million assets
    (``tests/bench/bench_scale.py``), the asset fields through DRF's fields (a URL reversed and a
    time zone looked up per value) about 15 ms more; plain values take a few. ``AssetSerializer``
    stays the one definition of the shape (and of the OpenAPI schema); a test checks the two agree.
    """
    when, original = _datetime_text(), _original_url(context)
    rows = tag_rows([asset.pk for asset in assets])
    tags: dict[int, list[dict]] = {asset.pk: [] for asset in assets}
    models: dict[tuple[str, str], dict] = {}
    for asset_id, name, score, source, model, version, review, reviewer, updated_at in rows:
        tags[asset_id].append(
            {
                "name": name,
                "score": score,
                "source": source,
                "model_version": None
                if model is None
                else models.setdefault((model, version), {"name": model, "version": version}),
                "review": review,
                "state": review_state(review, source),
                "reviewed_by": reviewer,
                "updated_at": when(updated_at),
            }
        )
    data = []
    for asset in assets:
        item = {field: getattr(asset, field) for field in _ASSET_FIELDS}
        item.update(
            created_at=when(asset.created_at),
            updated_at=when(asset.updated_at),
            original=original(asset.pk),
            tags=tags[asset.pk],
        )
        data.append(item)
    return data


class UploadedAssetSerializer(AssetSerializer):
    """An uploaded asset; ``duplicate`` is true when the same bytes were already in the catalog."""

    duplicate = serializers.BooleanField(read_only=True)

    class Meta(AssetSerializer.Meta):
        fields = [*AssetSerializer.Meta.fields, "duplicate"]


class UploadRequestSerializer(serializers.Serializer):
    """Multipart upload: repeat the ``files`` field for several images (``file`` works for one)."""

    files = serializers.ListField(child=serializers.FileField(), required=False)
    file = serializers.FileField(required=False)


class UploadResponseSerializer(serializers.Serializer):
    assets = UploadedAssetSerializer(many=True)


class UploadErrorSerializer(serializers.Serializer):
    file = serializers.CharField(allow_null=True, help_text="the file's name as uploaded")
    reason = serializers.CharField(
        help_text="too_large, not_an_image, unsupported_format, truncated, too_many_pixels, empty, "
        "no_file, too_many_files or request_too_large"
    )
    error = serializers.CharField(help_text="what is wrong and what to do")


class UploadErrorsSerializer(serializers.Serializer):
    errors = UploadErrorSerializer(many=True)


class SearchParamsSerializer(serializers.Serializer):
    """Query parameters of the asset search."""

    q = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="tags with AND, OR, NOT (or -tag) and parentheses; quote names with spaces: "
        '"coffee mug" AND NOT dog. Blank lists every asset. At most 20 tags, 20 levels of nesting '
        "and 1,000 characters (a 400 names the limit).",
    )
    min_score = serializers.FloatField(
        required=False,
        default=0.0,
        min_value=0.0,
        max_value=1.0,
        help_text="a tag counts only with at least this score",
    )
    source = serializers.ChoiceField(SOURCES, required=False, help_text="only tags from this source")
    review = serializers.ChoiceField(
        REVIEW_FILTERS,
        required=False,
        help_text="only tags in this review state (rejected tags never match)",
    )


class ReviewSerializer(serializers.Serializer):
    """A decision about one tag of an asset."""

    tag = serializers.CharField(max_length=200, help_text="tag name, e.g. coffee mug")
    action = serializers.ChoiceField(
        REVIEW_ACTIONS,
        help_text="accept or reject a tag the asset has, or add one (a human tag, score 1)",
    )


class TagSerializer(serializers.ModelSerializer):
    """A tag, its parents, and how many assets carry it (rejected tags not counted)."""

    parents = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    asset_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Tag
        fields = ["name", "parents", "asset_count"]


class ThresholdOverrideSerializer(serializers.ModelSerializer):
    """A threshold a person set for a tag of a model: which, who and when."""

    updated_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = TagThreshold
        fields = ["threshold", "updated_by", "updated_at"]


class TagThresholdSerializer(serializers.Serializer):
    """A tag's threshold in force for the model that tags now."""

    tag = serializers.CharField()
    model_name = serializers.CharField(help_text="the model that tags now")
    model_version = serializers.CharField()
    threshold = serializers.FloatField(
        allow_null=True,
        help_text="in force: the one a person set for this model if any, else the model's default; "
        "null when the tag is off",
    )
    default = serializers.FloatField(
        allow_null=True,
        help_text="the model's own (tag_thresholds.csv or its tags.csv); null when it is off",
    )
    off = serializers.BooleanField(
        help_text="the tag is never emitted: its calibration could not reach the target precision "
        "(setting a threshold turns it on)"
    )
    override = ThresholdOverrideSerializer(allow_null=True, help_text="the threshold a person set, if any")

    def to_representation(self, instance):
        data = super().to_representation(instance)
        for key in ("threshold", "default"):  # JSON has no infinity: an off threshold is null
            if data[key] == float("inf"):
                data[key] = None
        return data


@extend_schema_field(
    {"type": "number", "format": "double", "minimum": 0, "exclusiveMinimum": True, "maximum": 1}
)
class ThresholdField(serializers.FloatField):
    """A threshold: above 0 and at most 1 (the schema says so, as :meth:`validate_threshold` checks)."""


class ThresholdUpdateSerializer(serializers.Serializer):
    """A new threshold for a tag of the model that tags now."""

    threshold = ThresholdField(help_text="above 0 and at most 1")
    model_name = serializers.CharField(
        required=False, help_text="optional: refused (409) unless it is the model that tags now"
    )
    model_version = serializers.CharField(required=False)

    def validate_threshold(self, value: float) -> float:
        if not 0.0 < value <= 1.0:  # also NaN
            raise serializers.ValidationError("a threshold is above 0 and at most 1")
        return value
