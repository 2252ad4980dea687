"""Embeddings are kept per asset with the model version that made them (SQLite and PostgreSQL)."""

from pathlib import Path

import numpy as np
import pytest

from catalog import services
from catalog.models import AssetEmbedding
from catalog.services.embeddings import assets_without_embedding, embeddings_of, record_embeddings
from tests.catalog.conftest import make_image
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db


def upload(*images):
    return [services.ingest(data, f"image-{k}.png")[0] for k, data in enumerate(images)]


def test_tagging_stores_each_assets_embedding_with_its_model():
    assets = upload(make_image("red", 1), make_image("blue", 2), make_image("green", 3)[:80])
    services.tag_assets_in_process(assets, EmbeddingTagger())
    rows = {row.asset_id: row for row in AssetEmbedding.objects.select_related("model_version")}
    assert set(rows) == {assets[0].pk, assets[1].pk}  # the file that failed has none
    for row in rows.values():
        assert len(bytes(row.vector)) == 256
        assert (row.model_version.name, row.model_version.version) == ("fake-colour", "1")
    [(ids, vectors)] = embeddings_of("fake-colour", "1")
    assert ids.tolist() == sorted(rows) and vectors.dtype == np.int8 and vectors.shape == (2, 256)


def test_a_new_model_replaces_the_embedding_and_searches_never_mix_versions():
    assets = upload(make_image("red", 1), make_image("green", 2))
    services.tag_assets_in_process(assets, EmbeddingTagger())
    newer = EmbeddingTagger()
    newer.model_version = "2"
    services.tag_assets_in_process(assets[:1], newer)
    assert AssetEmbedding.objects.count() == 2
    assert [ids.tolist() for ids, _ in embeddings_of("fake-colour", "2")] == [[assets[0].pk]]
    assert [ids.tolist() for ids, _ in embeddings_of("fake-colour", "1")] == [[assets[1].pk]]
    assert list(embeddings_of("fake-colour", "3")) == []
    assert list(assets_without_embedding("fake-colour", "2")) == [assets[1]]


def test_tagging_again_with_the_same_model_rewrites_one_row():
    [asset] = upload(make_image("red", 1))
    services.tag_assets_in_process([asset], EmbeddingTagger())
    record_embeddings([(asset, np.full(256, 3, np.int8))], "fake-colour", "1")
    assert AssetEmbedding.objects.count() == 1
    assert bytes(AssetEmbedding.objects.get().vector) == bytes([3] * 256)


def test_a_tagger_without_embeddings_leaves_none():
    from tests.catalog.conftest import FakeTagger

    assets = upload(make_image("red", 1))
    services.tag_assets_in_process(assets, FakeTagger())
    assert AssetEmbedding.objects.count() == 0
    assert list(assets_without_embedding("fake-colour", "1")) == assets


def test_deleting_an_asset_deletes_its_embedding():
    [asset] = upload(make_image("blue", 1))
    services.tag_assets_in_process([asset], EmbeddingTagger())
    asset.delete()
    assert AssetEmbedding.objects.count() == 0


def test_only_int8_embeddings_are_stored():
    [asset] = upload(make_image("blue", 1))
    with pytest.raises(ValueError, match="int8"):
        record_embeddings([(asset, np.zeros(256, np.float32))], "fake-colour", "1")
    assert AssetEmbedding.objects.count() == 0


def test_backfill_embeds_the_assets_tagged_before_and_leaves_their_tags(monkeypatch):
    from catalog.models import AssetTag
    from catalog.services.embeddings import backfill
    from tests.catalog.conftest import FakeTagger

    assets = upload(make_image("red", 1), make_image("blue", 2), make_image("green", 3))
    services.tag_assets_in_process(assets, FakeTagger())  # an older version: tags, no embeddings
    AssetTag.objects.filter(asset=assets[0]).update(review=AssetTag.Review.ACCEPTED)
    tags_before = sorted(AssetTag.objects.values_list("asset_id", "tag__name", "review"))
    done = []
    summary = backfill(EmbeddingTagger(), batch=2, on_progress=done.append)
    assert (summary.embedded, summary.failed, done) == (3, [], [2, 1])
    assert sorted(AssetTag.objects.values_list("asset_id", "tag__name", "review")) == tags_before
    assert AssetEmbedding.objects.count() == 3
    assert backfill(EmbeddingTagger()).embedded == 0  # nothing left to do


def test_backfill_reports_a_missing_original_and_refuses_a_model_without_embeddings():
    from catalog.services.embeddings import backfill
    from core.errors import UsageError
    from tests.catalog.conftest import FakeTagger

    assets = upload(make_image("red", 1), make_image("blue", 2))
    Path(assets[1].uri.removeprefix("file://")).unlink()
    summary = backfill(EmbeddingTagger())
    assert summary.embedded == 1
    assert [(f["asset"], "missing" in f["error"]) for f in summary.failed] == [(assets[1].pk, True)]
    upload(make_image("green", 3))
    with pytest.raises(UsageError, match="makes no embeddings"):
        backfill(FakeTagger())


def test_imgtag_embeddings_backfill_prints_what_it_did(monkeypatch):
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app, similar

    upload(make_image("red", 1), make_image("blue", 2))
    monkeypatch.setattr(similar, "open_catalog", lambda: None)  # the test's database is open already
    monkeypatch.setattr(similar, "load_tagger", EmbeddingTagger)
    result = CliRunner().invoke(app, ["embeddings", "backfill", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"embedded": 2, "failed": []}
