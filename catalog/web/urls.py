"""URLs of the web pages (namespace ``web``); sign-in and sign-out are under ``/accounts/``."""

from django.urls import path

from catalog.web import duplicates, views

app_name = "web"

urlpatterns = [
    path("", views.gallery, name="gallery"),
    path("search/", views.gallery, name="search"),
    path("upload/", views.upload, name="upload"),
    path("assets/bulk-tag/", views.bulk_tag, name="bulk-tag"),
    path("assets/<int:pk>/", views.asset_page, name="asset"),
    path("assets/<int:pk>/thumbnail", views.asset_thumbnail, name="asset-thumbnail"),
    path("assets/<int:pk>/review/", views.asset_review, name="asset-review"),
    path("thresholds/", views.threshold_page, name="thresholds"),
    path("thresholds/count/", views.threshold_count, name="threshold-count"),
    path("thresholds/apply/", views.threshold_apply, name="threshold-apply"),
    path("thresholds/reset/", views.threshold_reset, name="threshold-reset"),
    path("duplicates/", duplicates.duplicates_page, name="duplicates"),
    path("duplicates/delete/", duplicates.delete_copies, name="duplicates-delete"),
]
