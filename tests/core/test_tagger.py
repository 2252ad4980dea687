"""The tagger a fresh install uses (the starter model) and the ImageNet-only one on real photos,
and the batched engine around them."""

import os

import cv2
import numpy as np
import pytest
import skimage.data

from core.results import TagScore
from core.runtimes import PRETRAINED_MODEL_NAME
from core.settings import Settings
from core.tagger import Tagger
from core.tagmap import TagMap
from core.vocabulary import Vocabulary
from serving.current import get_tagger


@pytest.fixture(scope="module")
def tagger():
    return get_tagger(Settings.from_env())


@pytest.fixture(scope="module")
def pretrained():
    return get_tagger(Settings.from_env({**os.environ, "IMGTAG_STARTER": "off"}))


def png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def jpeg(rgb: np.ndarray, quality: int = 92) -> bytes:
    ok, encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return encoded.tobytes()


def names(result) -> list[str]:
    return [t.name for t in result.tags]


@pytest.mark.slow  # loads the full model
def test_real_photos_get_the_tags_a_person_expects(tagger):
    from serving import starter

    chelsea, coffee, astronaut = tagger.tag_images(
        [
            ("chelsea", png(skimage.data.chelsea()), "chelsea.png"),
            ("coffee", jpeg(skimage.data.coffee()), "coffee.jpg"),
            ("astronaut", jpeg(skimage.data.astronaut()), "astronaut.jpg"),
        ]
    )
    assert "cat" in names(chelsea) and "animal" in names(chelsea)
    assert names(chelsea).count("cat") == 1  # one tag, one score: the general and the learned cat
    assert any(t in names(coffee) for t in ("coffee", "cup", "espresso", "coffee mug"))
    assert "cat" not in names(coffee) and "coffee" not in names(chelsea)
    assert "person" in names(astronaut) and "person" not in names(chelsea)
    for result in (chelsea, coffee, astronaut):
        scores = [round(t.score, 2) for t in result.tags]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert tagger.model_name == starter.MODEL_NAME


@pytest.mark.slow  # loads the full model
def test_the_imagenet_only_tagger_lists_the_specific_tag_first(pretrained):
    (coffee,) = pretrained.tag_images([("coffee", jpeg(skimage.data.coffee()), "coffee.jpg")])
    assert names(coffee)[0] == "espresso"  # the specific tag before "coffee" and "drink" at ~equal scores
    assert "coffee" in names(coffee) and pretrained.model_name == PRETRAINED_MODEL_NAME


@pytest.mark.slow  # loads the full model
def test_tags_survive_a_flip_and_a_small_crop(tagger):
    cat = skimage.data.chelsea()
    h, w = cat.shape[:2]
    variants = [cat[:, ::-1].copy(), cat[h // 20 : -h // 20, w // 20 : -w // 20].copy()]
    for result in tagger.tag_images((i, png(v), f"v{i}.png") for i, v in enumerate(variants)):
        assert "cat" in names(result)


@pytest.mark.slow  # loads the full model
def test_a_bad_file_in_a_batch_does_not_stop_the_others(tagger):
    cat = png(skimage.data.chelsea())
    items = [(0, cat, "a.png"), (1, b"not an image", "notes.jpg"), (2, b"", "empty.png"), (3, cat, "b.png")]
    results = list(tagger.tag_images(items))
    assert [r.key for r in results] == [0, 1, 2, 3]  # input order
    assert results[0].ok and results[3].ok and "cat" in names(results[3])
    assert "notes.jpg" in str(results[1].error) and results[1].error.reason == "not_an_image"
    assert "empty.png" in str(results[2].error) and results[2].error.reason == "empty"


@pytest.mark.slow  # loads the full model
def test_paths_are_read_in_the_engine(tagger, tmp_path):
    path = tmp_path / "cat.jpg"
    path.write_bytes(jpeg(skimage.data.chelsea()))
    (result,) = tagger.tag_images([("k", path, str(path))])
    assert "cat" in names(result) and result.info.format == "JPEG"
    (missing,) = tagger.tag_images([("m", tmp_path / "gone.jpg", "gone.jpg")])
    assert not missing.ok and "gone.jpg" in str(missing.error)


def tiny_tagmap(tmp_path) -> TagMap:
    (tmp_path / "imagenet_tags.csv").write_text(
        "index,wnid,label,tag,broader\n0,n0,a,tabby,cat;animal\n1,n1,b,lynx,wild cat;cat;animal\n2,n2,c,mug,cup\n"
    )
    (tmp_path / "tag_thresholds.csv").write_text("tag,threshold\n*,0.5\n**,0.6\nanimal,0.9\n")
    return TagMap.load(tmp_path)


def test_broader_tags_sum_their_classes_and_have_their_own_thresholds(tmp_path):
    tagmap = tiny_tagmap(tmp_path)
    (tags,) = tagmap.select(np.array([[0.4, 0.35, 0.25]], dtype=np.float32))
    # No class reaches 0.5, but together they are a cat (0.75 >= 0.6); animal needs 0.9 on its
    # own, but a cat is an animal: an emitted tag brings its broader tags, the specific one first.
    assert tags == [TagScore("cat", 0.75), TagScore("animal", 0.75)]
    strict = tagmap.with_thresholds({"cat": 0.99})
    (tags,) = strict.select(np.array([[0.55, 0.05, 0.4]], dtype=np.float32))
    # a confident tabby is a cat, however strict the threshold of cat on its own
    assert tags == [TagScore("cat", 0.6), TagScore("animal", 0.6), TagScore("tabby", 0.55)]


def test_a_tag_turned_off_is_not_implied_by_a_narrower_one(tmp_path):
    tagmap = tiny_tagmap(tmp_path)
    (tmp_path / "tag_thresholds.csv").write_text("tag,threshold\n*,0.5\n**,0.6\nanimal,0.9\nwild cat,off\n")
    (tags,) = TagMap.load(tmp_path).select(np.array([[0.05, 0.6, 0.35]], dtype=np.float32))
    assert [t.name for t in tags] == ["cat", "animal", "lynx"]  # no "wild cat": a person turned it off
    assert "wild cat" in [t.name for t in tagmap.select(np.array([[0.05, 0.6, 0.35]], dtype=np.float32))[0]]
    assert tagmap.parents("lynx") == ["wild cat"] and tagmap.parents("wild cat") == ["cat"]
    assert tagmap.parents("animal") == []


def test_inconsistent_hierarchy_is_refused_with_the_row(tmp_path):
    (tmp_path / "imagenet_tags.csv").write_text(
        "index,wnid,label,tag,broader\n0,n0,a,tabby,cat;animal\n1,n1,b,toy,cat;object\n"
    )
    (tmp_path / "tag_thresholds.csv").write_text("tag,threshold\n*,0.5\n")
    with pytest.raises(ValueError, match=r"imagenet_tags.csv:3: tag 'cat' has parent 'object'"):
        TagMap.load(tmp_path)


def test_inference_always_runs_in_fixed_shape_batches(tmp_path):
    shapes = []

    def predict(pixels):
        shapes.append(pixels.shape)
        return np.tile(np.array([[0.1, 0.1, 0.8]], np.float32), (len(pixels), 1))

    engine = Tagger(predict, tiny_tagmap(tmp_path), "m", "1", image_size=32, batch_size=4, decode_threads=2)
    image = png(np.full((40, 50, 3), 100, np.uint8))
    results = list(engine.tag_images((i, image, f"{i}.png") for i in range(10)))
    assert len(results) == 10 and all(names(r) == ["mug", "cup"] for r in results)
    assert set(shapes) == {(4, 32, 32, 3)} and len(shapes) == 3  # 4 + 4 + (2 padded to 4)


def test_a_tag_map_with_other_thresholds_keeps_and_drops_tags_and_leaves_the_original(tmp_path):
    tagmap = tiny_tagmap(tmp_path)
    probabilities = np.array([[0.4, 0.35, 0.25]], dtype=np.float32)  # cat 0.75, animal 0.75, cup 0.25
    before = tagmap.thresholds.copy()
    tuned = tagmap.with_thresholds({"animal": 0.7, "cat": 0.8, "cup": 0.2, "no such tag": 0.1})
    assert tuned.select(probabilities) == [[TagScore("animal", 0.75), TagScore("cup", 0.25)]]
    assert tagmap.select(probabilities) == [[TagScore("cat", 0.75), TagScore("animal", 0.75)]]  # untouched
    assert np.array_equal(tagmap.thresholds, before) and tuned.matrix is tagmap.matrix
    assert tuned.parents("lynx") == ["wild cat"]
    with pytest.raises(ValueError, match=r"threshold 0.0 for 'cat' is not in \(0, 1\]"):
        tagmap.with_thresholds({"cat": 0})


def test_a_vocabulary_with_other_thresholds_keeps_and_drops_tags_and_leaves_the_original():
    limits = np.array([0.5, 0.5, 0.9], np.float32)
    vocabulary = Vocabulary(("cat", "sofa", "toy"), limits, ("learned",) * 3, {})
    scores = np.array([[0.6, 0.3, 0.85]], np.float32)
    tuned = vocabulary.with_thresholds({"sofa": 0.25, "cat": 0.65, "dog": 0.1})
    assert tuned.select(scores) == [[TagScore("sofa", 0.3)]]  # sofa lowered in, cat raised out
    assert vocabulary.select(scores) == [[TagScore("cat", 0.6)]]
    assert vocabulary.thresholds.tolist() == pytest.approx([0.5, 0.5, 0.9])
    again = tuned.with_thresholds({"toy": 0.8})  # a copy of a copy: both overrides
    assert again.select(scores) == [[TagScore("toy", 0.85), TagScore("sofa", 0.3)]]


def test_a_tagger_with_other_thresholds_shares_its_model(tmp_path):
    def predict(pixels):
        return np.tile(np.array([[0.1, 0.1, 0.8]], np.float32), (len(pixels), 1))  # mug 0.8, cup 0.8

    engine = Tagger(predict, tiny_tagmap(tmp_path), "m", "1", image_size=32, batch_size=4, decode_threads=2)
    assert engine.with_thresholds({}) is engine
    strict = engine.with_thresholds({"mug": 0.9})
    assert strict is not engine and strict._predict is engine._predict
    assert (strict.model_name, strict.model_version, strict.batch_size) == ("m", "1", 4)
    image = png(np.full((40, 50, 3), 100, np.uint8))
    (result,) = strict.tag_images([(0, image, "a.png")])
    assert names(result) == ["cup"]
    (result,) = engine.tag_images([(0, image, "a.png")])
    assert names(result) == ["mug", "cup"]


@pytest.mark.slow  # loads the full model
def test_converted_model_is_cached_and_the_next_start_needs_no_tensorflow(tmp_path):
    import json
    import subprocess
    import sys

    image = tmp_path / "cat.png"
    image.write_bytes(png(skimage.data.chelsea()))
    code = (
        "import sys, json; from pathlib import Path; from core.settings import Settings; "
        "from serving.current import get_tagger; "
        f"r = next(get_tagger(Settings.from_env()).tag_images([('k', Path({str(image)!r}), 'cat.png')])); "
        "print(json.dumps([[t.name for t in r.tags], 'tensorflow' in sys.modules]))"
    )
    home = tmp_path / "home"
    env = {
        **os.environ,
        "IMGTAG_HOME": str(home),
        "IMGTAG_CACHE_DIR": str(home / "cache"),
        "IMGTAG_RUNTIME": "litert",
    }
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    (first_tags, first_tf), (second_tags, second_tf) = runs
    assert first_tf and not second_tf  # converted once with TensorFlow, then read from the cache
    assert first_tags == second_tags and "cat" in second_tags
    assert len(list((tmp_path / "home" / "cache" / "models").glob("*.tflite"))) == 1


def test_a_picture_no_tag_reached_gets_its_likeliest_fallback_tag(tmp_path):
    """The fallback (from a calibration) gives a picture that none of its candidate tags reached
    the likeliest of them, with its broader tags; a threshold a person sets holds for it too."""
    tags = ("horse", "animal", "cow", "person")
    vocabulary = Vocabulary(
        tags,
        np.array([0.8, 0.9, 0.8, 0.7], np.float32),
        ("learned",) * 4,
        {"horse": "animal", "cow": "animal"},
        fallback=np.array([0.4, np.inf, 0.3, np.inf], np.float32),  # animal and person are never a fallback
        slope=np.array([1.0, 1.0, 1.0, 1.0], np.float32),
    )
    modest = np.array([[0.55, 0.6, 0.35, 0.65]], np.float32)
    # horse is 0.15 past its fallback in score, cow 0.05: horse is the likelier, and it is an animal
    assert [t.name for t in vocabulary.select(modest)[0]] == ["animal", "horse"]
    sure = np.array([[0.85, 0.9, 0.6, 0.1]], np.float32)
    assert [t.name for t in vocabulary.select(sure)[0]] == ["animal", "horse"]  # reached: no fallback
    nothing = np.array([[0.2, 0.3, 0.1, 0.5]], np.float32)
    assert vocabulary.select(nothing) == [[]]
    strict = vocabulary.with_thresholds({"horse": 0.95})  # a person wants horse only when sure
    assert [t.name for t in strict.select(modest)[0]] == ["animal", "cow"]
    vocabulary.write(tmp_path)
    back = Vocabulary.read(tmp_path)
    assert back.select(modest) == vocabulary.select(modest)
    np.testing.assert_allclose(back.fallback, vocabulary.fallback)
