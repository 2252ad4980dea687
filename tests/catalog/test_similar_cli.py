"""``imgtag similar FILE``: the assets most like a file that is not in the catalog (SQLite and PostgreSQL)."""

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from catalog import services, similar
from pipelines.cli import app
from pipelines.cli import similar as similar_cli
from tests.catalog.conftest import FakeTagger, make_image
from tests.catalog.similar_fakes import EmbeddingTagger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def in_this_database(monkeypatch):
    similar.forget_indexes()
    monkeypatch.setattr(similar_cli, "open_catalog", lambda: None)  # the test's database is open already
    yield
    similar.forget_indexes()


def run(monkeypatch, tagger, *args):
    monkeypatch.setattr(similar_cli, "load_tagger", lambda: tagger)
    return CliRunner().invoke(app, ["similar", *map(str, args)])


def test_a_resized_copy_finds_its_original_first(monkeypatch, tmp_path):
    red = make_image("red", 1, size=(96, 128))
    assets = [
        services.ingest(data, name)[0]
        for data, name in [
            (red, "red.png"),
            (make_image("blue", 2), "blue.png"),
            (make_image("red", 3), "other-red.png"),
        ]
    ]
    services.tag_assets_in_process(assets, EmbeddingTagger())
    copy = tmp_path / "copy.jpg"
    pixels = cv2.imdecode(np.frombuffer(red, np.uint8), cv2.IMREAD_COLOR)
    cv2.imwrite(str(copy), cv2.resize(pixels, (64, 48), interpolation=cv2.INTER_AREA))
    result = run(monkeypatch, EmbeddingTagger(), copy, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [f["filename"] for f in found] == ["red.png", "other-red.png", "blue.png"]
    assert found[0]["id"] == assets[0].pk and found[0]["score"] > 0.95 > found[-1]["score"]
    table = run(monkeypatch, EmbeddingTagger(), copy, "--top", "1")
    assert table.exit_code == 0 and "red.png" in table.stdout and "blue.png" not in table.stdout


def test_a_file_that_is_not_an_image_fails_with_its_reason(monkeypatch, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    result = run(monkeypatch, EmbeddingTagger(), bad)
    assert result.exit_code == 1 and "notes.jpg" in result.output


def test_a_model_without_embeddings_is_refused(monkeypatch, tmp_path):
    picture = tmp_path / "red.png"
    picture.write_bytes(make_image("red", 1))
    result = run(monkeypatch, FakeTagger(), picture)
    assert result.exit_code == 2 and "makes no embeddings" in result.output
