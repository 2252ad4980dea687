"""URLs: the web pages at ``/`` (:mod:`catalog.web.urls`), sign-in at ``/accounts/``, the
admin at ``/admin/``, the REST API at ``/api/`` (its schema at ``/api/schema/``)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from catalog import api, api_similar

api_patterns = [
    path("assets/", api.AssetListView.as_view(), name="asset-list"),
    path("assets/<int:pk>/", api.AssetDetailView.as_view(), name="asset-detail"),
    path("assets/<int:pk>/review/", api.AssetReviewView.as_view(), name="asset-review"),
    path("assets/<int:pk>/original", api.AssetOriginalView.as_view(), name="asset-original"),
    path("assets/<int:pk>/similar/", api_similar.AssetSimilarView.as_view(), name="asset-similar"),
    path("tags/", api.TagListView.as_view(), name="tag-list"),
    path("tags/<path:name>/threshold/", api.TagThresholdView.as_view(), name="tag-threshold"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]

account_patterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="catalog/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include((api_patterns, "catalog"))),
    path("accounts/", include(account_patterns)),
    path("", include("catalog.web.urls")),
]

handler403 = "catalog.web.views.forbidden"
