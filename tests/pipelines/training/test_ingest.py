"""The ``ingest`` stage on real files: folder-per-tag trees, CSV and JSONL manifests, the catalog.

Images are shapes the tests draw (``tests.shapes``); the catalog test runs on pytest-django's
database with its own storage folder; the command line runs as a subprocess, as Airflow runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.training import dataset as ds
from pipelines.training.ingest import IngestError, ingest
from tests.shapes import make_csv, make_images, make_tree

IMGTAG = [sys.executable, "-m", "pipelines.cli"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_sha(root: Path) -> dict[str, ds.Example]:
    return {e.sha256: e for e in ds.load(root).examples}


def draw(path: Path, shape: str = "circle", colour=(40, 40, 220), size: int = 40) -> Path:
    """A small image with one drawn shape."""
    image = np.full((size, size + 8, 3), 235, np.uint8)
    if shape == "circle":
        cv2.circle(image, (size // 2, size // 2), size // 3, colour, -1)
    else:
        cv2.rectangle(image, (8, 8), (size - 8, size - 8), colour, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    """``shapes/<tag>/...``: drawn images under each of their tags, a nested folder, noise to skip."""
    root = make_tree(tmp_path / "shapes", 12, seed=7, size=48)
    draw(root / "Big  Circle" / "nested" / "deep.PNG")
    draw(root / "circle" / ".hidden.jpg", colour=(1, 2, 3))
    draw(root / "circle" / ".cache" / "thumb.jpg", colour=(4, 5, 6))
    draw(root / ".git" / "objects.jpg", colour=(7, 8, 9))
    draw(root / "loose.jpg", colour=(9, 9, 9))  # not under a tag folder
    (root / "circle" / "notes.txt").write_text("not an image")
    return root


def test_a_tree_gives_one_example_per_image_with_the_union_of_its_tags(tree, tmp_path):
    out = tmp_path / "run" / "dataset"
    summary = ingest(out, folders=[tree])

    examples = by_sha(out)
    files = [p for p in tree.rglob("*") if p.is_file()]
    kept = [
        p
        for p in files
        if p.suffix.lower() in (".jpg", ".png")
        and not any(part.startswith(".") for part in p.relative_to(tree).parts)
        and p.parent != tree
    ]
    assert {sha(p) for p in kept} == set(examples)
    expected_tags: dict[str, set[str]] = {}
    for path in kept:
        expected_tags.setdefault(sha(path), set()).add(ds.normalize_tag(path.relative_to(tree).parts[0]))
    assert {k: set(e.tags) for k, e in examples.items()} == expected_tags
    assert any(len(e.tags) > 1 and len(e.origins) > 1 for e in examples.values()), "duplicates were merged"

    deep = examples[sha(tree / "Big  Circle" / "nested" / "deep.PNG")]
    assert deep.tags == ("big circle",)
    assert deep.path == f"images/{deep.sha256[:2]}/{deep.sha256}.png"
    assert (deep.width, deep.height, deep.format) == (48, 40, "png")
    assert deep.origins == (str((tree / "Big  Circle" / "nested" / "deep.PNG").absolute()),)
    for e in examples.values():
        assert e.sources == ("folder",) and e.split == ds.split_for(e.sha256)
        assert sha(out / e.path) == e.sha256 and e.size == (out / e.path).stat().st_size

    assert summary.to_dict() == {
        "dataset": str(out.resolve()),
        "manifest": str(out.resolve() / "manifest.jsonl"),
        "images": len(examples),
        "tags": sorted(set().union(*expected_tags.values())),
        "images_per_split": {s: sum(e.split == s for e in examples.values()) for s in ds.SPLITS},
        "duplicates_merged": len(kept) - len(examples),
        "unreadable": 0,
        "negatives": 0,
        "per_source": {"folder": len(kept), "manifest": 0, "catalog": 0},
        "refused": [],
    }
    assert json.loads((out / "dataset.json").read_text())["images"] == len(examples)
    assert [p.name for p in out.parent.iterdir()] == ["dataset"], "no temporary folder is left"


def test_csv_and_jsonl_manifests(tmp_path):
    csv_manifest = make_csv(tmp_path / "csv-set", 5, seed=2, size=48)
    jsonl_dir = tmp_path / "jsonl-set"
    square = draw(jsonl_dir / "pics" / "Square.JPG", "square")
    circle = draw(tmp_path / "elsewhere" / "circle.png")
    jsonl = jsonl_dir / "labels.jsonl"
    jsonl.write_text(
        json.dumps({"path": "pics/Square.JPG", "tags": ["Square", " red "]})
        + "\n\n"
        + json.dumps({"path": str(circle), "tags": "circle; red;"})
        + "\n"
        + json.dumps({"path": "pics/Square.JPG", "tags": ["shape"]})
        + "\n"  # listed twice: merged
    )

    summary = ingest(tmp_path / "out", manifests=[csv_manifest, jsonl])

    examples = by_sha(tmp_path / "out")
    assert examples[sha(square)].tags == ("red", "shape", "square")
    assert examples[sha(square)].path.endswith(".jpg") and examples[sha(square)].format == "jpeg"
    assert examples[sha(square)].origins == (str(square.absolute()),)
    assert examples[sha(circle)].tags == ("circle", "red")
    with csv_manifest.open() as f:
        rows = [line.rstrip("\n").split(",") for line in f][1:]
    for path, tags in rows:
        example = examples[sha(csv_manifest.parent / path)]
        assert set(example.tags) == set(tags.split(";")) and example.sources == ("manifest",)
    assert summary.images == len(rows) + 2
    assert summary.duplicates_merged == 1
    assert summary.per_source == {"folder": 0, "manifest": len(rows) + 3, "catalog": 0}


def test_a_row_without_tags_is_a_negative_and_counted(tmp_path):
    """A library exported as it is lists images nobody tagged: they are kept, with no tag, and
    teach every tag what it is not."""
    tagged, plain, blank = (
        draw(tmp_path / name, colour=(i * 80, 40, 200))
        for i, name in enumerate(("cat.jpg", "street.jpg", "wall.jpg"))
    )
    manifest = tmp_path / "export.csv"
    manifest.write_text("path,tags\ncat.jpg,cat\nstreet.jpg,\nwall.jpg, ; \n")

    summary = ingest(tmp_path / "out", manifests=[manifest])

    examples = by_sha(tmp_path / "out")
    assert examples[sha(plain)].tags == () and examples[sha(blank)].tags == ()
    assert examples[sha(tagged)].tags == ("cat",)
    assert (summary.images, summary.negatives, summary.tags) == (3, 2, ["cat"])
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["negatives"] == 2


def test_the_split_is_stable_and_equal_input_gives_equal_bytes(tree, tmp_path):
    first = ingest(tmp_path / "a" / "dataset", folders=[tree])
    second = ingest(tmp_path / "b" / "dataset", folders=[tree])

    for name in ("manifest.jsonl", "dataset.json"):
        a, b = (tmp_path / run / "dataset" / name for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()
    assert first.images_per_split == second.images_per_split
    assert sum(first.images_per_split.values()) == first.images

    # An image keeps its split when the rest of the data changes, and a salt changes the assignment.
    extra = make_images(tmp_path / "more" / "triangle", 6, seed=11, size=48)
    ingest(tmp_path / "c" / "dataset", folders=[tree, tmp_path / "more"])
    before, after = by_sha(tmp_path / "a" / "dataset"), by_sha(tmp_path / "c" / "dataset")
    assert all(after[k].split == e.split for k, e in before.items())
    assert len(after) == len(before) + len(extra)
    salted = by_sha(ingest(tmp_path / "d" / "dataset", folders=[tree], salt="study-2").dataset)
    assert all(e.split == ds.split_for(k, salt="study-2") for k, e in salted.items())


def test_a_rerun_replaces_the_dataset_and_a_failed_run_leaves_it_alone(tree, tmp_path):
    out = tmp_path / "run" / "dataset"
    ingest(out, folders=[tree])
    small = make_tree(tmp_path / "small", 3, seed=4, size=48)
    summary = ingest(out, folders=[small])

    images = [p for p in (out / "images").rglob("*") if p.is_file()]
    assert len(images) == summary.images == len(ds.load(out).examples)
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"]

    manifest = tmp_path / "bad.csv"
    manifest.write_text("path,tags\nsmall/circle/x.jpg,circle\n")
    before = (out / "manifest.jsonl").read_bytes()
    with pytest.raises(IngestError):
        ingest(out, folders=[tree], manifests=[manifest])
    assert (out / "manifest.jsonl").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["dataset"]


def test_an_unreadable_image_is_kept_for_validate_to_report(tree, tmp_path):
    good = next((tree / "circle").glob("*.jpg")).read_bytes()
    broken = tree / "circle" / "broken_upload.jpg"
    broken.write_bytes(good[:40])
    (tree / "square" / "not_really.png").write_text("hello")

    summary = ingest(tmp_path / "out", folders=[tree])

    examples = by_sha(tmp_path / "out")
    for path in (broken, tree / "square" / "not_really.png"):
        example = examples[sha(path)]
        assert (example.width, example.height, example.format) == (0, 0, "")
        assert example.origins == (str(path.absolute()),)
        assert (tmp_path / "out" / example.path).read_bytes() == path.read_bytes()
    assert summary.unreadable == 2


def test_a_bad_manifest_row_names_the_file_and_line_and_nothing_is_written(tmp_path):
    draw(tmp_path / "a.jpg")
    out = tmp_path / "out"
    cases = {
        "missing.csv": ("path,tags\na.jpg,circle\n\nnowhere.jpg,circle\n", ":4: ", "no such file"),
        "nopath.jsonl": ('{"path": "a.jpg", "tags": ["x"]}\n{"tags": ["x"]}\n', ":2: ", "no path"),
        "broken.jsonl": ('{"path": "a.jpg", "tags": ["x"]}\n{"path": \n', ":2: ", "not a JSON object"),
        "header.csv": ("file,labels\na.jpg,circle\n", ":1: ", "path and tags"),
    }
    for name, (text, line, problem) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(IngestError) as caught:
            ingest(out, manifests=[tmp_path / name])
        message = str(caught.value)
        assert f"{tmp_path / name}{line}" in message and problem in message, message
    with pytest.raises(IngestError, match="unknown manifest type .txt"):
        ingest(out, manifests=[tmp_path / "labels.txt"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [], "nothing written"


def test_no_source_or_a_bad_output_is_refused(tmp_path):
    with pytest.raises(IngestError, match="nothing to ingest"):
        ingest(tmp_path / "out")
    (tmp_path / "header-only.csv").write_text("path,tags\n")
    with pytest.raises(IngestError, match="no labelled image"):
        ingest(tmp_path / "out", manifests=[tmp_path / "header-only.csv"])
    with pytest.raises(IngestError, match="no such folder"):
        ingest(tmp_path / "out", folders=[tmp_path / "nowhere"])
    (tmp_path / "empty" / "circle").mkdir(parents=True)
    with pytest.raises(IngestError, match="no images"):
        ingest(tmp_path / "out", folders=[tmp_path / "empty"])
    precious = tmp_path / "precious"
    (precious / "thesis.txt").parent.mkdir()
    (precious / "thesis.txt").write_text("keep me")
    draw(tmp_path / "tree" / "circle" / "a.jpg")
    with pytest.raises(IngestError, match="not a dataset folder"):
        ingest(precious, folders=[tmp_path / "tree"])
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"]
    with pytest.raises(IngestError, match="sum to 1"):
        ingest(tmp_path / "out", folders=[tmp_path / "tree"], fractions=(0.5, 0.5, 0.5))


@pytest.mark.django_db
def test_the_catalog_gives_its_accepted_and_human_tags(tmp_path, settings):
    from catalog import services
    from catalog.models import AssetTag, Tag

    settings.IMGTAG = dataclasses.replace(settings.IMGTAG, storage_url=str(tmp_path / "storage"))
    with pytest.raises(IngestError, match="no labelled image"):
        ingest(tmp_path / "out", catalog=True)
    photo = draw(tmp_path / "upload" / "Photo.JPG")
    other = draw(tmp_path / "upload" / "only-suggested.png", "square")
    asset, _ = services.ingest(photo.read_bytes(), "Photo.JPG")
    unreviewed, _ = services.ingest(other.read_bytes(), "only-suggested.png")

    def tag(target, name, review, source="model", score=0.8):
        AssetTag.objects.create(
            asset=target,
            tag=Tag.objects.get_or_create(name=name)[0],
            score=score,
            source=source,
            review=review,
        )

    tag(asset, "circle", "accepted")
    tag(asset, "dog", "rejected")
    tag(asset, "animal", "suggested")
    services.review(asset, "Red Shape", "add")  # a person added it: human, accepted
    tag(unreviewed, "square", "suggested")
    tree = tmp_path / "tree"
    shutil.copy(photo, draw(tree / "round" / "same.jpg"))  # the same bytes in a tree as well

    summary = ingest(tmp_path / "out", folders=[tree], catalog=True)

    examples = by_sha(tmp_path / "out")
    assert set(examples) == {asset.sha256}
    example = examples[asset.sha256]
    assert example.tags == ("circle", "red shape", "round")
    assert example.sources == ("catalog", "folder")
    assert example.origins == tuple(sorted((asset.uri, str((tree / "round" / "same.jpg").absolute()))))
    assert example.path == f"images/{asset.sha256[:2]}/{asset.sha256}.jpg"
    assert (tmp_path / "out" / example.path).read_bytes() == photo.read_bytes()
    assert summary.per_source == {"folder": 1, "manifest": 0, "catalog": 1}
    assert summary.duplicates_merged == 1


def imgtag(args: list[str], home: Path, code: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "IMGTAG_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for key in ("DATABASE_URL", "IMGTAG_STORAGE_URL", "IMGTAG_RUNS_DIR"):
        env.pop(key, None)
    done = subprocess.run([*IMGTAG, *args], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == code, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_command_line_with_json(tree, tmp_path):
    manifest = make_csv(tmp_path / "csv-set", 3, seed=9, size=48)
    home = tmp_path / "home"
    done = imgtag(
        [
            "ingest",
            "--folder",
            f"{tree},",
            "--folder",
            "",
            "--manifest",
            str(manifest),
            "--catalog",
            "--run-name",
            "try-1",
            "--split",
            "0.5,0.25,0.25",
            "--salt",
            "s",
            "--json",
        ],
        home,
    )
    summary = json.loads(done.stdout)
    dataset = home / "runs" / "try-1" / "dataset"
    assert summary["dataset"] == str(dataset.resolve())
    assert summary["manifest"] == str(dataset.resolve() / "manifest.jsonl")
    assert summary["per_source"]["manifest"] == 3 and summary["per_source"]["catalog"] == 0
    assert summary["images"] == len(ds.load(dataset).examples)
    assert set(summary) >= {"tags", "images_per_split", "duplicates_merged", "unreadable"}
    assert all(e.split == ds.split_for(e.sha256, (0.5, 0.25, 0.25), "s") for e in ds.load(dataset).examples)

    text = imgtag(["ingest", "--folder", str(tree), "--out", str(tmp_path / "plain")], home).stdout
    assert "images" in text and "duplicates merged" in text

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "gone.jpg", "tags": ["x"]}\n')
    failed = imgtag(["ingest", "--manifest", str(bad), "--out", str(tmp_path / "o")], home, code=2)
    assert f"{bad}:1:" in failed.stderr and "no such file" in failed.stderr
    empty = imgtag(["ingest", "--folder", "", "--out", str(tmp_path / "o")], home, 2)
    assert "nothing to ingest" in empty.stderr
    assert (
        "--split"
        in imgtag(
            ["ingest", "--folder", str(tree), "--out", str(tmp_path / "o"), "--split", "a,b"], home, 2
        ).stderr
    )
    assert not (tmp_path / "o").exists()


def test_an_airflow_run_id_becomes_a_safe_folder_name(tree, tmp_path):
    home = tmp_path / "home"
    done = imgtag(
        ["ingest", "--folder", str(tree), "--run-name", "manual__2026-11-29T05:57:51+00:00", "--json"], home
    )
    assert json.loads(done.stdout)["dataset"] == str(
        (home / "runs" / "manual__2026-11-29T05_57_51_00_00" / "dataset").resolve()
    )


def test_a_manifests_group_keeps_a_photo_and_its_crops_in_one_split(tmp_path):
    """Crops of one photo in train and the photo in test would grade the model on what it saw:
    the ``group`` column puts every image of a group in the group's split."""
    folder = tmp_path / "set"
    rows = ["path,tags,group"]
    for i in range(24):  # 24 groups of a photo and two crops
        for k, shape in enumerate(("circle", "square", "triangle")):
            draw(folder / f"g{i}-{k}.png", shape, colour=(10 * i, 40 * k, 200), size=40 + i)
            rows.append(f"g{i}-{k}.png,{shape},shoot-{i}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")

    ingest(tmp_path / "out", manifests=[folder / "labels.csv"])

    examples = by_sha(tmp_path / "out")
    splits: dict[str, set[str]] = {}
    for example in examples.values():
        splits.setdefault(example.group, set()).add(example.split)
    assert len(splits) == 24 and all(len(s) == 1 for s in splits.values()), splits
    assert len({s for group in splits.values() for s in group}) > 1  # the groups spread over splits
    assert all(e.split == ds.split_for(ds.split_key(e.sha256, e.group)) for e in examples.values())
