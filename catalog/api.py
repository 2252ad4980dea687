"""The REST API under ``/api/``: upload, search, asset detail, review, originals, tags, and a
tag's threshold for the model that tags now.

Views are thin: they check the request, call :mod:`catalog.services` and shape the answer.
Every call needs a signed-in user (``Authorization: Token <key>``, or the web pages' session
with its CSRF token) holding the permission the view names per method
(:mod:`catalog.permissions`): reads ``catalog.view_asset``, uploads ``catalog.add_asset``,
reviews ``catalog.review_asset``, setting thresholds ``catalog.change_tagthreshold``. Uploads are all-or-nothing: every file is checked before
any is stored.
"""

from __future__ import annotations

import copy
import re
from typing import ClassVar

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import counts, facets, roles, services, thresholds
from catalog.conf import imgtag_settings
from catalog.models import Asset, Tag
from catalog.pagination import AssetCursorPagination
from catalog.query import QueryError, normalize_tag_name
from catalog.serializers import (
    AssetSerializer,
    ReviewSerializer,
    SearchParamsSerializer,
    TagSerializer,
    TagThresholdSerializer,
    ThresholdUpdateSerializer,
    UploadedAssetSerializer,
    UploadErrorsSerializer,
    UploadRequestSerializer,
    UploadResponseSerializer,
    asset_list_data,
)
from catalog.storage import get_storage
from catalog.upload_limits import KeepUpToLimit, RefuseLargeRequests, upload_error, upload_errors
from core.imageio import ImageError

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
}


def _read(upload: UploadedFile) -> bytes:
    upload.seek(0)
    return upload.read()


FORBIDDEN = OpenApiResponse(description="signed in without the permission this needs (JSON reason)")
UNAUTHENTICATED = OpenApiResponse(description="no or bad token (or session)")


class AssetListView(generics.ListAPIView):
    """Search assets (GET) and upload images (POST)."""

    serializer_class = AssetSerializer
    pagination_class = AssetCursorPagination
    required_permissions: ClassVar[dict[str, str]] = {"GET": roles.VIEW, "POST": roles.UPLOAD}

    def initialize_request(self, request, *args, **kwargs) -> Request:
        if request.method == "POST":  # before anything (a CSRF check included) reads the body
            request.upload_handlers.insert(0, KeepUpToLimit(request, imgtag_settings().max_upload_bytes))
            request.upload_handlers.insert(
                0, RefuseLargeRequests(request, imgtag_settings().max_request_bytes)
            )
        return super().initialize_request(request, *args, **kwargs)

    def get_queryset(self):
        params = SearchParamsSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        options = dict(params.validated_data)
        q = options.pop("q")
        bounds = self.kept_bounds = facets.kept_bounds(q, **options)
        try:  # the tags are read by asset_list_data, for the page only
            self.rows = facets.walked_rows(q, bounds, **options)  # what the pagination counts
            return services.search(q, tag_ids=bounds.ids, **options).prefetch_related(None)
        except QueryError as exc:
            raise ValidationError({"q": [str(exc)]}) from None

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(asset_list_data(page, self.get_serializer_context()))

    @extend_schema(
        summary="Search assets by tag",
        parameters=[SearchParamsSerializer],
        responses={
            200: AssetSerializer(many=True),
            400: OpenApiResponse(description="bad query: the message says where"),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
        },
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Upload images",
        description=(
            "Checks every file first: any file over the size limit answers 413, any file that is "
            "not a usable image 400, each error naming the file, and then nothing is stored. "
            "Otherwise each original is stored once (the same bytes again are a duplicate of the "
            "existing asset). New assets are then published to the tagging queue and come back "
            "`pending` (a worker tags them; if the broker is down they stay pending until "
            "`imgtag requeue --pending`), or, with IMGTAG_UPLOAD_TAGGING=inprocess, are tagged "
            "before the answer."
        ),
        request={"multipart/form-data": UploadRequestSerializer},
        responses={
            201: UploadResponseSerializer,
            400: OpenApiResponse(
                UploadErrorsSerializer, description="a file is not a usable image, or no file"
            ),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            413: OpenApiResponse(UploadErrorsSerializer, description="a file or the request is too large"),
        },
    )
    def post(self, request, *args, **kwargs):
        uploads = [*request.FILES.getlist("files"), *request.FILES.getlist("file")]
        if not uploads:
            message = "no file in the request; send images as multipart/form-data fields 'files'"
            return upload_errors(400, [upload_error(None, "no_file", message)])
        limit = imgtag_settings().max_upload_bytes
        errors, too_large = [], False
        for upload in uploads:
            try:
                if upload.size > limit:
                    raise services.UploadTooLarge(upload.name, limit)
                services.validate(_read(upload), upload.name)
            except services.UploadTooLarge as exc:
                errors.append(upload_error(upload.name, exc.reason, str(exc)))
                too_large = True
            except ImageError as exc:
                errors.append(upload_error(upload.name, exc.reason, str(exc)))
        if errors:
            return upload_errors(413 if too_large else 400, errors)

        with transaction.atomic():
            ingested = [services.ingest(_read(upload), upload.name) for upload in uploads]
        # Through the queue, only new assets: bytes already stored and still pending have their
        # message queued (or `imgtag requeue --pending` sends it); a second one would tag them
        # twice. Tagged in process, a pending duplicate (left by a crash) is tagged now.
        in_process = imgtag_settings().upload_tagging == "inprocess"
        to_tag = {
            asset.pk: asset
            for asset, created in ingested
            if asset.status == Asset.Status.PENDING and (created or in_process)
        }
        services.tag_uploads(to_tag.values())

        fresh = services.with_tags(Asset.objects.filter(pk__in=[asset.pk for asset, _ in ingested])).in_bulk()
        answered = []
        for asset, created in ingested:
            item = copy.copy(fresh[asset.pk])
            item.duplicate = not created
            answered.append(item)
        data = UploadedAssetSerializer(answered, many=True, context=self.get_serializer_context()).data
        return Response({"assets": data}, status=status.HTTP_201_CREATED)


class AssetDetailView(generics.RetrieveAPIView):
    """One asset with all its tags."""

    serializer_class = AssetSerializer
    queryset = services.with_tags(Asset.objects.all())

    @extend_schema(
        summary="An asset with its tags",
        responses={200: AssetSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class AssetReviewView(APIView):
    """A person's decision about one tag of an asset."""

    required_permissions: ClassVar[dict[str, str]] = {"POST": roles.REVIEW}

    @extend_schema(
        summary="Accept, reject or add a tag",
        request=ReviewSerializer,
        responses={
            200: AssetSerializer,
            400: OpenApiResponse(description="bad action or tag name"),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: OpenApiResponse(description="no such asset, or it has no such tag (accept/reject)"),
        },
    )
    def post(self, request, pk: int):
        asset = get_object_or_404(Asset, pk=pk)
        decision = ReviewSerializer(data=request.data)
        decision.is_valid(raise_exception=True)
        try:
            services.review(
                asset,
                decision.validated_data["tag"],
                decision.validated_data["action"],
                request.user,
            )
        except services.TagNotOnAsset as exc:
            raise NotFound(str(exc)) from None
        except ValueError as exc:
            raise ValidationError({"tag": [str(exc)]}) from None
        asset = services.with_tags(Asset.objects.filter(pk=pk)).get()
        return Response(AssetSerializer(asset, context={"request": request}).data)


class _AnyAccept(BaseContentNegotiation):
    """Serve the original whatever the client accepts (errors still come back as JSON)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class AssetOriginalView(APIView):
    """The original bytes of an asset, as uploaded."""

    content_negotiation_class = _AnyAccept

    @extend_schema(
        summary="Download the original",
        responses={
            (200, "image/*"): OpenApiTypes.BINARY,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: OpenApiResponse(description="no such asset, or its original is missing from storage"),
        },
    )
    def get(self, request, pk: int):
        asset = get_object_or_404(Asset, pk=pk)
        try:
            original = get_storage().open(asset.uri)
        except FileNotFoundError:
            raise NotFound(f"the original of asset {pk} is missing from storage at {asset.uri}") from None
        content_type = CONTENT_TYPES.get(asset.format, "application/octet-stream")
        return FileResponse(original, content_type=content_type, filename=asset.filename)


class TagListView(generics.ListAPIView):
    """Tags in use, most used first, with how many assets carry each."""

    serializer_class = TagSerializer

    def get_queryset(self):
        # the counts kept as tags are written (catalog.counts): no tag row is counted here
        tags = counts.annotate(Tag.objects.all()).filter(asset_count__gt=0)
        # as tag names are stored: lowercase, single spaces (a trailing one kept: "coffee " is a word)
        prefix = re.sub(r"\s+", " ", self.request.query_params.get("prefix", "").lower()).lstrip()
        if "\0" in prefix:  # PostgreSQL text cannot hold it: a 400, not a database error
            raise ValidationError({"prefix": ["Null characters are not allowed."]})
        if prefix:
            tags = tags.filter(name__startswith=prefix)
        return tags.prefetch_related("parents").order_by("-asset_count", "name")

    @extend_schema(
        summary="Tags with their asset counts",
        description=(
            "Tags that at least one asset carries, most used first. The counts are kept as tags are "
            "written, so they are exact and cost no counting: `?prefix=ca&page_size=10` is the "
            "autocomplete of the web pages."
        ),
        parameters=[
            OpenApiParameter(
                "prefix", str, description="only tags whose name starts with this (autocomplete)"
            )
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TagThresholdView(APIView):
    """A tag's threshold for the model that tags now: the one in force (GET), set one (PUT), go
    back to the model's default (DELETE). Images tagged from the next batch on get it; assets
    tagged before keep their tags until they are tagged again."""

    required_permissions: ClassVar[dict[str, str]] = {
        "GET": roles.REVIEW,
        "PUT": roles.CHANGE_THRESHOLD,
        "DELETE": roles.CHANGE_THRESHOLD,
    }
    NOT_A_TAG = OpenApiResponse(description="not a tag of the model that tags now")

    def _current(self, name: str) -> tuple[str, thresholds.CurrentThreshold]:
        tag = normalize_tag_name(name)
        current = thresholds.current(tag, imgtag_settings())
        if current.default is None:
            raise NotFound(f"{tag!r} is not a tag of the model that tags now, {current.model}")
        return tag, current

    @staticmethod
    def _answer(tag: str) -> Response:
        current = thresholds.current(tag, imgtag_settings())
        return Response(
            TagThresholdSerializer(
                {
                    "tag": tag,
                    "model_name": current.model_name,
                    "model_version": current.model_version,
                    "threshold": current.value,
                    "default": current.default,
                    "off": current.off,
                    "override": current.override,
                }
            ).data
        )

    @extend_schema(
        summary="A tag's threshold in force",
        responses={200: TagThresholdSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_A_TAG},
    )
    def get(self, request, name: str):
        tag, _ = self._current(name)
        return self._answer(tag)

    @extend_schema(
        summary="Set a tag's threshold for the model that tags now",
        request=ThresholdUpdateSerializer,
        responses={
            200: TagThresholdSerializer,
            400: OpenApiResponse(description="a threshold outside (0, 1]"),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: NOT_A_TAG,
            409: OpenApiResponse(description="model_name/model_version are not the model that tags now"),
        },
    )
    def put(self, request, name: str):
        tag, current = self._current(name)
        update = ThresholdUpdateSerializer(data=request.data)
        update.is_valid(raise_exception=True)
        named = (
            update.validated_data.get("model_name", current.model_name),
            update.validated_data.get("model_version", current.model_version),
        )
        if named != (current.model_name, current.model_version):
            return Response(
                {
                    "detail": f"the model that tags now is {current.model}, not {':'.join(named)}",
                    "reason": "not_the_current_model",
                },
                status=status.HTTP_409_CONFLICT,
            )
        services.set_threshold(
            tag, current.model_name, current.model_version, update.validated_data["threshold"], request.user
        )
        return self._answer(tag)

    @extend_schema(
        summary="Go back to the model's default threshold",
        responses={200: TagThresholdSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_A_TAG},
    )
    def delete(self, request, name: str):
        tag, current = self._current(name)
        services.reset_threshold(tag, current.model_name, current.model_version)
        return self._answer(tag)
