"""The Duplicates page: content managers keep one of a group and delete the others, after confirming
(SQLite and PostgreSQL)."""

import cv2
import numpy as np
import pytest
from django.test import Client

from catalog import services, similar
from catalog.models import Asset
from catalog.storage import get_storage
from tests.catalog.conftest import make_image
from tests.catalog.htmlquery import parse
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_indexes():
    similar.forget_indexes()
    yield
    similar.forget_indexes()


@pytest.fixture
def manager(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def smaller(png: bytes, factor: int) -> bytes:
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    size = (pixels.shape[1] // factor, pixels.shape[0] // factor)
    return cv2.imencode(".jpg", cv2.resize(pixels, size, interpolation=cv2.INTER_AREA))[1].tobytes()


@pytest.fixture
def group():
    """A photo, two smaller copies of it, and an unrelated picture, tagged in that order."""
    red = make_image("red", 1, size=(96, 128))
    named = [
        ("red.png", red),
        ("red-half.jpg", smaller(red, 2)),
        ("red-quarter.jpg", smaller(red, 4)),
        ("blue.png", make_image("blue", 2)),
    ]
    assets = []
    for name, data in named:  # one by one, as uploads come
        [asset] = [services.ingest(data, name)[0]]
        services.tag_assets_in_process([asset], EmbeddingTagger())
        assets.append(asset)
    return assets


def test_a_content_manager_sees_each_group_with_sizes_and_dates(manager, group):
    page = parse(manager.get("/duplicates/").content)
    [shown] = page.find_all("form", testid="duplicate-group")
    cards = shown.find_all("li", testid="duplicate")
    assert [int(c.get("data-asset-id")) for c in cards] == [a.pk for a in group[:3]]
    sizes = [c.find("span", testid="duplicate-size").text for c in cards]
    assert sizes[0].endswith("KB, 128 × 96 px") and sizes[1].endswith(", 64 × 48 px")
    assert cards[0].find("time").get("datetime").startswith(str(group[0].created_at.date()))
    checked = [i.get("value") for i in shown.find_all("input", testid="keep") if "checked" in i.attrs]
    assert checked == [str(group[0].pk)]  # the largest is offered to keep
    assert parse(manager.get("/").content).find("a", testid="nav-duplicates").get("href") == "/duplicates/"


def test_deleting_asks_first_then_removes_the_others_and_their_files(manager, group):
    original, half, quarter, blue = group
    keep = {"group": original.pk, "keep": half.pk}
    asked = parse(manager.post("/duplicates/delete/", keep).content)
    assert {int(li.get("data-asset-id")) for li in asked.find("ul", testid="to-delete").find_all("li")} == {
        original.pk,
        quarter.pk,
    }
    assert Asset.objects.count() == 4  # nothing deleted before the confirmation
    response = manager.post(
        "/duplicates/delete/", {**keep, "confirm": "1", "delete": [original.pk, quarter.pk]}
    )
    assert response.status_code == 302 and response["Location"] == "/duplicates/"
    assert set(Asset.objects.values_list("pk", flat=True)) == {half.pk, blue.pk}
    for gone in (original, quarter):
        with pytest.raises(FileNotFoundError):
            get_storage().read(gone.uri)
    assert get_storage().read(half.uri)
    after = manager.get("/duplicates/")
    assert parse(after.content).find_all("form", testid="duplicate-group") == []
    assert "Deleted 2 near-duplicates" in after.content.decode()


def test_a_group_changed_since_the_confirmation_deletes_nothing(manager, group):
    original, half, quarter, _ = group
    response = manager.post(
        "/duplicates/delete/",
        {"group": original.pk, "keep": half.pk, "confirm": "1", "delete": [original.pk]},
    )
    assert response.status_code == 302 and Asset.objects.count() == 4


def test_end_users_may_not_see_or_delete(viewer, group):
    assert viewer.get("/duplicates/").status_code == 403
    assert (
        viewer.post(
            "/duplicates/delete/", {"group": group[0].pk, "keep": group[0].pk, "confirm": "1"}
        ).status_code
        == 403
    )
    assert Asset.objects.count() == 4
    assert parse(viewer.get("/").content).find_all("a", testid="nav-duplicates") == []
