"""The asset page's "More like this" strip (SQLite and PostgreSQL)."""

import pytest

from catalog import services, similar
from tests.catalog.conftest import make_image
from tests.catalog.htmlquery import parse
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_indexes():
    similar.forget_indexes()
    yield
    similar.forget_indexes()


def page(client, asset):
    response = client.get(f"/assets/{asset.pk}/")
    assert response.status_code == 200
    return parse(response.content)


def test_an_end_user_sees_the_most_similar_assets_first_with_their_scores(viewer):
    assets = [
        services.ingest(make_image(c, k), f"{c}-{k}.png")[0]
        for k, c in enumerate(["red", "blue", "red", "green"])
    ]
    services.tag_assets_in_process(assets, EmbeddingTagger())
    strip = page(viewer, assets[0]).find("section", testid="similar")
    assert "More like this" in strip.text
    cards = strip.find_all("li", testid="similar-card")
    assert [int(c.get("data-asset-id")) for c in cards][0] == assets[2].pk
    assert {int(c.get("data-asset-id")) for c in cards} == {a.pk for a in assets[1:]}
    first = cards[0]
    assert first.find("a").get("href") == f"/assets/{assets[2].pk}/"
    assert first.find("img").get("src") == f"/assets/{assets[2].pk}/thumbnail"
    scores = [float(c.find("span", testid="similar-score").text) for c in cards]
    assert scores == sorted(scores, reverse=True) and scores[-1] < scores[0] <= 1


def test_no_strip_before_the_asset_is_embedded(viewer, fake_tagger):
    assets = [services.ingest(make_image("red", k), f"{k}.png")[0] for k in range(2)]
    services.tag_assets_in_process(assets, fake_tagger)  # a model without embeddings
    assert page(viewer, assets[0]).find_all("section", testid="similar") == []
