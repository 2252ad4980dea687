"""The starter model's data preparation (pipelines.training.build_starter) on generated photos and boxes:
readable tags, a ``people`` tag for several persons, crops that cut no object in half, crops of
training photos only, and the calibrated rows written into the tag map's thresholds."""

from __future__ import annotations

import csv
import os
import random

import cv2
import numpy as np
import pytest

from core import tagmap
from pipelines.training import build_starter as bs
from pipelines.training import dataset as ds


def box(tag, x0, y0, x1, y1):
    return bs.Box(bs.tag_for(tag), x0, y0, x1, y1)


def test_coco_names_become_the_tag_maps_names_and_people_need_two_visible_persons():
    assert bs.tag_for("tv") == "television" and bs.tag_for("cell phone") == "mobile phone"
    assert bs.tag_for("giraffe") == "giraffe"
    two = [box("person", 0.1, 0.1, 0.4, 0.9), box("person", 0.5, 0.1, 0.8, 0.9)]
    assert bs.photo_tags(["person", "tv"], two) == ["people", "person", "television"]
    tiny = [box("person", 0.1, 0.1, 0.4, 0.9), box("person", 0.5, 0.5, 0.55, 0.55)]  # 0.25% of the photo
    assert bs.photo_tags(["person"], tiny) == ["person"]


@pytest.mark.parametrize("seed", range(20))
def test_a_crop_never_cuts_an_object_so_that_its_label_would_lie(seed):
    rng = random.Random(seed)
    boxes = []
    for _ in range(rng.randint(1, 8)):
        x0, y0 = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
        boxes.append(
            box(
                rng.choice(["person", "cup", "car", "dog"]),
                x0,
                y0,
                x0 + rng.uniform(0.05, 0.2),
                y0 + rng.uniform(0.05, 0.2),
            )
        )
    for region, tags in bs.crop_regions(boxes, random.Random(seed), 400, 300):
        x0, y0, x1, y1 = region
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        assert (x1 - x0) * 400 >= bs.CROP_MIN_SIDE and (y1 - y0) * 300 >= bs.CROP_MIN_SIDE
        shares = [(b, b.share_inside(*region)) for b in boxes]
        assert not any(bs.PARTLY[0] < s < bs.PARTLY[1] for _, s in shares)
        assert set(tags) - {"people"} == {b.tag for b, s in shares if s >= bs.PARTLY[1]}
    assert len(bs.crop_regions(boxes, random.Random(seed), 400, 300)) <= bs.CROPS_PER_PHOTO


def photos(folder, count=12):
    """``count`` generated photos with a person and a cup each, their manifest and boxes."""
    (folder / "images").mkdir(parents=True)
    manifest, boxes = (
        [["path", "tags", "coco_id"]],
        [["path", "tag", "x_center", "y_center", "width", "height"]],
    )
    for i in range(count):
        image = np.full((200, 300, 3), 30 + 15 * i, np.uint8)
        cv2.rectangle(image, (20, 20), (120, 180), (200, 50, 50), -1)  # the person
        cv2.circle(image, (230, 150), 30, (50, 200, 50), -1)  # the cup
        path = f"images/photo_{i}.jpg"
        cv2.imwrite(str(folder / path), image)
        manifest.append([path, "person;cup", str(i)])
        boxes.append([path, "person", "0.2333", "0.5", "0.3333", "0.8"])
        boxes.append([path, "cup", "0.7667", "0.75", "0.2", "0.3"])
    manifest.append(["images/unlabelled.jpg", "", "99"])
    cv2.imwrite(str(folder / "images/unlabelled.jpg"), np.zeros((50, 50, 3), np.uint8))
    for name, rows in (("manifest.csv", manifest), ("boxes.csv", boxes)):
        with (folder / name).open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    return folder


def test_prepare_writes_photos_person_free_crops_box_crops_and_drawn_non_photos(tmp_path):
    data = photos(tmp_path / "data")
    summary = bs.prepare(data, tmp_path / "prepared", non_photos=2)
    with (tmp_path / "prepared" / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert summary["photos"] == 12 and summary["photos_without_labels"] == 1
    assert summary["person_free_crops"] == 12  # the cup of every photo, away from its person
    assert summary["crops"] > 0 and summary["non_photos"] == 8  # two of each kind
    drawn = [r for r in rows if r["group"].startswith("drawn-non-photos")]
    assert sorted({r["tags"] for r in drawn}) == ["document", "graphic", "screenshot", "texture"]
    assert all(cv2.imread(r["path"]) is not None for r in drawn)
    assert (
        len({r["group"] for r in drawn}) == 1 and bs._split(drawn[0]["group"]) == "train"
    )  # taught, never judged
    by_group: dict[str, list[dict]] = {}
    for row in rows:
        if row not in drawn:
            by_group.setdefault(row["group"], []).append(row)
    assert len(by_group) == 12  # each crop in its photo's group (the photo's sha256)
    for group, members in by_group.items():
        photo = [r for r in members if "/crops/" not in r["path"]]
        free = [r for r in members if "-free" in r["path"]]
        crops = [r for r in members if "-crop" in r["path"]]
        assert len(photo) == 1 and photo[0]["tags"] == "cup;person"
        assert [r["tags"] for r in free] == ["cup"]  # in every split: a library's person-free pictures
        if ds.split_for(group, bs.FRACTIONS) != "train":
            assert not crops  # box crops teach; validation and test keep what a library holds
        for crop in crops:
            assert crop["tags"] in ("cup", "person")  # one object each, the other left out whole
            assert cv2.imread(crop["path"]) is not None
    assert len(rows) == 12 + summary["person_free_crops"] + summary["crops"] + 8


@pytest.mark.parametrize("seed", range(10))
def test_a_person_free_crop_touches_no_person(seed):
    rng = random.Random(seed)
    boxes = []
    for _ in range(rng.randint(2, 8)):
        x0, y0 = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
        boxes.append(
            box(
                rng.choice(["person", "cup", "car", "dog"]),
                x0,
                y0,
                x0 + rng.uniform(0.05, 0.2),
                y0 + rng.uniform(0.05, 0.2),
            )
        )
    for region, tags in bs.person_free_crops(boxes, random.Random(seed), 400, 300):
        assert "person" not in tags and tags
        assert all(b.share_inside(*region) == 0 for b in boxes if b.tag == "person")
        assert not any(bs.PARTLY[0] < b.share_inside(*region) < bs.PARTLY[1] for b in boxes)


def test_calibrated_rows_replace_their_priors_and_the_rest_stays(tmp_path):
    path = tmp_path / tagmap.THRESHOLD_FILE
    path.write_text("tag,threshold\n*,0.25\n**,0.35\nanimal,0.5\ndog,0.45\n")
    chosen = {
        "animal": {
            "threshold": 0.81,
            "reason": "target_precision",
            "val_precision": 0.91,
            "val_recall": 0.6,
            "val_positives": 40,
            "prior": 0.5,
        },
        "tabby cat": {
            "threshold": "off",
            "reason": "below_target_precision",
            "val_precision": 0.4,
            "val_recall": 0.2,
            "val_positives": 30,
            "prior": 0.25,
        },
    }
    bs.write_calibrated_thresholds(path, chosen, 0.9)
    with path.open() as f:
        rows = {r["tag"]: r for r in csv.DictReader(f)}
    assert rows["dog"]["threshold"] == "0.45" and rows["dog"]["reason"] == "hand-set"
    assert rows["*"]["reason"] == "default"
    assert (rows["animal"]["threshold"], rows["animal"]["prior"]) == ("0.810000", "0.500000")
    assert rows["tabby cat"]["threshold"] == "off" and rows["tabby cat"]["val_positives"] == "30"
    # the next calibration starts from the priors, the tagger uses the calibrated values
    assert tagmap._read_thresholds(path)["animal"] == pytest.approx(0.81)
    assert tagmap._read_thresholds(path, calibrated=False)["animal"] == 0.5
    assert tagmap._read_thresholds(path)["tabby cat"] == float("inf")


def test_the_build_runs_in_its_own_home_without_touching_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setenv("IMGTAG_RUNS_DIR", "/elsewhere/runs")
    monkeypatch.setenv("IMGTAG_STARTER", "on")
    monkeypatch.setenv("IMGTAG_MODEL_NAME", "kept-from-the-environment")
    before = dict(os.environ)
    settings = bs.work_settings(tmp_path)
    home = tmp_path / "home"
    assert (
        settings.home == home
        and settings.runs_dir == home / "runs"
        and settings.model_base == home / "models"
    )
    assert settings.mlflow_tracking_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.dvc_remote == str(home / "dvc-remote")
    assert settings.starter is False  # the new head becomes version 1, not the shipped starter
    assert settings.model_name == "kept-from-the-environment"
    assert dict(os.environ) == before
