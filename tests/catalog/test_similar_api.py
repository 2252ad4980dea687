"""``GET /api/assets/{id}/similar/`` and the index behind it (SQLite and PostgreSQL)."""

import cv2
import numpy as np
import pytest
from rest_framework.test import APIClient

from catalog import services, similar
from tests.catalog.conftest import make_image
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db
JPEG = b"\xff\xd8"


@pytest.fixture(autouse=True)
def fresh_indexes():
    """Each test's database starts empty: so do the process's indexes."""
    similar.forget_indexes()
    yield
    similar.forget_indexes()


def as_jpeg(png: bytes) -> bytes:
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def catalog_of(*images, tagger=None):
    names = [f"{k}.jpg" if data.startswith(JPEG) else f"{k}.png" for k, data in enumerate(images)]
    assets = [services.ingest(data, name)[0] for data, name in zip(images, names, strict=True)]
    services.tag_assets_in_process(assets, tagger or EmbeddingTagger())
    return assets


def similar_of(client, asset):
    response = client.get(f"/api/assets/{asset.pk}/similar/")
    assert response.status_code == 200, response.content
    return response.json()


def test_an_end_user_gets_the_copy_first_then_the_rest_best_first(client_for):
    red = make_image("red", 1, size=(96, 128))
    assets = catalog_of(
        red, make_image("blue", 2), as_jpeg(red), make_image("green", 3), make_image("red", 4)
    )
    answer = similar_of(client_for("bob", "end_user"), assets[0])
    assert answer["model"] == "fake-colour:1"
    ids = [r["id"] for r in answer["results"]]
    assert assets[0].pk not in ids and len(ids) == 4
    assert ids[0] == assets[2].pk and answer["results"][0]["filename"] == "2.jpg"
    assert ids[1] == assets[4].pk  # another red picture before the other colours
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.95 > scores[-1]
    assert answer["results"][0]["original"].endswith(f"/api/assets/{assets[2].pk}/original")


def test_at_most_24_results(client_with_token):
    assets = catalog_of(*(make_image("red", seed) for seed in range(27)))
    assert len(similar_of(client_with_token, assets[0])["results"]) == 24


def test_an_asset_tagged_after_a_search_is_found_by_the_next(client_with_token):
    red = make_image("red", 1)
    first = catalog_of(red, make_image("blue", 2))
    assert [r["id"] for r in similar_of(client_with_token, first[0])["results"]] == [first[1].pk]
    [copy] = catalog_of(as_jpeg(red))
    assert similar_of(client_with_token, first[0])["results"][0]["id"] == copy.pk


def test_a_deleted_asset_is_no_longer_found(client_with_token):
    assets = catalog_of(make_image("red", 1), make_image("red", 2), make_image("blue", 3))
    similar_of(client_with_token, assets[0])  # the index has all three
    assets[1].delete()
    assert [r["id"] for r in similar_of(client_with_token, assets[0])["results"]] == [assets[2].pk]


def test_searches_never_mix_model_versions(client_with_token):
    assets = catalog_of(make_image("red", 1), make_image("red", 2), make_image("red", 3))
    newer = EmbeddingTagger()
    newer.model_version = "2"
    services.tag_assets_in_process(assets[:2], newer)
    answer = similar_of(client_with_token, assets[0])
    assert answer["model"] == "fake-colour:2"
    assert [r["id"] for r in answer["results"]] == [assets[1].pk]
    assert similar_of(client_with_token, assets[2])["results"] == []  # the only one left of version 1


def test_an_asset_without_embedding_has_no_similar_ones(client_with_token, fake_tagger):
    [asset] = catalog_of(make_image("red", 1), tagger=fake_tagger)
    assert similar_of(client_with_token, asset) == {"model": None, "results": []}


def test_strangers_and_missing_assets(client_for):
    [asset] = catalog_of(make_image("red", 1))
    assert APIClient().get(f"/api/assets/{asset.pk}/similar/").status_code == 401
    assert client_for("carol", None).get(f"/api/assets/{asset.pk}/similar/").status_code == 403
    assert client_for("bob", "end_user").get(f"/api/assets/{asset.pk + 100}/similar/").status_code == 404
