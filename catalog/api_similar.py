"""``GET /api/assets/{id}/similar/``: the assets most like one asset (:mod:`catalog.similar`).

Readers (end users and content managers: ``catalog.view_asset``) get the top 24, best first,
each with its id, filename, score (cosine similarity of the embeddings, 1 for the same picture),
and the URLs of its detail and original. ``model`` names the model version whose embeddings
were compared (the asset's own); an asset not embedded yet answers ``model: null`` and no results.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import similar
from catalog.models import Asset, AssetEmbedding


class SimilarAssetSerializer(serializers.Serializer):
    """One asset found near the asset asked about."""

    id = serializers.IntegerField()
    filename = serializers.CharField()
    score = serializers.FloatField(
        help_text="cosine similarity of the embeddings: 1 the same picture, 0 unrelated"
    )
    url = serializers.URLField(help_text="the asset's detail in the API")
    original = serializers.URLField(help_text="URL of the original bytes")


class SimilarAnswerSerializer(serializers.Serializer):
    """The answer: which model's embeddings were compared, and the results, best first."""

    model = serializers.CharField(
        allow_null=True, help_text="name:version of the model that made the embeddings"
    )
    results = SimilarAssetSerializer(many=True)


def similar_data(request, found: list[similar.Similar]) -> list[dict]:
    """The API's rows for search results."""

    def absolute(name: str, pk: int) -> str:
        return request.build_absolute_uri(reverse(name, args=[pk]))

    return [
        {
            "id": s.asset.pk,
            "filename": s.asset.filename,
            "score": s.score,
            "url": absolute("catalog:asset-detail", s.asset.pk),
            "original": absolute("catalog:asset-original", s.asset.pk),
        }
        for s in found
    ]


class AssetSimilarView(APIView):
    """The assets most like one asset."""

    @extend_schema(
        summary="Assets like this one (top 24, best first)",
        responses={
            200: SimilarAnswerSerializer,
            401: OpenApiResponse(description="no or bad token (or session)"),
            403: OpenApiResponse(description="signed in without the permission this needs (JSON reason)"),
            404: OpenApiResponse(description="no such asset"),
            503: OpenApiResponse(
                description="the similar-images index is being built (Retry-After; at a million assets, minutes)"
            ),
        },
    )
    def get(self, request, pk: int):
        asset = get_object_or_404(Asset, pk=pk)
        stored = AssetEmbedding.objects.select_related("model_version").filter(asset=asset).first()
        model = None if stored is None else str(stored.model_version)
        found = similar.similar_to_asset(asset, wait=False)  # IndexNotReady: 503 (catalog.api_errors)
        return Response({"model": model, "results": similar_data(request, found)})
