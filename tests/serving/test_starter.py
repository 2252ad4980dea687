"""The starter model that ships (serving.starter): what a fresh install tags with, installed as
the model repository's first version so that TF Serving's SavedModel and the in-process tagger
give the same tags, EXIF-rotated camera photos included."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import imageio
from core.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    skimage = pytest.importorskip("skimage")
    return Image.fromarray(skimage.data.astronaut())


def jpeg(image: Image.Image, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[imageio.EXIF_ORIENTATION] = orientation
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    return buffer.getvalue()


def imgtag(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMGTAG_HOME": str(home)}
    for name in ("IMGTAG_MODEL_BASE", "MLFLOW_TRACKING_URI"):  # this home's own repository and MLflow
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_the_starter_ships_with_its_provenance():
    from serving import starter

    head = starter.load_head()
    assert head is not None, "serving/starter_model/ is missing: run `make starter-model`"
    assert {"person", "people", "car", "cup", "giraffe"} <= set(head.tags)
    assert head.kernel.shape == (1280, len(head.tags)) and head.bias.shape == (len(head.tags),)
    provenance = head.provenance
    assert provenance["dataset_hash"] and provenance["mlflow"]["run_id"]
    assert (
        provenance["metrics"]["images_with_correct_tag"] > 0 and provenance["command"] == "make starter-model"
    )
    shipped = sum(p.stat().st_size for p in starter.STARTER_DIR.iterdir())
    assert shipped < 2_000_000  # the head and its vocabulary, no backbone copy


def test_installed_starter_serves_the_in_process_tags_on_an_exif_rotated_photo(tmp_path, astronaut):
    """``imgtag starter install`` makes the starter a real model version: MLflow version 1 with the
    alias ``champion``, served as version 1; its SavedModel (what TF Serving loads) and the
    in-process tagger give the same tags, and a camera photo stored sideways with an EXIF
    orientation scores as the upright photo."""
    from serving import current as tagger
    from serving.export import LoadedModel

    home = tmp_path / "home"
    first = imgtag(["starter", "install", "--json"], home)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["installed"] is True and (summary["serving_version"], summary["model_version"]) == (1, "1")
    again = json.loads(imgtag(["starter", "install", "--json"], home).stdout)
    assert again["installed"] is False and (again["serving_version"], again["model_version"]) == (1, "1")
    import mlflow

    registry = mlflow.MlflowClient(f"sqlite:///{home / 'mlflow.db'}", f"sqlite:///{home / 'mlflow.db'}")
    version = registry.get_model_version("imgtag-tagger", "1")
    assert version.aliases == ["champion"] and version.tags["starter"] == summary["starter"]
    assert version.tags["serving_version"] == "1"
    assert (
        len(registry.search_model_versions("name='imgtag-tagger'")) == 1
    )  # installing again registers nothing

    upright = jpeg(astronaut)
    sideways = jpeg(astronaut.transpose(Image.Transpose.ROTATE_90), orientation=6)  # a camera held sideways
    assert imageio.decode(sideways, "x.jpg")[0].shape == imageio.decode(upright, "x.jpg")[0].shape

    settings = Settings.from_env({**os.environ, "IMGTAG_HOME": str(home)})
    model = tagger.current_model(settings)
    assert (model.name, model.version, model.served) == (settings.model_name, "1", True)
    served = LoadedModel(model.path)
    scores = served.scores([upright, sideways])
    np.testing.assert_allclose(scores[1], scores[0], atol=0.05)  # JPEG noise, not a rotated photo
    served_tags = [{t.name for t in row} for row in served.vocabulary.select(scores)]
    assert "person" in served_tags[0]

    # The same tags from the same pixels: the in-process tagger (the SavedModel converted to
    # LiteRT) and TF Serving's SavedModel differ by float rounding only.
    in_process = tagger.get_tagger(settings)
    pixels = np.stack(
        [imageio.load_for_model(data, served.info["image_size"])[0] for data in (upright, sideways)]
    )
    from_pixels = served.pixel_scores(pixels)
    results = list(in_process.tag_images([("up", upright, "up.jpg"), ("side", sideways, "side.jpg")]))
    labels = served.vocabulary
    # The catalog's thresholds page reads the starter's tags and thresholds without exporting it
    # (no TensorFlow in the catalog's image): the same as the exported, served vocabulary.
    from serving import starter

    fresh = Settings.from_env(
        {
            **os.environ,
            "IMGTAG_HOME": str(tmp_path / "fresh"),
            "IMGTAG_CACHE_DIR": str(tmp_path / "fresh-cache"),
        }
    )
    model, vocabulary, _ = tagger.current_vocabulary(fresh)
    assert (model.name, model.version, model.path) == (starter.MODEL_NAME, starter.load_head().version, None)
    assert vocabulary.tags == served.vocabulary.tags
    np.testing.assert_array_equal(vocabulary.thresholds, served.vocabulary.thresholds)
    assert not (fresh.cache_dir / "starter").exists()

    for result, row in zip(results, from_pixels, strict=True):
        assert result.ok, result.error
        mine = {t.name: t.score for t in result.tags}
        emitted = {t.name for t in labels.select(row[None])[0]}
        borderline = {t for i, t in enumerate(labels.tags) if abs(row[i] - labels.thresholds[i]) < 0.01}
        assert set(mine) - borderline == emitted - borderline, (sorted(mine), sorted(emitted))
        for name, score in mine.items():
            assert score == pytest.approx(row[labels.tags.index(name)], abs=0.01)
    # From the encoded bytes the two decoders differ a little more (OpenCV decodes a large JPEG
    # at reduced size, TensorFlow decodes it whole), yet they agree on what the photo shows.
    assert "person" in {t.name for t in results[1].tags} and "person" in served_tags[1]


def test_nothing_the_pretrained_classifier_knows_is_lost():
    """A species, a dog breed, an aircraft carrier: every ImageNet class whose own tag the labels
    cannot confirm (no label names it) is emitted when the classifier gives it 0.5 on its own,
    with its broader tags (a flamingo is a bird and an animal). None of those is off."""
    from core.tagmap import TagMap
    from serving import starter

    head = starter.load_head()
    vocabulary = starter.vocabulary(head)
    tagmap = TagMap.load()
    named = set(head.tags)  # the labels the starter learned; their class tags are calibrated as labels
    missed = []
    for index, own in enumerate(tagmap.class_tags):
        if own in named:
            continue
        probabilities = np.zeros((1, tagmap.output_width), np.float32)
        probabilities[0, index] = 0.5
        general = np.minimum(probabilities @ tagmap.matrix, 1.0)
        scores = np.zeros((1, len(vocabulary.tags)), np.float32)
        scores[0, : len(tagmap.tags)] = general
        emitted = {t.name for t in vocabulary.select(scores)[0]}
        if own not in emitted or not set(tagmap.ancestors(own)) <= emitted | _off(vocabulary):
            missed.append(own)
    assert not missed, f"{len(missed)} classes lost, e.g. {missed[:10]}"


def _off(vocabulary) -> set[str]:
    return {
        t for t, limit in zip(vocabulary.tags, vocabulary.thresholds, strict=True) if not np.isfinite(limit)
    }


def test_pictures_that_are_not_photos_get_their_kind_and_no_confident_object(tmp_path):
    """A page of text is a document (no person), gravel and grass are textures (no food)."""
    skimage = pytest.importorskip("skimage")
    from serving import current as tagger
    from serving.starter import IMAGE_SIZE

    def png(pixels) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(pixels)).convert("RGB").save(buffer, "PNG")
        return buffer.getvalue()

    settings = Settings.from_env({**os.environ, "IMGTAG_HOME": str(tmp_path / "home")})
    engine = tagger.get_tagger(settings)
    assert engine.image_size == IMAGE_SIZE
    pictures = {
        "page": skimage.data.page(),
        "text": skimage.data.text(),
        "gravel": skimage.data.gravel(),
        "grass": skimage.data.grass(),
    }
    results = {
        r.key: {t.name for t in r.tags}
        for r in engine.tag_images((k, png(v), k) for k, v in pictures.items())
    }
    assert "document" in results["page"] and "person" not in results["page"] | results["text"]
    assert "texture" in results["gravel"] and "texture" in results["grass"]
    assert not {"food", "fruit", "person"} & (results["gravel"] | results["grass"]), results
