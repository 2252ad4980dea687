"""URLs: the admin at ``/admin/``, the REST API at ``/api/`` (its schema at ``/api/schema/``)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from catalog import api

api_patterns = [
    path("assets/", api.AssetListView.as_view(), name="asset-list"),
    path("assets/<int:pk>/", api.AssetDetailView.as_view(), name="asset-detail"),
    path("assets/<int:pk>/review/", api.AssetReviewView.as_view(), name="asset-review"),
    path("assets/<int:pk>/original", api.AssetOriginalView.as_view(), name="asset-original"),
    path("tags/", api.TagListView.as_view(), name="tag-list"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include((api_patterns, "catalog"))),
]
