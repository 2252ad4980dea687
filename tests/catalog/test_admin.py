"""The admin pages load for a superuser, with tags inline and search by hash or filename."""

import pytest

from catalog import services
from core.results import TagScore

pytestmark = pytest.mark.django_db


@pytest.fixture
def asset(image, user):
    asset = services.ingest(image("red"), "chelsea.png")[0]
    services.record_tags(
        asset,
        [TagScore("cat", 0.9), TagScore("egyptian cat", 0.8)],
        "net",
        "1",
        parents=lambda t: ["cat"] if t == "egyptian cat" else [],
    )
    services.review(asset, "sofa", "add", user)
    return asset


@pytest.mark.parametrize("page", ["asset", "tag", "modelversion"])
def test_changelists_load(admin_client, asset, page):
    response = admin_client.get(f"/admin/catalog/{page}/")
    assert response.status_code == 200
    assert (
        "chelsea.png" if page == "asset" else "cat" if page == "tag" else "net"
    ) in response.content.decode()


def test_the_asset_page_shows_its_tags_inline(admin_client, asset):
    response = admin_client.get(f"/admin/catalog/asset/{asset.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert asset.sha256 in page and "egyptian cat" in page and "sofa" in page


def test_assets_are_found_by_hash_and_by_filename(admin_client, asset, image):
    services.ingest(image("blue"), "mug.png")
    for term in (asset.sha256, "chelsea"):
        page = admin_client.get("/admin/catalog/asset/", {"q": term}).content.decode()
        assert "1 result" in page and "chelsea.png" in page and "mug.png" not in page
    assert "0 results" in admin_client.get("/admin/catalog/asset/", {"q": "f" * 64}).content.decode()


def test_filters_and_tag_counts(admin_client, asset):
    assert admin_client.get("/admin/catalog/asset/", {"status__exact": "tagged"}).status_code == 200
    assert "chelsea.png" in admin_client.get("/admin/catalog/asset/", {"format": "PNG"}).content.decode()
    assert "chelsea.png" not in admin_client.get("/admin/catalog/asset/", {"format": "JPEG"}).content.decode()
    page = admin_client.get("/admin/catalog/tag/", {"q": "egyptian"}).content.decode()
    assert "egyptian cat" in page


def test_a_model_versions_page_counts_its_tags(admin_client, asset):
    from catalog.models import ModelVersion

    version = ModelVersion.objects.get(name="net", version="1")
    page = admin_client.get(f"/admin/catalog/modelversion/{version.pk}/change/").content.decode()
    assert "Tags produced" in page and '<div class="readonly">2</div>' in page  # cat, egyptian cat


def test_assets_are_not_added_by_hand(admin_client):
    assert admin_client.get("/admin/catalog/asset/add/").status_code == 403


def test_the_thresholds_people_set_are_listed(admin_client, user):
    services.set_threshold("cat", "net", "1", 0.42, user)
    response = admin_client.get("/admin/catalog/tagthreshold/")
    assert response.status_code == 200
    assert "cat" in response.content.decode() and "0.42" in response.content.decode()
    row = services.set_threshold("cat", "net", "1", 0.42, user)
    change = admin_client.post(
        f"/admin/catalog/tagthreshold/{row.pk}/change/",
        {"tag": row.tag_id, "model_name": "net", "model_version": "1", "threshold": "0", "updated_by": ""},
    )
    assert change.status_code == 200 and "above 0 and at most 1" in change.content.decode()  # not a 500


def test_the_asset_list_reads_no_distinct_values_of_every_asset(admin_client, asset):
    """At a million assets a filter of a field's distinct values, or a date hierarchy, reads the
    whole table on every page: the list's filters have fixed choices instead."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/catalog/asset/", {"format": "PNG"}).content.decode()
    assert "chelsea.png" in page and "WEBP" in page  # every accepted format is a choice
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper() and "catalog_asset" in q["sql"]]
    assert sum("COUNT(*)" in q["sql"] and "catalog_asset" in q["sql"] for q in queries) == 1  # the result's
